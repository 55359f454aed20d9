"""`tokenlearner train-worker`: one worker of a multi-worker fit on what a run left, with TF_CONFIG set.

The run's Trainer inputs come from its metadata (inspection/trainer_inputs.py): its Examples, its Transform graph
and the trainer settings, class names and model name it trained with (`--set` changes trainer settings). The
command writes them as OUT/fn_args.json (the file `python -m trainer.worker --fn-args` reads, for a re-run without
this command) and runs the worker (trainer/worker.py: its exit codes, --peer-timeout, SIGTERM).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from inspection.run_store import LATEST
from pipeline import config as config_lib
from trainer import cluster, worker
from trainer.config import TrainerConfig
from trainer.contract import BACKUP_DIR_KEY, TRAINER_CONFIG_KEY
from trainer.exit_codes import EXIT_USAGE

log = logging.getLogger(__name__)

FN_ARGS_FILE = "fn_args.json"
DEFAULT_OUT = "multi-worker"  # OUTPUT/multi-worker/RUN_ID

DESCRIPTION = """\
Start this machine's worker of a multi-worker fit (MultiWorkerMirroredStrategy) on a finished run's data: the
Examples and Transform graph of the run's Trainer, with the trainer settings it used (--set changes them). Start
one such command per task of TF_CONFIG, each with its own TF_CONFIG (same cluster, its own task) and the same
arguments; --output and --out must be the same shared folders (gs://, NFS) when the workers are on several
machines. Without TF_CONFIG the command trains in this one process.

  TF_CONFIG='{"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}' \\
      tokenlearner train-worker --output outputs

The chief writes OUT/model_run (logs, history, epoch checkpoints in backup/) and OUT/serving (the SavedModel);
every worker writes OUT/fn_args.json. A worker that stops answering makes the others exit 1 with one line naming
it; starting every worker again resumes from the last finished epoch. Exit codes: README's CLI section."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", default="outputs", help="the --output folder of `tokenlearner run` (default: outputs)")
    p.add_argument("--run", default=LATEST, metavar=f"{LATEST}|RUN_ID",
                   help=f"the pipeline run whose Trainer inputs to train on (default: {LATEST})")
    p.add_argument("--out", default=None, metavar="DIR",
                   help=f"where the model, logs, checkpoints and {FN_ARGS_FILE} go, the same for every worker "
                        f"(default: OUTPUT/{DEFAULT_OUT}/RUN_ID)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a trainer setting of the run, e.g. --set epochs=40 --set batch_size=64 "
                        "(the batch of each worker)")
    worker.add_peer_timeout_argument(p)


def worker_custom_config(config: config_lib.PipelineConfig, custom_config: Mapping[str, Any],
                         overrides: Mapping[str, str]) -> dict[str, Any]:
    """The run's Trainer custom_config with `overrides` applied to its trainer settings, and without the
    pipeline's checkpoint folder: the workers keep theirs in model_run/backup under --out, so that a later pipeline
    run does not resume from a worker's checkpoints. ConfigError for an override that is not a trainer setting."""
    trainer = TrainerConfig.from_dict(custom_config[TRAINER_CONFIG_KEY])
    base = dataclasses.replace(config, trainer=trainer)
    for key, value in overrides.items():
        if dataclasses.replace(config_lib.apply_overrides(base, {key: value}), trainer=trainer) != base:
            raise config_lib.ConfigError(f"--set {key}: not a trainer setting; the workers train on the run's "
                                         f"data with its pipeline settings")
    values = {**custom_config, TRAINER_CONFIG_KEY: config_lib.apply_overrides(base, overrides).trainer.to_dict()}
    values.pop(BACKUP_DIR_KEY, None)
    return values


def from_args(args: argparse.Namespace) -> int:
    from inspection import trainer_inputs  # ML Metadata

    try:
        cluster.from_env()  # a malformed TF_CONFIG: one line before anything is read or written
    except ValueError as e:
        print(f"tokenlearner: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    output = Path(args.output).resolve()
    config = config_lib.load(str(output))
    overrides = config_lib.parse_overrides(args.set or [])
    try:
        inputs = trainer_inputs.trainer_inputs(config, args.run)
    except trainer_inputs.NoTrainerInputs as e:
        print(f"tokenlearner: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    custom_config = worker_custom_config(config, inputs.custom_config, overrides)
    out = os.path.abspath(args.out) if args.out else str(output / DEFAULT_OUT / inputs.run_id)
    fn_args = worker.write_fn_args(worker.fn_args_values(inputs.examples, inputs.transform_graph, out, custom_config),
                                   os.path.join(out, FN_ARGS_FILE))
    log.info("run %s: training on %s and %s into %s (FnArgs: %s)", inputs.run_id, inputs.examples,
             inputs.transform_graph, out, fn_args)
    return worker.supervise(fn_args, args.peer_timeout, verbose=args.verbosity > 0)
