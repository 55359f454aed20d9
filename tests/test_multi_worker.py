"""Multi-worker training (trainer/cluster.py, trainer/distribute.py, trainer/run.py, trainer/worker.py,
cli/worker.py): real worker processes on this machine, each with its TF_CONFIG on a loopback port. The training
tests start each worker as a user does, `tokenlearner train-worker --output OUTPUT` on the shared tiny run (its
Examples, Transform graph and trainer settings, read from its metadata), each running the real `trainer.run.run_fn`;
TensorFlow's collective ops really run over gRPC. The others start `python -m trainer.worker` on a FnArgs file
built by `trainer.worker.fn_args_values`, whose peers never start.

The reference is one process (the same command without TF_CONFIG) with the workers' global batch: 2 x 64 per
replica = 128, same seed.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO, SHARED_CIFAR, TinyRun, free_port
from trainer import cluster, worker
from trainer.exit_codes import EXIT_PEER_TIMEOUT, EXIT_TERMINATED, EXIT_TRAINING_FAILED

pytestmark = pytest.mark.slow

PER_REPLICA_BATCH = 64  # the tiny preset's batch_size: the batch of each replica
WORKER_TIMEOUT = 240  # seconds; a hang fails the test instead of the CI job
# A C++ log line of TensorFlow or gRPC/absl, as they print them ("2026-12-08 02:51:14.942650: E external/...",
# "E0000 00:00:1796698274.943368   12528 file.cc:303] ...").
CPP_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ )",
                          re.M)


def _env(tf_config: str | None, tmpdir: Path | None = None, **extra: str) -> dict[str, str]:
    """This environment with this TF_CONFIG (None: a single process) and TensorFlow's ops deterministic."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "TF_CPP_MIN_LOG_LEVEL")}
    env.update({"TF_DETERMINISTIC_OPS": "1", **({"TF_CONFIG": tf_config} if tf_config else {}),
                **({"TMPDIR": str(tmpdir)} if tmpdir else {}), **extra})
    return env


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """`python COMMAND` in its own session (a test kills what is left of it), stdout and stderr into `log`."""
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, *command], cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _train_worker(tiny_run: TinyRun, out: Path, log: Path, tf_config: str | None = None, tmpdir: Path | None = None,
                  **trainer: object) -> subprocess.Popen:
    """`tokenlearner train-worker` on the tiny run, writing into `out`, with `trainer` settings (--set)."""
    settings = [arg for key, value in trainer.items() for arg in ("--set", f"{key}={value}")]
    return _start(["-m", "cli", "train-worker", "--output", str(tiny_run.output), "--run", tiny_run.run_id,
                   "--out", str(out), *settings], log, _env(tf_config, tmpdir))


def _start_cluster(tiny_run: TinyRun, out: Path, logs: list[Path], tmpdirs: list[Path],
                   **trainer: object) -> tuple[list[subprocess.Popen], list[str]]:
    """One `tokenlearner train-worker` per log, a cluster of workers on free loopback ports: (processes,
    addresses)."""
    addresses = [f"localhost:{free_port()}" for _ in logs]
    return [_train_worker(tiny_run, out, log, cluster.tf_config({"worker": addresses}, "worker", i), tmpdir, **trainer)
            for i, (log, tmpdir) in enumerate(zip(logs, tmpdirs))], addresses


def _kill_all(processes: list[subprocess.Popen]) -> None:
    """What a failed test leaves: each worker's session (its training process included)."""
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for_line(proc: subprocess.Popen, log: Path, text: str) -> None:
    """Returns once `text` is in `log`; fails when the process ends first, or after WORKER_TIMEOUT seconds of
    polling (a guard against a hang, not a measurement)."""
    for _ in range(WORKER_TIMEOUT * 10):
        if text in log.read_text():
            return
        assert proc.poll() is None, log.read_text()[-5000:]
        time.sleep(0.1)
    pytest.fail(f"{text!r} never came: {log.read_text()[-5000:]}")


def _processes_with(argument: str) -> list[int]:
    """The processes whose command line contains `argument` (Linux /proc)."""
    found = []
    for pid in Path("/proc").iterdir():
        try:
            if pid.name.isdigit() and argument in (pid / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(pid.name))
        except OSError:  # ended meanwhile
            pass
    return found


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
    """Two `tokenlearner train-worker` commands on the tiny run, with nothing but TF_CONFIG and the settings: both
    exit 0; the chief logs the global batch; only it writes (worker 1's scratch folder under its TMPDIR is gone
    again); the export serves; the FnArgs file the command wrote reads back; and the fit equals one process with
    batch 128, the same seed and config, to float rounding: every epoch's loss and metrics (rel 1e-5; measured
    equal to 7 digits) and the exported weights (atol 1e-5; measured max difference 5e-7). Equal because
    by-example sharding gives each worker its half of every global batch, in the same order; the seeded input
    pipelines draw the same random views; the chief's initial weights are everyone's; only the gradient sum differs
    in order (ring all-reduce of two halves).

    Two settings make it reproducible at all (one process against itself, too): dropout 0, since its masks are drawn
    per replica, not over the global batch; and TF_DETERMINISTIC_OPS=1, since the training input's augmentation
    runs in a parallel map whose random stream otherwise goes to whichever batch a thread takes first (without it,
    two single-process runs under load differed by 0.006 in the first epoch's loss).
    """
    multi, single = tmp_path / "multi", tmp_path / "single"
    scratch = [tmp_path / "tmp0", tmp_path / "tmp1"]
    for folder in scratch:
        folder.mkdir()
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    workers, addresses = _start_cluster(tiny_run, multi, logs, scratch, dropout=0.0, batch_size=PER_REPLICA_BATCH)
    reference = _train_worker(tiny_run, single, tmp_path / "single.log", dropout=0.0,
                              batch_size=2 * PER_REPLICA_BATCH)
    try:
        for proc, log in [*zip(workers, logs), (reference, tmp_path / "single.log")]:
            assert proc.wait(timeout=WORKER_TIMEOUT) == 0, log.read_text()[-5000:]
    finally:
        _kill_all([*workers, reference])

    chief_log, worker_log = logs[0].read_text(), logs[1].read_text()
    assert ("multi-worker: worker 0 of 2 (chief), MultiWorkerMirroredStrategy, global batch 128 = 64 x 2 replicas"
            in chief_log)
    assert "multi-worker: worker 1 of 2, MultiWorkerMirroredStrategy, global batch 128" in worker_log
    assert not CPP_LOG_LINE.search(chief_log), chief_log[-5000:]  # TensorFlow's C++ lines only with -v
    assert (multi / "serving" / "saved_model.pb").is_file()
    # Worker 1 wrote its files under TMPDIR (tokenlearner-worker1-*, trainer/run.py) and removed them.
    assert "tokenlearner-worker1-" in worker_log and not list(scratch[1].glob("tokenlearner-worker*"))
    assert not [p for p in multi.rglob("*") if "workertemp" in p.name], "a worker's temporary folder is left"
    assert (multi / "model_run" / "model_stats.json").is_file()
    assert not list((multi / "model_run" / "backup").iterdir())  # the chief removed the checkpoints after export
    # The run's Trainer inputs, as its metadata names them (the pipeline's folders: Examples of ImportExampleGen,
    # Transform's graph), with the settings given; the pipeline's checkpoint folder is not the workers'.
    fn_args = worker.read_fn_args(str(multi / "fn_args.json"))
    root = tiny_run.output / "pipeline" / "tokenlearner-cifar10"
    assert re.fullmatch(f"{root}/ImportExampleGen/examples/[0-9]+/Split-train/[*]", fn_args.train_files[0])
    assert re.fullmatch(f"{root}/Transform/transform_graph/[0-9]+", fn_args.transform_output)
    assert fn_args.serving_model_dir == str(multi / "serving") and "backup_dir" not in fn_args.custom_config
    trainer_config = fn_args.custom_config["trainer_config"]
    assert (trainer_config["dropout"], trainer_config["batch_size"], trainer_config["epochs"]) == (0.0, 64, 2)

    import tensorflow as tf

    jpegs = _cifar_jpegs(3)
    served = tf.saved_model.load(str(multi / "serving")).signatures["serving_default"](images=tf.constant(jpegs))
    probabilities = served["probabilities"].numpy()
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    multi_history, single_history = _history(multi), _history(single)
    assert len(multi_history) == len(single_history) == 2
    for epoch, (multi_row, single_row) in enumerate(zip(multi_history, single_history)):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert multi_row[key] == pytest.approx(single_row[key], rel=1e-5), (epoch, key)
    multi_weights, single_weights = _weights(multi / "serving"), _weights(single / "serving")
    assert multi_weights.keys() == single_weights.keys() and len(multi_weights) > 10
    for name, value in multi_weights.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(value, single_weights[name], atol=1e-5, err_msg=name)


def test_a_killed_worker_makes_the_other_exit_naming_it_once_and_a_restart_resumes(tiny_run, tmp_path):
    """SIGKILL worker 1 (its command; its training process dies with it) in epoch 2 of 4: the chief exits 1 with
    one line naming worker 1 and its port, whole, once, after no TensorFlow C++ line. Starting both workers again
    resumes from the chief's checkpoint of epoch 1 and finishes with one history row per epoch. (How long the chief
    takes to notice is measured in docs/engines.md, not bounded here.)"""
    out = tmp_path / "run"
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    scratch = [tmp_path / "tmp0", tmp_path / "tmp1"]  # the killed worker cannot remove its scratch folder
    for folder in scratch:
        folder.mkdir()
    settings = {"epochs": 4, "batch_size": 16}  # 17 steps of ~50 ms per epoch after the first
    workers, addresses = _start_cluster(tiny_run, out, logs, scratch, **settings)
    try:
        _wait_for_line(workers[0], logs[0], "epoch 1/4 done")
        time.sleep(0.2)
        workers[1].send_signal(signal.SIGKILL)
        status = workers[0].wait(timeout=WORKER_TIMEOUT)
    finally:
        _kill_all(workers)
    chief_log = logs[0].read_text()
    assert status == EXIT_TRAINING_FAILED, chief_log[-5000:]
    line = (f"trainer.worker: worker 0 of 2 (chief): worker 1 of 2 ({addresses[1]}) stopped answering: "
            f"UnavailableError: ")
    last = chief_log.strip().splitlines()[-1]
    assert last.startswith(line) and last.endswith("(restart every worker to resume from the last finished epoch)")
    assert chief_log.count("stopped answering") == 1, chief_log[-5000:]
    assert "Traceback" not in chief_log and not CPP_LOG_LINE.search(chief_log), chief_log[-5000:]

    workers, _ = _start_cluster(tiny_run, out, logs, scratch, **settings)
    try:
        for proc, log in zip(workers, logs):
            assert proc.wait(timeout=WORKER_TIMEOUT) == 0, log.read_text()[-5000:]
    finally:
        _kill_all(workers)
    for log in logs:
        assert "resuming from the epoch checkpoint" in log.read_text()
    assert "epoch 1/4 done" not in logs[0].read_text()  # resumed after it
    assert [int(row["epoch"]) for row in _history(out)] == [0, 1, 2, 3]
    assert (out / "serving" / "saved_model.pb").is_file()


@pytest.mark.parametrize("args, tf_config, expected", [
    (["--run", "no-such-run"], None, "tokenlearner: error: {metadata}: no pipeline run no-such-run in the metadata "
                                     "store"),
    (["--set", "accuracy_floor=0.3"], None, "tokenlearner: error: --set accuracy_floor: not a trainer setting; "
                                            "the workers train on the run's data with its pipeline settings"),
    (["--set", "epochs=many"], None, "tokenlearner: error: epochs: cannot read 'many' as int"),
    ([], "{not json", "tokenlearner: error: TF_CONFIG: expected JSON"),
])
def test_train_worker_refuses_bad_arguments_in_one_line_before_training(tiny_run, tmp_path, monkeypatch, capsys,
                                                                         args, tf_config, expected):
    import cli
    from trainer.exit_codes import EXIT_USAGE

    if tf_config:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    else:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    out = tmp_path / "out"
    code = cli.main(["train-worker", "--output", str(tiny_run.output), "--out", str(out), *args])
    err = capsys.readouterr().err.strip().splitlines()
    metadata = tiny_run.output / "pipeline" / "tokenlearner-cifar10" / "metadata.sqlite"
    assert code == EXIT_USAGE and err[-1].startswith(expected.format(metadata=metadata)), err
    assert not out.exists()  # nothing written


def test_train_worker_without_a_run_names_the_missing_folder(tmp_path, capsys):
    import cli
    from trainer.exit_codes import EXIT_USAGE

    assert cli.main(["train-worker", "--output", str(tmp_path)]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == (
        f"tokenlearner: error: {tmp_path}/pipeline/tokenlearner-cifar10/config.json: missing; expected an output "
        f"folder of `tokenlearner run`")


# ------------------------------------------------------------------------------- a peer that never starts

def _lone_worker(tmp_path: Path, task: int, *args: str, **env: str) -> tuple[subprocess.Popen, list[str], Path]:
    """`python -m trainer.worker` as task `task` of a 2-worker TF_CONFIG whose other worker never starts, on a
    FnArgs file of folders that do not exist (run_fn waits for its peers before it reads anything): (process,
    addresses, log)."""
    addresses = [f"localhost:{free_port()}", f"localhost:{free_port()}"]
    fn_args = worker.write_fn_args(worker.fn_args_values(
        str(tmp_path / "examples"), str(tmp_path / "transform"), str(tmp_path / "out"),
        {"trainer_config": {}, "class_names": ["a", "b"], "model_name": "m"}), str(tmp_path / "fn_args.json"))
    log = tmp_path / "worker.log"
    proc = _start(["-m", "trainer.worker", "--fn-args", fn_args, *args], log,
                  _env(cluster.tf_config({"worker": addresses}, "worker", task), **env))
    return proc, addresses, log


@pytest.mark.parametrize("task", [0, 1])
def test_a_worker_whose_peer_never_starts_exits_with_the_peer_timeout_naming_it(tmp_path, task):
    """The chief (which hosts TensorFlow's coordination service) and worker 1 (which cannot reach it) both end after
    --peer-timeout with EXIT_PEER_TIMEOUT and one line naming the worker that never came; before, both waited for
    ever."""
    proc, addresses, log = _lone_worker(tmp_path, task, "--peer-timeout", "5")
    try:
        status = proc.wait(timeout=WORKER_TIMEOUT)
    finally:
        _kill_all([proc])
    text = log.read_text()
    assert status == EXIT_PEER_TIMEOUT, text[-5000:]
    me, peer = [("worker 0 of 2 (chief)", f"worker 1 of 2 ({addresses[1]})"),
                ("worker 1 of 2", f"worker 0 of 2 (chief, {addresses[0]})")][task]
    assert text.strip().splitlines()[-1] == (
        f"trainer.worker: {me}: peer timeout: {peer} did not connect within 5 s (--peer-timeout); start every worker "
        f"that TF_CONFIG names")
    assert "Traceback" not in text and not CPP_LOG_LINE.search(text), text[-5000:]


def test_sigterm_ends_a_worker_waiting_for_its_peers_and_its_training_process(tmp_path):
    """SIGTERM while the chief waits in TensorFlow's coordination service for a worker that never starts (seen in
    its -v log): the worker exits EXIT_TERMINATED with one line, and no process of it is left. Before, TensorFlow's
    handler took the signal and the worker went on waiting."""
    proc, _, log = _lone_worker(tmp_path, 0, "-v", TF_CPP_MIN_LOG_LEVEL="0")
    try:
        _wait_for_line(proc, log, "Waiting for 1/2 tasks to connect")
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=WORKER_TIMEOUT)
    finally:
        _kill_all([proc])
    text = log.read_text()
    assert status == EXIT_TERMINATED, text[-5000:]
    assert text.strip().splitlines()[-1] == ("trainer.worker: worker 0 of 2 (chief): stopped by SIGTERM (restart "
                                            "every worker to resume from the last finished epoch)")
    assert not _processes_with(str(tmp_path / "fn_args.json")), "a process of the worker is left"
