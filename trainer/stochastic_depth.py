"""Stochastic depth: a residual add that drops the branch for whole examples during training.

Huang, Sun, Liu, Sedra, Weinberger. "Deep Networks with Stochastic Depth", ECCV 2016, arXiv:1603.09382; as used
in DeiT / timm ("DropPath"). At inference it is a plain residual add.
"""
from __future__ import annotations

import tf_keras as keras
import tensorflow as tf


@keras.utils.register_keras_serializable(package="tokenlearner")
class StochasticDepth(keras.layers.Layer):
    """[branch (B, ...), shortcut (B, ...)] -> shortcut + branch, the branch dropped per example with `rate`."""

    def __init__(self, rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate

    def call(self, inputs, training=None):
        branch, shortcut = inputs  # same shapes
        if not training or self.rate == 0.0:
            return shortcut + branch
        keep = 1.0 - self.rate
        shape = [tf.shape(branch)[0]] + [1] * (len(branch.shape) - 1)  # (B, 1, ..., 1): one draw per example
        mask = tf.floor(keep + tf.random.uniform(shape, dtype=branch.dtype))  # 1 with probability `keep`
        return shortcut + branch * mask / keep  # expectation unchanged

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(rate=self.rate)
        return config
