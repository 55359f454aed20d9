"""The `tokenlearner` parser and `main`, the logging setup, and the `data` and `run` subcommands.

The other subcommands' arguments and entry points are in their own modules of this package (predict.py, remote.py,
flops.py, report.py).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# Before TensorFlow is imported anywhere: C++ log noise off unless asked for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if {"-v", "--verbose"} & set(sys.argv) else "3")

from components import datasets, ingest, span_stats, spans  # noqa: E402
from components import images  # noqa: E402  (image decoding bounds, for the help)
from pipeline import config as config_lib  # noqa: E402
from cli import options  # noqa: E402
from cli import predict  # noqa: E402  (imports TensorFlow only when a model is used)
from trainer.exit_codes import (EXIT_DRIFT, EXIT_INTERRUPTED, EXIT_NOT_PUSHED, EXIT_OK,  # noqa: E402
                                     EXIT_PIPELINE_FAILED, EXIT_USAGE)

log = logging.getLogger("tokenlearner")
# The loggers whose INFO lines are the console's progress: ours and each of the project's top-level packages
# (modules log under their own names; a package missing here would be silent without -v).
OUR_LOGGERS = ("tokenlearner", "cli", "inspection", "components", "pipeline", "trainer", "inference", "submission",
               "serving_client")

DESCRIPTION = ("TokenLearner ViT with TFX on your images (CIFAR-10 by default): prepare the data, run the pipeline "
               "(locally, or compiled for Kubeflow Pipelines and Vertex AI), classify images with the exported model, "
               "and inspect runs.")


class _ComponentProgress(logging.Filter):
    """Lets through, from TFX's own chatter, only which component starts, is taken from the cache, or finishes."""

    _KEEP = ("Component %s is running.", "Component %s is finished.", "A cached execution %d is used.")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg in self._KEEP


def _setup_logging(verbosity: int) -> None:
    """Quiet by default: our progress at INFO, other libraries' warnings hidden (-v shows everything)."""
    logging.basicConfig(level=logging.DEBUG if verbosity > 0 else logging.WARNING,
                        format="%(asctime)s %(levelname).1s %(name)s: %(message)s", datefmt="%H:%M:%S", force=True)
    ours = logging.INFO if verbosity == 0 else (logging.WARNING if verbosity < 0 else logging.DEBUG)
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(ours)
    noisy = ("apache_beam", "tensorflow", "tfx", "tensorflow_transform", "ml_metadata")
    absl = logging.getLogger("absl")
    for progress in [f for f in absl.filters if isinstance(f, _ComponentProgress)]:
        absl.removeFilter(progress)
    if verbosity > 0:
        # Levels outlive a call: an earlier quiet run in this process (tests, notebooks) must not hide them from -v.
        for name in (*noisy, "absl"):
            logging.getLogger(name).setLevel(logging.NOTSET)
        return
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # Beam's worker processes too
    for name in noisy:
        logging.getLogger(name).setLevel(logging.ERROR)
    if verbosity == 0:
        absl.setLevel(logging.INFO)
        absl.addFilter(_ComponentProgress())


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, metavar="SOURCE",
                   help="your images: class folders <class>/* or train/<class>/* (optionally test/<class>/*), "
                        "as a folder or .tar.gz, "
                        "or TFRecords of tf.Example{image, label} beside a classes.txt; or cifar-10-python.tar.gz "
                        "(or its folder), a URL, or a dataset folder written by `tokenlearner data`; "
                        "default: download the official CIFAR-10 archive")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="use N training and N test images (class-balanced); default: all")
    p.add_argument("--strict", action="store_true",
                   help="accept CIFAR-10 in the python format only as the official archive (MD5 checked), and "
                        "refuse images above --max-decode-pixels instead of downscaling them; without it, other "
                        "copies of CIFAR-10 are read with a warning (their pickles never run code)")
    p.add_argument("--test-fraction", type=float, default=ingest.DEFAULT_TEST_FRACTION, metavar="F",
                   help="for a source without test/: the fraction of each class's images (in path order, evenly "
                        f"spread) held out as the test split (default: {ingest.DEFAULT_TEST_FRACTION:g})")
    p.add_argument("--max-decode-pixels", type=int, default=ingest.DEFAULT_MAX_DECODE_PIXELS, metavar="N",
                   help="an image whose header declares more than N pixels (width x height) is downscaled to at "
                        f"most N at ingestion (or refused with --strict); more than {images.BOMB_FACTOR} x N is "
                        f"refused as an image bomb (default: {ingest.DEFAULT_MAX_DECODE_PIXELS:,} = 4096x4096)")
    p.add_argument("--min-images-per-class", type=int, default=ingest.DEFAULT_MIN_IMAGES_PER_CLASS, metavar="N",
                   help="each class needs at least N images for training and eval, besides any held-out test "
                        f"images (default: {ingest.DEFAULT_MIN_IMAGES_PER_CLASS})")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="leave out files with an image's name that Pillow cannot decode, counted and named in one "
                        "warning; without it, each is an error")


def _prepare(args, out_root: Path) -> Path:
    """The dataset of the data arguments (`_add_data_args`) under out_root, built or reused."""
    return ingest.prepare(args.data, out_root, limit=args.limit, strict=args.strict,
                          test_fraction=args.test_fraction, max_decode_pixels=args.max_decode_pixels,
                          min_images_per_class=args.min_images_per_class, skip_unreadable=args.skip_unreadable)


def _cmd_data(args) -> int:
    if args.append is not None:
        return _append(args)
    dataset = _prepare(args, Path(args.out).resolve())
    span_stats.load(dataset, 0)  # written once: the drift check of a later --append compares with it
    print(dataset)
    return EXIT_OK


def _append(args) -> int:
    """`data --append DATASET`: --data as the dataset's next span; the last line names the span and the counts."""
    if args.data is None:
        raise ingest.DataError("--append DATASET needs --data NEW: the images to add as its next span")
    # A URI (gs://bucket/data) is written in place through tf.io.gfile; a local path is made absolute.
    dataset = args.append.rstrip("/") if datasets.is_uri(args.append) else Path(args.append).expanduser().resolve()
    entry = spans.append(args.data, dataset, limit=args.limit, strict=args.strict, test_fraction=args.test_fraction,
                         max_decode_pixels=args.max_decode_pixels,
                         min_images_per_class=args.min_images_per_class, skip_unreadable=args.skip_unreadable)
    totals = datasets.load_manifest(dataset)["splits"]
    counts = lambda splits: ", ".join(f"{s} {v['examples']:,}" for s, v in splits.items())  # noqa: E731
    print(f"{dataset}: span {entry['span']}: {counts(entry['splits'])}; all {entry['span'] + 1} spans: "
          f"{counts(totals)}")
    return EXIT_OK


def _cmd_run(args) -> int:
    output = Path(args.output).resolve()
    overrides = options.overrides_from_args(args)
    # Validate the settings before any data is written or any pipeline output is touched.
    probe = config_lib.apply_overrides(config_lib.from_preset(args.preset, data_root="-"), overrides)
    from pipeline.config import metadata  # the metadata store must answer too (MySQL: reachable, login accepted)

    metadata.check_connection(probe.metadata, metadata.connection_config(probe.metadata, probe.metadata_path))
    probe.beam.check_job_server()  # a portable profile's job server answers (Beam alone would wait 60 s)
    data_root = _prepare(args, output / "data")
    manifest = datasets.load_manifest(data_root)
    # The preset and the overrides, then what the data decides: class list, head size, schema (one replace).
    config = config_lib.for_dataset(config_lib.apply_overrides(
        config_lib.from_preset(args.preset, data_root=str(data_root), output_dir=str(output)), overrides), manifest)
    log.info("pipeline %s: preset %s, data %s, output %s", config.pipeline_name, args.preset, data_root, output)
    from pipeline import local_runner  # TFX, Beam and TensorFlow: only once settings and data are valid

    config.save()
    try:
        local_runner.run(config)
    except Exception as e:  # noqa: BLE001 - any component failure: report it in one line, keep the details at -v
        log.debug("pipeline failure", exc_info=True)
        result = _print_summary(config)
        failed = next((f"{step.component}: " for step in (result.steps if result else [])
                       if step.status == "FAILED"), "")
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if len(first_line) > 400:  # some errors quote whole records
            first_line = first_line[:400] + " …"
        print(f"tokenlearner: error: pipeline failed: {failed}{first_line} (details: -v)", file=sys.stderr)
        return EXIT_DRIFT if _stopped_on_drift(e) else EXIT_PIPELINE_FAILED
    result = _print_summary(config)
    if result is not None and result.pushed_to is None:
        print(f"tokenlearner: model not pushed: {result.not_pushed_reason}", file=sys.stderr)
        return EXIT_NOT_PUSHED
    return EXIT_OK


def _stopped_on_drift(error: BaseException) -> bool:
    """Whether the run stopped on drift between spans (the validator's DriftError, possibly wrapped by TFX): the
    data may be fine, so scripts get EXIT_DRIFT rather than EXIT_PIPELINE_FAILED."""
    from components.validator import DriftError  # TFDV: loaded by the pipeline run already

    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, DriftError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _print_summary(config):
    from inspection import summary

    try:
        result = summary.collect(config)
    except LookupError:  # the run failed before it was recorded
        return None
    print(summary.render_summary(result))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenlearner", description=DESCRIPTION)
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=0,
                           help="warnings and errors only")
    verbosity.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1,
                           help="everything TFX, Beam and TensorFlow log")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="convert an image dataset (your image folder or TFRecords; CIFAR-10 by "
                                    "default) into TFRecords (train/eval/test)")
    _add_data_args(p)
    p.add_argument("--out", default="outputs/data", help="parent folder of the dataset (default: outputs/data)")
    p.add_argument("--append", default=None, metavar="DATASET",
                   help="add --data as the next span of DATASET (a folder written by `tokenlearner data`) instead "
                        "of a new dataset: split and encoded with the options above, it must have DATASET's class "
                        "list (same names, same order); written only once complete, with its statistics in "
                        "DATASET/spans/ for the drift check (--out is not used)")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("run", help="prepare the data and run the pipeline locally (Beam DirectRunner by default; "
                                   "--beam-profile)")
    _add_data_args(p)
    options.add_settings_arguments(
        p, set_help="override any config field, e.g. --set num_tokens=8 --set accuracy_floor=0.3", epochs=True)
    p.add_argument("--output", default="outputs",
                   help="where data, pipeline root, metadata and serving dir go (default: outputs)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("predict", help="classify images with the exported model: locally, or via TF Serving",
                       description=predict.DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_arguments(p)
    p.set_defaults(func=predict.run_from_args)

    from cli import infer as infer_cli  # the work is in inference/ (Beam and TensorFlow: imported when run)

    p = sub.add_parser("infer", help="batch predictions on Beam: classify a folder, .tar.gz, TFRecords or gs:// "
                                     "bucket of images into sharded JSON lines or CSV",
                       description=infer_cli.DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    infer_cli.add_arguments(p)
    p.set_defaults(func=infer_cli.run_from_args)

    from cli import remote as remote_cli  # the work is in the runners and submission/

    p = sub.add_parser("compile", help="compile the pipeline for Kubeflow Pipelines v2 or Vertex AI (offline)")
    remote_cli.add_arguments(p, submit=False)
    p.set_defaults(func=remote_cli.compile_from_args)

    p = sub.add_parser("submit", help="compile and submit the pipeline to Vertex AI Pipelines or Kubeflow Pipelines, "
                                      "once or on a --schedule (--dry-run: print what would be sent)")
    remote_cli.add_arguments(p, submit=True)
    p.set_defaults(func=remote_cli.submit_from_args)

    from cli import flops as flops_cli  # the work is in trainer/flops.py

    p = sub.add_parser("flops", help="parameters and GFLOPs of a preset's model (direct and keras.io conventions)")
    flops_cli.add_arguments(p)
    p.set_defaults(func=flops_cli.from_args)

    from cli import report as report_cli  # the work is in inspection/

    p = sub.add_parser("report", help="write an HTML report of a run: learning curves, confusion matrix, "
                                      "mistakes, TokenLearner maps, model card, lineage")
    report_cli.add_report_arguments(p)
    p.set_defaults(func=report_cli.report_from_args)

    p = sub.add_parser("history", help="every run of the pipeline: spans trained on, drift check, warm start, test "
                                       "accuracy, blessing, version pushed")
    report_cli.add_history_arguments(p)
    p.set_defaults(func=report_cli.history_from_args)

    p = sub.add_parser("spans", help="a dataset's spans: each span's statistics and the drift between two spans",
                       description=report_cli.SPANS_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    report_cli.add_spans_arguments(p)
    p.set_defaults(func=report_cli.spans_from_args)

    p = sub.add_parser("tensorboard", help="print (--launch: run) the TensorBoard command for a run's Trainer logs")
    report_cli.add_tensorboard_arguments(p)
    p.set_defaults(func=report_cli.tensorboard_from_args)

    from cli import worker as worker_cli  # the work is in trainer/worker.py and inspection/trainer_inputs.py

    p = sub.add_parser("train-worker", help="one worker of a multi-worker fit (TF_CONFIG) on a run's data, "
                                            "from what the run left",
                       description=worker_cli.DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    worker_cli.add_arguments(p)
    p.set_defaults(func=worker_cli.from_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parses `argv` (default: sys.argv), runs the subcommand and returns its exit code (exit_codes.py).

    `argv` None is the program itself: its console goes through cli/console.py (TensorFlow's shutdown
    message dropped). A list is a call from Python (tests), which leaves the caller's streams alone."""
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbosity)
    if argv is None and args.verbosity <= 0:  # -v shows everything, TensorFlow's shutdown noise included
        from cli import console

        with console.without_tf_shutdown_messages():
            return _run(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except (ingest.DataError, config_lib.ConfigError) as e:
        print(f"tokenlearner: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tokenlearner: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
