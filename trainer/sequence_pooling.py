"""Sequence pooling (CCT): the classifier reads a learned, input-dependent weighted mean of the tokens instead of a
class token or a plain mean.

Hassani et al., "Escaping the Big Data Paradigm with Compact Transformers", arXiv:2104.05704, section 3.2:
weights = softmax over the tokens of a linear score g(x) = x W (W: d x 1); output = weights^T x.
"""
from __future__ import annotations

import tf_keras as keras
import tensorflow as tf


@keras.utils.register_keras_serializable(package="tokenlearner")
class SequencePooling(keras.layers.Layer):
    """Attention-weighted mean of the tokens, one learned score per token.

    Call:
        inputs: [bs, n, c] tokens.

    Returns:
        [bs, c], the tokens averaged with weights softmax_n(inputs @ w + b) that sum to 1 per example.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.score = keras.layers.Dense(1, name="score")

    def weights_over_tokens(self, inputs: tf.Tensor) -> tf.Tensor:
        """[bs, n, c] -> [bs, n, 1] pooling weights, a distribution over the n tokens."""
        return tf.nn.softmax(self.score(inputs), axis=1)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        weights = self.weights_over_tokens(inputs)  # [bs, n, 1]
        return tf.squeeze(tf.matmul(weights, inputs, transpose_a=True), axis=1)  # [bs, 1, c] -> [bs, c]

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], input_shape[-1]])

    def get_config(self) -> dict:
        return super().get_config()  # no settings of its own: the score's width follows the input
