"""`tokenlearner`, the command line: every subcommand's arguments and entry point.

- app.py: the parser, logging and `main`; the `data` and `run` subcommands;
- predict.py: `predict` (the client itself is serving_client/predict.py);
- infer.py: `infer`, batch predictions on Beam (the work is in inference/);
- remote.py: `compile` and `submit` (the work is in pipeline/kubeflow_runner.py, pipeline/vertex_runner.py and
  submission/);
- flops.py: `flops` (the work is in trainer/flops.py);
- report.py: `report`, `history` and `tensorboard` (the work is in inspection/);
- worker.py: `train-worker`, one worker of a multi-worker fit (the work is in trainer/worker.py);
- options.py: the options several subcommands share (--preset, --set, --beam-profile);
- console.py: the program's stderr (and its Beam workers') without TensorFlow's shutdown-time message.

`main` (pyproject's `tokenlearner` entry point, also `python -m cli`) loads the parser when called: this
file imports only trainer/__init__.py (no TensorFlow); that import sets TF_USE_LEGACY_KERAS before anything imports TensorFlow: TFT and TFMA only work with
Keras 2.
"""
from __future__ import annotations

import trainer as _keras2  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)


def main(argv: list[str] | None = None) -> int:
    """Runs `tokenlearner` with `argv` (default: sys.argv) and returns the exit code (trainer/exit_codes.py)."""
    from cli import app

    return app.main(argv)
