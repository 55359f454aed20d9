"""Input pipelines of the Trainer: raw TFRecords -> Transform graph -> views the model sees.

Transform normalizes once (the TFT graph, applied here and cached); augmentation happens only in the training
input. Eval and serving use the deterministic view, `eval_view`, which the exported signatures also call.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from trainer import features
from trainer.config import TrainerConfig

_PARSE_BATCH = 512


def eval_view(images: tf.Tensor, cfg: TrainerConfig) -> tf.Tensor:
    """Deterministic view: (N, S, S, 3), S = input_size -> resize to resize_to -> central crop (N, image_size,
    image_size, 3)."""
    images = tf.image.resize(images, [cfg.resize_to, cfg.resize_to])
    offset = (cfg.resize_to - cfg.image_size) // 2
    return images[:, offset:offset + cfg.image_size, offset:offset + cfg.image_size, :]


def train_view(images: tf.Tensor, cfg: TrainerConfig) -> tf.Tensor:
    """Random views, each image on its own: (N, S, S, 3), S = input_size -> (N, image_size, image_size, 3), or one
    (S, S, 3) image -> (image_size, image_size, 3). Resize to resize_to, pad by crop_padding, random crop
    image_size, random horizontal flip. Padding is 0, the channel mean of the normalized image.

    Done on whole batches: one resize and two gathers per batch instead of a tf.data function call per image.
    The crop is a gather of whole pixels (exact, as tf.image.random_crop); the flip reverses the gathered columns.
    """
    single = images.shape.rank == 3
    if single:
        images = images[None]
    images = tf.image.resize(images, [cfg.resize_to, cfg.resize_to])
    if cfg.crop_padding:
        p = cfg.crop_padding
        images = tf.pad(images, [[0, 0], [p, p], [p, p], [0, 0]])
    n = tf.shape(images)[0]
    positions = tf.range(cfg.image_size)  # (S,)
    # Offsets uniform in [0, size - image_size], as tf.image.random_crop draws them.
    offsets = tf.random.uniform([n, 2], 0, cfg.resize_to + 2 * cfg.crop_padding - cfg.image_size + 1, tf.int32)
    flip = tf.random.uniform([n, 1]) < 0.5
    rows = offsets[:, :1] + positions  # (N, S)
    cols = offsets[:, 1:] + tf.where(flip, cfg.image_size - 1 - positions, positions)  # (N, S), reversed if flipped
    images = tf.gather(images, rows, axis=1, batch_dims=1)  # (N, S, W, 3)
    images = tf.gather(images, cols, axis=2, batch_dims=1)  # (N, S, S, 3)
    return images[0] if single else images


def list_files(patterns: list[str]) -> list[str]:
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {patterns}")
    return files


def transformed_dataset(patterns: list[str], tft_output: tft.TFTransformOutput) -> tf.data.Dataset:
    """Unbatched (image_xf [S, S, 3] with S = input_size, label [] ) pairs; the TFT graph runs on batches for
    speed."""
    tft_layer = tft_output.transform_features_layer()
    spec = tft_output.raw_feature_spec()
    image_key = features.transformed_name(features.IMAGE_KEY)
    label_key = features.transformed_name(features.LABEL_KEY)

    def transform(serialized):
        out = tft_layer(tf.io.parse_example(serialized, spec))
        return out[image_key], out[label_key]

    ds = tf.data.TFRecordDataset(list_files(patterns), compression_type="GZIP")
    return ds.batch(_PARSE_BATCH).map(transform, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


def epoch_steps(num_examples: int, cfg: TrainerConfig) -> int:
    """Batches in one pass over `num_examples` (the last one partial): the `steps_per_epoch` of a repeated input."""
    return -(-num_examples // cfg.batch_size)


def count_examples(patterns: list[str]) -> int:
    """Number of records (about a second for all of CIFAR-10): gives Keras its steps, and the logs their ETA."""
    ds = tf.data.TFRecordDataset(list_files(patterns), compression_type="GZIP")
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def make_dataset(patterns: list[str], tft_output: tft.TFTransformOutput, cfg: TrainerConfig,
                 training: bool, num_examples: int, repeat: bool = False) -> tf.data.Dataset:
    """Batched (view, label) for model.fit. The normalized images are cached in memory after the first epoch
    (input_size^2 x 3 float32 values each: 45,000 x 12 KiB = 0.5 GiB for full CIFAR-10 at 32), so image decoding
    and the TFT graph run once.

    `repeat` (training only): endless, for `fit(steps_per_epoch=epoch_steps(num_examples, cfg))`; each run of that
    many batches is one whole pass over the examples in a new order (batches are cut before the repeat, so an
    epoch's last, partial batch never takes examples of the next). Then `fit` keeps one iterator for all its
    epochs instead of making one per epoch, and the epochs follow each other without a pause: in TensorFlow 2.16
    deleting a used iterator waits until its tf.data autotuning thread next wakes (its sleeps double from 10 ms to
    60 s), which cost 12-24 s at each epoch boundary on 5,120 CIFAR-10 images and 0-40 s at 12 of 19 in a full
    20-epoch run (docs/benchmarks.md 6.1d)."""
    if repeat and not training:
        raise ValueError("repeat: only the training input repeats (Keras makes a new evaluation iterator per call)")
    ds = transformed_dataset(patterns, tft_output).apply(tf.data.experimental.assert_cardinality(num_examples))
    ds = ds.cache()
    if training:
        ds = ds.shuffle(50_000, seed=cfg.seed, reshuffle_each_iteration=True).batch(cfg.batch_size)
        ds = ds.map(lambda x, y: (train_view(x, cfg), y), num_parallel_calls=tf.data.AUTOTUNE)
        if repeat:
            ds = ds.repeat()
    else:
        ds = ds.batch(cfg.batch_size).map(lambda x, y: (eval_view(x, cfg), y),
                                          num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
