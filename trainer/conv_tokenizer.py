"""Convolutional tokenizer of the Compact Convolutional Transformer (CCT): tokens from a few conv stages instead of
non-overlapping patches.

Hassani, Walton, Shah, Abuduweili, Li, Shi. "Escaping the Big Data Paradigm with Compact Transformers",
arXiv:2104.05704; keras.io "Compact Convolutional Transformers". Each stage is Conv2D (3x3, stride 1, "same", no
bias, ReLU) -> MaxPool (3x3, stride 2, "same"), so each stage halves the grid (rounding up). The overlapping
receptive fields give the Transformer an inductive bias patches lack, which is what lets a small model learn
CIFAR-10 in few epochs.
"""
from __future__ import annotations

from typing import Sequence

import tf_keras as keras
import tensorflow as tf


@keras.utils.register_keras_serializable(package="tokenlearner")
class ConvTokenizer(keras.layers.Layer):
    """Stages of conv-ReLU-maxpool, then the grid read row by row as a sequence of tokens.

    Args:
        filters: output channels of each stage, e.g. (64, 128); the last one is the token width.
        kernel_size: side of each convolution's kernel.
        pool_size: side of each max-pooling window.
        pool_stride: stride of each max-pooling (2 halves the grid per stage).

    Call:
        inputs: [bs, h, w, c] images (the normalized view).

    Returns:
        [bs, n, filters[-1]] tokens, n = h' * w' with h' = ceil(h / pool_stride^k) for k = len(filters) stages.
    """

    def __init__(self, filters: Sequence[int] = (64, 128), kernel_size: int = 3, pool_size: int = 3,
                 pool_stride: int = 2, **kwargs):
        super().__init__(**kwargs)
        if not filters:
            raise ValueError("filters: expected at least one stage, got []")
        self.filters = [int(f) for f in filters]
        self.kernel_size, self.pool_size, self.pool_stride = kernel_size, pool_size, pool_stride
        self.convs = [keras.layers.Conv2D(f, kernel_size, padding="same", use_bias=False, activation="relu",
                                          kernel_initializer="he_normal", name=f"conv_{i}")
                      for i, f in enumerate(self.filters)]
        self.pools = [keras.layers.MaxPooling2D(pool_size, pool_stride, padding="same", name=f"pool_{i}")
                      for i in range(len(self.filters))]

    def grid(self, inputs: tf.Tensor) -> tf.Tensor:
        """[bs, h, w, c] -> [bs, h', w', filters[-1]]: the feature map before it is flattened."""
        x = inputs
        for conv, pool in zip(self.convs, self.pools):
            x = pool(conv(x))
        return x

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        x = self.grid(inputs)  # [bs, h', w', d]
        return tf.reshape(x, [tf.shape(x)[0], x.shape[1] * x.shape[2], self.filters[-1]])  # [bs, n, d]

    def compute_output_shape(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        for _ in self.filters:
            h, w = -(-h // self.pool_stride), -(-w // self.pool_stride)
        return tf.TensorShape([input_shape[0], h * w, self.filters[-1]])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(filters=list(self.filters), kernel_size=self.kernel_size, pool_size=self.pool_size,
                      pool_stride=self.pool_stride)
        return config
