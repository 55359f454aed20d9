"""TokenLearner v1.1: softmax-over-space attention maps from a small MLP.

Ryoo, Piergiovanni, Arnab, Dehghani, Angelova. "TokenLearner: Adaptive Space-Time Tokenization for Videos",
NeurIPS 2021, arXiv:2106.11297; version 1.1 of the official scenic code (`TokenLearnerModuleV11`). Unlike v1 (conv
stack, sigmoid, mean), each map is a softmax over the H*W positions, so every token is a convex combination of
the input features.

Two forms, both from scenic's history:
- ``num_groups=0`` (scenic today): LayerNorm -> Dense(bottleneck, GELU) -> Dense(num_tokens) -> softmax over space
  -> weighted sum of the inputs.
- ``num_groups=G`` (the earlier scenic v1.1 that keras.io benchmarked as "groups/tokens"): LayerNorm -> grouped 1x1
  projection C->C with G groups -> 1x1 projection C->num_tokens -> softmax over space -> weighted sum of the inputs
  passed through their own grouped C->C projection. No biases, no activation, as there.
Grouped projections are batched matmuls (one per group): grouped Conv2D needs XLA on CPU in tf_keras.
"""
from __future__ import annotations

import tf_keras as keras
import tensorflow as tf


@keras.utils.register_keras_serializable(package="tokenlearner")
class TokenLearnerV11(keras.layers.Layer):
    """(B, H, W, C) or (B, N, C) features -> (B, num_tokens, C) learned tokens."""

    def __init__(self, num_tokens: int = 8, bottleneck_dim: int = 64, num_groups: int = 0, dropout: float = 0.0,
                 layer_norm_eps: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.num_tokens = num_tokens
        self.bottleneck_dim = bottleneck_dim
        self.num_groups = num_groups
        self.dropout = dropout
        self.layer_norm_eps = layer_norm_eps
        self.norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps)
        if num_groups:
            self.to_maps = keras.layers.Dense(num_tokens, use_bias=False, name="maps")
        else:  # scenic MlpBlock: Dense -> GELU -> dropout -> Dense -> dropout
            self.hidden = keras.layers.Dense(bottleneck_dim, activation=tf.nn.gelu, name="hidden")
            self.to_maps = keras.layers.Dense(num_tokens, name="maps")
            self.drop = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if self.num_groups:
            if channels % self.num_groups:
                raise ValueError(f"num_groups ({self.num_groups}) must divide the channels ({channels})")
            shape = (self.num_groups, channels // self.num_groups, channels // self.num_groups)
            self.attention_kernel = self.add_weight(name="attention_kernel", shape=shape)
            self.value_kernel = self.add_weight(name="value_kernel", shape=shape)
        super().build(input_shape)

    def _grouped(self, x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        """(B, N, C) -> (B, N, C): a 1x1 conv with num_groups groups, as one batched matmul."""
        b, n, c = tf.shape(x)[0], tf.shape(x)[1], x.shape[-1]
        g = self.num_groups
        x = tf.transpose(tf.reshape(x, [b * n, g, c // g]), [1, 0, 2])  # (G, B*N, C/G)
        x = tf.matmul(x, tf.cast(kernel, x.dtype))  # (G, B*N, C/G)
        return tf.reshape(tf.transpose(x, [1, 0, 2]), [b, n, c])  # (B, N, C)

    def _flatten(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.reshape(inputs, [tf.shape(inputs)[0], -1, inputs.shape[-1]])  # (B, N=H*W, C)

    def attention_maps(self, inputs: tf.Tensor, training=None) -> tf.Tensor:
        """(B, H, W, C) or (B, N, C) -> (B, T, N): one softmax distribution over the N positions per token."""
        x = self.norm(self._flatten(inputs))  # (B, N, C)
        if self.num_groups:
            logits = self.to_maps(self._grouped(x, self.attention_kernel))  # (B, N, T)
        else:
            x = self.drop(self.hidden(x), training=training)  # (B, N, bottleneck)
            logits = self.drop(self.to_maps(x), training=training)  # (B, N, T)
        return tf.nn.softmax(tf.transpose(logits, [0, 2, 1]), axis=-1)  # (B, T, N)

    def call(self, inputs: tf.Tensor, training=None) -> tf.Tensor:
        maps = self.attention_maps(inputs, training=training)  # (B, T, N)
        values = self._flatten(inputs)  # (B, N, C)
        if self.num_groups:
            values = self._grouped(values, self.value_kernel)  # (B, N, C)
        return tf.einsum("btn,bnc->btc", maps, values)  # (B, T, C)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], self.num_tokens, input_shape[-1]])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_tokens=self.num_tokens, bottleneck_dim=self.bottleneck_dim, num_groups=self.num_groups,
                      dropout=self.dropout, layer_norm_eps=self.layer_norm_eps)
        return config
