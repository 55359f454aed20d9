"""Accuracy table: the rows of the keras.io TokenLearner table, plus the `better` and `compact` presets, each
trained through the real Trainer code path (`trainer.run.run_fn`, as the TFX Trainer calls it) and scored on the
CIFAR-10 test split through the exported SavedModel's `serving_tf_example` signature (what the Evaluator runs).

    nice .venv/bin/python bench/accuracy.py --data ../shared/data/cifar10/cifar10-jpg.tar.gz --epochs 1

Epochs are configurable (keras.io: 20; a CPU run can afford fewer, and the table says how many). Rows already
finished in --work are reused (delete <work>/rows/<row>/result.json to rerun one). Prints one markdown table.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import bench_data  # noqa: E402  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from trainer import contract  # noqa: E402

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


def test_accuracy(serving_dir: str, test_files: list[str], batch: int = 500) -> tuple[float, int]:
    """Top-1 of the exported model on the test split, through serving_tf_example."""
    import numpy as np
    import tensorflow as tf

    serve = tf.saved_model.load(serving_dir).signatures["serving_tf_example"]
    spec = {"label": tf.io.FixedLenFeature([1], tf.int64)}
    correct = total = 0
    for records in tf.data.TFRecordDataset(test_files, compression_type="GZIP").batch(batch):
        labels = tf.io.parse_example(records, spec)["label"].numpy().reshape(-1)
        predicted = serve(examples=records)["class_ids"].numpy().reshape(-1)
        correct += int(np.sum(predicted == labels))
        total += len(labels)
    return correct / total, total


def history(run_dir: Path) -> list[dict]:
    path = run_dir / "model_run" / contract.HISTORY_FILE
    if not path.is_file():
        return []
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


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
    accuracy, n_test = test_accuracy(str(row_dir / "serving"), bench_data.split_files(dataset_dir, "test"))
    stats = flops.read(str(row_dir / "model_run"))  # written by the Trainer
    curve = history(row_dir)
    result = {"row": name, "base": base, "overrides": overrides, "config": cfg.to_dict(), "dataset": dataset_dir.name,
              "test_accuracy": accuracy, "test_examples": n_test, "params": stats["params"],
              "gflops_keras_io": stats["keras_io_gflops"], "gflops_direct": stats["gflops"],
              "val_accuracy_curve": [round(e.get("val_accuracy", float("nan")), 4) for e in curve],
              "train_seconds": round(train_seconds, 1), "total_seconds": round(time.time() - start, 1)}
    row_dir.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    log.info("%s: test top-1 %.2f%% (%d images), %.0f s", name, 100 * accuracy, n_test, result["total_seconds"])
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


def render(results: list[dict], args, n_train: int, n_eval: int) -> str:
    lines = [
        f"{len(results)} rows, {args.epochs} epoch(s) each (keras.io: 20 epochs, mean of 5 runs), "
        f"{n_train} training / {n_eval} validation images, top-1 on {results[0]['test_examples']} test images; "
        f"GFLOPs per image at batch 1, keras.io convention (TF profiler / 2, attention not counted) and direct "
        f"(2 x multiply-adds, attention included); wall time = training + export + test scoring.",
        "",
        "| variant | tokens | top-1 (ours) | top-1 keras.io @20 | GFLOPs keras.io conv. | keras.io GFLOPs | "
        "GFLOPs direct | params | epochs | wall time | val acc per epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        variant, tokens = _label(r)
        _, _, ref_acc, ref_gflops = ROWS[r["row"]]
        lines.append(
            f"| {variant} | {tokens} | {100 * r['test_accuracy']:.2f}% | {f'{ref_acc}%' if ref_acc else '–'} | "
            f"{r['gflops_keras_io']:.4f} | {ref_gflops or '–'} | {r['gflops_direct']:.4f} | {r['params']:,} | "
            f"{r['config']['epochs']} | {r['total_seconds'] / 60:.1f} min | "
            f"{', '.join(f'{100 * v:.1f}' for v in r['val_accuracy_curve'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(bench_data.REPO.parent / "shared/data/cifar10/cifar10-jpg.tar.gz"),
                        help="CIFAR-10 source (any `tokenlearner data` source)")
    parser.add_argument("--work", type=Path, default=Path("outputs/bench"), help="datasets, models, results")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--limit", type=int, default=None, help="N training and N test images (default: all)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {list(ROWS)}")
    parser.add_argument("--transform", default=None, help="a Transform graph folder to reuse (default: analyze)")
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
    dataset_dir = bench_data.dataset(args.data, args.work, args.limit)
    manifest = bench_data.cifar10.load_manifest(dataset_dir)
    transform_dir = args.transform or bench_data.transform_output(dataset_dir, args.work)
    results = []
    for r in rows:
        results.append(train_row(r, args, dataset_dir, transform_dir, list(manifest["class_names"])))
        import tf_keras as keras

        keras.backend.clear_session()  # rows share the process: free the previous model and its datasets
    table = render(results, args, manifest["splits"]["train"]["examples"], manifest["splits"]["eval"]["examples"])
    header = (f"machine: {machine_at_start}\nstarted {start:%Y-%m-%d %H:%M} UTC, finished "
              f"{datetime.now(timezone.utc):%H:%M} UTC; command: {' '.join([sys.executable, *sys.argv])}")
    (args.work / "accuracy.md").write_text(header + "\n\n" + table + "\n")
    print(header + "\n\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
