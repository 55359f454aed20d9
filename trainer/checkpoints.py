"""Training state that outlives a killed Trainer: epoch checkpoints, the best epoch, the history.

Everything lives in a backup folder keyed by what determines the result (trainer config, training data,
Transform graph), outside the per-execution model_run dir, so re-running the same pipeline after a crash resumes
at the last finished epoch instead of epoch 0. The folder is removed once the model is exported.

A fit's folder never serves another fit: its key also names the base model a warm start loads (a warm start and a
fit from scratch of the same data differ), and a folder whose run already exported its model (the removal failed or
was killed) carries a `finished.json` mark, so a later execution with the same key starts a new fit instead of
"resuming" a finished one. A killed run has no mark and resumes.

Multi-worker training (MultiWorkerMirroredStrategy): every worker gets the same backup folder, and the chief's files
are the ones kept and read. Keras' BackupAndRestore writes the chief's epoch state there and each other worker's
into a `workertemp_<task>` sub-folder it deletes again; every worker restores from the chief's. The best epoch's
weights are saved the same way (every worker saves: a checkpoint of distributed variables is a collective
operation); the history and epoch times are the chief's alone.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import time
from typing import Optional

import tensorflow as tf
import tf_keras as keras
from tf_keras.src.distribute import distributed_file_utils

from trainer.contract import EPOCH_TIMES_COLUMNS, EPOCH_TIMES_FILE, HISTORY_FILE, UTC_STAMP, trained_with

log = logging.getLogger("trainer")

FINISHED_FILE = "finished.json"  # in a backup folder: its run exported its model; nothing resumes from it


def backup_dir(root: str, cfg_dict: dict, train_files: list[str], transform_output: str,
               base_model: Optional[str] = None) -> str:
    """The backup folder of one fit under `root`, keyed by what determines its result: the trainer config, the
    training data, the Transform graph and, for a warm start, the base model whose weights it starts from."""
    fit = {"config": cfg_dict, "train": sorted(train_files), "transform": transform_output}
    if base_model:  # keys of fits from scratch stay as they were
        fit["base_model"] = base_model
    key = json.dumps(fit, sort_keys=True)
    return f"{root.rstrip('/')}/{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def discard_finished(directory: str) -> bool:
    """Removes `directory` when the run that wrote it finished (`mark_finished`): its epochs belong to a model that
    is already exported, not to this execution's fit. True when it did. A multi-worker fit calls this on the chief,
    then waits for every worker, before any worker reads the folder."""
    mark = f"{directory}/{FINISHED_FILE}"
    if not tf.io.gfile.exists(mark):
        return False
    with tf.io.gfile.GFile(mark) as f:
        finished = f.read().strip()
    log.info("not resuming from %s: its run finished (%s); starting a new fit", directory, finished)
    remove(directory)
    return True


def mark_finished(directory: str, serving_model_dir: str) -> None:
    """Marks `directory` as belonging to a run whose model is exported to `serving_model_dir`; call it before
    `remove`, so that a removal that fails or is killed leaves nothing a later fit resumes from."""
    if tf.io.gfile.exists(directory):
        with tf.io.gfile.GFile(f"{directory}/{FINISHED_FILE}", "w") as f:
            json.dump({"exported_to": serving_model_dir, "finished_utc": _utc(time.time())}, f)


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the highest validation accuracy (test data never chooses), and
    remembers that accuracy across a resume (ModelCheckpoint would forget it and overwrite a better epoch)."""

    def __init__(self, directory: str, monitor: str = "val_accuracy"):
        super().__init__()
        self.weights, self.record, self.monitor = f"{directory}/best/weights", f"{directory}/best.json", monitor

    def on_train_begin(self, logs=None):
        self.best = -float("inf")
        if tf.io.gfile.exists(self.record):
            with tf.io.gfile.GFile(self.record) as f:
                self.best = json.load(f)["value"]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)  # all-reduced: every worker decides alike
        if value is not None and value > self.best:
            self.best = value
            strategy = self.model.distribute_strategy
            # The chief writes `self.weights`; another worker of a multi-worker fit a temporary copy it deletes.
            self.model.save_weights(distributed_file_utils.write_filepath(self.weights, strategy))
            distributed_file_utils.remove_temp_dir_with_filepath(self.weights, strategy)
            if strategy.extended.should_checkpoint:
                with tf.io.gfile.GFile(self.record, "w") as f:
                    json.dump({"value": float(value), "epoch": epoch + 1}, f)


class EpochTimes(keras.callbacks.Callback):
    """Appends each finished epoch to epoch_times.csv: its wall seconds, the start of the fit it belongs to, and the
    precision and XLA it trained with. A run resumed across machines or sessions still adds up to its true training
    time (the Trainer execution that finishes saw only the last part, and a log may be gone), and says so when its
    epochs did not all train alike (`precision=auto` is decided per execution: a resume on a bf16 CPU switches)."""

    def __init__(self, directory: str, precision: str, jit_compile: str):
        super().__init__()
        self.path = f"{directory}/{EPOCH_TIMES_FILE}"
        self.trains_with = {"precision": precision, "jit_compile": jit_compile}  # this execution's part of each row

    def on_train_begin(self, logs=None):
        self.fit_started = _utc(time.time())
        now = trained_with(self.trains_with)
        before = {trained_with(r) for r in self._rows()}
        if before and before != {now}:
            # Not fixable by --set now: new settings key new checkpoints, i.e. a fit from epoch 0.
            log.warning("resuming a fit whose earlier epochs trained with precision/XLA %s; this execution trains "
                        "with %s (to keep one, start a fit with --set precision=... --set jit_compile=...)",
                        ", ".join(sorted(before)), now)

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        row = {"epoch": epoch + 1, "seconds": f"{now - self.start:.1f}", "ended_utc": _utc(now),
               "fit_started_utc": self.fit_started, **self.trains_with}
        text = io.StringIO()
        writer = csv.DictWriter(text, EPOCH_TIMES_COLUMNS, restval="")  # rows of older files lack the last columns
        writer.writeheader()
        writer.writerows([*self._rows(), row])
        with tf.io.gfile.GFile(self.path, "w") as f:  # rewritten whole: object stores cannot append
            f.write(text.getvalue())

    def _rows(self) -> list[dict]:
        if not tf.io.gfile.exists(self.path):
            return []
        with tf.io.gfile.GFile(self.path) as f:
            return list(csv.DictReader(io.StringIO(f.read())))


def _utc(seconds: float) -> str:
    return time.strftime(UTC_STAMP, time.gmtime(seconds))  # from time.time(): the tests' clock moves it


def callbacks(directory: str, precision: str, jit_compile: str, chief: bool = True) -> list[keras.callbacks.Callback]:
    """The callbacks that keep a fit's state in `directory`; `precision` and `jit_compile` ("on" | "off") are what
    this execution trains with, recorded per epoch. `chief`: False for the other workers of a multi-worker fit, which
    keep no history or epoch times (the chief's are the fit's)."""
    tf.io.gfile.makedirs(directory)
    if tf.io.gfile.exists(f"{directory}/state"):
        log.info("resuming from the epoch checkpoint in %s", directory)
    return [
        # Restores weights, optimizer state and the epoch counter at the start of fit (multi-worker: the chief's).
        keras.callbacks.BackupAndRestore(f"{directory}/state", save_freq="epoch", delete_checkpoint=False),
        BestWeights(directory),
        *([keras.callbacks.CSVLogger(f"{directory}/{HISTORY_FILE}", append=True),
           EpochTimes(directory, precision, jit_compile)] if chief else []),
    ]


def finish(directory: str, model: keras.Model, model_run_dir: str, chief: bool = True) -> None:
    """Loads the best epoch's weights into `model` and (the chief) keeps the history and epoch times with the model
    run. In a multi-worker fit, call it after every worker finished fitting (the chief writes the last best epoch
    at the end of its fit)."""
    model.load_weights(f"{directory}/best/weights")
    if not chief:
        return
    for name in (HISTORY_FILE, EPOCH_TIMES_FILE):
        if tf.io.gfile.exists(f"{directory}/{name}"):
            tf.io.gfile.copy(f"{directory}/{name}", os.path.join(model_run_dir, name), overwrite=True)


def remove(directory: str) -> None:
    if tf.io.gfile.exists(directory):
        tf.io.gfile.rmtree(directory)
