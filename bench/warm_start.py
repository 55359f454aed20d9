"""Warm start against training from scratch on CIFAR-10 (issue 26): the production loop's second run, measured.

The loop: a model trained on the data of its day (span 0), then new images arrive (span 1) and the same
`tokenlearner run` warm-starts from the blessed model, training `retrain_epochs` epochs on spans 0+1. The reference
is what a team without warm start does: train from scratch on spans 0+1 for the full `epochs`. Both score the same
test split (span 0's and span 1's test images: all 10,000 CIFAR-10 test images by default), so the comparison is
fair; the base model's own training is not counted for the warm start, because in the loop it was paid the day
before.

    span 0: CIFAR-10 train images 0..S0-1 of each class + test images 0..T0-1   (`tokenlearner data`, via `run`)
    span 1: train images S0..S0+S1-1 + test images T0..999                       (`tokenlearner data --append`)

    1. base     run --data span0 --output WORK/loop    --set epochs=E                    -> version 1
    2. append   data --data span1 --append WORK/loop/data/<dataset>
    3. warm     run --data span0 --output WORK/loop    --set epochs=E --set retrain_epochs=R  -> warm start, version 2
    4. scratch  run --data <dataset> --output WORK/scratch --set epochs=E --set warm_start=off

Training time is the sum of each Trainer's epoch_times.csv (every epoch's wall seconds, validation included), and,
beside it, the Trainer component's whole wall time (model build, the per-epoch checkpoint of the best weights, the
export); test accuracy is the Evaluator's (TFMA) on the test split. Steps already done (a marker file in WORK) are
skipped, and a killed run resumes at its last finished epoch when the script is started again with the same WORK.

    nice .venv/bin/python bench/warm_start.py --work /var/tmp/runs/warm            # the documented row
"""
from __future__ import annotations

import argparse
import sys

import bench_data  # noqa: E402  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(bench_data.REPO))
from tests.helpers import CLASSES, write_cifar_spans  # noqa: E402

ARCHIVE = bench_data.REPO.parent / "shared" / "data" / "cifar10" / "cifar10-jpg.tar.gz"
TEST_PER_CLASS = 1000  # CIFAR-10's test images of a class


def _folders(archive: Path, dest: Path, span0: int, span1: int, test0: int) -> dict[str, Path]:
    """dest/span0, dest/span1: image folders train/<class>/*.jpg + test/<class>/*.jpg, disjoint."""
    if (dest / "done").is_file():
        return {"span0": dest / "span0", "span1": dest / "span1"}
    train = {"span0": {"train": {c: span0 for c in CLASSES}}, "span1": {"train": {c: span1 for c in CLASSES}}}
    test = {"span0": {"test": {c: test0 for c in CLASSES}},
            "span1": {"test": {c: TEST_PER_CLASS - test0 for c in CLASSES}}}
    write_cifar_spans(archive, dest, train, start=0, source="train")
    folders = write_cifar_spans(archive, dest, test, start=0, source="test")
    (dest / "done").write_text("")
    return folders


def _step(work: Path, name: str, argv: list[str]) -> None:
    """Runs one CLI command unless its marker says it finished; a failure stops the benchmark with its exit code."""
    marker = work / f"{name}.done"
    if marker.is_file():
        print(f"[{name}] done before: {' '.join(argv)}", flush=True)
        return
    import cli

    print(f"[{name}] tokenlearner {' '.join(argv)}", flush=True)
    code = cli.main(argv)
    if code != 0:
        raise SystemExit(f"[{name}] exited {code}; fix and start the benchmark again (finished steps are kept)")
    marker.write_text("")


def _row(output: Path, index: int) -> dict:
    """Run `index` (oldest first) of the pipeline in `output`: spans, start, epochs, training seconds, accuracy."""
    from pipeline import config as config_lib
    from inspection import history, summary
    from inspection.run_store import open_store

    config = config_lib.load(str(output))
    row = history.loop_history(config, open_store(config))[index]
    run = summary.collect(config, row.run_id)
    trainer = next(s for s in run.steps if s.component == "Trainer")
    # None where the Trainer fitted nothing (no new data: the base re-exported) and so timed no epoch
    times = summary.epoch_times(trainer.outputs["ModelRun"][0].uri)
    epochs = times.seconds if times else []
    return {"run": row.run_id, "spans": row.spans, "start": row.warm_start, "epochs": len(epochs),
            "seconds": sum(epochs), "trainer": trainer.seconds, "accuracy": row.accuracy,
            "blessed": row.blessed, "pushed": row.pushed_version}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="image folders, the two pipelines' outputs and markers")
    parser.add_argument("--archive", default=str(ARCHIVE), help="cifar10-jpg.tar.gz (../shared/data/cifar10/)")
    parser.add_argument("--span0", type=int, default=2000, help="training images of each class in span 0")
    parser.add_argument("--span1", type=int, default=500, help="training images of each class in span 1 (new)")
    parser.add_argument("--test0", type=int, default=800, help="test images of each class in span 0 (span 1: rest)")
    parser.add_argument("--preset", default="compact")
    parser.add_argument("--epochs", type=int, default=10, help="the base's and the from-scratch model's epochs")
    parser.add_argument("--retrain-epochs", type=int, default=2, help="the warm start's epochs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every `run`")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(bench_data.machine(), flush=True)
    folders = _folders(Path(args.archive), work / "images", args.span0, args.span1, args.test0)
    common = ["--preset", args.preset, "--set", f"epochs={args.epochs}",
              *[x for pair in args.set for x in ("--set", pair)]]
    loop = work / "loop"
    warm = ["run", "--data", str(folders["span0"]), "--output", str(loop), *common,
            "--set", f"retrain_epochs={args.retrain_epochs}"]
    _step(work, "base", warm)
    (dataset,) = {m.parent for m in (loop / "data").glob("*/manifest.json")}
    _step(work, "append", ["data", "--data", str(folders["span1"]), "--append", str(dataset)])
    _step(work, "warm", warm)
    _step(work, "scratch", ["run", "--data", str(dataset), "--output", str(work / "scratch"), *common,
                            "--set", "warm_start=off"])

    rows = {"base (span 0)": _row(loop, 0), "warm start": _row(loop, 1), "from scratch": _row(work / "scratch", 0)}
    print(bench_data.machine())
    print(f"{'model':<15} {'spans':<6} {'epochs':>6} {'epochs s':>8} {'Trainer s':>9} {'test acc':>9}  blessed  "
          f"pushed      start")
    for name, r in rows.items():
        print(f"{name:<15} {r['spans']:<6} {r['epochs']:>6} {r['seconds']:>8.0f} {r['trainer']:>9.0f} "
              f"{r['accuracy']:>9.4f}  {'yes' if r['blessed'] else 'no':<7}  {r['pushed'] or '-':<10}  {r['start']}")
    w, s = rows["warm start"], rows["from scratch"]
    print(f"warm start: {100 * (w['accuracy'] - s['accuracy']):+.2f} points against from scratch, "
          f"in {w['seconds'] / s['seconds']:.2f}x its training time ({w['seconds']:.0f} s vs {s['seconds']:.0f} s "
          f"of epochs; {w['trainer'] / s['trainer']:.2f}x of Trainer wall time, {w['trainer']:.0f} s vs "
          f"{s['trainer']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
