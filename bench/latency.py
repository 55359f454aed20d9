"""Serving latency: one image and a batch of 64 through the exported `serving_default` signature (encoded image
bytes in; decode + Transform graph + view + model inside) against a bare Keras call of the same network on the
already decoded, normalized 48x48 view, in the same process.

    nice .venv/bin/python bench/latency.py                       # exports the keras_io model (untrained) first
    nice .venv/bin/python bench/latency.py --model outputs/serving/tokenlearner/<version>

Latency does not depend on the weights, so by default an untrained model of --preset is exported with
`trainer.export.export_serving_model` (the Trainer's code) and a Transform graph of a small dataset. Prints one
markdown table: median and p90 milliseconds per call, and the ratio to the bare Keras call in graph mode
(`tf.function`, what a server would run); the eager call (Python per op) is shown for reference.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import bench_data  # noqa: E402  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from components import datasets  # noqa: E402
from trainer import serving_api  # noqa: E402  (no TensorFlow)


def export_untrained(args):
    """(SavedModel path, the in-memory Keras model it was exported from)."""
    from trainer import export, recipe
    from trainer.config import PRESETS
    import tensorflow_transform as tft

    cfg = PRESETS[args.preset]
    out = args.work / "latency_model" / args.preset
    model = recipe.compile_model(cfg)
    if not (out / "saved_model.pb").is_file():
        dataset_dir = bench_data.dataset(args.data, args.work, limit=300)
        tft_output = tft.TFTransformOutput(bench_data.transform_output(dataset_dir, args.work))
        manifest = datasets.load_manifest(dataset_dir)
        export.export_serving_model(model, tft_output, cfg, manifest["class_names"], str(out))
    return str(out), model


def test_images(args, count: int) -> list[bytes]:
    """Real encoded test images (PNG, as ingestion wrote them)."""
    from trainer import export

    dataset_dir = bench_data.dataset(args.data, args.work, limit=300)
    return export.read_encoded_images(bench_data.split_files(dataset_dir, "test"), count)


def timed(fn, repeats: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="an exported SavedModel folder (default: export one)")
    parser.add_argument("--preset", default="keras_io", help="model to export when --model is not given")
    parser.add_argument("--data", default=str(bench_data.REPO.parent / "shared/data/cifar10/cifar10-jpg.tar.gz"))
    parser.add_argument("--work", type=Path, default=Path("outputs/bench"))
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    args.work = args.work.resolve()
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    machine, start = bench_data.machine(), datetime.now(timezone.utc)
    if args.model:
        path = args.model
        model = keras.models.load_model(path, compile=False)  # the same network, as a Keras model
    else:
        path, model = export_untrained(args)
    serve = tf.saved_model.load(path).signatures[serving_api.SIGNATURE_NAME]
    compiled = tf.function(lambda x: model(x, training=False))
    size = model.input_shape[1]
    images = test_images(args, 64)

    rows = []
    for n in (1, 64):
        encoded = tf.constant(images[:n])
        views = tf.random.normal([n, size, size, 3])  # the bare call skips decoding and the Transform graph
        np.testing.assert_equal(serve(images=encoded)["probabilities"].shape, (n, 10))
        cases = {
            "serving_default (bytes in)": lambda: serve(images=encoded)["probabilities"].numpy(),
            "bare Keras call, eager": lambda: model(views, training=False).numpy(),
            "bare Keras call, tf.function": lambda: compiled(views).numpy(),
        }
        results = {name: timed(fn, args.repeats) for name, fn in cases.items()}
        bare = statistics.median(results["bare Keras call, tf.function"])
        for name, times in results.items():
            med = statistics.median(times)
            p90 = sorted(times)[int(0.9 * (len(times) - 1))]
            rows.append(f"| {n} | {name} | {med:.2f} | {p90:.2f} | {n / med * 1000:.0f} | {med / bare:.2f} |")

    print(f"machine: {machine}\nstarted {start:%Y-%m-%d %H:%M} UTC; model {path}; {args.repeats} timed calls "
          f"after 5 warm-up calls; command: {' '.join([sys.executable, *sys.argv])}\n")
    print("| batch | path | median ms | p90 ms | images/s | ratio to bare Keras (tf.function) |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
