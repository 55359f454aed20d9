"""The Trainer's use of the machine: MirroredStrategy only with several GPUs; the precision the hardware computes
natively (`auto`), and float32 serving whatever the training precision.

GPU lists, compute capabilities and CPU flags are injected (this machine has no GPU and no bfloat16 hardware); the
model is really built, trained and exported under each choice."""
from __future__ import annotations

import dataclasses

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


ZEN4 = frozenset({"avx2", "fma", "avx512f", "avx512_bf16"})
SAPPHIRE_RAPIDS = frozenset({"avx2", "fma", "avx512f", "amx_bf16", "amx_tile"})
ZEN3 = frozenset({"avx2", "fma"})
VOLTA, PASCAL = (7, 0), (6, 1)


@pytest.mark.parametrize("setting, gpus, flags, capability, expected", [
    ("auto", [], ZEN4, None, "bfloat16 (auto: avx512_bf16)"),
    ("auto", [], SAPPHIRE_RAPIDS, None, "bfloat16 (auto: amx_bf16)"),
    ("auto", [], ZEN3, None, "float32 (auto: no avx512_bf16/amx_bf16 on this CPU)"),
    ("auto", FAKE_GPUS, ZEN4, VOLTA, "float16 (auto: GPU compute capability 7.0 >= 7.0)"),
    ("auto", FAKE_GPUS[:1], ZEN3, PASCAL, "float32 (auto: GPU compute capability 6.1, not >= 7.0)"),
    ("auto", FAKE_GPUS[:1], ZEN3, None, "float32 (auto: GPU compute capability unknown, not >= 7.0)"),
    ("float32", [], ZEN4, None, "float32 (precision=float32)"),
    ("bfloat16", [], ZEN3, None, "bfloat16 (precision=bfloat16)"),
    ("float16", FAKE_GPUS, ZEN3, PASCAL, "float16 (precision=float16)"),
])
def test_auto_picks_the_16_bit_format_the_hardware_computes_natively(setting, gpus, flags, capability, expected):
    assert str(distribute.choose_precision(setting, gpus, flags, capability=lambda gpu: capability)) == expected


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n")
    assert distribute.cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "avx512_bf16"}
    assert distribute.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_the_trainer_logs_its_choice_and_warns_when_it_is_emulated(caplog):
    caplog.set_level("INFO", logger=distribute.__name__)
    choice = distribute.machine_precision(PRESETS["keras_io"], gpus=[], flags=ZEN4)
    assert choice.policy == "mixed_bfloat16"
    assert "precision: bfloat16 (auto: avx512_bf16)" in caplog.messages
    caplog.clear()
    cfg = dataclasses.replace(PRESETS["keras_io"], precision="bfloat16")
    distribute.machine_precision(cfg, gpus=[], flags=ZEN3)
    assert caplog.messages == ["precision: bfloat16 (precision=bfloat16)",
                               "precision: bfloat16 is emulated on this CPU and slower than float32"]


def test_float16_keeps_float32_probabilities_scales_the_loss_and_restores_the_policy():
    cfg = dataclasses.replace(TINY, precision="float16")
    with distribute.training_scope(cfg, gpus=FAKE_GPUS[:1]):
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        model = compile_model(cfg)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert any(layer.compute_dtype == "float16" for layer in model.layers)
    assert isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer)
    images = np.random.default_rng(0).normal(size=(4, TINY.image_size, TINY.image_size, 3)).astype("float32")
    probabilities = model(images, training=False)
    assert probabilities.dtype == tf.float32 and probabilities.shape == (4, TINY.num_classes)
    np.testing.assert_allclose(probabilities.numpy().sum(axis=1), 1.0, rtol=1e-3)
    model.fit(images, np.arange(4), epochs=1, verbose=0)  # one real (emulated) float16 step on this CPU


def test_bfloat16_training_exports_float32_signatures_equal_to_the_float32_rebuild(exported_model, tmp_path):
    """Whatever the training precision, serving computes in float32 with the trained weights."""
    import tensorflow_transform as tft

    from trainer import export, inputs

    cfg = dataclasses.replace(TINY, precision="bfloat16")
    tft_output = tft.TFTransformOutput(exported_model.transform_dir)
    with distribute.training_scope(cfg, gpus=[]):
        model = compile_model(cfg)
    assert {layer.compute_dtype for layer in model.layers if layer.compute_dtype} == {"bfloat16", "float32"}
    assert not isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer)  # bfloat16 has float32's range
    model.fit(inputs.make_dataset([exported_model.data_pattern], tft_output, cfg, training=True, num_examples=64),
              epochs=1, steps_per_epoch=1, verbose=0)
    export.export_serving_model(model, tft_output, cfg, exported_model.class_names, str(tmp_path / "1"))

    rebuilt = export.float32_model(model, cfg)
    assert rebuilt is not model and all(layer.compute_dtype in (None, "float32") for layer in rebuilt.layers)
    assert rebuilt.loss is not None  # compiled as the Trainer compiles: the Evaluator sees the same metrics
    signature = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_tf_example"]
    assert {name: spec.dtype for name, spec in signature.structured_outputs.items()} == {
        "probabilities": tf.float32, "class_ids": tf.int64, "class_names": tf.string}
    records = [r.numpy() for r in tf.data.TFRecordDataset(
        tf.io.gfile.glob(exported_model.data_pattern), compression_type="GZIP").take(16)]
    served = signature(examples=tf.constant(records))["probabilities"].numpy()
    images, _ = next(iter(inputs.make_dataset([exported_model.data_pattern], tft_output, cfg, training=False,
                                              num_examples=64).unbatch().batch(16)))
    np.testing.assert_allclose(served, rebuilt(images, training=False).numpy(), atol=1e-5)
    # The rebuild is what makes the difference: the bfloat16 model itself rounds to about 3 significant digits.
    assert np.abs(served - model(images, training=False).numpy()).max() > 1e-5


def test_one_cpu_trains_with_the_default_strategy():
    with distribute.training_scope(TINY, gpus=[]) as strategy:
        model = compile_model(TINY)
    assert strategy.num_replicas_in_sync == 1
    assert all(layer.compute_dtype == "float32" for layer in model.layers if layer.compute_dtype)
    model.fit(np.zeros((2, TINY.image_size, TINY.image_size, 3), "float32"), np.array([0, 1]), epochs=1, verbose=0)


FLOAT32 = distribute.Precision("float32", "auto: no avx512_bf16/amx_bf16 on this CPU")
BFLOAT16 = distribute.Precision("bfloat16", "auto: avx512_bf16")


@pytest.mark.parametrize("setting, precision, gpus, expected", [
    ("auto", FLOAT32, [], "on (auto: float32 on a CPU)"),
    ("auto", BFLOAT16, [], "off (auto: not measured with bfloat16 on a CPU)"),
    ("auto", FLOAT32, FAKE_GPUS[:1], "off (auto: not measured on GPUs)"),
    ("on", BFLOAT16, FAKE_GPUS, "on (jit_compile=on)"),
    ("off", FLOAT32, [], "off (jit_compile=off)"),
])
def test_auto_compiles_with_xla_only_where_it_was_measured_faster(setting, precision, gpus, expected):
    assert str(distribute.choose_jit_compile(setting, precision, gpus)) == expected


def test_the_trainer_logs_its_xla_choice(caplog):
    caplog.set_level("INFO", logger=distribute.__name__)
    assert distribute.machine_jit_compile(PRESETS["compact"], FLOAT32, gpus=[]).on
    assert caplog.messages == ["jit_compile: on (auto: float32 on a CPU)"]


def test_every_preset_but_tiny_leaves_xla_to_auto():
    assert {name: cfg.jit_compile for name, cfg in PRESETS.items()} == {
        **{name: "auto" for name in PRESETS}, "tiny": "off"}


def test_an_xla_compiled_step_trains_like_the_plain_one():
    """The same first step with and without XLA: the same loss and weights up to float32 rounding (XLA fuses and
    reorders the element-wise arithmetic, it does not change it)."""
    cfg = dataclasses.replace(TINY, dropout=0.0)
    x = np.random.default_rng(0).normal(size=(8, cfg.image_size, cfg.image_size, 3)).astype("float32")
    y = np.arange(8) % cfg.num_classes
    results = {}
    for jit in (False, True):
        with distribute.training_scope(cfg, gpus=[]):
            model = compile_model(cfg, jit_compile=jit)
        assert model._jit_compile is jit  # noqa: SLF001 - what Keras compiles train_step with
        loss = model.train_on_batch(x, y, return_dict=True)["loss"]
        results[jit] = (loss, model.get_weights())
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-4)
    for with_xla, without in zip(results[True][1], results[False][1]):
        np.testing.assert_allclose(with_xla, without, atol=1e-4)
