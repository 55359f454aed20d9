"""Progress lines of the Trainer (trainer/progress.py): what a person watching a long fit reads in the log."""
from __future__ import annotations

import logging

import pytest

from trainer import progress


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch, caplog) -> _Clock:
    """The Trainer's clock, moved by hand; its log lines captured."""
    fake = _Clock()
    monkeypatch.setattr(progress.time, "time", fake)
    caplog.set_level(logging.INFO, logger="trainer")
    return fake


def _fit(clock: _Clock, epochs: int, trained: dict[int, float]) -> None:
    """One fit of `epochs` that trains the epochs `trained` maps (0-based index -> seconds it takes)."""
    logger = progress.ProgressLogger(epochs=epochs, steps_per_epoch=10)
    logger.on_train_begin()
    for epoch, seconds in trained.items():
        logger.on_epoch_begin(epoch)
        clock.now += seconds
        logger.on_epoch_end(epoch, {"loss": 1.0, "val_accuracy": 0.5})


def test_the_fit_eta_of_a_resumed_run_is_paced_by_the_epochs_it_trained(clock, caplog):
    # Resumed at epoch 11 of 20: one 10-minute epoch leaves 9 epochs, i.e. 1.5 hours, not 8 minutes.
    _fit(clock, 20, {10: 600})
    assert "epoch 11/20 done in 0:10:00" in caplog.text and "fit ETA 1:30:00" in caplog.text


def test_a_fresh_fit_eta_counts_every_epoch(clock, caplog):
    _fit(clock, 4, {0: 60, 1: 120})  # 3 minutes for 2 epochs: the 2 left take 3 more
    assert "epoch 2/4 done in 0:02:00" in caplog.text and "fit ETA 0:03:00" in caplog.text
