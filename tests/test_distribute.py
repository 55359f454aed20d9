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
    ("auto", BFLOAT16, [], "off (auto: bfloat16 on a CPU, where XLA was slower or failed to compile)"),
    ("auto", distribute.Precision("float16", "precision=float16"), [], "off (auto: float16 on a CPU, not measured)"),
    ("auto", FLOAT32, FAKE_GPUS[:1], "off (auto: not measured on GPUs)"),
    ("on", BFLOAT16, FAKE_GPUS, "on (jit_compile=on)"),
    ("off", FLOAT32, [], "off (jit_compile=off)"),
])
def test_auto_compiles_with_xla_only_where_it_was_measured_faster(setting, precision, gpus, expected):
    assert str(distribute.choose_jit_compile(setting, precision, gpus)) == expected


@pytest.mark.parametrize("preset, expected", [
    ("keras_io", "jit_compile: on (auto: float32 on a CPU)"),  # patches: 1.12x with XLA on a Zen 3
    ("better", "jit_compile: on (auto: float32 on a CPU)"),
    ("compact", "jit_compile: off (auto: a convolutional tokenizer on a CPU, where XLA was slower)"),  # 0.77x
])
def test_the_trainer_logs_its_xla_choice_for_each_preset_in_float32_on_a_cpu(preset, expected, caplog):
    caplog.set_level("INFO", logger=distribute.__name__)
    distribute.machine_jit_compile(PRESETS[preset], FLOAT32, gpus=[])
    assert caplog.messages == [expected]


def test_the_conv_tokenizer_still_compiles_with_xla_when_asked():
    assert distribute.choose_jit_compile("on", FLOAT32, [], conv_tokenizer=True).on


def test_every_preset_but_tiny_leaves_xla_to_auto():
    assert {name: cfg.jit_compile for name, cfg in PRESETS.items()} == {
        **{name: "auto" for name in PRESETS}, "tiny": "off"}


def test_a_step_xla_cannot_compile_in_bfloat16_says_what_to_set():
    """The error TensorFlow 2.16.2 raised at `compact`'s first bfloat16 + XLA step (bench/throughput.py, Zen 4)."""
    error = tf.errors.UnimplementedError(None, None, (
        "Graph execution error:\n\nDetected at node StatefulPartitionedCall defined at (most recent call last):\n"
        "unsupported operand type BF16 in op dot\n\t [[{{node StatefulPartitionedCall}}]]"))
    on, off = distribute.JitCompile(True, "jit_compile=on"), distribute.JitCompile(False, "auto")
    assert str(distribute.xla_unsupported(BFLOAT16, on, error)) == (
        "jit_compile: XLA cannot compile this model's training step in bfloat16 (unsupported operand type BF16 in op "
        "dot); set jit_compile=off (what auto picks with bfloat16) or precision=float32")
    # Not XLA's doing: the error is left as TensorFlow raised it.
    assert distribute.xla_unsupported(BFLOAT16, off, error) is None
    assert distribute.xla_unsupported(FLOAT32, on, error) is None
    assert distribute.xla_unsupported(BFLOAT16, on, tf.errors.InvalidArgumentError(None, None, "x")) is None


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


# ------------------------------------------------------------------------------------------ multi-worker training

def _tf_config(cluster_spec: dict, task_type: str, index: int) -> str:
    from trainer.cluster import tf_config  # the launcher's own builder: one home for the TF_CONFIG layout

    return tf_config(cluster_spec, task_type, index)


def test_tf_config_is_the_layout_tensorflow_documents():
    """TensorFlow's documented TF_CONFIG (tf.distribute.cluster_resolver.TFConfigClusterResolver), as a literal."""
    import json

    assert json.loads(_tf_config({"worker": ["a:1", "b:2"]}, "worker", 1)) == {
        "cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}


def test_tf_config_of_several_workers_numbers_them_chief_first():
    from trainer import cluster

    spec = {"chief": ["host0:2222"], "worker": ["host1:2222", "host2:2222"]}
    chief = cluster.parse(_tf_config(spec, "chief", 0))
    second = cluster.parse(_tf_config(spec, "worker", 1))
    assert (chief.num_workers, chief.is_chief, chief.describe()) == (3, True, "worker 0 of 3 (chief)")
    assert (second.is_chief, second.describe(), second.address) == (False, "worker 2 of 3", "host2:2222")
    assert second.peers() == ["worker 0 of 3 (chief, host0:2222)", "worker 1 of 3 (host1:2222)"]
    # Without a chief task, worker 0 is the chief (TensorFlow's rule).
    first = cluster.parse(_tf_config({"worker": ["a:1", "b:2"]}, "worker", 0))
    assert first.is_chief and first.peers() == ["worker 1 of 2 (b:2)"]


@pytest.mark.parametrize("text", [None, "", _tf_config({"worker": ["a:1"]}, "worker", 0)])
def test_no_tf_config_or_a_single_worker_trains_as_one_process(text):
    from trainer import cluster

    assert cluster.from_env({} if text is None else {"TF_CONFIG": text}) is None


@pytest.mark.parametrize("text, expected", [
    ("{not json", "TF_CONFIG: expected JSON"),
    (_tf_config({"worker": ["a:1", "b:2"], "ps": ["c:3"]}, "worker", 0), "'ps' tasks: parameter servers"),
    (_tf_config({"worker": ["a:1", "b:2"], "evaluator": ["c:3"]}, "worker", 0), "'evaluator' tasks"),
    (_tf_config({"worker": ["a:1", "b:2"]}, "chief", 0), "task.type: expected one of ['worker'], got 'chief'"),
    (_tf_config({"worker": ["a:1", "b:2"]}, "worker", 2), "task.index: expected 0..1"),
    (_tf_config({"worker": ["a", "b:2"]}, "worker", 0), "cluster.worker: expected a list of 'host:port'"),
])
def test_a_malformed_tf_config_is_one_line_naming_the_field(text, expected):
    from trainer import cluster

    with pytest.raises(ValueError) as error:
        cluster.parse(text)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_a_dead_peer_is_named_in_one_line():
    """The message TensorFlow 2.16 raised in the chief when worker 1 was SIGKILLed (tests/test_multi_worker.py)."""
    from trainer import cluster

    workers = cluster.parse(_tf_config({"worker": ["localhost:5001", "localhost:5002"]}, "worker", 0))
    error = tf.errors.UnavailableError(None, None, (
        "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker/replica:0/task:0/"
        "device:CPU:0}} Collective ops is aborted by: failed to connect to all addresses\n"
        "Additional GRPC error information from remote target /job:worker/replica:0/task:1 while calling "
        "/tensorflow.WorkerService/RecvBuf:\n:{\"created\":\"@1796476254.659357343\"}"))
    assert str(distribute.peer_failure(workers, error)) == (
        "worker 0 of 2 (chief): worker 1 of 2 (localhost:5002) stopped answering: UnavailableError: Collective ops "
        "is aborted by: failed to connect to all addresses (restart every worker to resume from the last finished "
        "epoch)")
    # A message that names no task: every peer is named.
    worker = cluster.parse(_tf_config({"worker": ["localhost:5001", "localhost:5002"]}, "worker", 1))
    message = str(distribute.peer_failure(worker, tf.errors.DeadlineExceededError(None, None, "timed out")))
    assert message.startswith("worker 1 of 2: worker 0 of 2 (chief, localhost:5001) stopped answering: "
                              "DeadlineExceededError: timed out")


def test_a_long_peer_failure_is_kept_whole():
    """Cut at 200 characters, the line ended mid-word (issue 40)."""
    from trainer import cluster

    workers = cluster.parse(_tf_config({"worker": ["localhost:5001", "localhost:5002"]}, "worker", 0))
    cause = "Collective ops is aborted by: " + "the peer went away " * 12 + "and did not come back"
    message = str(distribute.peer_failure(workers, tf.errors.UnavailableError(None, None, cause + "\nmore")))
    assert message == (f"worker 0 of 2 (chief): worker 1 of 2 (localhost:5002) stopped answering: UnavailableError: "
                       f"{cause} (restart every worker to resume from the last finished epoch)")


def test_the_worker_console_drops_tensorflow_cpp_lines_unless_verbose():
    """trainer/worker.py's copy of the training process's stderr: TensorFlow's and absl's C++ lines (as TensorFlow
    2.16 printed them here for a lone chief), with their continuation lines, are dropped; the Trainer's own lines
    and its one failure line are kept; -v keeps everything."""
    import io

    from trainer import worker

    lines = [b"2026-12-08 02:51:14.942650: I external/local_tsl/tsl/distributed_runtime/coordination/"
             b"coordination_service.cc:539] Waiting for 1/2 tasks to connect.\n",
             b"2026-12-08 02:51:14.942773: I external/local_tsl/tsl/distributed_runtime/coordination/"
             b"coordination_service.cc:542] Example stragglers:\n",
             b"/job:worker/replica:0/task:1\n",
             b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
             b"I0000 00:00:1796698274.943368   12528 coordination_service_agent.cc:303] Coordination agent has "
             b"successfully connected.\n",
             b"03:01:02 I trainer.progress: epoch 1/4 done\n",
             b"E0000 00:00:1796698275.1   12528 collective.cc:1] aborted\n",
             b"trainer.worker: worker 0 of 2 (chief): worker 1 of 2 (localhost:5002) stopped answering: ...\n"]
    quiet, verbose = io.StringIO(), io.StringIO()
    worker._forward(io.BytesIO(b"".join(lines)), quiet, verbose=False)
    worker._forward(io.BytesIO(b"".join(lines)), verbose, verbose=True)
    assert quiet.getvalue().splitlines() == [
        "03:01:02 I trainer.progress: epoch 1/4 done",
        "trainer.worker: worker 0 of 2 (chief): worker 1 of 2 (localhost:5002) stopped answering: ..."]
    assert verbose.getvalue() == b"".join(lines).decode()


def test_auto_leaves_xla_off_under_multi_worker_training():
    assert str(distribute.choose_jit_compile("auto", FLOAT32, [], multi_worker=True)) == (
        "off (auto: not measured with MultiWorkerMirroredStrategy)")
    assert distribute.choose_jit_compile("on", FLOAT32, [], multi_worker=True).on


def test_the_multi_worker_log_line_states_the_global_batch():
    from trainer import cluster

    workers = cluster.parse(_tf_config({"worker": ["a:1", "b:2"]}, "worker", 0))

    class TwoReplicas:
        num_replicas_in_sync = 2

    assert distribute.describe_multi_worker(workers, TwoReplicas(), 64) == (
        "multi-worker: worker 0 of 2 (chief), MultiWorkerMirroredStrategy, global batch 128 = 64 x 2 replicas")


def test_by_example_sharding_is_set_explicitly():
    ds = distribute.shard_by_example(tf.data.Dataset.range(4))
    assert ds.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA
