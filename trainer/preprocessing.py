"""Transform: decode the image bytes and normalize each channel with statistics of the training split.

The statistics are TFT analyzers, computed once over the `train` split by Beam; the resulting graph is the one the
Trainer's input pipeline and every exported serving signature apply, so training and serving cannot drift apart.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from trainer import features
from trainer.contract import PREPROCESSING_FN  # noqa: F401  (the path TFX loads `preprocessing_fn` by)

_MIN_STD = 1e-6  # a constant channel stays finite
_SHAPE = [features.IMAGE_SIZE, features.IMAGE_SIZE, features.CHANNELS]


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """One encoded image (PNG, JPEG, GIF, BMP; any size, gray or RGBA) -> uint8 [32, 32, 3].

    Images already 32x32 are not resampled, so the CIFAR-10 pixels that training saw reach the model unchanged.
    Bytes that are not an image raise InvalidArgumentError from the decoder.
    """
    # JPEG with the accurate integer DCT: pixel-identical to Pillow/libjpeg-turbo, which decoded the training
    # images at ingestion; decode_image's default (fast DCT) differs by up to 5 levels and cost 0.6 points.
    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=features.CHANNELS, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=features.CHANNELS, expand_animations=False))  # (h, w, 3)
    shape = tf.shape(image)
    image = tf.cond(
        tf.reduce_all(tf.equal(shape[:2], _SHAPE[:2])),
        lambda: image,
        lambda: tf.cast(tf.clip_by_value(tf.round(tf.image.resize(image, _SHAPE[:2], antialias=True)), 0, 255),
                        tf.uint8))
    image.set_shape(_SHAPE)
    return image


def decode_images(encoded: tf.Tensor) -> tf.Tensor:
    """A batch of encoded images, shape [N] or [N, 1] -> uint8 [N, 32, 32, 3]."""
    return tf.map_fn(decode_image, tf.reshape(encoded, [-1]), fn_output_signature=tf.TensorSpec(_SHAPE, tf.uint8))


def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Raw features {image: bytes, label: int64} -> {image_xf: float32 [N, 32, 32, 3], label_xf: int64 [N]}."""
    pixels = tf.cast(decode_images(inputs[features.IMAGE_KEY]), tf.float32) / 255.0  # (N, 32, 32, 3)
    # Per-pixel mean and variance over the dataset; every pixel position has the same count, so the law of total
    # variance gives the exact per-channel statistics (without the cancellation of E[x^2] - E[x]^2 in float32).
    pixel_mean = tft.mean(pixels, reduce_instance_dims=False)  # (32, 32, 3)
    pixel_var = tft.var(pixels, reduce_instance_dims=False)  # (32, 32, 3)
    mean = tf.reduce_mean(pixel_mean, axis=[0, 1])  # (3,)
    std = tf.sqrt(tf.reduce_mean(pixel_var + tf.square(pixel_mean - mean), axis=[0, 1]))  # (3,)
    std = tf.maximum(std, _MIN_STD)
    outputs = {features.transformed_name(features.IMAGE_KEY): (pixels - mean) / std}
    if features.LABEL_KEY in inputs:
        outputs[features.transformed_name(features.LABEL_KEY)] = tf.reshape(inputs[features.LABEL_KEY], [-1])
    return outputs
