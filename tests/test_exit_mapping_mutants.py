"""How `tokenlearner` turns what a command raised into its exit code and line (cli/app.py `_run`,
`_stopped_on_drift`), without running a pipeline. Written against the mutants bench/mutation.py found alive."""
from __future__ import annotations

import argparse

import pytest

from cli import app
from components import ingest
from components.validator import DataValidationError, DriftError
from pipeline import config as config_lib


def _run(fn) -> int:
    return app._run(argparse.Namespace(func=fn))


def _raise(error):
    def fn(args):
        raise error
    return fn


def test_a_command_s_own_code_is_passed_on_and_its_args_reach_it():
    seen = []
    args = argparse.Namespace(func=lambda a: seen.append(a) or 3)
    assert app._run(args) == 3 and seen == [args]
    assert _run(lambda a: 0) == 0


@pytest.mark.parametrize("error", [ingest.DataError("data/x.png: not an image"),
                                   config_lib.ConfigError("epochs: expected a whole number, got 'x'")])
def test_bad_data_or_settings_are_exit_2_with_one_line(error, capsys):
    assert _run(_raise(error)) == 2
    assert capsys.readouterr().err == f"tokenlearner: error: {error}\n"


def test_ctrl_c_is_exit_130_with_one_line(capsys):
    assert _run(_raise(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "tokenlearner: interrupted\n"


def test_any_other_error_is_not_taken_for_bad_input():
    with pytest.raises(RuntimeError, match="boom"):
        _run(_raise(RuntimeError("boom")))


def _chained(inner: BaseException, how: str) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as e:
            if how == "cause":
                raise RuntimeError("component failed") from e
            raise RuntimeError("component failed")  # implicit: __context__ only
    except RuntimeError as outer:
        return outer


def test_drift_is_found_itself_as_a_cause_or_as_a_context_any_depth_down():
    drift = DriftError("span 2 differs from span 1")
    assert app._stopped_on_drift(drift)
    assert app._stopped_on_drift(_chained(drift, "cause"))
    assert app._stopped_on_drift(_chained(_chained(DriftError("d"), "context"), "cause"))


def test_other_failures_are_not_drift_and_a_cycle_of_causes_ends():
    assert not app._stopped_on_drift(RuntimeError("x"))
    assert not app._stopped_on_drift(_chained(DataValidationError("split 'train': bad"), "cause"))
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__cause__, second.__cause__ = second, first
    assert not app._stopped_on_drift(first)


def test_a_cause_wins_over_the_context_when_both_are_set():
    error = RuntimeError("outer")
    error.__cause__ = RuntimeError("cause")
    error.__context__ = DriftError("context")
    assert not app._stopped_on_drift(error)
    error.__cause__, error.__context__ = DriftError("cause"), RuntimeError("context")
    assert app._stopped_on_drift(error)
