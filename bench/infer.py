"""`tokenlearner infer` on CIFAR-10 test JPEGs: the DirectRunner and the portable runner (embed job server,
LOOPBACK workers) must write the same predictions, each equal to ``serving_default``'s argmax for every image; and
images/s of `infer` against `tokenlearner predict --model` on the same images and model.

    flock /tmp/heavy.lock nice -n 5 .venv/bin/python bench/infer.py --model outputs/serving/tokenlearner \\
        --images ../shared/data/cifar10/cifar10-jpg.tar.gz --per-class 200 --work /var/tmp/runs/bench_infer

Every command runs as a user runs it, in a fresh interpreter, timed from start to exit (interpreter start, imports,
model load and job included: what a script calling the CLI waits for); `infer`'s own job time (its final line,
from listing the data to the counted outputs) is shown beside it. `predict` runs with its default
--batch-size 16 and with 64 (infer's default). "Same predictions": the same class id and
top-k names for every file, probabilities within 1e-6 (why not bit for bit: tests/test_infer.py's docstring); the
table says whether they were also bit for bit equal. Prints one markdown report; exits 1 if a check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import bench_data  # noqa: E402

REPO = bench_data.REPO
sys.path.insert(0, str(REPO))
from tests.helpers import extract_cifar_test_jpegs, serving_default_probabilities  # noqa: E402
PORTABLE = ["--beam-profile", "flink", "--set", "beam_job_endpoint=embed", "--set", "beam_environment_type=LOOPBACK"]
FINAL = re.compile(r"infer: ([\d,]+) classified, ([\d,]+) errors -> .* \(([\d.]+) s, ([\d.]+) img/s\)")


def timed_cli(args: list[str], log: Path) -> tuple[float, str]:
    """(wall seconds, console) of `python -m ARGS` in a fresh interpreter; it must exit 0."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    seconds = time.perf_counter() - start
    log.write_text(proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: exit {proc.returncode}; see {log}")
    return seconds, proc.stdout


def infer(model: str, data: Path, out: Path, extra: list[str], log: Path) -> dict:
    seconds, console = timed_cli(["cli", "infer", "--model", model, "--data", str(data), "--out",
                                  str(out), "--overwrite", *extra], log)
    final = FINAL.search(console)
    if final is None:
        raise SystemExit(f"infer --model {model}: no final line matching {FINAL.pattern!r}; see {log}")
    records = [json.loads(line) for shard in sorted(out.glob("predictions-*.jsonl"))
               for line in shard.read_text().splitlines()]
    errors = sum(len(s.read_text().splitlines()) for s in out.glob("errors-*.jsonl"))
    return {"wall": seconds, "job": float(final.group(3)), "records": {r["file"]: r for r in records},
            "errors": errors}


def compare(a: dict, b: dict) -> tuple[bool, bool, float]:
    """(same class ids and top-k names, every probability bit for bit equal, largest probability difference)."""
    if a.keys() != b.keys():
        return False, False, float("inf")
    same, exact, worst = True, True, 0.0
    for f in a:
        same &= a[f]["class_id"] == b[f]["class_id"] and \
            [c["class_name"] for c in a[f]["top_k"]] == [c["class_name"] for c in b[f]["top_k"]]
        pa, pb = ([c["probability"] for c in r[f]["top_k"]] for r in (a, b))
        exact &= pa == pb
        worst = max(worst, float(np.max(np.abs(np.subtract(pa, pb)))))
    return same, exact, worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a pushed model: version folder or model base folder")
    parser.add_argument("--images", default=str(REPO.parent / "shared/data/cifar10/cifar10-jpg.tar.gz"))
    parser.add_argument("--per-class", type=int, default=200, help="test JPEGs per class (default 200: 2,000)")
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/runs/bench_infer"))
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    files = extract_cifar_test_jpegs(Path(args.images), args.work / "images", args.per_class)
    data, n = args.work / "images", len(files)
    print(f"# infer bench: {n:,} CIFAR-10 test JPEGs, model {args.model}\n\n{bench_data.machine()}\n")

    runs = {
        "infer, DirectRunner (1 in-process worker, the default)": infer(args.model, data, args.work / "direct", [],
                                                                        args.work / "direct.log"),
        "infer, portable runner (embed, LOOPBACK)": infer(args.model, data, args.work / "portable", PORTABLE,
                                                          args.work / "portable.log"),
    }
    predict: dict[int, dict] = {}
    for batch in (16, 64):
        seconds, console = timed_cli(["cli", "predict", "--model", args.model, "--json", "--batch-size",
                                      str(batch), str(data)], args.work / f"predict{batch}.log")
        results = json.loads(console[console.index("{"):])["results"]
        predict[batch] = {"wall": seconds, "records": {r["file"]: r for r in results}}

    from inference import handler

    expected = serving_default_probabilities(handler.resolve(args.model), files)
    direct, portable = runs["infer, DirectRunner (1 in-process worker, the default)"], \
        runs["infer, portable runner (embed, LOOPBACK)"]
    same, exact, worst = compare(direct["records"], portable["records"])
    argmax = {str(f): int(np.argmax(p)) for f, p in expected.items()}
    checks = {
        "direct: every image classified, none in errors": len(direct["records"]) == n and direct["errors"] == 0,
        "portable: every image classified, none in errors": len(portable["records"]) == n and portable["errors"] == 0,
        f"direct == portable (class ids, top-k names, probabilities within 1e-6; largest difference {worst:.1e}; "
        f"bit for bit: {'yes' if exact else 'no'})": same and worst <= 1e-6,
        "direct class_id == serving_default argmax, every image":
            {f: r["class_id"] for f, r in direct["records"].items()} == argmax,
        "portable class_id == serving_default argmax, every image":
            {f: r["class_id"] for f, r in portable["records"].items()} == argmax,
        "predict --model class_id == serving_default argmax, every image":
            {f: r["class_id"] for f, r in predict[64]["records"].items()} == argmax,
    }
    print("| check | result |\n|---|---|")
    for name, ok in checks.items():
        print(f"| {name} | {'PASS' if ok else 'FAIL'} |")
    print("\n| command | wall s (start to exit) | img/s (wall) | job s (infer's own count) | img/s (job) |\n"
          "|---|---:|---:|---:|---:|")
    for name, r in runs.items():
        print(f"| {name} | {r['wall']:.1f} | {n / r['wall']:.0f} | {r['job']:.1f} | {n / r['job']:.0f} |")
    for batch, r in predict.items():
        print(f"| predict --model, --batch-size {batch} | {r['wall']:.1f} | {n / r['wall']:.0f} | | |")
    print(f"\nload after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
