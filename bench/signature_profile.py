"""Where the exported `serving_tf_example` signature spends its time (what the Evaluator and TF Serving run), stage
by stage, on test records in batches of 256; and the model's forward pass with and without XLA.

    nice .venv/bin/python bench/signature_profile.py --model outputs/pipeline/tokenlearner-cifar10/Trainer/model/7/Format-Serving \
        --data outputs/data/cifar10-folder-…-10000 --preset keras_io --limit 2560

Stages, each a tf.function over the same batches, traced before timing: parse the tf.Examples; parse + the image
header check (trainer/image_header.py); parse + decode (trainer/preprocessing.py); the `transform_features`
signature (parse + the whole Transform graph); the Keras forward pass on precomputed eval views, without and with
XLA (`jit_compile`); the whole signature. `--preset` gives the eval view (resize/crop) of the model's preset.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bench_data  # noqa: E402  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an exported serving model (Format-Serving folder)")
    parser.add_argument("--data", required=True, help="dataset folder (`tokenlearner data`) whose test/ is read")
    parser.add_argument("--preset", default="keras_io", help="preset of the model (its eval view)")
    parser.add_argument("--limit", type=int, default=2560, help="test records to time")
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args(argv)

    import tensorflow as tf

    from trainer import features, image_header, inputs, preprocessing, serving_api
    from trainer.config import PRESETS

    cfg = PRESETS[args.preset]
    records = list(tf.data.TFRecordDataset(bench_data.split_files(Path(args.data), "test"), compression_type="GZIP")
                   .take(args.limit).batch(args.batch))
    n = sum(int(r.shape[0]) for r in records)
    loaded = tf.saved_model.load(args.model)
    signature = loaded.signatures[serving_api.TF_EXAMPLE_SIGNATURE]
    transform = loaded.signatures[serving_api.TRANSFORM_SIGNATURE]
    keras_model = tf.keras.models.load_model(args.model)
    spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}

    def images(x):
        return tf.io.parse_example(x, spec)[features.IMAGE_KEY]

    views = [inputs.eval_view(transform(examples=r)[features.transformed_name(features.IMAGE_KEY)], cfg)
             for r in records]
    stages = [
        ("parse tf.Example", tf.function(images), records),
        ("parse + image header check", tf.function(
            lambda x: image_header.check_declared_sizes(images(x), cfg.max_decode_pixels)), records),
        ("parse + decode images", tf.function(lambda x: preprocessing.decode_images(images(x))), records),
        ("transform_features signature", lambda x: transform(examples=x), records),
        ("Keras forward pass, eval views", tf.function(lambda v: keras_model(v, training=False)), views),
        ("Keras forward pass, XLA", tf.function(lambda v: keras_model(v, training=False), jit_compile=True), views),
        ("serving_tf_example signature", lambda x: signature(examples=x), records),
    ]
    print(f"machine: {bench_data.machine()}\nmodel {args.model}, preset {args.preset}, {n} test records, batch "
          f"{args.batch}; command: {' '.join([sys.executable, *sys.argv])}\n")
    print("| stage | seconds | images/s |\n|---|---|---|")
    for name, fn, batches in stages:
        fn(batches[0])  # trace (and compile)
        start = time.perf_counter()
        for batch in batches:
            tf.nest.map_structure(lambda t: t.numpy(), fn(batch))
        seconds = time.perf_counter() - start
        print(f"| {name} | {seconds:.2f} | {n / seconds:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
