"""Fault injection: bad data never trains, a crash never loses work, a worse model is never pushed.

Pipeline-level scenarios run the real CLI in a subprocess (so it can be SIGKILLed with its Beam workers) on a
few hundred real CIFAR-10 images; data-level faults are also checked against the validator executor directly.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest
import tensorflow as tf

from components import ingest
from tests.helpers import run_cli
from trainer.contract import EPOCH_TIMES_FILE

SECRET = "s3cr3t-Do-Not-Log-7f1e"  # a fake credential the runs get in their environment


def _env():
    return {**os.environ, "TOKENLEARNER_MLMD_PASSWORD": SECRET, "PYTHONUNBUFFERED": "1"}


def row(table: str, component: str) -> str:
    return next((line for line in table.splitlines() if line.startswith(component + " ")), "")


def versions(output: Path) -> list[str]:
    base = output / "serving" / "tokenlearner"
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


@pytest.fixture(scope="module")
def dataset(shared_cifar, tmp_path_factory) -> Path:
    return ingest.prepare(str(shared_cifar), tmp_path_factory.mktemp("data"), limit=300)


# -------------------------------------------------------------------------------- crash, resume, regression gate

@pytest.mark.slow
def test_crash_resume_and_regression_gate(dataset, tmp_path):
    out, log = tmp_path / "out", tmp_path / "runs.log"
    # warm_start=off: every run trains from its own initial weights (a warm start would continue the blessed model).
    base = ["run", "--data", str(dataset), "--preset", "tiny", "--output", str(out), "--set", "beam_workers=1",
            "--set", "warm_start=off"]

    # 1. SIGKILL while Transform runs.
    rc = run_cli(base, env=_env(), log=log, kill_when=r"Component Transform is running").returncode
    assert rc == -9 and versions(out) == []

    # 2. The re-run takes the finished components from the cache and runs Transform to its end; it is SIGKILLed after
    # the second of four epochs, and the next re-run resumes at epoch 3, not epoch 1. (One re-run serves both
    # crashes: a complete re-run in between would only repeat what the final table below shows.)
    # A learning rate 5x the tiny preset's: 4 epochs of ~5 steps then leave the model clearly above the initial
    # weights, which step 3's candidate is (at 1e-3 the 4-epoch model was once at 13.7% against the initial 14.3%).
    four = base + ["--set", "epochs=4", "--set", "learning_rate=0.005"]
    proc = run_cli(four, env=_env(), log=log, kill_when=r"epoch 2/4 done")
    rc, killed = proc.returncode, proc.stdout
    assert rc == -9 and "Epoch 1/4" in killed
    progress = re.findall(r"^\S+ I absl: (Component \w+ is \w+|A cached execution) ?", killed, flags=re.M)
    for component in ("ImportExampleGen", "StatisticsGen", "ExampleValidator"):
        at = progress.index(f"Component {component} is running")
        assert progress[at + 1:at + 3] == ["A cached execution", f"Component {component} is finished"], killed
    at = progress.index("Component Transform is running")
    assert progress[at + 1:at + 2] != ["A cached execution"], killed  # it ran, to its end: the Trainer started
    proc = run_cli(four, env=_env(), log=log)
    rc, table = proc.returncode, proc.stdout
    assert rc == 0, table
    assert "resuming from the epoch checkpoint" in table
    epochs_trained = re.findall(r"^Epoch (\d)/4", table, flags=re.M)
    assert epochs_trained == ["3", "4"], epochs_trained
    # The model run keeps every epoch's time, the killed fit's and the resumed one's: the true training time.
    times = max((out / "pipeline").rglob(EPOCH_TIMES_FILE), key=lambda p: p.stat().st_mtime)
    epochs = list(csv.DictReader(times.open()))
    assert [e["epoch"] for e in epochs] == ["1", "2", "3", "4"] and all(float(e["seconds"]) > 0 for e in epochs)
    assert len({e["fit_started_utc"] for e in epochs}) == 2
    for component in ("ImportExampleGen", "StatisticsGen", "ExampleValidator", "Transform"):
        assert " cached " in row(table, component), table
    assert " ran " in row(table, "Trainer")
    assert len(versions(out)) == 1  # the 4-epoch model, pushed once
    assert not list((out / "serving" / "tokenlearner").glob(".tmp-*"))  # no half-written version left

    # 3. A worse candidate (learning rate 1e-9: in effect the initial weights, so one epoch is as good as four)
    # against the blessed 4-epoch model.
    before = versions(out)
    proc = run_cli(base + ["--set", "epochs=1", "--set", "learning_rate=1e-9", "--set", "regression_tolerance=0.01"],
                   env=_env(), log=log)
    rc, table = proc.returncode, proc.stdout
    assert rc == 3, table
    assert "NOT blessed" in row(table, "Evaluator") and "not pushed" in row(table, "Pusher")
    reason = re.search(r"not pushed: (.*)", table).group(1)
    assert re.search(r"sparse_categorical_accuracy: candidate 0\.\d{4} vs baseline 0\.\d{4}, change -0\.\d{4} "
                     r"is below the allowed -0\.0100", reason), reason
    assert versions(out) == before  # the serving dir keeps the previous versions

    # Security hygiene: the fake credential in the environment never reaches logs or outputs.
    assert SECRET not in log.read_text()
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".txt", ".csv", ".pbtxt", ".log"):
            assert SECRET not in path.read_text(errors="ignore"), path


# ------------------------------------------------------------------------------------------------ bad data

def _rewrite(shard: Path, edit) -> None:
    """Rewrites a gzipped TFRecord shard, passing each tf.Example (with its index) through `edit`."""
    records = [tf.train.Example.FromString(r.numpy())
               for r in tf.data.TFRecordDataset(str(shard), compression_type="GZIP")]
    with tf.io.TFRecordWriter(str(shard), options="GZIP") as writer:
        for i, example in enumerate(records):
            edit(i, example)
            writer.write(example.SerializeToString())


def _copy_dataset(dataset: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(dataset, dest)
    return dest


def run_failing(data: Path, tmp_path: Path, expected_rc: int) -> tuple[str, str, Path]:
    """Runs the tiny pipeline on bad data; returns (the one error line, the whole output, the output folder)."""
    out = tmp_path / "out"
    proc = run_cli(["run", "--data", str(data), "--preset", "tiny", "--output", str(out), "--set", "beam_workers=1"],
                   env=_env(), log=tmp_path / "log")
    rc, output = proc.returncode, proc.stdout
    assert rc == expected_rc, output
    errors = [line for line in output.splitlines() if line.startswith("tokenlearner: error:")]
    assert len(errors) == 1, output
    assert versions(out) == [] and not row(output, "Trainer"), output
    return errors[0], output, out


@pytest.mark.slow
def test_label_out_of_range_stops_the_run_before_training(dataset, tmp_path):
    bad = _copy_dataset(dataset, tmp_path / "bad")
    shard = next((bad / "train").glob("*.tfrecord.gz"))

    def edit(i, example):
        if i == 5:
            example.features.feature["label"].int64_list.value[0] = 12

    _rewrite(shard, edit)
    error, output, _ = run_failing(bad, tmp_path, expected_rc=1)
    assert "ExampleValidator: data validation failed: split 'train': feature 'label': Unexpectedly large value: 12" \
        in error, output
    assert "FAILED" in row(output, "ExampleValidator") and not row(output, "Transform"), output  # never ran


def test_truncated_shard_is_named_before_the_pipeline_starts(dataset, tmp_path):
    bad = _copy_dataset(dataset, tmp_path / "bad")
    shard = next((bad / "test").glob("*.tfrecord.gz"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(ingest.DataError, match=f"{shard}: corrupt or truncated TFRecord file"):
        ingest.prepare(str(bad), tmp_path / "unused")
    error, _, out = run_failing(bad, tmp_path, expected_rc=2)
    assert f"{shard}: corrupt or truncated TFRecord file" in error
    assert not out.exists()  # stopped before anything was written
