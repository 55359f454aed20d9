"""Trace time: what a process spends before its first training step, with AutoGraph converting tf_keras's own code
(TensorFlow 2.16's rules) and without (trainer/tf_keras_autograph.py, TensorFlow's later `DoNotConvert("tf_keras")`).

    nice .venv/bin/python bench/trace_time.py                      # tiny, keras_io, compact
    nice .venv/bin/python bench/trace_time.py --presets better --repeats 2

Each measurement is a fresh interpreter (AutoGraph caches what it converted for the life of a process), the two
settings taking turns: build + compile `trainer.recipe.compile_model(cfg)`; the first `fit` of 2 steps with a
1-step validation (traces the train and test functions); a second such `fit` (already traced: the steps alone); the
Trainer's FLOPs count (`trainer.flops.model_stats`, one more trace of the model, frozen). Random images at the
preset's input size; float32, no XLA (the first fit would include XLA's compile time, the same either way). Prints
one markdown table: the median of `--repeats` per cell.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bench_data  # noqa: E402  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

STEPS = ("build", "first_fit", "second_fit", "flops")


def _child(preset: str, convert_tf_keras: bool) -> dict[str, float]:
    """The seconds of each step, in this (fresh) process."""
    import dataclasses

    import numpy as np
    import tensorflow as tf

    from trainer import flops, recipe, vit
    from trainer.config import PRESETS

    if convert_tf_keras:
        vit.skip_tf_keras = lambda: None  # TensorFlow 2.16's rules as they are
    cfg = dataclasses.replace(PRESETS[preset], precision="float32", jit_compile="off")
    rng = np.random.default_rng(0)
    images = rng.random((2 * cfg.batch_size, cfg.image_size, cfg.image_size, 3), dtype=np.float32)
    labels = rng.integers(0, cfg.num_classes, 2 * cfg.batch_size)
    train = tf.data.Dataset.from_tensor_slices((images, labels)).batch(cfg.batch_size)
    val = train.take(1)
    seconds = {}
    t = time.perf_counter()
    model = recipe.compile_model(cfg, steps_per_epoch=2)
    seconds["build"] = time.perf_counter() - t
    for step in ("first_fit", "second_fit"):
        t = time.perf_counter()
        model.fit(train, validation_data=val, epochs=1, verbose=0)
        seconds[step] = time.perf_counter() - t
    t = time.perf_counter()
    flops.model_stats(model)
    seconds["flops"] = time.perf_counter() - t
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "keras_io", "compact"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", nargs=2, metavar=("PRESET", "CONVERT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1] == "convert")))
        return 0
    print(f"machine: {bench_data.machine()}")
    rows = []
    for preset in args.presets:
        runs: dict[str, list[dict]] = {"convert": [], "skip": []}
        for _ in range(args.repeats):
            for mode in runs:  # taking turns
                proc = subprocess.run([sys.executable, __file__, "--child", preset, mode], capture_output=True,
                                      text=True, cwd=Path(__file__).resolve().parent)
                if proc.returncode:
                    raise SystemExit(f"{preset} ({mode}) failed:\n{proc.stderr[-3000:]}")
                runs[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        for mode, label in (("convert", "tf_keras converted (TF 2.16 rules)"), ("skip", "tf_keras not converted")):
            cells = [statistics.median(r[s] for r in runs[mode]) for s in STEPS]
            rows.append(f"| {preset} | {label} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {sum(cells):.1f} |")
    print("\n| preset | AutoGraph | build + compile s | first fit (2 steps + 1 val) s | second fit s | FLOPs count s "
          "| sum s |\n|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
