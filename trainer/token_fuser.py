"""TokenFuser: map a few learned tokens back onto the spatial grid they were learned from.

Ryoo, Piergiovanni, Arnab, Dehghani, Angelova. "TokenLearner: Adaptive Space-Time Tokenization for Videos",
NeurIPS 2021, arXiv:2106.11297, section 3.2; semantics of the official scenic `TokenFuser`. The tokens are mixed
along the token axis (a Dense over tokens, zero-initialized, so a fresh fuser adds nothing to the residual), and
each position of the original grid takes a sigmoid-weighted combination of them. With the encoder's residual
this lets a ViT apply TokenLearner again in a later block.
"""
from __future__ import annotations

import tf_keras as keras
import tensorflow as tf


@keras.utils.register_keras_serializable(package="tokenlearner")
class TokenFuser(keras.layers.Layer):
    """[tokens (B, T, C), original (B, N, C) or (B, H, W, C)] -> a tensor shaped like `original`."""

    def __init__(self, bottleneck_dim: int = 64, dropout: float = 0.0, layer_norm_eps: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.bottleneck_dim = bottleneck_dim
        self.dropout = dropout
        self.layer_norm_eps = layer_norm_eps
        self.tokens_norm_in = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="tokens_norm_in")
        self.tokens_norm_out = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="tokens_norm_out")
        self.original_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="original_norm")
        self.hidden = keras.layers.Dense(bottleneck_dim, activation=tf.nn.gelu, name="mix_hidden")
        self.drop = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        num_tokens = int(input_shape[0][-2])
        self.token_mixer = keras.layers.Dense(num_tokens, kernel_initializer="zeros", name="token_mixer")
        self.to_mix = keras.layers.Dense(num_tokens, name="mix")
        super().build(input_shape)

    def call(self, inputs, training=None):
        tokens, original = inputs  # (B, T, C), (B, N, C) or (B, H, W, C)
        flat = tf.reshape(original, [tf.shape(original)[0], -1, original.shape[-1]])  # (B, N, C)
        tokens = self.tokens_norm_in(tokens)  # (B, T, C)
        tokens = tf.transpose(self.token_mixer(tf.transpose(tokens, [0, 2, 1])), [0, 2, 1])  # (B, T, C)
        tokens = self.tokens_norm_out(tokens)  # (B, T, C)
        mix = self.drop(self.hidden(self.original_norm(flat)), training=training)  # (B, N, bottleneck)
        mix = tf.sigmoid(self.drop(self.to_mix(mix), training=training))  # (B, N, T)
        fused = self.drop(tf.einsum("btc,bnt->bnc", tokens, mix), training=training)  # (B, N, C)
        return tf.reshape(fused, tf.shape(original))  # shaped like `original`

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[1])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(bottleneck_dim=self.bottleneck_dim, dropout=self.dropout, layer_norm_eps=self.layer_norm_eps)
        return config
