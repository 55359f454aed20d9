"""Accuracy table: the rows of the keras.io TokenLearner table, plus the `better` and `compact` presets, each
trained through the real Trainer code path (`trainer.run.run_fn`, as the TFX Trainer calls it) and scored on the
CIFAR-10 test split through the exported SavedModel's `serving_tf_example` signature (what the Evaluator runs).

    nice .venv/bin/python bench/accuracy.py --data ../shared/data/cifar10/cifar10-jpg.tar.gz --epochs 1

Epochs are configurable (keras.io: 20; a CPU run can afford fewer, and the table says how many). Rows already
finished in --work are reused (delete <work>/rows/<row>/result.json to rerun one). Prints one markdown table.

Rows can also come from finished product runs, scored by their own Evaluator (TFMA) on the test split; several
runs of one row (seeds) add a mean ± std line:

    .venv/bin/python bench/accuracy.py --rows '' --from-run compact=/var/tmp/runs/compact20b \\
        --from-run better=/var/tmp/runs/better20
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import bench_data  # noqa: E402  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from components import datasets  # noqa: E402
from trainer import contract, serving_api  # noqa: E402

# keras.io "Learning to tokenize in Vision Transformers": (base preset, overrides, keras.io top-1 %, GFLOPs).
ROWS: dict[str, tuple[str, dict, float | None, float | None]] = {
    "vit": ("keras_io", {"token_learner": "none"}, 56.112, 0.0184),
    "tl_v1_4": ("keras_io", {}, 56.498, 0.0147),
    "tl_v1_8": ("keras_io", {"num_tokens": 8}, 56.55, 0.0153),
    "vit_8_layers": ("keras_io", {"token_learner": "none", "num_layers": 8}, 55.36, 0.0359),
    "tl_v11_g4_t4": ("keras_io", {"token_learner": "v1.1", "token_learner_groups": 4, "num_tokens": 4}, 54.638, 0.0149),
    "tl_v11_g8_t8": ("keras_io", {"token_learner": "v1.1", "token_learner_groups": 8, "num_tokens": 8}, 54.898, 0.0146),
    "tl_v11_g4_t8": ("keras_io", {"token_learner": "v1.1", "token_learner_groups": 4, "num_tokens": 8}, 55.196, 0.0149),
    "better": ("better", {}, None, None),
    "compact": ("compact", {}, None, None),  # CCT tokenizer + TokenLearner + sequence pooling, `better` recipe
}
log = logging.getLogger("bench")


def test_accuracy(serving_dir: str, test_files: list[str], batch: int = 500) -> tuple[float, float, int]:
    """Top-1 and top-5 of the exported model on the test split, through serving_tf_example."""
    import numpy as np
    import tensorflow as tf

    serve = tf.saved_model.load(serving_dir).signatures[serving_api.TF_EXAMPLE_SIGNATURE]
    spec = {"label": tf.io.FixedLenFeature([1], tf.int64)}
    top1 = top5 = total = 0
    for records in tf.data.TFRecordDataset(test_files, compression_type="GZIP").batch(batch):
        labels = tf.io.parse_example(records, spec)["label"].numpy().reshape(-1)
        probabilities = serve(examples=records)["probabilities"].numpy()
        best5 = np.argsort(-probabilities, axis=1)[:, :5]
        top1 += int(np.sum(best5[:, 0] == labels))
        top5 += int(np.sum(np.any(best5 == labels[:, None], axis=1)))
        total += len(labels)
    return top1 / total, top5 / total, total


def _trained(model_run: Path, stats: dict) -> dict:
    """What every row reports about its training, from the files the Trainer wrote into its model_run dir."""
    from inspection.report import learning_curves
    from inspection.summary import epoch_times

    curve, times = learning_curves(str(model_run)).get("val_accuracy", []), epoch_times(str(model_run))
    return {"params": stats["params"], "gflops_keras_io": stats["keras_io_gflops"], "gflops_direct": stats["gflops"],
            "precision": stats.get("precision", "?"), "jit_compile": stats.get("jit_compile", "?"),
            "trained_with_by_epoch": times.mixed if times else "",  # "" when every epoch trained alike
            "val_accuracy_curve": [round(v, 4) for v in curve],
            "epoch_seconds": times.seconds if times else []}


def train_row(name: str, args, dataset_dir: Path, transform_dir: str, class_names: list[str]) -> dict:
    from trainer import flops
    from trainer.config import PRESETS

    base, overrides, _, _ = ROWS[name]
    cfg = dataclasses.replace(PRESETS[base], epochs=args.epochs, **overrides)
    row_dir = args.work / "rows" / name
    result_path = row_dir / "result.json"
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        if result["config"] == cfg.to_dict() and result["dataset"] == dataset_dir.name:
            log.info("%s: reusing %s", name, result_path)
            return result
    start = time.time()
    bench_data.run_fn()(bench_data.fn_args(dataset_dir, transform_dir, row_dir, cfg.to_dict(), class_names))
    train_seconds = time.time() - start
    top1, top5, n_test = test_accuracy(str(row_dir / "serving"), bench_data.split_files(dataset_dir, "test"))
    stats = flops.read(str(row_dir / "model_run"))  # written by the Trainer
    result = {"row": name, "base": base, "overrides": overrides, "config": cfg.to_dict(), "dataset": dataset_dir.name,
              "source": "bench (run_fn, serving_tf_example)", "test_accuracy": top1,
              "test_top5_accuracy": top5, "test_examples": n_test, **_trained(row_dir / "model_run", stats),
              "train_seconds": round(train_seconds, 1), "total_seconds": round(time.time() - start, 1),
              "command": " ".join([sys.executable, *sys.argv])}
    row_dir.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    log.info("%s: test top-1 %.2f%% (%d images), %.0f s", name, 100 * top1, n_test, result["total_seconds"])
    return result


def _label(result: dict) -> tuple[str, str]:
    cfg = result["config"]
    if cfg.get("conv_tokenizer_stages"):
        variant = f"CCT tokenizer ({cfg['conv_tokenizer_stages']} conv stages) + TokenLearner {cfg['token_learner']}"
    elif cfg["token_learner"] == "none":
        variant = f"ViT, no TokenLearner ({cfg['num_layers']} blocks)"
    elif cfg["token_learner"] == "v1":
        variant = "TokenLearner v1"
    else:
        variant = f"TokenLearner v1.1, {cfg['token_learner_groups']} groups"
    if result["base"] != "keras_io":
        variant += f", `{result['base']}` recipe"
    return variant, "–" if cfg["token_learner"] == "none" else str(cfg["num_tokens"])


def run_row(spec: str, run_id: str | None = None) -> dict:
    """A row from a finished `tokenlearner run` (spec ROW=OUTPUT): the test top-1 / top-5 its Evaluator (TFMA)
    measured on the test split, and what its Trainer wrote and MLMD recorded. This is the product path; a row the
    bench trains itself goes through the same run_fn but is scored here instead of by TFMA."""
    from pipeline import config as config_lib
    from inspection import report, run_store, summary
    from inspection.run_store import CANDIDATE
    from trainer import flops
    from trainer.config import PRESETS

    name, _, output = spec.partition("=")
    name = {"keras_io": "tl_v1_4"}.get(name, name)  # the preset is that row of the keras.io table
    if not output:
        raise SystemExit(f"--from-run {spec!r}: expected ROW=OUTPUT, e.g. compact=/var/tmp/runs/compact20b")
    config = config_lib.load(str(Path(output).resolve()))
    store = run_store.open_store(config)
    run = summary.collect(config, run_id, store=store)
    if run.accuracy is None:
        raise SystemExit(f"--from-run {spec!r}: run {run.run_id} has no Evaluator metrics (did it finish?)")
    model = report.artifact(run, contract.TRAINER, "Model")
    model_run = Path(report.artifact(run, contract.TRAINER, "ModelRun").uri)
    evaluation = report.artifact(run, contract.EVALUATOR, "ModelEvaluation")
    cfg = report.trainer_config(store, model.id, config.trainer).to_dict()
    base = ROWS[name][0] if name in ROWS else name
    preset = PRESETS[base].to_dict() if base in PRESETS else cfg
    changed = {k: v for k, v in cfg.items() if preset.get(k) != v}  # the --set options of the run
    sets = "".join(f" --set {k}={v}" for k, v in changed.items())
    trainer_step = next(s for s in run.steps if s.component == contract.TRAINER)
    manifest = run_store.dataset_manifest(config)
    limit = f" --limit {manifest['limit']}" if manifest.get("limit") else ""
    return {"row": name, "base": base, "overrides": changed, "config": cfg,
            "dataset": os.path.basename(config.data_root),
            "source": "`tokenlearner run`, Evaluator", "run_id": run.run_id,
            "test_accuracy": run.accuracy, "test_top5_accuracy": run.top5_accuracy,
            "test_examples": int(run_store.overall_metrics(evaluation.uri)[CANDIDATE].get("example_count", 0)),
            **_trained(model_run, flops.read(str(model_run))),
            "train_seconds": trainer_step.seconds, "total_seconds": None,
            "examples": run.examples,
            "command": f"tokenlearner run --data {manifest.get('source', '?')}{limit} --preset {base}{sets} "
                       f"--output {config.output_dir}"}


def _mean_std(values: list[float]) -> str:
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{100 * mean:.2f} ± {100 * std:.2f}%"


def _time(r: dict) -> str:
    """Training wall time: the sum of the recorded epochs (across resumes), else what the bench or MLMD timed."""
    if r.get("epoch_seconds"):
        total = sum(r["epoch_seconds"])
        return f"{total / 60:.0f} min ({total / 60 / len(r['epoch_seconds']):.1f} / epoch)"
    seconds = r.get("total_seconds") or r.get("train_seconds")
    return f"{seconds / 60:.1f} min" if seconds else "?"


def _curve(values: list[float]) -> str:
    """Every validation accuracy up to 10 epochs; beyond, epochs 1, 2, 5, 10, 15, ... and the last."""
    shown = range(len(values)) if len(values) <= 10 else sorted(
        {0, 1, len(values) - 1} | {e - 1 for e in range(5, len(values) + 1, 5)})
    numbered = len(values) > 10  # gaps in the list: each value says its epoch
    return ", ".join(f"{f'{e + 1}: ' if numbered else ''}{100 * values[e]:.1f}" for e in shown)


def render(results: list[dict]) -> str:
    lines = [
        "GFLOPs per image at batch 1, keras.io convention (TF profiler / 2, attention not counted) and direct "
        "(2 x multiply-adds, attention included); keras.io: 20 epochs on 40,000 images, mean of 5 runs; training "
        "time = the sum of the epochs' wall seconds (validation included) where the Trainer recorded them.",
        "",
        "| variant | tokens | top-1 | top-5 | top-1 keras.io @20 | GFLOPs keras.io conv. | keras.io GFLOPs | "
        "GFLOPs direct | params | precision | epochs | training time | val acc per epoch | source |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        variant, tokens = _label(r)
        _, _, ref_acc, ref_gflops = ROWS.get(r["row"], (None, None, None, None))
        top5 = r.get("test_top5_accuracy")
        precision = r.get("precision", "?").split(" ")[0]  # "float32 (auto: ...)": the dtype
        precision += ", XLA" if str(r.get("jit_compile", "")).startswith("on") else ""
        if r.get("trained_with_by_epoch"):  # a resume on another CPU switched precision=auto: say which epochs
            precision = f"mixed: {r['trained_with_by_epoch']}"
        lines.append(
            f"| {variant} | {tokens} | {100 * r['test_accuracy']:.2f}% | "
            f"{f'{100 * top5:.2f}%' if top5 is not None else '–'} | {f'{ref_acc}%' if ref_acc else '–'} | "
            f"{r['gflops_keras_io']:.4f} | {ref_gflops or '–'} | {r['gflops_direct']:.4f} | {r['params']:,} | "
            f"{precision} | {r['config']['epochs']} | {_time(r)} | {_curve(r['val_accuracy_curve'])} | "
            f"{r.get('source', 'bench')} |")
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(r["row"], []).append(r)
    for name, group in groups.items():
        if len(group) > 1:
            seeds = ", ".join(str(r["config"]["seed"]) for r in group)
            lines.append(f"\n`{name}` over {len(group)} runs (seeds {seeds}): "
                         f"top-1 {_mean_std([r['test_accuracy'] for r in group])}")
    lines += ["", "Commands:"] + [f"- {r['row']}: `{r['command']}`" for r in results if r.get("command")]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(bench_data.REPO.parent / "shared/data/cifar10/cifar10-jpg.tar.gz"),
                        help="CIFAR-10 source (any `tokenlearner data` source)")
    parser.add_argument("--work", type=Path, default=Path("outputs/bench"), help="datasets, models, results")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--limit", type=int, default=None, help="N training and N test images (default: all)")
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"comma-separated subset of {list(ROWS)} to train here; '' for none")
    parser.add_argument("--transform", default=None, help="a Transform graph folder to reuse (default: analyze)")
    parser.add_argument("--from-run", action="append", default=[], metavar="ROW=OUTPUT",
                        help="also a row from a finished `tokenlearner run --output OUTPUT` (its Evaluator's test "
                             "metrics); repeat for more runs, e.g. seeds of one preset")
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown {unknown}; known: {list(ROWS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("tensorflow", "absl", "apache_beam", "tfx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    args.work = args.work.resolve()

    start, machine_at_start = datetime.now(timezone.utc), bench_data.machine()
    results, data_note = [], ""
    if rows:
        dataset_dir = bench_data.dataset(args.data, args.work, args.limit)
        manifest = datasets.load_manifest(dataset_dir)
        transform_dir = args.transform or bench_data.transform_output(dataset_dir, args.work)
        for r in rows:
            results.append(train_row(r, args, dataset_dir, transform_dir, list(manifest["class_names"])))
            import tf_keras as keras

            keras.backend.clear_session()  # rows share the process: free the previous model and its datasets
        splits = manifest["splits"]
        data_note = (f"bench rows: {splits['train']['examples']} training / {splits['eval']['examples']} validation "
                     f"images, {args.epochs} epoch(s), top-1/top-5 on {results[0]['test_examples']} test images "
                     f"through serving_tf_example.\n")
    for spec in args.from_run:
        r = run_row(spec)
        results.append(r)
        data_note += (f"{r['row']} from `tokenlearner run` {r['run_id']}, test metrics from its Evaluator (TFMA): "
                      f"{r['examples'].get('train', '?')} training / "
                      f"{r['examples'].get('eval', '?')} validation images, {r['test_examples']} test images.\n")
    if not results:
        parser.error("nothing to show: give --rows and/or --from-run")
    table = render(results)
    header = (f"machine: {machine_at_start}\nstarted {start:%Y-%m-%d %H:%M} UTC, finished "
              f"{datetime.now(timezone.utc):%H:%M} UTC; command: {' '.join([sys.executable, *sys.argv])}\n"
              f"{data_note}")
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "accuracy.md").write_text(header + "\n" + table + "\n")
    print(header + "\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
