"""Arguments and entry points of `tokenlearner report`, `tokenlearner history` and `tokenlearner tensorboard` (the
work is in inspection/report.py, history.py and tensorboard_logs.py, imported only when the command runs:
they pull in TensorFlow and ML Metadata)."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from pipeline import config as config_lib
from trainer.exit_codes import EXIT_OK, EXIT_USAGE
from inspection.run_store import LATEST


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", default="outputs",
                   help="the --output folder of `tokenlearner run` (default: outputs)")
    p.add_argument("--run", default=LATEST, metavar=f"{LATEST}|RUN_ID",
                   help=f"pipeline run id as MLMD records it (the first line of the run summary); default: {LATEST}")


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    _add_run_arguments(p)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for report.html and its PNG figures (default: OUTPUT/report)")
    p.add_argument("--max-test-examples", type=int, default=10_000, metavar="N",
                   help="test images run through the model for the prediction grid (default: 10000, all of "
                        "CIFAR-10's test split)")


def report_from_args(args: argparse.Namespace) -> int:
    from inspection import report

    output = Path(args.output).resolve()
    config = config_lib.load(str(output))
    out = Path(args.out).resolve() if args.out else output / "report"
    try:
        path = report.build(config, str(out), run_id=args.run, max_test_examples=args.max_test_examples)
    except report.ReportError as e:
        print(f"tokenlearner: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(path)
    return EXIT_OK


def add_history_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", default="outputs",
                   help="the --output folder of `tokenlearner run` (default: outputs)")


def history_from_args(args: argparse.Namespace) -> int:
    from inspection import history, run_store

    config = config_lib.load(str(Path(args.output).resolve()))
    missing = run_store.missing_store(config)
    if missing:
        print(f"tokenlearner: error: {missing}", file=sys.stderr)
        return EXIT_USAGE
    print(history.render(history.loop_history(config, run_store.open_store(config))))
    return EXIT_OK


def add_tensorboard_arguments(p: argparse.ArgumentParser) -> None:
    _add_run_arguments(p)
    p.add_argument("--all", action="store_true", help="every Trainer execution's logs, not only the run's")
    p.add_argument("--port", type=int, default=6006, help="TensorBoard port (default: 6006)")
    p.add_argument("--launch", action="store_true", help="run TensorBoard instead of printing the command")


def tensorboard_from_args(args: argparse.Namespace) -> int:
    from inspection import tensorboard_logs

    config = config_lib.load(str(Path(args.output).resolve()))
    try:
        cmd = tensorboard_logs.command(tensorboard_logs.logdirs(config, args.run, all_runs=args.all), args.port)
    except tensorboard_logs.TensorBoardError as e:
        print(f"tokenlearner: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(tensorboard_logs.render(cmd))
    if args.launch:
        return subprocess.call(cmd)
    return EXIT_OK
