"""Multi-worker training (trainer/cluster.py, trainer/distribute.py, trainer/run.py, trainer/worker.py): two real
worker processes on this machine, each with its TF_CONFIG on a loopback port, each running the real
`trainer.run.run_fn` (through `python -m trainer.worker`) with the same FnArgs built from the shared tiny run's
artifacts (its ImportExampleGen examples and Transform graph). TensorFlow's collective ops really run over gRPC.

The reference is one process (no TF_CONFIG) with the workers' global batch: 2 x 64 per replica = 128, same seed.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO, SHARED_CIFAR, TinyRun
from trainer.contract import CLASS_NAMES_KEY, EVAL, MODEL_NAME_KEY, TRAIN, TRAINER_CONFIG_KEY, split_dir

pytestmark = pytest.mark.slow

PER_REPLICA_BATCH = 64  # the tiny preset's batch_size: the batch of each replica
WORKER_TIMEOUT = 240  # seconds; a hang fails the test instead of the CI job
PEER_FAILURE_SECONDS = 30  # measured 0.1-0.3 s after a SIGKILL (a frozen peer: ~9 s, the heartbeat timeout)


def _inputs(tiny_run: TinyRun) -> dict:
    """The tiny run's Trainer inputs: examples, Transform graph, trainer config, class names."""
    from pipeline import config as config_lib
    from inspection import summary

    config = config_lib.load(str(tiny_run.output))
    produced = {t: a[0].uri for step in summary.collect(config, tiny_run.run_id).steps for t, a in step.outputs.items()}
    return {"examples": produced["Examples"], "transform": produced["TransformGraph"],
            "trainer": config.trainer.to_dict(), "class_names": list(config.class_names)}


def _fn_args(inputs: dict, out: Path, **trainer) -> Path:
    """The FnArgs JSON `python -m trainer.worker --fn-args` reads, writing into `out`; `trainer` overrides."""
    path = out.with_suffix(".json")
    path.write_text(json.dumps({
        "train_files": [f"{inputs['examples']}/{split_dir(TRAIN)}/*"],
        "eval_files": [f"{inputs['examples']}/{split_dir(EVAL)}/*"],
        "transform_output": inputs["transform"],
        "model_run_dir": str(out / "model_run"), "serving_model_dir": str(out / "serving"),
        "custom_config": {TRAINER_CONFIG_KEY: {**inputs["trainer"], **trainer},
                          CLASS_NAMES_KEY: inputs["class_names"], MODEL_NAME_KEY: "tokenlearner"}}))
    return path


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start(fn_args: Path, log: Path, tf_config: str | None = None, tmpdir: Path | None = None) -> subprocess.Popen:
    """`python -m trainer.worker --fn-args FN_ARGS` with this TF_CONFIG (None: a single process), TensorFlow's ops
    deterministic; stdout and stderr into `log`."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "1", "TF_DETERMINISTIC_OPS": "1",
                **({"TF_CONFIG": tf_config} if tf_config else {}), **({"TMPDIR": str(tmpdir)} if tmpdir else {})})
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "trainer.worker", "--fn-args", str(fn_args)], cwd=REPO,
                                env=env, stdout=f, stderr=subprocess.STDOUT)


def _start_cluster(fn_args: Path, logs: list[Path], tmpdirs: list[Path]) -> tuple[list[subprocess.Popen], list[str]]:
    """One `python -m trainer.worker` per log, a cluster of workers on free loopback ports: (processes, addresses)."""
    addresses = [f"localhost:{port}" for port in _free_ports(len(logs))]
    from trainer.cluster import tf_config

    return [_start(fn_args, log, tf_config({"worker": addresses}, "worker", i), tmpdir)
            for i, (log, tmpdir) in enumerate(zip(logs, tmpdirs))], addresses


def _cifar_jpegs(n: int) -> list[bytes]:
    """The first `n` JPEG files of the shared CIFAR-10 archive, as a client sends them."""
    import tarfile

    with tarfile.open(SHARED_CIFAR) as tar:
        jpegs = []
        for member in tar:  # streamed: stops after the first n
            if member.name.endswith(".jpg"):
                jpegs.append(tar.extractfile(member).read())
                if len(jpegs) == n:
                    break
    assert len(jpegs) == n and all(image[:2] == b"\xff\xd8" for image in jpegs)
    return jpegs


def _history(out: Path) -> list[dict]:
    import csv

    with open(out / "model_run" / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _weights(serving_dir: Path) -> dict:
    """The model's variables in a SavedModel (not the compiled metrics' counters)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(serving_dir / "variables" / "variables"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if "keras_api/metrics" not in name and not name.startswith("_CHECKPOINTABLE")}


def test_two_workers_train_like_one_process_of_their_global_batch_and_only_the_chief_writes(tiny_run, tmp_path):
    """Both workers exit 0; the chief logs the global batch; only it writes (worker 1's scratch folder under its
    TMPDIR is gone again); the export serves; and the fit equals one process with batch 128, the same seed and
    config, to float rounding: every epoch's loss and metrics (rel 1e-5; measured equal to 7 digits) and the
    exported weights (atol 1e-5; measured max difference 5e-7). Equal because by-example sharding gives each worker
    its half of every global batch, in the same order; the seeded input pipelines draw the same random views; the
    chief's initial weights are everyone's; only the gradient sum differs in order (ring all-reduce of two halves).

    Two settings make it reproducible at all (one process against itself, too): dropout 0, since its masks are drawn
    per replica, not over the global batch; and TF_DETERMINISTIC_OPS=1, since the training input's augmentation
    runs in a parallel map whose random stream otherwise goes to whichever batch a thread takes first (without it,
    two single-process runs under load differed by 0.006 in the first epoch's loss).
    """
    inputs = _inputs(tiny_run)
    multi, single = tmp_path / "multi", tmp_path / "single"
    scratch = [tmp_path / "tmp0", tmp_path / "tmp1"]
    for folder in scratch:
        folder.mkdir()
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    workers, addresses = _start_cluster(_fn_args(inputs, multi, dropout=0.0, batch_size=PER_REPLICA_BATCH), logs,
                                        scratch)
    reference = _start(_fn_args(inputs, single, dropout=0.0, batch_size=2 * PER_REPLICA_BATCH),
                       tmp_path / "single.log")
    for proc, log in [*zip(workers, logs), (reference, tmp_path / "single.log")]:
        assert proc.wait(timeout=WORKER_TIMEOUT) == 0, log.read_text()[-5000:]

    chief_log, worker_log = logs[0].read_text(), logs[1].read_text()
    assert ("multi-worker: worker 0 of 2 (chief), MultiWorkerMirroredStrategy, global batch 128 = 64 x 2 replicas"
            in chief_log)
    assert "multi-worker: worker 1 of 2, MultiWorkerMirroredStrategy, global batch 128" in worker_log
    assert (multi / "serving" / "saved_model.pb").is_file()
    # Worker 1 wrote its files under TMPDIR (tokenlearner-worker1-*, trainer/run.py) and removed them.
    assert "tokenlearner-worker1-" in worker_log and not list(scratch[1].glob("tokenlearner-worker*"))
    assert not [p for p in multi.rglob("*") if "workertemp" in p.name], "a worker's temporary folder is left"
    assert (multi / "model_run" / "model_stats.json").is_file()
    assert not list((multi / "model_run" / "backup").iterdir())  # the chief removed the checkpoints after export

    import tensorflow as tf

    jpegs = _cifar_jpegs(3)
    served = tf.saved_model.load(str(multi / "serving")).signatures["serving_default"](images=tf.constant(jpegs))
    probabilities = served["probabilities"].numpy()
    assert probabilities.shape == (3, len(inputs["class_names"]))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    multi_history, single_history = _history(multi), _history(single)
    assert len(multi_history) == len(single_history) == inputs["trainer"]["epochs"] == 2
    for epoch, (multi_row, single_row) in enumerate(zip(multi_history, single_history)):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert multi_row[key] == pytest.approx(single_row[key], rel=1e-5), (epoch, key)
    multi_weights, single_weights = _weights(multi / "serving"), _weights(single / "serving")
    assert multi_weights.keys() == single_weights.keys() and len(multi_weights) > 10
    for name, value in multi_weights.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(value, single_weights[name], atol=1e-5, err_msg=name)


def test_a_killed_worker_makes_the_other_exit_within_seconds_naming_it_and_a_restart_resumes(tiny_run, tmp_path):
    """SIGKILL worker 1 in epoch 2 of 4: the chief exits 1 within PEER_FAILURE_SECONDS (measured 0.1-0.3 s: the
    collective's gRPC call to the dead peer fails at once), its last line naming worker 1 and its port. Starting both
    workers again resumes from the chief's checkpoint of epoch 1 and finishes with one history row per epoch."""
    inputs = _inputs(tiny_run)
    out = tmp_path / "run"
    fn_args = _fn_args(inputs, out, epochs=4, batch_size=16)  # 17 steps of ~50 ms per epoch after the first
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    scratch = [tmp_path / "tmp0", tmp_path / "tmp1"]  # the killed worker cannot remove its scratch folder
    for folder in scratch:
        folder.mkdir()
    workers, addresses = _start_cluster(fn_args, logs, scratch)
    try:
        deadline = time.time() + WORKER_TIMEOUT
        while "epoch 1/4 done" not in logs[0].read_text():
            assert time.time() < deadline and workers[0].poll() is None, logs[0].read_text()[-5000:]
            time.sleep(0.1)
        time.sleep(0.2)
        workers[1].send_signal(signal.SIGKILL)
        killed = time.time()
        status = workers[0].wait(timeout=WORKER_TIMEOUT)
        seconds = time.time() - killed
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
    chief_log = logs[0].read_text()
    assert status == 1, chief_log[-5000:]
    assert seconds < PEER_FAILURE_SECONDS, f"the chief took {seconds:.1f} s to notice"
    last = chief_log.strip().splitlines()[-1]
    assert last.startswith(f"trainer.worker: worker 0 of 2 (chief): worker 1 of 2 ({addresses[1]}) stopped "
                           f"answering: UnavailableError: "), last
    assert "Traceback" not in chief_log

    workers, _ = _start_cluster(fn_args, logs, scratch)
    for proc, log in zip(workers, logs):
        assert proc.wait(timeout=WORKER_TIMEOUT) == 0, log.read_text()[-5000:]
    for log in logs:
        assert "resuming from the epoch checkpoint" in log.read_text()
    assert "epoch 1/4 done" not in logs[0].read_text()  # resumed after it
    assert [int(row["epoch"]) for row in _history(out)] == [0, 1, 2, 3]
    assert (out / "serving" / "saved_model.pb").is_file()
