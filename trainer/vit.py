"""The mini Vision Transformer of the keras.io TokenLearner example, in tf_keras (Keras 2), and its variants:
no TokenLearner, TokenLearner v1 or v1.1 once, or TokenLearner + TokenFuser around every later block; patches or
CCT's convolutional tokenizer in front, mean or sequence pooling at the head.

Input is the already normalized and cropped view (image_size x image_size x 3); augmentation lives in the
training input pipeline (trainer/inputs.py), not in the model.
"""
from __future__ import annotations

import tf_keras as keras
import tensorflow as tf

from trainer.config import TrainerConfig
from trainer.conv_tokenizer import ConvTokenizer
from trainer.sequence_pooling import SequencePooling
from trainer.stochastic_depth import StochasticDepth
from trainer.token_fuser import TokenFuser
from trainer.token_learner import TokenLearner
from trainer.token_learner_v11 import TokenLearnerV11
from trainer.tf_keras_autograph import skip_tf_keras


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


def _residual(branch, shortcut, drop_rate: float, name: str):
    if drop_rate > 0:
        return StochasticDepth(drop_rate, name=name)([branch, shortcut])
    return keras.layers.Add(name=name)([branch, shortcut])


def _transformer_block(x, cfg: TrainerConfig, name: str, drop_rate: float = 0.0):
    """Pre-norm block: x + MHA(LN(x)); then + MLP(LN(.)). Shape (B, N, D) is kept."""
    h = keras.layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name=f"{name}_norm_1")(x)
    h = keras.layers.MultiHeadAttention(num_heads=cfg.num_heads, key_dim=cfg.key_dim or cfg.projection_dim,
                                        dropout=cfg.dropout, name=f"{name}_attention")(h, h)
    x = _residual(h, x, drop_rate, name=f"{name}_add_1")
    h = keras.layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name=f"{name}_norm_2")(x)
    h = _mlp(h, [cfg.mlp_dim, cfg.projection_dim], cfg.dropout, name=f"{name}_mlp")
    return _residual(h, x, drop_rate, name=f"{name}_add_2")


def _token_learner(cfg: TrainerConfig, name: str) -> keras.layers.Layer:
    """(B, s, s, D) grid -> (B, num_tokens, D)."""
    if cfg.token_learner == "v1":
        return TokenLearner(cfg.num_tokens, layer_norm_eps=cfg.layer_norm_eps, name=name)
    return TokenLearnerV11(cfg.num_tokens, bottleneck_dim=cfg.token_learner_bottleneck,
                           num_groups=cfg.token_learner_groups, dropout=cfg.dropout,
                           layer_norm_eps=cfg.layer_norm_eps, name=name)


def _fused_block(x, cfg: TrainerConfig, side: int, i: int, drop_rate: float):
    """scenic EncoderModFuser: learn tokens from the grid, run block i on them, fuse back, add the residual."""
    grid = keras.layers.Reshape((side, side, cfg.projection_dim), name=f"token_grid_{i}")(x)  # (B, s, s, D)
    tokens = _token_learner(cfg, name=f"token_learner_{i}")(grid)  # (B, T, D)
    tokens = _transformer_block(tokens, cfg, name=f"block_{i}", drop_rate=drop_rate)  # (B, T, D)
    fused = TokenFuser(cfg.token_learner_bottleneck, dropout=cfg.dropout, layer_norm_eps=cfg.layer_norm_eps,
                       name=f"token_fuser_{i}")([tokens, x])  # (B, N, D)
    return keras.layers.Add(name=f"fuser_residual_{i}")([fused, x])


def build_model(cfg: TrainerConfig) -> keras.Model:
    """ViT with an optional TokenLearner after block ``cfg.token_learner_layer`` (keras.io: index 2 of 4).

    With ``cfg.token_fuser`` every later block is wrapped instead: TokenLearner -> block -> TokenFuser + residual,
    so the sequence keeps all N patches and TokenLearner runs once per wrapped block."""
    skip_tf_keras()  # before the model's first trace: tracing then takes ~6 s instead of ~16 s (see that module)
    side = cfg.grid_side
    inputs = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    x = _tokenize(inputs, cfg)  # (B, N, D)
    x = PositionEmbedding(name="position_embedding")(x)
    x = keras.layers.Dropout(cfg.dropout, name="embedding_dropout")(x)
    for i in range(cfg.num_layers):
        drop_rate = cfg.stochastic_depth * i / max(cfg.num_layers - 1, 1)  # deeper blocks dropped more often
        if cfg.token_fuser and i > cfg.token_learner_layer:
            x = _fused_block(x, cfg, side, i, drop_rate)  # (B, N, D)
            continue
        x = _transformer_block(x, cfg, name=f"block_{i}", drop_rate=drop_rate)
        if cfg.token_learner != "none" and not cfg.token_fuser and i == cfg.token_learner_layer:
            x = keras.layers.Reshape((side, side, cfg.projection_dim), name="token_grid")(x)  # (B, s, s, D)
            x = _token_learner(cfg, name="token_learner")(x)  # (B, T, D)
    x = keras.layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name="head_norm")(x)
    if cfg.pooling == "sequence":
        x = SequencePooling(name="head_pool")(x)  # (B, D)
    else:
        x = keras.layers.GlobalAveragePooling1D(name="head_pool")(x)  # (B, D)
    # float32 softmax even under mixed precision, so probabilities stay well-formed.
    outputs = keras.layers.Dense(cfg.num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=_model_name(cfg))


def _tokenize(inputs, cfg: TrainerConfig):
    """(B, S, S, 3) view -> (B, N, D) tokens: non-overlapping patches, or CCT's conv stages."""
    if cfg.conv_tokenizer_stages:
        filters = [cfg.conv_tokenizer_filters] * (cfg.conv_tokenizer_stages - 1) + [cfg.projection_dim]
        return ConvTokenizer(filters, name="conv_tokenizer")(inputs)
    side = cfg.grid_side
    x = keras.layers.Conv2D(cfg.projection_dim, cfg.patch_size, strides=cfg.patch_size, padding="valid",
                            name="patch_embedding")(inputs)  # (B, side, side, D)
    return keras.layers.Reshape((side * side, cfg.projection_dim), name="patches")(x)


def _model_name(cfg: TrainerConfig) -> str:
    """vit, vit_token_learner_4 (v1), vit_token_learner_v11_g4_8 (v1.1, 4 groups, 8 tokens), ..._fuser; cct_...
    with the convolutional tokenizer."""
    family = "cct" if cfg.conv_tokenizer_stages else "vit"
    if cfg.token_learner == "none":
        return family
    version = "" if cfg.token_learner == "v1" else f"v11_g{cfg.token_learner_groups}_"
    return f"{family}_token_learner_{version}{cfg.num_tokens}" + ("_fuser" if cfg.token_fuser else "")
