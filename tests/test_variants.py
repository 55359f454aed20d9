"""TokenLearner v1.1, TokenFuser, stochastic depth, the recipe, FLOPs, and every model the benchmarks train."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from trainer import flops, inputs, recipe, vit
from trainer.config import PRESETS, TrainerConfig
from trainer.stochastic_depth import StochasticDepth
from trainer.token_fuser import TokenFuser
from trainer.token_learner import TokenLearner
from trainer.token_learner_v11 import TokenLearnerV11

# The rows of the keras.io table (plus our `better` recipe), as bench/accuracy.py trains them.
BENCH_ROWS = {
    "vit": {"token_learner": "none"},
    "tl_v1_4": {},
    "tl_v1_8": {"num_tokens": 8},
    "vit_8_layers": {"token_learner": "none", "num_layers": 8},
    "tl_v11_g4_t4": {"token_learner": "v1.1", "token_learner_groups": 4, "num_tokens": 4},
    "tl_v11_g8_t8": {"token_learner": "v1.1", "token_learner_groups": 8, "num_tokens": 8},
    "tl_v11_g4_t8": {"token_learner": "v1.1", "token_learner_groups": 4, "num_tokens": 8},
}


@pytest.mark.parametrize("groups", [0, 4])
@pytest.mark.parametrize("num_tokens", [1, 4, 8])
def test_v11_shapes_and_softmax_maps(num_tokens, groups):
    layer = TokenLearnerV11(num_tokens, bottleneck_dim=16, num_groups=groups)
    x = tf.random.normal([3, 8, 8, 32])
    assert layer(x).shape == (3, num_tokens, 32)
    maps = layer.attention_maps(x).numpy()
    assert maps.shape == (3, num_tokens, 64)
    assert maps.min() >= 0.0
    np.testing.assert_allclose(maps.sum(axis=-1), 1.0, rtol=1e-5)  # a distribution over space per token
    # Flattened (B, N, C) input gives the same tokens as the (B, H, W, C) grid.
    np.testing.assert_allclose(layer(tf.reshape(x, [3, 64, 32])).numpy(), layer(x).numpy(), rtol=1e-5, atol=1e-6)


def test_v11_tokens_are_map_weighted_sums():
    layer = TokenLearnerV11(4, bottleneck_dim=8)
    x = tf.random.normal([2, 4, 4, 16])
    maps = layer.attention_maps(x).numpy()
    expected = np.einsum("btn,bnc->btc", maps, x.numpy().reshape(2, 16, 16))
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_v11_grouped_projection_is_block_diagonal():
    """Group g of the output only sees group g of the input, as a grouped 1x1 conv."""
    layer = TokenLearnerV11(2, num_groups=4)
    x = tf.random.normal([1, 3, 3, 8])
    layer(x)
    y = layer._grouped(tf.reshape(x, [1, 9, 8]), layer.value_kernel).numpy()
    x2 = x.numpy().reshape(1, 9, 8).copy()
    x2[..., :2] += 1.0  # change only group 0
    y2 = layer._grouped(tf.constant(x2), layer.value_kernel).numpy()
    assert not np.allclose(y[..., :2], y2[..., :2])
    np.testing.assert_allclose(y[..., 2:], y2[..., 2:], rtol=1e-6)
    assert layer.value_kernel.shape == (4, 2, 2)


def test_v1_maps_are_sigmoids():
    maps = TokenLearner(8).attention_maps(tf.random.normal([2, 8, 8, 32]) * 10).numpy()
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert not np.allclose(maps.sum(axis=-1), 1.0)  # unlike v1.1, not normalized over space


def test_token_fuser_restores_the_grid_and_starts_as_zero():
    tokens, grid = tf.random.normal([2, 4, 32]), tf.random.normal([2, 8, 8, 32])
    fuser = TokenFuser(bottleneck_dim=16)
    out = fuser([tokens, grid])
    assert out.shape == grid.shape
    assert fuser([tokens, tf.reshape(grid, [2, 64, 32])]).shape == (2, 64, 32)
    # The token mixer is zero-initialized (scenic): a new fuser adds nothing on top of the encoder's residual.
    np.testing.assert_allclose(out.numpy(), 0.0, atol=1e-6)
    fuser.token_mixer.kernel.assign(tf.random.normal(fuser.token_mixer.kernel.shape))
    assert np.abs(fuser([tokens, grid]).numpy()).max() > 1e-3


@pytest.mark.parametrize("layer", [
    TokenLearnerV11(num_tokens=8, bottleneck_dim=32, num_groups=4, dropout=0.1, layer_norm_eps=1e-5, name="v11"),
    TokenLearnerV11(num_tokens=4, bottleneck_dim=16, name="v11_mlp"),
    TokenFuser(bottleneck_dim=32, dropout=0.2, layer_norm_eps=1e-5, name="fuser"),
    StochasticDepth(rate=0.3, name="sd"),
], ids=lambda layer: layer.name)
def test_get_config_round_trips(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    if isinstance(layer, TokenLearnerV11):
        x = tf.random.normal([2, 4, 4, 32])
        layer(x), clone(x)
        clone.set_weights(layer.get_weights())
        np.testing.assert_allclose(clone(x).numpy(), layer(x).numpy(), rtol=1e-6)


def test_stochastic_depth_drops_whole_examples_only_in_training():
    layer = StochasticDepth(0.5)
    branch, shortcut = tf.ones([1000, 3, 2]), tf.zeros([1000, 3, 2])
    np.testing.assert_array_equal(layer([branch, shortcut], training=False).numpy(), 1.0)
    out = layer([branch, shortcut], training=True).numpy()
    per_example = out.reshape(1000, -1)
    assert set(np.unique(per_example)) <= {0.0, 2.0}  # kept branches scaled by 1/keep
    assert (per_example == per_example[:, :1]).all()  # one draw per example
    assert 0.4 < (per_example[:, 0] > 0).mean() < 0.6


@pytest.mark.parametrize("row", sorted(BENCH_ROWS) + ["better", "v11_fuser_twice"])
def test_every_bench_model_builds_and_predicts(row):
    if row == "better":
        cfg = PRESETS["better"]
    elif row == "v11_fuser_twice":  # TokenLearner used more than once, thanks to TokenFuser
        cfg = dataclasses.replace(PRESETS["keras_io"], token_learner="v1.1", num_tokens=8, token_fuser=True,
                                  token_learner_layer=1)
    else:
        cfg = dataclasses.replace(PRESETS["keras_io"], **BENCH_ROWS[row])
    model = vit.build_model(cfg)
    out = model(tf.random.normal([2, cfg.image_size, cfg.image_size, 3]), training=True)
    assert out.shape == (2, 10)
    np.testing.assert_allclose(tf.reduce_sum(out, -1).numpy(), 1.0, rtol=1e-5)
    learners = [layer for layer in model.layers if "token_learner" in layer.name]
    if cfg.token_learner == "none":
        assert not learners
    else:
        assert all(layer.output_shape == (None, cfg.num_tokens, cfg.projection_dim) for layer in learners)
        assert len(learners) == (cfg.num_layers - 1 - cfg.token_learner_layer if cfg.token_fuser else 1)


def test_fuser_model_keeps_the_grid_and_round_trips(tmp_path):
    cfg = dataclasses.replace(PRESETS["tiny"], token_learner="v1.1", token_fuser=True, num_tokens=3,
                              token_learner_bottleneck=8, stochastic_depth=0.2)
    model = vit.build_model(cfg)
    assert model.get_layer("token_fuser_1").output_shape == (None, cfg.num_patches, cfg.projection_dim)
    x = tf.random.normal([2, 48, 48, 3])
    model.save(tmp_path / "m", save_format="tf")
    loaded = keras.models.load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(), rtol=1e-5)


def test_keras_io_preset_is_unchanged():
    cfg = PRESETS["keras_io"]
    assert (cfg.token_learner, cfg.num_tokens, cfg.token_learner_layer, cfg.token_fuser) == ("v1", 4, 2, False)
    assert (cfg.learning_rate, cfg.weight_decay, cfg.lr_schedule, cfg.warmup_fraction) == (1e-3, 1e-4, "constant", 0)
    assert (cfg.label_smoothing, cfg.clip_norm, cfg.crop_padding, cfg.stochastic_depth) == (0, 0, 0, 0)
    assert recipe.learning_rate(cfg, steps_per_epoch=176) == 1e-3
    assert isinstance(recipe.loss(cfg), keras.losses.SparseCategoricalCrossentropy)


def test_better_preset_has_the_keras_io_model_size():
    better, base = PRESETS["better"], PRESETS["keras_io"]
    assert vit.build_model(better).count_params() == vit.build_model(base).count_params()
    assert better.epochs == base.epochs == 20


@pytest.mark.parametrize("bad, match", [
    ({"token_learner": "v2"}, "token_learner"),
    ({"token_learner_groups": 4}, "token_learner_groups"),  # groups need v1.1
    ({"token_learner": "v1.1", "token_learner_groups": 3}, "token_learner_groups"),  # 128 % 3
    ({"token_learner": "none", "token_fuser": True}, "token_fuser"),
    ({"lr_schedule": "step"}, "lr_schedule"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"crop_padding": -1}, "crop_padding"),
])
def test_trainer_config_rejects_bad_variant_settings(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainerConfig(**bad)


def test_warmup_cosine_schedule():
    cfg = dataclasses.replace(PRESETS["better"], epochs=10, learning_rate=1e-3, warmup_fraction=0.1)
    lr = recipe.learning_rate(cfg, steps_per_epoch=10)  # 100 steps, 10 of warmup
    values = [float(lr(s)) for s in range(100)]
    assert values[0] == pytest.approx(1e-4) and values[9] == pytest.approx(1e-3)
    assert values[10] == pytest.approx(1e-3) and values[55] == pytest.approx(5e-4, rel=0.02)
    assert values[99] < 1e-6 and all(a >= b for a, b in zip(values[10:], values[11:]))
    assert recipe.WarmupCosine.from_config(lr.get_config()).get_config() == lr.get_config()


def test_label_smoothing_loss_matches_dense_smoothed_crossentropy():
    probs = tf.nn.softmax(tf.random.normal([5, 10]))
    labels = tf.constant([0, 3, 9, 2, 2])
    ours = recipe.SparseLabelSmoothingCrossentropy(0.1)(labels, probs)
    dense = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(tf.one_hot(labels, 10), probs)
    assert float(ours) == pytest.approx(float(dense), rel=1e-5)


def test_pad_crop_training_view_keeps_shape_and_eval_view_is_whole_image():
    cfg = PRESETS["better"]
    image = tf.random.normal([32, 32, 3])
    assert inputs.train_view(image, cfg).shape == (48, 48, 3)
    view = inputs.eval_view(image[None], cfg)
    np.testing.assert_allclose(view.numpy(), tf.image.resize(image[None], [48, 48]).numpy(), rtol=1e-6)


def test_flops_of_the_keras_io_models_match_the_published_column(tmp_path):
    """keras.io GFLOPs: 0.0184 (ViT), 0.0147 (TokenLearner, 4 tokens); within 10% in that convention."""
    vit_stats = flops.model_stats(vit.build_model(dataclasses.replace(PRESETS["keras_io"], token_learner="none")))
    tl_stats = flops.model_stats(vit.build_model(PRESETS["keras_io"]))
    assert vit_stats.keras_io_gflops == pytest.approx(0.0184, rel=0.1)
    assert tl_stats.keras_io_gflops == pytest.approx(0.0147, rel=0.1)
    # The direct count includes attention (all Einsum): about ten times more.
    assert tl_stats.macs_by_op["Einsum"] > tl_stats.macs_by_op["MatMul"]
    assert 8 < tl_stats.gflops / tl_stats.keras_io_gflops < 12
    path = flops.write(tl_stats, str(tmp_path))
    assert json.load(open(path))["params"] == tl_stats.params == 1_341_754 + 64 * 128


def test_direct_macs_of_a_dense_and_an_einsum():
    """A hand-checkable model: Dense 6->5 on 4 positions (120 MACs) + x @ x^T per example (4*4*5 = 80 MACs)."""
    x = keras.Input((4, 6))
    h = keras.layers.Dense(5, use_bias=False)(x)
    y = keras.layers.Lambda(lambda t: tf.einsum("bnc,bmc->bnm", t, t))(h)
    stats = flops.model_stats(keras.Model(x, y))
    assert stats.macs_by_op == {"MatMul": 120, "Einsum": 80}
    assert stats.profiler_float_ops == 2 * 120  # the profiler skips the Einsum


def test_flops_report_skips_a_model_with_dynamic_shapes(tmp_path, caplog):
    """A data-dependent shape cannot be counted: model_stats names the op; the Trainer's report logs and goes on."""
    x = keras.Input((4,))
    kept = keras.layers.Lambda(lambda t: tf.reshape(tf.boolean_mask(t, t > 0), [1, -1]))(x)  # (1, ?) at batch 1
    y = keras.layers.Lambda(lambda t: tf.matmul(t, tf.transpose(t)))(kept)
    model = keras.Model(x, y)
    with pytest.raises(ValueError, match="MatMul.*not static"):
        flops.model_stats(model)
    assert flops.report(model, str(tmp_path)) is None
    assert flops.write(None, str(tmp_path)) is None
    assert not (tmp_path / flops.STATS_FILE).exists()
    assert "FLOPs not computed" in caplog.text


def test_exported_model_loads_as_the_evaluator_loads_it(exported_model, tmp_path):
    """TFMA's worker builds the model with tf.keras.models.load_model in a process that never imported trainer/:
    the export must not carry the optimizer (its custom WarmupCosine schedule) or the custom loss."""
    import subprocess
    import sys

    import tensorflow_transform as tft

    from tests.helpers import CLASSES
    from trainer import export, run

    cfg = PRESETS["better"]
    model = run.compile_model(cfg, steps_per_epoch=10)
    assert isinstance(model.optimizer._learning_rate, recipe.WarmupCosine)  # `.learning_rate` reads its current value
    export.export_serving_model(model, tft.TFTransformOutput(exported_model.transform_dir), cfg, CLASSES,
                                str(tmp_path / "m"))
    load = ("from tensorflow_model_analysis import constants; from tensorflow_model_analysis.utils import model_util; "
            f"model = model_util.model_construct_fn(eval_saved_model_path={str(tmp_path / 'm')!r}, tags=['serve'], "
            "model_type=constants.TF_KERAS)(); print(type(model).__name__, len(model.metrics))")
    done = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["Functional", "0"]  # a Keras model, nothing compiled for TFMA to run
