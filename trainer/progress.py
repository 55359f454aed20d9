"""Progress lines for logs (Kubeflow, CI, a terminal alike): where training is and how long it will take."""
from __future__ import annotations

import logging
import time

import tf_keras as keras

log = logging.getLogger("trainer")


class ProgressLogger(keras.callbacks.Callback):
    """Logs every `every_seconds` inside an epoch (step, loss, ETA of the epoch) and a line per epoch with the
    metrics and the ETA of the whole fit. The fit ETA is paced by the epochs this process trained: a resumed fit
    starts at a later epoch, and the epochs before it took no time here."""

    def __init__(self, epochs: int, steps_per_epoch: int, every_seconds: float = 30.0):
        super().__init__()
        self.epochs, self.steps, self.every = epochs, steps_per_epoch, every_seconds

    def on_train_begin(self, logs=None):
        self.fit_start, self.first_epoch = time.time(), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_start, self.last = epoch, time.time(), time.time()
        if self.first_epoch is None:
            self.first_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        now = time.time()
        if now - self.last >= self.every:
            self.last = now
            rate = (batch + 1) / (now - self.epoch_start)
            eta = (self.steps - batch - 1) / rate
            log.info("epoch %d/%d step %d/%d loss %.4f accuracy %.4f, %.1f steps/s, epoch ETA %s",
                     self.epoch + 1, self.epochs, batch + 1, self.steps, logs.get("loss", float("nan")),
                     logs.get("accuracy", float("nan")), rate, _hms(eta))

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.time() - self.fit_start
        remaining = elapsed / (epoch + 1 - self.first_epoch) * (self.epochs - epoch - 1)
        metrics = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
        log.info("epoch %d/%d done in %s: %s; fit ETA %s", epoch + 1, self.epochs,
                 _hms(time.time() - self.epoch_start), metrics, _hms(remaining))


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
