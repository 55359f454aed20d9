"""TokenLearner (v1): learn a few tokens that summarize a spatial feature map.

Ryoo, Piergiovanni, Arnab, Dehghani, Angelova. "TokenLearner: Adaptive Space-Time Tokenization for Videos",
NeurIPS 2021, arXiv:2106.11297. Each of the T output tokens is a spatially weighted average of the input map, with
the weights (attention maps) computed from the input by a small conv stack ending in a sigmoid. Ported from the
keras.io example, which pools with the mean over space (the paper's reference code sums).
"""
from __future__ import annotations

import tf_keras as keras
import tensorflow as tf


@keras.utils.register_keras_serializable(package="tokenlearner")
class TokenLearner(keras.layers.Layer):
    """(B, H, W, C) feature map -> (B, num_tokens, C) learned tokens."""

    def __init__(self, num_tokens: int = 4, num_conv_layers: int = 4, kernel_size: int = 3,
                 layer_norm_eps: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.num_tokens = num_tokens
        self.num_conv_layers = num_conv_layers
        self.kernel_size = kernel_size
        self.layer_norm_eps = layer_norm_eps
        self.norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps)
        # num_conv_layers - 1 GELU convs, then one sigmoid conv that gives one map per token.
        self.convs = [
            keras.layers.Conv2D(num_tokens, kernel_size, padding="same", use_bias=False,
                                activation="sigmoid" if i == num_conv_layers - 1 else tf.nn.gelu,
                                name=f"attention_conv_{i}")
            for i in range(num_conv_layers)
        ]

    def attention_maps(self, inputs: tf.Tensor) -> tf.Tensor:
        """(B, H, W, C) -> (B, T, H*W) weights in [0, 1]."""
        x = self.norm(inputs)  # (B, H, W, C)
        for conv in self.convs:
            x = conv(x)  # (B, H, W, T)
        x = tf.reshape(x, [tf.shape(x)[0], -1, self.num_tokens])  # (B, H*W, T)
        return tf.transpose(x, [0, 2, 1])  # (B, T, H*W)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        maps = self.attention_maps(inputs)  # (B, T, H*W)
        channels = inputs.shape[-1]
        features = tf.reshape(inputs, [tf.shape(inputs)[0], -1, channels])  # (B, H*W, C)
        # Weighted mean over space: einsum avoids materializing the (B, T, H*W, C) product.
        hw = tf.cast(tf.shape(features)[1], features.dtype)
        return tf.einsum("btn,bnc->btc", maps, features) / hw  # (B, T, C)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], self.num_tokens, input_shape[-1]])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_tokens=self.num_tokens, num_conv_layers=self.num_conv_layers,
                      kernel_size=self.kernel_size, layer_norm_eps=self.layer_norm_eps)
        return config
