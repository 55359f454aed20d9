"""Run one Trainer worker by hand: `python -m trainer.worker --fn-args FN_ARGS.json`, with TF_CONFIG set.

Multi-worker training outside Vertex AI (several machines, or several processes on one for a test): start one
process per task that TF_CONFIG names, each with its own TF_CONFIG (same cluster, its own task) and the same FnArgs,
a JSON object of the TFX FnArgs fields run_fn reads:

    {"train_files": [".../Split-train/*"], "eval_files": [".../Split-eval/*"],
     "transform_output": ".../transform_graph/6", "model_run_dir": "...", "serving_model_dir": "...",
     "custom_config": {"trainer_config": {...}, "class_names": [...], "model_name": "tokenlearner"}}

(`fn_args_json` writes it from a FnArgs; a finished run's Trainer inputs are what to put in.) The chief writes the
model and logs into the folders named there; the folders must be shared (gs://, a shared file system) when the
workers run on different machines.

Exit status: 0 trained and exported; 1 training failed, a peer stopped answering included (one line on stderr:
`trainer.worker: worker 0 of 2 (chief): worker 1 of 2 (host:port) stopped answering: ...`); 2 bad arguments.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from typing import Any, Optional, Sequence

from trainer.exit_codes import EXIT_OK, EXIT_TRAINING_FAILED, EXIT_USAGE

# Fields of tfx.components.FnArgs that run_fn reads and that JSON can carry (data_accessor is an object).
FN_ARGS_FIELDS = ("working_dir", "train_files", "eval_files", "train_steps", "eval_steps", "schema_path",
                  "schema_file", "transform_graph_path", "transform_output", "serving_model_dir", "eval_model_dir",
                  "model_run_dir", "base_model", "hyperparameters", "custom_config")
PROG = "trainer.worker"


def fn_args_json(fn_args: Any) -> str:
    """The JSON `--fn-args` reads, from a FnArgs (or any object with its fields)."""
    return json.dumps({name: getattr(fn_args, name) for name in FN_ARGS_FIELDS
                       if getattr(fn_args, name, None) is not None}, indent=1)


def read_fn_args(path: str):
    """The tfx.components.FnArgs of a `--fn-args` file; ValueError naming the file and the field otherwise."""
    from tfx import v1 as tfx

    try:
        with open(path) as f:
            values = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--fn-args {path}: expected a readable JSON file ({e})") from None
    if not isinstance(values, dict):
        raise ValueError(f"--fn-args {path}: expected a JSON object of FnArgs fields")
    unknown = sorted(set(values) - set(FN_ARGS_FIELDS))
    if unknown:
        raise ValueError(f"--fn-args {path}: unknown field(s) {unknown}; expected some of {list(FN_ARGS_FIELDS)}")
    for name in ("train_files", "eval_files", "transform_output", "model_run_dir", "serving_model_dir",
                 "custom_config"):
        if not values.get(name):
            raise ValueError(f"--fn-args {path}: field {name!r} is missing or empty")
    return tfx.components.FnArgs(**values)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--fn-args", required=True, help="JSON file of the FnArgs run_fn gets")
    args = parser.parse_args(argv)
    # The Trainer's progress; TensorFlow, Beam and absl only when they warn (TensorFlow logs every all-reduce).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("trainer").setLevel(logging.INFO)
    try:
        from trainer import cluster

        cluster.from_env()  # a malformed TF_CONFIG is a usage error, before TensorFlow starts
        fn_args = read_fn_args(args.fn_args)
    except ValueError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_USAGE

    from trainer import distribute, run

    try:
        run.run_fn(fn_args)
    except distribute.PeerFailure as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_TRAINING_FAILED
    except Exception:  # noqa: BLE001 - any failure: its traceback, then the exit status
        traceback.print_exc()
        return EXIT_TRAINING_FAILED
    return EXIT_OK


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: after a peer failure the interpreter's shutdown would wait for gRPC and coordination-service
    # threads talking to the dead peer.
    os._exit(status)
