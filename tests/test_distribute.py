"""The Trainer's use of the machine: MirroredStrategy only with several GPUs, mixed precision only on GPU.

The GPU list is injected (this machine has none); the model is really built and run under each choice."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from trainer import distribute
from trainer.config import PRESETS
from trainer.recipe import compile_model

TINY = PRESETS["tiny"]
FAKE_GPUS = [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU"),
             tf.config.PhysicalDevice("/physical_device:GPU:1", "GPU")]


@pytest.mark.parametrize("gpus, expected", [
    ([], "_DefaultDistributionStrategy"),
    (FAKE_GPUS[:1], "_DefaultDistributionStrategy"),
    (FAKE_GPUS, "MirroredStrategy"),
])
def test_mirrored_only_with_more_than_one_gpu(gpus, expected):
    assert type(distribute.choose_strategy(gpus)).__name__ == expected


def test_visible_gpus_are_read_from_tensorflow(monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: FAKE_GPUS if kind == "GPU" else [])
    with distribute.training_scope(TINY) as strategy:
        assert isinstance(strategy, tf.distribute.MirroredStrategy)
        assert tf.distribute.get_strategy() is strategy


@pytest.mark.parametrize("mixed, gpus, policy", [
    (False, [], "float32"), (True, [], "float32"), (False, FAKE_GPUS, "float32"), (True, FAKE_GPUS, "mixed_float16"),
])
def test_mixed_precision_only_on_gpu_and_when_enabled(mixed, gpus, policy):
    cfg = TINY.__class__(**{**TINY.to_dict(), "mixed_precision": mixed})
    assert distribute.precision_policy(cfg, gpus) == policy


def test_model_built_under_mixed_policy_keeps_float32_probabilities_and_policy_is_restored():
    cfg = TINY.__class__(**{**TINY.to_dict(), "mixed_precision": True})
    with distribute.training_scope(cfg, gpus=FAKE_GPUS[:1]):
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        model = compile_model(cfg)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert any(layer.compute_dtype == "float16" for layer in model.layers)
    images = np.random.default_rng(0).normal(size=(4, TINY.image_size, TINY.image_size, 3)).astype("float32")
    probabilities = model(images, training=False)
    assert probabilities.dtype == tf.float32 and probabilities.shape == (4, TINY.num_classes)
    np.testing.assert_allclose(probabilities.numpy().sum(axis=1), 1.0, rtol=1e-3)
    # One real training step on this CPU (loss scaling is part of the mixed-precision optimizer).
    model.fit(images, np.arange(4), epochs=1, verbose=0)


def test_one_cpu_trains_with_the_default_strategy():
    with distribute.training_scope(TINY, gpus=[]) as strategy:
        model = compile_model(TINY)
    assert strategy.num_replicas_in_sync == 1
    assert all(layer.compute_dtype == "float32" for layer in model.layers if layer.compute_dtype)
    model.fit(np.zeros((2, TINY.image_size, TINY.image_size, 3), "float32"), np.array([0, 1]), epochs=1, verbose=0)
