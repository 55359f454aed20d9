"""Every preset's recipe goes through the whole pipeline, Evaluator and Pusher included.

The Evaluator (TFMA) scores the exported model in its own Beam stages, so whatever the exported model carries must
load there: a preset whose export could not is caught here. Each preset runs as defined (model, optimizer,
schedule, loss, regularisers, augmentation, XLA), on 100 real training and 100 real test images for one epoch;
only `keras_io` and `better` are set to train without XLA, whose compilation would take longer than their one
epoch (`compact` keeps `auto`, which on a CPU also trains without XLA: EXPECTED_XLA). `tiny` is covered by
test_pipeline_e2e.py's run. The runs share one output folder, so data preparation and every component before the
Trainer run once (later runs take them from the cache); each later Evaluator also loads the previous preset's
pushed model as its baseline. Beam runs in the CLI's process (`beam_workers=1`): the Evaluator does so with any
setting (pipeline/config/beam.py evaluator_args), and only the data components before it would start worker
processes (the default multi-process DirectRunner is covered by the shared tiny run, tests/conftest.py).
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import cli
from trainer.config import PRESETS

pytestmark = pytest.mark.slow

COVERED_ELSEWHERE = {"tiny", "small_images"}  # test_pipeline_e2e.py; test_own_images.py (on digits)


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    return tmp_path_factory.mktemp("presets")


NO_XLA = {"keras_io", "better"}  # the same XLA path as compact's; only its compile time would differ


def _native_bfloat16_cpu() -> bool:
    """Read here from /proc/cpuinfo, not through trainer.distribute: whether the CPU has a bfloat16 dot product."""
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


# The Trainer row's XLA note, written out (docs/benchmarks.md 7): compact's `auto` on a CPU is off either way, for
# bfloat16 where the CPU has it, else for its convolutional tokenizer.
EXPECTED_XLA = {"keras_io": "off (jit_compile=off)", "better": "off (jit_compile=off)",
                "compact": "off (auto: bfloat16 on a CPU, where XLA was slower or failed to compile)"
                if _native_bfloat16_cpu() else "off (auto: a convolutional tokenizer on a CPU, where XLA was slower)"}


@pytest.mark.parametrize("preset", [p for p in PRESETS if p not in COVERED_ELSEWHERE])
def test_preset_trains_evaluates_and_pushes(preset, output, shared_cifar, capsys):
    xla = ["--set", "jit_compile=off"] if preset in NO_XLA else []
    rc = cli.main(["run", "--data", str(shared_cifar), "--preset", preset, "--limit", "100", "--epochs", "1", *xla,
                   "--set", "beam_workers=1",
                   # A one-epoch model is near chance: the gate is TFMA loading and scoring it, not its accuracy.
                   "--set", "accuracy_floor=0", "--set", "regression_tolerance=1", "--set", f"model_name={preset}",
                   "--output", str(output)])
    table = capsys.readouterr().out
    assert rc == 0, table
    assert any(line.startswith("Evaluator") for line in table.splitlines()), table
    trainer_row = next(line for line in table.splitlines() if line.startswith("Trainer"))
    assert f"XLA {EXPECTED_XLA[preset]}" in trainer_row, trainer_row
    versions = list((output / "serving" / preset).iterdir())
    assert len(versions) == 1 and (versions[0] / "saved_model.pb").is_file(), table

    # The pushed model serves: the JPEG bytes of test examples and the examples themselves give the same answer.
    model = tf.saved_model.load(str(versions[0]))
    dataset = next((output / "data").iterdir())
    records = [r.numpy() for r in tf.data.TFRecordDataset(
        [str(p) for p in sorted((dataset / "test").glob("*.gz"))], compression_type="GZIP").take(8)]
    by_example = model.signatures["serving_tf_example"](examples=tf.constant(records))["probabilities"].numpy()
    images = [tf.train.Example.FromString(r).features.feature["image"].bytes_list.value[0] for r in records]
    by_bytes = model.signatures["serving_default"](images=tf.constant(images))["probabilities"].numpy()
    assert by_bytes.shape == (8, PRESETS[preset].num_classes)
    np.testing.assert_allclose(by_bytes, by_example, atol=1e-5)
