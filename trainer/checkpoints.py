"""Training state that outlives a killed Trainer: epoch checkpoints, the best epoch, the history.

Everything lives in a backup folder keyed by what determines the result (trainer config, training data,
Transform graph), outside the per-execution model_run dir, so re-running the same pipeline after a crash resumes
at the last finished epoch instead of epoch 0. The folder is removed once the model is exported.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from datetime import datetime, timezone

import tensorflow as tf
import tf_keras as keras

from trainer.contract import EPOCH_TIMES_FILE, HISTORY_FILE

log = logging.getLogger("trainer")


def backup_dir(root: str, cfg_dict: dict, train_files: list[str], transform_output: str) -> str:
    key = json.dumps({"config": cfg_dict, "train": sorted(train_files), "transform": transform_output},
                     sort_keys=True)
    return f"{root.rstrip('/')}/{hashlib.sha256(key.encode()).hexdigest()[:16]}"


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
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best = value
            self.model.save_weights(self.weights)
            with tf.io.gfile.GFile(self.record, "w") as f:
                json.dump({"value": float(value), "epoch": epoch + 1}, f)


class EpochTimes(keras.callbacks.Callback):
    """Appends each finished epoch's wall seconds to epoch_times.csv, with the start of the fit it belongs to: a run
    resumed across machines or sessions still adds up to its true training time (the Trainer execution that
    finishes saw only the last part, and a log may be gone)."""

    COLUMNS = "epoch,seconds,ended_utc,fit_started_utc\n"

    def __init__(self, directory: str):
        super().__init__()
        self.path = f"{directory}/{EPOCH_TIMES_FILE}"

    def on_train_begin(self, logs=None):
        self.fit_started = _utc_now()

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.time() - self.start
        text = self.COLUMNS
        if tf.io.gfile.exists(self.path):
            with tf.io.gfile.GFile(self.path) as f:
                text = f.read()
        with tf.io.gfile.GFile(self.path, "w") as f:  # rewritten whole: object stores cannot append
            f.write(f"{text}{epoch + 1},{seconds:.1f},{_utc_now()},{self.fit_started}\n")


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def callbacks(directory: str) -> list[keras.callbacks.Callback]:
    tf.io.gfile.makedirs(directory)
    if tf.io.gfile.exists(f"{directory}/state"):
        log.info("resuming from the epoch checkpoint in %s", directory)
    return [
        # Restores weights, optimizer state and the epoch counter at the start of fit.
        keras.callbacks.BackupAndRestore(f"{directory}/state", save_freq="epoch", delete_checkpoint=False),
        BestWeights(directory),
        keras.callbacks.CSVLogger(f"{directory}/{HISTORY_FILE}", append=True),
        EpochTimes(directory),
    ]


def finish(directory: str, model: keras.Model, model_run_dir: str) -> None:
    """Loads the best epoch's weights into `model` and keeps the history and epoch times with the model run."""
    model.load_weights(f"{directory}/best/weights")
    for name in (HISTORY_FILE, EPOCH_TIMES_FILE):
        if tf.io.gfile.exists(f"{directory}/{name}"):
            tf.io.gfile.copy(f"{directory}/{name}", os.path.join(model_run_dir, name), overwrite=True)


def remove(directory: str) -> None:
    if tf.io.gfile.exists(directory):
        tf.io.gfile.rmtree(directory)
