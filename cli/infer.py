"""Arguments and entry point of `tokenlearner infer` (the job itself is the inference/ package; its docstring, with
the exit codes, is the subcommand's --help description). Beam and TensorFlow are imported only when it runs."""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Iterator

import inference
from pipeline import config as config_lib
from cli import options

DESCRIPTION = inference.__doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR",
                   help="the SavedModel: a version folder, or the model base folder (<output>/serving/<model_name>; "
                        "its highest version is used), as for `predict --model`; local or gs://")
    p.add_argument("--version", type=int, help="with a model base folder: this version instead of the highest")
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help="image folder (recursively), image file, .tar.gz, TFRecords of tf.Example{image} (file, "
                        "folder or glob), or a gs:// folder or glob of these")
    p.add_argument("--out", required=True, metavar="FOLDER",
                   help="where predictions-*.jsonl|csv and errors-*.jsonl go; must be empty or absent")
    p.add_argument("--format", choices=inference.FORMATS, default="jsonl",
                   help="predictions as JSON lines (default) or CSV")
    p.add_argument("--top-k", type=int, default=3, help="classes per image, most probable first (default: 3)")
    p.add_argument("--batch-size", type=int, default=64, help="images per call of the signature (default: 64)")
    p.add_argument("--num-shards", type=int, default=0,
                   help="prediction files (default: 0, as many as the runner writes in parallel)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the predictions-*/errors-* files of a previous run in --out (only those)")
    options.add_settings_arguments(
        p, set_help="Beam settings as for `run`, e.g. --set beam_job_endpoint=localhost:8099 "
                    "--set beam_environment_type=LOOPBACK (beam_* fields; beam_workers for the DirectRunner)")


def beam_args(args: argparse.Namespace) -> list[str]:
    """The Beam arguments of the settings' profile, as `run` passes them to its Evaluator (the component that does
    model inference): on the DirectRunner one in-process worker, since TensorFlow already spreads one process's
    inference over every core (`--set beam_workers` is for `run`'s data components); the job server of a portable
    profile must answer (ConfigError otherwise)."""
    config = config_lib.apply_overrides(config_lib.from_preset(args.preset, data_root="-"),
                                        options.overrides_from_args(args))
    config.beam.check_job_server()
    if config.beam.profile == "direct":  # beam_workers does not apply: 2,000 images took 10.2 s in 2 processes,
        return config.beam.evaluator_args()  # 6.0 s in one (2 cores; docs/benchmarks.md)
    return config.beam_pipeline_args


@contextlib.contextmanager
def _beam_errors_at_verbose_only(verbosity: int) -> Iterator[None]:
    """A failed job is one line of ours (job.failure_line), details at -v; Beam logs the worker's traceback at ERROR
    before it (20 lines on the in-memory DirectRunner, about 700 on the portable runner), so below -v its loggers
    stay quiet while the job runs."""
    beam_log = logging.getLogger("apache_beam")
    level = beam_log.level
    if verbosity <= 0:
        beam_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        beam_log.setLevel(level)


def run_from_args(args: argparse.Namespace) -> int:
    """Entry point of the CLI subcommand; returns the exit code (inference/__init__.py)."""
    from inference import job

    try:
        settings = job.InferSettings(model=args.model, data=args.data, out=args.out, version=args.version,
                                     top_k=args.top_k, format=args.format, batch_size=args.batch_size,
                                     num_shards=args.num_shards, overwrite=args.overwrite,
                                     beam_args=tuple(beam_args(args)))
        with _beam_errors_at_verbose_only(getattr(args, "verbosity", 0)):
            outcome = job.run(settings)
    except job.InferError as e:
        print(f"tokenlearner: error: {e}", file=sys.stderr)
        return e.exit_code
    if outcome.errors:
        print(f"tokenlearner: {outcome.errors:,} images could not be classified: see "
              f"{', '.join(outcome.error_files)}", file=sys.stderr)
    print(job.summary_line(outcome, args.out))
    return outcome.exit_code

