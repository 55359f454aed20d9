"""Transform: decode the image bytes, bring every image to one square size, and normalize each channel with
statistics of the training split.

The size is `TrainerConfig.input_size`, which the pipeline passes in the Transform's custom_config
(`contract.INPUT_SIZE_KEY`). The statistics are TFT analyzers, computed once over the `train` split by Beam; the
resulting graph is the one the Trainer's input pipeline and every exported serving signature apply, so training and
serving cannot drift apart, and a served image of any size is brought to the size the model was trained on.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import tensorflow as tf
import tensorflow_transform as tft

from trainer import features
from trainer.contract import INPUT_SIZE_KEY
from trainer.contract import PREPROCESSING_FN  # noqa: F401  (the path TFX loads `preprocessing_fn` by)

_MIN_STD = 1e-6  # a constant channel stays finite


def decode_image(encoded: tf.Tensor, size: int = features.DEFAULT_INPUT_SIZE) -> tf.Tensor:
    """One encoded image (PNG, JPEG, GIF, BMP; any size; gray, RGBA or palette) -> uint8 [size, size, 3].

    Aspect ratio kept: the central square of the image (its side the image's shorter side) is resized to
    size x size with antialiasing, which is resizing the shorter side to `size` and then cropping the longer one
    to the center. The square is not resampled when it already has that size: images of size x size (all of
    CIFAR-10 at the default 32) reach the model pixel for pixel. A gray image becomes three equal channels, a
    palette image its colours; alpha is dropped (ingestion composites it on a background). Bytes that are not an
    image raise InvalidArgumentError from the decoder.
    """
    # JPEG with the accurate integer DCT: pixel-identical to Pillow/libjpeg-turbo, which decoded the training
    # images at ingestion; decode_image's default (fast DCT) differs by up to 5 levels and cost 0.6 points.
    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=features.CHANNELS, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=features.CHANNELS, expand_animations=False))  # (h, w, 3)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top:top + side, left:left + side]  # (side, side, 3)
    image = tf.cond(
        tf.equal(side, size),
        lambda: square,
        lambda: tf.cast(tf.clip_by_value(tf.round(tf.image.resize(square, [size, size], antialias=True)), 0, 255),
                        tf.uint8))
    image.set_shape([size, size, features.CHANNELS])
    return image


def decode_images(encoded: tf.Tensor, size: int = features.DEFAULT_INPUT_SIZE) -> tf.Tensor:
    """A batch of encoded images, shape [N] or [N, 1] -> uint8 [N, size, size, 3] (`decode_image` each)."""
    return tf.map_fn(lambda one: decode_image(one, size), tf.reshape(encoded, [-1]),
                     fn_output_signature=tf.TensorSpec([size, size, features.CHANNELS], tf.uint8))


def input_size(custom_config: Optional[Mapping[str, Any]]) -> int:
    """The side Transform brings images to: `custom_config[INPUT_SIZE_KEY]`, or CIFAR-10's 32 for a graph that
    passes no custom_config (pipelines compiled before the setting existed)."""
    return int((custom_config or {}).get(INPUT_SIZE_KEY, features.DEFAULT_INPUT_SIZE))


def preprocessing_fn(inputs: dict[str, tf.Tensor],
                     custom_config: Optional[Mapping[str, Any]] = None) -> dict[str, tf.Tensor]:
    """Raw features {image: bytes [N, 1], label: int64 [N, 1]} -> {image_xf: float32 [N, S, S, 3], label_xf: int64
    [N]}, S = the input size of `custom_config` (TFX's Transform passes the component's custom_config because this
    function takes the argument)."""
    size = input_size(custom_config)
    pixels = tf.cast(decode_images(inputs[features.IMAGE_KEY], size), tf.float32) / 255.0  # (N, S, S, 3)
    # Per-pixel mean and variance over the dataset; every pixel position has the same count, so the law of total
    # variance gives the exact per-channel statistics (without the cancellation of E[x^2] - E[x]^2 in float32).
    pixel_mean = tft.mean(pixels, reduce_instance_dims=False)  # (S, S, 3)
    pixel_var = tft.var(pixels, reduce_instance_dims=False)  # (S, S, 3)
    mean = tf.reduce_mean(pixel_mean, axis=[0, 1])  # (3,)
    std = tf.sqrt(tf.reduce_mean(pixel_var + tf.square(pixel_mean - mean), axis=[0, 1]))  # (3,)
    std = tf.maximum(std, _MIN_STD)
    outputs = {features.transformed_name(features.IMAGE_KEY): (pixels - mean) / std}
    if features.LABEL_KEY in inputs:
        outputs[features.transformed_name(features.LABEL_KEY)] = tf.reshape(inputs[features.LABEL_KEY], [-1])
    return outputs
