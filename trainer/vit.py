"""The mini Vision Transformer of the keras.io TokenLearner example, in tf_keras (Keras 2).

Input is the already normalized and cropped view (image_size x image_size x 3); augmentation lives in the
training input pipeline (trainer/inputs.py), not in the model.
"""
from __future__ import annotations

import tf_keras as keras
import tensorflow as tf

from trainer.config import TrainerConfig
from trainer.token_learner import TokenLearner


@keras.utils.register_keras_serializable(package="tokenlearner")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned (num_patches, dim) embedding to a (B, num_patches, dim) sequence."""

    def build(self, input_shape):
        self.embedding = self.add_weight(name="embedding", shape=(input_shape[1], input_shape[2]),
                                         initializer=keras.initializers.RandomUniform(-0.05, 0.05))
        super().build(input_shape)

    def call(self, inputs):
        return inputs + tf.cast(self.embedding, inputs.dtype)[None]


def _mlp(x, units: list[int], dropout: float, name: str):
    for i, n in enumerate(units):
        x = keras.layers.Dense(n, activation=tf.nn.gelu, name=f"{name}_dense_{i}")(x)
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout_{i}")(x)
    return x


def _transformer_block(x, cfg: TrainerConfig, name: str):
    """Pre-norm block: x + MHA(LN(x)); then + MLP(LN(.)). Shape (B, N, D) is kept."""
    h = keras.layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name=f"{name}_norm_1")(x)
    h = keras.layers.MultiHeadAttention(num_heads=cfg.num_heads, key_dim=cfg.projection_dim,
                                        dropout=cfg.dropout, name=f"{name}_attention")(h, h)
    x = keras.layers.Add(name=f"{name}_add_1")([h, x])
    h = keras.layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name=f"{name}_norm_2")(x)
    h = _mlp(h, [cfg.mlp_dim, cfg.projection_dim], cfg.dropout, name=f"{name}_mlp")
    return keras.layers.Add(name=f"{name}_add_2")([h, x])


def build_model(cfg: TrainerConfig) -> keras.Model:
    """ViT with an optional TokenLearner after block ``cfg.token_learner_layer`` (keras.io: index 2 of 4)."""
    side = cfg.image_size // cfg.patch_size
    inputs = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    x = keras.layers.Conv2D(cfg.projection_dim, cfg.patch_size, strides=cfg.patch_size, padding="valid",
                            name="patch_embedding")(inputs)  # (B, side, side, D)
    x = keras.layers.Reshape((side * side, cfg.projection_dim), name="patches")(x)  # (B, N, D)
    x = PositionEmbedding(name="position_embedding")(x)
    x = keras.layers.Dropout(cfg.dropout, name="embedding_dropout")(x)
    for i in range(cfg.num_layers):
        x = _transformer_block(x, cfg, name=f"block_{i}")
        if cfg.token_learner == "v1" and i == cfg.token_learner_layer:
            x = keras.layers.Reshape((side, side, cfg.projection_dim), name="token_grid")(x)  # (B, s, s, D)
            x = TokenLearner(cfg.num_tokens, layer_norm_eps=cfg.layer_norm_eps, name="token_learner")(x)  # (B, T, D)
    x = keras.layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name="head_norm")(x)
    x = keras.layers.GlobalAveragePooling1D(name="head_pool")(x)  # (B, D)
    # float32 softmax even under mixed precision, so probabilities stay well-formed.
    outputs = keras.layers.Dense(cfg.num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    name = "vit" if cfg.token_learner == "none" else f"vit_token_learner_{cfg.num_tokens}"
    return keras.Model(inputs, outputs, name=name)
