"""`tokenlearner tensorboard`: the TensorBoard command for a run's Trainer logs (the ModelRun artifacts in MLMD)."""
from __future__ import annotations

import os
import shlex
import shutil
import sys
from typing import Optional

from pipeline.config import PipelineConfig
from inspection import run_store, summary
from trainer import contract


class TensorBoardError(ValueError):
    """No Trainer logs to show; the message says where it looked."""


def logdirs(config: PipelineConfig, run_id: Optional[str] = None, all_runs: bool = False) -> dict[str, str]:
    """{name: model_run dir}: the given (default: latest) run's Trainer logs, or every Trainer execution's."""
    missing = run_store.missing_store(config)
    if missing:
        raise TensorBoardError(missing)
    store = run_store.open_store(config)
    if all_runs:
        runs = sorted(store.get_artifacts_by_type("ModelRun"), key=lambda a: a.id)
        found = {f"model_run_{a.id}": a.uri for a in runs if os.path.isdir(a.uri)}
    else:
        try:
            run = summary.collect(config, run_id, store=store)
        except LookupError as e:
            raise TensorBoardError(f"{config.metadata_path}: {e}") from None
        trainer = next((s for s in run.steps if s.component == contract.TRAINER), None)
        # A Trainer without new data re-exported an earlier model: its logs are where that model trained.
        found = {f"model_run_{a.id}": summary.trained_in(a.uri)
                 for a in (trainer.outputs.get("ModelRun", []) if trainer else [])}
    if not found:
        raise TensorBoardError(f"{config.metadata_path}: no Trainer logs (ModelRun artifact) recorded")
    return found


def executable() -> str:
    """The tensorboard next to this Python (the project's .venv), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    return beside if os.access(beside, os.X_OK) else (shutil.which("tensorboard") or "tensorboard")


def command(dirs: dict[str, str], port: int = 6006) -> list[str]:
    if len(dirs) == 1:
        return [executable(), "--logdir", next(iter(dirs.values())), "--port", str(port)]
    return [executable(), "--logdir_spec", ",".join(f"{name}:{path}" for name, path in dirs.items()),
            "--port", str(port)]


def render(cmd: list[str]) -> str:
    return shlex.join(cmd)
