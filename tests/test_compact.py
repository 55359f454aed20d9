"""The compact preset: CCT's convolutional tokenizer, sequence pooling, and the model they make with TokenLearner."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from trainer import flops, vit
from trainer.config import PRESETS, TrainerConfig
from trainer.conv_tokenizer import ConvTokenizer
from trainer.sequence_pooling import SequencePooling

COMPACT = PRESETS["compact"]


@pytest.mark.parametrize("filters, size, tokens", [((64, 128), 32, 64), ((16,), 32, 256), ((8, 8, 24), 30, 16)])
def test_conv_tokenizer_halves_the_grid_per_stage(filters, size, tokens):
    layer = ConvTokenizer(filters)
    out = layer(tf.random.normal([2, size, size, 3]))
    assert out.shape == (2, tokens, filters[-1])
    assert layer.compute_output_shape((2, size, size, 3)) == (2, tokens, filters[-1])
    assert float(tf.reduce_min(out)) >= 0.0  # ReLU before max-pooling


def test_conv_tokenizer_tokens_are_the_grid_row_by_row():
    layer = ConvTokenizer((8, 16))
    x = tf.random.normal([1, 16, 16, 3])
    grid = layer.grid(x).numpy()  # (1, 4, 4, 16)
    np.testing.assert_allclose(layer(x).numpy()[0, 5], grid[0, 1, 1], rtol=1e-6)


def test_sequence_pooling_is_a_softmax_weighted_mean_of_the_tokens():
    layer = SequencePooling()
    x = tf.random.normal([3, 7, 16])
    out = layer(x).numpy()
    assert out.shape == (3, 16)
    weights = layer.weights_over_tokens(x).numpy()  # (3, 7, 1)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out, (weights * x.numpy()).sum(axis=1), rtol=1e-5, atol=1e-6)
    # Equal scores pool to the plain mean.
    layer.score.kernel.assign(tf.zeros_like(layer.score.kernel))
    np.testing.assert_allclose(layer(x).numpy(), x.numpy().mean(axis=1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer, shape", [
    (ConvTokenizer((8, 24), kernel_size=5, pool_size=2, pool_stride=2, name="tokenizer"), [2, 16, 16, 3]),
    (SequencePooling(name="pool"), [2, 5, 12]),
], ids=lambda v: getattr(v, "name", "x"))
def test_get_config_round_trips(layer, shape):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    x = tf.random.normal(shape)
    layer(x), clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x).numpy(), layer(x).numpy(), rtol=1e-6)


def test_compact_model_is_a_tokenlearner_cct_within_budget():
    model = vit.build_model(COMPACT)
    assert model.name == "cct_token_learner_16"
    assert model.count_params() <= 1_500_000
    assert model.input_shape == (None, 32, 32, 3)  # the 32x32 image itself, no resize
    assert model.get_layer("conv_tokenizer").output_shape == (None, 64, 128)  # 8x8 grid
    assert model.get_layer("token_learner").output_shape == (None, 16, 128)
    assert isinstance(model.get_layer("head_pool"), SequencePooling)
    names = [layer.name for layer in model.layers]  # TokenLearner before the last two blocks
    assert names.index("block_3_add_2") < names.index("token_learner") < names.index("block_4_norm_1")
    out = model(tf.random.normal([2, 32, 32, 3]), training=True)
    np.testing.assert_allclose(tf.reduce_sum(out, -1).numpy(), 1.0, rtol=1e-5)


def test_compact_keeps_the_better_recipe():
    better = PRESETS["better"]
    for name in ("lr_schedule", "warmup_fraction", "label_smoothing", "weight_decay", "clip_norm", "epochs",
                 "batch_size"):
        assert getattr(COMPACT, name) == getattr(better, name), name
    assert COMPACT.crop_padding > 0 and COMPACT.stochastic_depth > 0


def test_compact_costs_fewer_flops_than_keras_io_in_both_conventions():
    compact = flops.model_stats(vit.build_model(COMPACT))
    keras_io = flops.model_stats(vit.build_model(PRESETS["keras_io"]))
    assert compact.input_shape == (1, 32, 32, 3)
    # Tokenizer: conv 3x3x3->64 on 32x32, conv 3x3x64->128 on 16x16; then the TokenLearner's convs (3x3, 16 maps).
    tokenizer = 32 * 32 * 27 * 64 + 16 * 16 * 9 * 64 * 128
    assert compact.macs_by_op["Conv2D"] == tokenizer + 8 * 8 * 9 * 16 * (128 + 3 * 16)
    assert compact.gflops < keras_io.gflops and compact.keras_io_gflops > 0


def test_compact_saved_model_round_trip(tmp_path):
    model = vit.build_model(COMPACT)
    x = tf.random.normal([2, 32, 32, 3])
    model.save(tmp_path / "m", save_format="tf")
    loaded = keras.models.load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(), rtol=1e-5,
                               atol=1e-6)


def test_report_reads_the_compact_models_attention_maps():
    from inspection import report

    maps = report.attention_maps(vit.build_model(COMPACT), tf.random.normal([3, 32, 32, 3]))
    assert maps.shape == (3, 16, 8, 8)  # 16 maps over the tokenizer's 8x8 grid


@pytest.mark.parametrize("bad, match", [
    ({"conv_tokenizer_stages": -1}, "conv_tokenizer_stages"),
    ({"conv_tokenizer_stages": 7, "image_size": 32, "resize_to": 32}, "conv_tokenizer_stages"),
    ({"pooling": "cls"}, "pooling"),
    ({"key_dim": -2}, "key_dim"),
])
def test_trainer_config_rejects_bad_compact_settings(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainerConfig(**bad)


def test_conv_tokenizer_frees_the_image_size_from_the_patch_size():
    cfg = dataclasses.replace(COMPACT, image_size=28, resize_to=28)  # not a multiple of patch_size (6)
    assert cfg.grid_side == 7 and cfg.num_patches == 49  # 28 -> 14 -> 7
