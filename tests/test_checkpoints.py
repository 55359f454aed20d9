"""The record a killed-and-resumed fit keeps of its epochs (trainer/checkpoints.py `EpochTimes`, read back by
inspection/summary.py): every epoch's time, the fit it ran in, and the precision/XLA it trained with, so a
run resumed on another machine says which epochs trained how."""
from __future__ import annotations

import logging

import pytest

from inspection import summary
from trainer import checkpoints
from trainer.contract import EPOCH_TIMES_FILE


@pytest.fixture
def warnings(caplog):
    caplog.set_level(logging.WARNING, logger="trainer")
    return caplog


class _Clock:
    def __init__(self):
        self.now = 1_800_000_000.0


@pytest.fixture
def clock(monkeypatch) -> _Clock:
    """The Trainer's clock, moved by hand (wall seconds and the UTC stamps of epochs and fits)."""
    fake = _Clock()
    monkeypatch.setattr(checkpoints.time, "time", lambda: fake.now)
    return fake


def _fit(clock: _Clock, directory, epochs: range, precision: str, jit_compile: str, minutes: float = 10) -> None:
    """One fit (one Trainer execution) that trains `epochs` (0-based) with this precision and XLA, `minutes` each,
    an hour after the previous fit."""
    clock.now += 3600
    times = checkpoints.EpochTimes(str(directory), precision, jit_compile)
    times.on_train_begin()
    for epoch in epochs:
        times.on_epoch_begin(epoch)
        clock.now += 60 * minutes
        times.on_epoch_end(epoch, {"loss": 1.0})


def test_a_fit_that_trained_alike_reports_its_time_and_no_mix(clock, tmp_path, warnings):
    _fit(clock, tmp_path, range(0, 2), "float32", "on")
    _fit(clock, tmp_path, range(2, 4), "float32", "on")  # resumed on a machine that made the same choice

    times = summary.epoch_times(str(tmp_path))
    assert times.seconds == [600.0] * 4 and times.fits == 2
    rows = (tmp_path / EPOCH_TIMES_FILE).read_text().splitlines()
    assert rows[1].startswith("1,600.0,2027-01-15T09:10:00Z,2027-01-15T09:00:00Z,")  # UTC stamps: the fake clock
    assert times.trained_with == ["float32/on"] * 4 and times.mixed == ""
    assert "precision" not in times.text and "resumed 1x" in times.text
    assert not warnings.records


def test_a_resume_that_trains_with_another_precision_warns_and_says_which_epochs(clock, tmp_path, warnings):
    # precision=auto decides per execution: epochs 1-2 on a CPU without bf16, epochs 3-4 on one with it.
    _fit(clock, tmp_path, range(0, 2), "float32", "on")
    assert not warnings.records
    _fit(clock, tmp_path, range(2, 4), "bfloat16", "off")

    (warning,) = warnings.records
    assert "float32/on" in warning.getMessage() and "bfloat16/off" in warning.getMessage()
    assert "--set precision=" in warning.getMessage()
    times = summary.epoch_times(str(tmp_path))
    assert times.mixed == "float32/on 1-2, bfloat16/off 3-4"
    assert times.text.endswith("resumed 1x; epochs trained with precision/XLA float32/on 1-2, bfloat16/off 3-4")


def test_an_epoch_record_written_before_the_precision_column_is_kept_and_marked_unknown(clock, tmp_path, warnings):
    (tmp_path / EPOCH_TIMES_FILE).write_text(
        "epoch,seconds,ended_utc,fit_started_utc\n"
        "1,600.0,2026-12-01T10:10:00Z,2026-12-01T10:00:00Z\n"
        "2,590.5,2026-12-01T10:20:00Z,2026-12-01T10:00:00Z\n")
    _fit(clock, tmp_path, range(2, 3), "float32", "on")

    times = summary.epoch_times(str(tmp_path))
    assert times.seconds[:2] == [600.0, 590.5] and len(times.seconds) == 3 and times.fits == 2
    assert times.mixed == "? 1-2, float32/on 3"  # unknown is not claimed to be float32
    (warning,) = warnings.records
    assert "trained with precision/XLA ?;" in warning.getMessage()  # spelled as the summary spells it
