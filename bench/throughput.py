"""Throughput: training and evaluation images/s of the Trainer's input pipeline + model (trainer/inputs.py over the
raw TFRecords with the Transform graph, `trainer.recipe.compile_model`), two set-ups taking turns in one process, and
the fraction of the CPU's peak FLOP/s that the training reaches.

    nice .venv/bin/python bench/throughput.py --limit 5120 --epochs 3                         # ours vs plain
    nice .venv/bin/python bench/throughput.py --limit 5120 --epochs 3 --compare precision     # float32 vs bfloat16
    nice .venv/bin/python bench/throughput.py --limit 5120 --epochs 3 --compare augmentation  # batched vs per image
    nice .venv/bin/python bench/throughput.py --limit 5120 --epochs 3 --compare xla           # XLA vs not
    nice .venv/bin/python bench/throughput.py --limit 5120 --epochs 3 --compare auto          # what auto picks from

`--compare plain`: ours against a plain `tf.data` pipeline over in-memory arrays + `model.fit` of the same model.
`--compare precision`: ours in float32 against ours in mixed_bfloat16 (the Trainer's `precision=bfloat16`). Only on
CPUs with native bfloat16 dot products (avx512_bf16 or amx_bf16 in /proc/cpuinfo): elsewhere bfloat16 is emulated
and slower, which is not what the comparison is about, so it prints why and exits without measuring.
`--compare augmentation`: ours (augmentation on whole batches) against the same pipeline with one tf.data function
call per image (what trainer/inputs.py did before).
`--compare xla`: ours with the training and evaluation steps compiled by XLA (`jit_compile=true`) against ours
without; the first epoch includes XLA's compile time.
`--compare auto`: the three set-ups `precision=auto` and `jit_compile=auto` choose between on a CPU with native
bfloat16 (float32 + XLA, bfloat16, bfloat16 + XLA), each against the first; skipped, like `precision`, elsewhere.

The two take turns epoch by epoch (the CPU is shared; a load change then hits both). The first epoch traces the
graphs (and our pipeline fills its cache); the table reports the fastest later (steady) epoch of each, timed from
its first step to its last (since 2026-12-07; before, the whole `fit` call, which ends seconds after the last step).
Prints one markdown table and the peak-FLOP/s arithmetic.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import bench_data  # noqa: E402  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    return info


def cpu_peak(precision: str = "float32") -> tuple[float, str]:
    """Peak FLOP/s of this CPU in `precision` = cores x GHz x FLOPs per cycle per core, from /proc/cpuinfo.

    bfloat16 (AVX512_BF16): VDPBF16PS multiplies pairs of bfloat16 and accumulates both products into one FP32
    lane, so one instruction does 2 multiply-adds per FP32 lane where VFMADD231PS does 1: twice the FP32 FMA rate
    on the same pipes (Zen 4: 2 x 8 FP32 lanes x 2 products x 2 FLOPs = 64 FLOPs/cycle)."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    ghz = float(info.get("cpu MHz", "0")) / 1000
    cores = os.cpu_count() or 1
    vendor, family = info.get("vendor_id", ""), int(info.get("cpu family", "0"))
    if "avx512f" in flags and vendor == "AuthenticAMD" and family == 25:
        # Zen 4 runs 512-bit FMAs on two 256-bit FMA pipes: 2 pipes x 8 FP32 lanes x 2 FLOPs (mul + add).
        per_cycle, why = 2 * 8 * 2, "AVX-512 on Zen 4 (family 25): 2 FMA pipes x 8 FP32 lanes (256-bit) x 2"
    elif "avx512f" in flags:
        per_cycle, why = 2 * 16 * 2, "AVX-512: 2 FMA units x 16 FP32 lanes x 2"
    elif "fma" in flags:
        per_cycle, why = 2 * 8 * 2, "AVX2 FMA: 2 FMA units x 8 FP32 lanes x 2"
    else:
        per_cycle, why = 4 * 2, "SSE: 4 FP32 lanes x 2 (mul + add)"
    if precision == "bfloat16":
        per_cycle, why = 2 * per_cycle, f"VDPBF16PS: 2 bfloat16 products per FP32 lane = 2 x ({why})"
    peak = cores * ghz * 1e9 * per_cycle
    text = (f"peak {precision} = {cores} cores x {ghz:.3f} GHz (cpu MHz of /proc/cpuinfo; boost clocks not visible "
            f"in this VM) x {per_cycle} FLOPs/cycle ({why}) = {peak / 1e9:.0f} GFLOP/s")
    return peak, text


def plain_arrays(files: list[str], tft_output):
    """Decoded, normalized images and labels in memory, prepared outside the timed part (what a plain
    `tf.data.Dataset.from_tensor_slices` script starts from)."""
    import numpy as np

    from trainer import inputs

    images, labels = [], []
    for x, y in inputs.transformed_dataset(files, tft_output).batch(1024):
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def plain_dataset(x, y, cfg, training: bool):
    """tf.data over arrays: shuffle, resize + random crop + flip, batch (training); resize + central crop (eval)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    offset = (cfg.resize_to - cfg.image_size) // 2
    if training:
        def augment(image, label):
            image = tf.image.resize(image, [cfg.resize_to, cfg.resize_to])
            image = tf.image.random_crop(image, [cfg.image_size, cfg.image_size, 3])
            return tf.image.random_flip_left_right(image), label
        ds = ds.shuffle(len(x)).map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(cfg.batch_size)
    else:
        def center(images, labels):
            images = tf.image.resize(images, [cfg.resize_to, cfg.resize_to])
            return images[:, offset:offset + cfg.image_size, offset:offset + cfg.image_size], labels
        ds = ds.batch(cfg.batch_size).map(center, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def per_image_dataset(files: list[str], tft_output, cfg, n: int):
    """trainer/inputs.py's training pipeline as it was before augmentation went batched: one tf.data function call
    per image (`train_view` still takes a single image), then batch."""
    import tensorflow as tf

    from trainer import inputs

    ds = inputs.transformed_dataset(files, tft_output).apply(tf.data.experimental.assert_cardinality(n)).cache()
    ds = ds.shuffle(50_000, seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda x, y: (inputs.train_view(x, cfg), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)


def measure(pipelines: dict, n_train: int, n_eval: int, epochs: int) -> dict:
    """{name: (model, train_ds, eval_ds)} -> {name: images/s}. The pipelines take turns, one epoch and one
    evaluation at a time, so a change in the load of the shared CPU hits both alike; the first epoch and
    evaluation trace (and fill our cache); the fastest later one is reported, since other jobs only slow it."""
    import tensorflow as tf
    import tf_keras

    from trainer import serving_api

    class Clock(tf_keras.callbacks.Callback):
        """Seconds from the first step's start to the last step's end. Measured on 2026-12-07 (Zen 4): a `fit` call
        can return seconds after its last step and `on_train_end` (20.5 s for 12.2 s of steps, three calls in a
        row; not every call), so the wall time of a call, which the tables before that date report, understates the
        steps' speed. The wait is the deletion of the call's training iterator, which waits for its tf.data
        autotuning thread to wake (docs/benchmarks.md 6.1d)."""

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter() - self.start

        on_test_begin, on_test_end = on_train_begin, on_train_end

    seconds: dict[str, dict[str, list[float]]] = {name: {"train": [], "eval": [], "train_call": []}
                                                  for name in pipelines}
    failed: dict[str, str] = {}
    for _ in range(epochs):
        for name, (model, train_ds, eval_ds) in pipelines.items():
            if name in failed:
                continue
            clock, start = Clock(), time.perf_counter()
            try:
                model.fit(train_ds, epochs=1, verbose=0, callbacks=[clock])
            except tf.errors.UnimplementedError as e:  # e.g. XLA's CPU backend and a bfloat16 dot: a finding
                failed[name] = serving_api.tf_error_line(e.message)
                continue
            seconds[name]["train_call"].append(time.perf_counter() - start)
            seconds[name]["train"].append(clock.seconds)
            model.evaluate(eval_ds, verbose=0, callbacks=[clock])
            seconds[name]["eval"].append(clock.seconds)
    return {name: ({"failed": failed[name]} if name in failed else
                   {"train_img_s": n_train / min(s["train"][1:]), "first_epoch_s": s["train"][0],
                    "eval_img_s": n_eval / min(s["eval"][1:]), "seconds": s}) for name, s in seconds.items()}


def bf16_skip_reason() -> str:
    """Why bfloat16 cannot be benchmarked here ("" when it can): it needs native bfloat16 dot products."""
    from trainer import distribute

    flags = distribute.cpu_flags()
    if set(distribute.CPU_BF16_FLAGS) & flags:
        return ""
    model = _cpuinfo().get("model name", "this CPU")
    return (f"skipped: {model} has no avx512_bf16/amx_bf16 in /proc/cpuinfo, so mixed_bfloat16 would be emulated "
            f"(slower than float32) and `precision=auto` trains in float32 here; run this on a Zen 4 / Sapphire "
            f"Rapids CPU")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(bench_data.REPO.parent / "shared/data/cifar10/cifar10-jpg.tar.gz"))
    parser.add_argument("--work", type=Path, default=Path("outputs/bench"))
    parser.add_argument("--limit", type=int, default=5120, help="images taken from CIFAR-10 (90%% train, 10%% eval)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (and evaluations) per pipeline, >= 2")
    parser.add_argument("--preset", default="keras_io")
    parser.add_argument("--compare", choices=("plain", "precision", "augmentation", "xla", "auto"), default="plain",
                        help="what ours is compared with (default: plain tf.data + model.fit)")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs: expected >= 2 (the first epoch traces and fills the cache)")
    if args.compare in ("precision", "auto") and bf16_skip_reason():
        print(f"machine: {bench_data.machine()}\nfloat32 vs bfloat16 {bf16_skip_reason()}.")
        return 0
    args.work = args.work.resolve()
    import dataclasses

    import tensorflow_transform as tft

    from trainer import distribute, flops, inputs, recipe
    from trainer.config import PRESETS

    machine, start = bench_data.machine(), datetime.now(timezone.utc)
    cfg = dataclasses.replace(PRESETS[args.preset], precision="float32")
    dataset_dir = bench_data.dataset(args.data, args.work, args.limit)
    tft_output = tft.TFTransformOutput(bench_data.transform_output(dataset_dir, args.work))
    train_files, eval_files = bench_data.split_files(dataset_dir, "train"), bench_data.split_files(dataset_dir, "eval")
    n_train, n_eval = inputs.count_examples(train_files), inputs.count_examples(eval_files)
    steps = inputs.epoch_steps(n_train, cfg)

    def ours(c, jit_compile=False):
        with distribute.training_scope(c, gpus=[]):
            model = recipe.compile_model(c, steps, jit_compile=jit_compile)
        return (model, inputs.make_dataset(train_files, tft_output, c, training=True, num_examples=n_train),
                inputs.make_dataset(eval_files, tft_output, c, training=False, num_examples=n_eval))

    if args.compare == "plain":
        x_train, y_train = plain_arrays(train_files, tft_output)
        x_eval, y_eval = plain_arrays(eval_files, tft_output)
        names = {"ours": "ours: trainer/inputs.py + Transform graph", "other": "plain tf.data arrays + model.fit"}
        pipelines = {"ours": ours(cfg), "other": (recipe.compile_model(cfg, steps),
                                                  plain_dataset(x_train, y_train, cfg, True),
                                                  plain_dataset(x_eval, y_eval, cfg, False))}
    elif args.compare == "augmentation":
        names = {"ours": "ours: batched augmentation", "other": "per-image augmentation (before)"}
        model, _, eval_ds = ours(cfg)
        pipelines = {"ours": ours(cfg), "other": (
            model, per_image_dataset(train_files, tft_output, cfg, n_train), eval_ds)}
    elif args.compare == "xla":
        names = {"ours": "ours: jit_compile=true (XLA)", "other": "ours: jit_compile=false"}
        pipelines = {"ours": ours(cfg, jit_compile=True), "other": ours(cfg, jit_compile=False)}
    elif args.compare == "auto":
        bf16 = dataclasses.replace(cfg, precision="bfloat16")
        names = {"ours": "ours: float32 + XLA", "other": "ours: mixed_bfloat16 (what auto picks)",
                 "other_xla": "ours: mixed_bfloat16 + XLA"}
        pipelines = {"ours": ours(cfg, jit_compile=True), "other": ours(bf16),
                     "other_xla": ours(bf16, jit_compile=True)}
    else:
        names = {"ours": "ours: float32", "other": "ours: mixed_bfloat16 (precision=bfloat16)"}
        pipelines = {"ours": ours(cfg), "other": ours(dataclasses.replace(cfg, precision="bfloat16"))}
    results = measure(pipelines, n_train, n_eval, args.epochs)
    ours_r = results["ours"]

    stats = flops.model_stats(recipe.compile_model(cfg, steps))
    forward = stats.gflops * 1e9  # direct count, attention included
    peaks = {name: cpu_peak("bfloat16" if "bfloat16" in names[name] else "float32") for name in names}
    print(f"machine: {machine}\nstarted {start:%Y-%m-%d %H:%M} UTC, finished {datetime.now(timezone.utc):%H:%M} "
          f"UTC; preset {args.preset} ({stats.model}), batch {cfg.batch_size}, {n_train} training / {n_eval} eval "
          f"images, fastest of epochs 2-{args.epochs} reported; command: {' '.join([sys.executable, *sys.argv])}\n")
    print("| pipeline | train img/s | eval img/s | first epoch (s) | train GFLOP/s | % of peak (train) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        r = results[name]
        if "failed" in r:
            print(f"| {names[name]} | fails at its first step: `{r['failed']}` | | | | |")
            continue
        achieved = r["train_img_s"] * 3 * forward  # backward pass ~ 2 x forward
        print(f"| {names[name]} | {r['train_img_s']:.1f} | {r['eval_img_s']:.1f} | {r['first_epoch_s']:.1f} | "
              f"{achieved / 1e9:.1f} | {100 * achieved / peaks[name][0]:.1f}% |")
    for name in list(names)[1:]:
        other = results[name]
        if "failed" in other or "failed" in ours_r:
            continue
        print(f"| ratio ours / {names[name].removeprefix('ours: ')} | "
              f"{ours_r['train_img_s'] / other['train_img_s']:.2f} | {ours_r['eval_img_s'] / other['eval_img_s']:.2f} "
              f"| | | |")
    for name, r in results.items():
        if "failed" in r:
            continue
        print(f"\n{names[name]}: epoch seconds {[round(t, 1) for t in r['seconds']['train']]} (the `fit` calls: "
              f"{[round(t, 1) for t in r['seconds']['train_call']]}), evaluation seconds "
              f"{[round(t, 1) for t in r['seconds']['eval']]}", end="")
    print("\n")
    for text in dict.fromkeys(text for _, text in peaks.values()):
        print(f"{text}.")
    print(f"Training FLOPs per image = 3 x forward = 3 x {stats.gflops:.4f} GFLOPs (direct count: "
          f"2 x {stats.macs / 1e6:.1f}M multiply-adds, attention included; the backward pass is ~2 x forward).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
