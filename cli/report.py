"""Arguments and entry points of `tokenlearner report`, `tokenlearner history`, `tokenlearner spans` and `tokenlearner
tensorboard` (the work is in inspection/report.py, history.py, spans.py and tensorboard_logs.py, imported only when
the command runs: they pull in TensorFlow, TFDV and ML Metadata)."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from components.drift_records import DEFAULT_SPAN_DRIFT
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


SPANS_DESCRIPTION = """\
What the drift check between spans compares, read from DATASET (a folder, or a gs:// URI, written by `tokenlearner
data`, spans added with `data --append`):

  tokenlearner spans DATASET                  one line a span: images, brightness, size, drift from the span before
  tokenlearner spans DATASET --span N         span N's statistics: each class's share, height, width, brightness
  tokenlearner spans DATASET --compare A B    each feature's distance from span A to span B against the thresholds

Distances are those `tokenlearner run`'s ExampleValidator measures (L-infinity for the class shares, Jensen-Shannon
for the image features); the thresholds are the defaults of span_label_drift and span_image_drift unless given.
A span whose drift a run accepted (accept_drift=true) says so (its record: DATASET/spans/span-N.accepted.json)."""


def add_spans_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", metavar="DATASET", help="a dataset folder or URI written by `tokenlearner data`")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--span", type=int, default=None, metavar="N", help="show span N's statistics")
    which.add_argument("--compare", type=int, nargs=2, default=None, metavar=("A", "B"),
                       help="show each feature's drift from span A to span B")
    p.add_argument("--span-label-drift", type=float, default=DEFAULT_SPAN_DRIFT, metavar="X",
                   help=f"the label threshold to compare with, as --set span_label_drift (default: "
                        f"{DEFAULT_SPAN_DRIFT:g})")
    p.add_argument("--span-image-drift", type=float, default=DEFAULT_SPAN_DRIFT, metavar="X",
                   help=f"the height, width and brightness threshold, as --set span_image_drift (default: "
                        f"{DEFAULT_SPAN_DRIFT:g})")


def spans_from_args(args: argparse.Namespace) -> int:
    from components.validator import check_span_drift_settings
    from inspection import spans

    try:
        check_span_drift_settings(0, args.span_label_drift, args.span_image_drift)
    except ValueError as e:
        print(f"tokenlearner: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    dataset = args.dataset if "://" in args.dataset else str(Path(args.dataset).expanduser().resolve())
    if args.span is not None:
        print(spans.span_statistics(dataset, args.span))
    elif args.compare is not None:
        first, second = args.compare
        print(spans.compare(dataset, first, second, args.span_label_drift, args.span_image_drift))
    else:
        print(spans.overview(dataset, args.span_label_drift, args.span_image_drift))
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
