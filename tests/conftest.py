"""Shared fixtures: real CIFAR-10 from ../shared when present, one tiny pipeline run and its report per session,
one tiny exported model per session. The helpers they use (synthetic files, model export, the CLI in a fresh
interpreter) are in tests/helpers.py."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

os.environ["TF_USE_LEGACY_KERAS"] = "1"
_TF_LOG_LEVEL_SET_HERE = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.helpers import (SHARED_CIFAR, TINY_RUN_LIMIT, ExportedModel, TinyRun,  # noqa: E402
                           build_exported_model, run_cli)


@pytest.fixture(scope="session")
def shared_cifar() -> Path:
    if not SHARED_CIFAR.is_file():
        pytest.skip(f"real CIFAR-10 not found at {SHARED_CIFAR} (the ../shared folder beside the checkout)")
    return SHARED_CIFAR


@pytest.fixture(scope="session")
def tiny_run(shared_cifar, tmp_path_factory) -> TinyRun:
    """`tokenlearner run --preset tiny --limit 300` with default settings, once per session (tests/helpers.py)."""
    env = dict(os.environ)
    if _TF_LOG_LEVEL_SET_HERE:
        env.pop("TF_CPP_MIN_LOG_LEVEL")  # the CLI's own default, as a user gets it, not this file's
    output = tmp_path_factory.mktemp("tiny_run")
    proc = run_cli(["run", "--data", str(shared_cifar), "--preset", "tiny", "--limit", str(TINY_RUN_LIMIT),
                    "--output", str(output)], env=env)
    assert proc.returncode == 0, proc.stdout[-5000:]
    run_id = re.search(r"^run (\S+)$", proc.stdout, flags=re.M)
    assert run_id, proc.stdout[-5000:]
    return TinyRun(output=output, console=proc.stdout, run_id=run_id.group(1))


@pytest.fixture(scope="session")
def tiny_report(tiny_run, tmp_path_factory) -> Path:
    """The folder `tokenlearner report` writes for the shared tiny run: report.html and its PNG figures."""
    from pipeline import cli

    out = tmp_path_factory.mktemp("tiny_report")
    assert cli.main(["report", "--output", str(tiny_run.output), "--run", tiny_run.run_id, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory) -> ExportedModel:
    """One tiny exported model for the whole session (read it, never write into it)."""
    return build_exported_model(tmp_path_factory.mktemp("exported_model"))
