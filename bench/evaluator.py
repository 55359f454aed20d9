"""Evaluator wall time: TFX's Evaluator executor on a finished `tokenlearner run`'s model, before and after issue 10.

    nice .venv/bin/python bench/evaluator.py --output outputs --test-data outputs/data/cifar10-folder-…-10000 --baseline

Variants (inspection/evaluation.py), run one after the other in this process on the same inputs (default: before,after):
- `before`: the pipeline's Beam arguments (DirectRunner multi_processing, `beam_workers` processes) and TFMA's
  adaptive inference batches (no `inference_batch_size`);
- `batch`: `before` with the fixed inference batch (`pipeline.pipeline.EVAL_BATCH_SIZE`);
- `in_memory`: `before` with the Evaluator's own Beam arguments (`BeamConfig.evaluator_args`: one in-process worker);
- `tf_generic`: `before` with the model scored as a plain SavedModel and without the Keras compiled metrics;
- `after`: all three, as the pipeline now runs it.
Also the floor: the `serving_tf_example` signature alone over the same examples, batch EVAL_BATCH_SIZE.

`--test-data` swaps in the test split of any dataset folder (e.g. `tokenlearner data --limit 10000` for all 10,000
test images); `--baseline` passes the model as its own baseline too, as every run after the first blessed one does
(the Evaluator then scores two models). Prints one markdown table and whether metrics and blessing agree.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import bench_data  # noqa: E402  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from inspection import evaluation  # noqa: E402
from trainer import serving_api  # noqa: E402

def signature_seconds(model_dir: str, pattern: str, batch: int) -> tuple[float, int]:
    """Seconds the serving_tf_example signature takes over every record of `pattern` in batches of `batch`."""
    import tensorflow as tf

    records = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP").batch(batch)
    signature = tf.saved_model.load(model_dir).signatures[serving_api.TF_EXAMPLE_SIGNATURE]
    start, n = time.perf_counter(), 0
    for chunk in records:
        signature(examples=chunk)
        n += int(chunk.shape[0])
    return time.perf_counter() - start, n


def load_seconds(model_dir: str) -> dict[str, float]:
    """Seconds to load the SavedModel as TFMA does for a Keras model (`tf.keras.models.load_model`: the whole Keras
    model revived; once to detect the model type, then once per Beam worker and model) and as a plain SavedModel."""
    import tensorflow as tf

    out = {}
    for name, load in (("tf.keras.models.load_model", tf.keras.models.load_model),
                       ("tf.saved_model.load", tf.saved_model.load)):
        start = time.perf_counter()
        load(model_dir)
        out[name] = time.perf_counter() - start
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="output folder of a finished `tokenlearner run`")
    parser.add_argument("--test-data", default=None, help="dataset folder whose test/ split is evaluated instead")
    parser.add_argument("--baseline", action="store_true", help="also pass the model as the baseline model")
    parser.add_argument("--variants", default="before,after",
                        help=f"comma-separated subset of {evaluation.VARIANTS} (default: before,after)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or set(variants) - set(evaluation.VARIANTS):
        parser.error(f"--variants: expected a comma-separated subset of {evaluation.VARIANTS}, "
                     f"got {args.variants!r}")

    from pipeline import config as config_lib
    from pipeline import pipeline
    from trainer import contract
    from inspection import run_store

    machine, start = bench_data.machine(), datetime.now(timezone.utc)
    config = config_lib.load(args.output)
    store = run_store.open_store(config)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_evaluator_"))
    model = evaluation.latest_artifact(store, "Model")
    if args.test_data:
        examples = evaluation.examples_from_dataset(args.test_data, str(work))
    else:
        examples = evaluation.latest_artifact(store, "Examples")
    split_dir = os.path.join(examples.uri, f"{contract.SPLIT_PREFIX}{contract.TEST}")
    model_dir = os.path.join(model.uri, contract.SERVING_MODEL_DIR)

    settings = {name: evaluation.variant_settings(config, name) for name in variants}
    results = {}
    for name in variants:
        eval_config, beam_args = settings[name]
        results[name] = evaluation.run_evaluator(eval_config, beam_args, examples, model, str(work / name),
                                                 baseline=model if args.baseline else None)
        print(f"{name}: {results[name]['seconds']:.1f} s", file=sys.stderr, flush=True)
    loads = load_seconds(model_dir)
    floor, n = signature_seconds(model_dir, os.path.join(split_dir, "*"), pipeline.EVAL_BATCH_SIZE)

    models = 2 if args.baseline else 1
    print(f"machine: {machine}\nstarted {start:%Y-%m-%d %H:%M} UTC, finished {datetime.now(timezone.utc):%H:%M} "
          f"UTC; {n} test images, {models} model(s) scored ({'candidate + baseline' if args.baseline else 'candidate'})"
          f"; model {model.uri}; command: {' '.join([sys.executable, *sys.argv])}\n")
    print("| variant | Beam arguments | inference batch | wall (s) | images/s | vs before |")
    print("|---|---|---|---|---|---|")
    first = results[variants[0]]["seconds"]
    for name in variants:
        eval_config, beam_args = settings[name]
        batch = eval_config.model_specs[0].inference_batch_size or "adaptive"
        seconds = results[name]["seconds"]
        print(f"| {name} | {' '.join(beam_args)} | {batch} | {seconds:.1f} | {n / seconds:.0f} | "
              f"{first / seconds:.2f}x |")
    print(f"| floor: serving_tf_example alone, in this process | | {pipeline.EVAL_BATCH_SIZE} | {floor:.1f} x "
          f"{models} model(s) | {n / floor / models:.0f} | |")
    print("\nModel loads (once each, in this process): " + ", ".join(f"{k} {v:.1f} s" for k, v in loads.items()))
    reference = results[variants[0]]
    for name in variants[1:]:
        same_blessing = results[name]["blessed"] == reference["blessed"]
        ours, theirs = results[name]["metrics"], reference["metrics"]
        worst = max((abs(value - theirs[s][k]) for s, metrics in ours.items() for k, value in metrics.items()
                     if k in theirs.get(s, {})), default=0.0)
        only_ours = sorted({k for s, m in ours.items() for k in set(m) - set(theirs.get(s, {}))})
        only_theirs = sorted({k for s, m in theirs.items() for k in set(m) - set(ours.get(s, {}))})
        print(f"\n{name} vs {variants[0]}: same slices: {set(ours) == set(theirs)}; metrics only in {name}: "
              f"{only_ours or 'none'}, only in {variants[0]}: {only_theirs or 'none'}; largest difference of the "
              f"common metrics {worst:.2e}; same plots: {results[name]['plots'] == reference['plots']}; blessing "
              f"{results[name]['blessed']} vs {reference['blessed']} ({'same' if same_blessing else 'DIFFERENT'})",
              end="")
    print()
    # The compiled metrics the later variants drop (TFMA adds them only for a Keras model) against the listed
    # metrics they repeat, where the first variant has them.
    repeats = [abs(value - metrics[k.replace(compiled, listed)]) for metrics in reference["metrics"].values()
               for k, value in metrics.items() for compiled, listed in COMPILED_REPEATS
               if k.split("/")[1:] == [compiled]]
    print(f"\n{variants[0]}: compiled metrics against the listed ones they repeat: "
          + (f"{len(repeats)} values, largest difference {max(repeats):.2e}" if repeats else "none reported"))
    return 0


# model.compile's metrics and the EvalConfig's metric that computes the same number.
COMPILED_REPEATS = (("accuracy", "sparse_categorical_accuracy"), ("top5_accuracy", "sparse_top_k_categorical_accuracy"))


if __name__ == "__main__":
    sys.exit(main())
