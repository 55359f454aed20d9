"""Run one Trainer worker of a multi-worker fit by hand, with TF_CONFIG set: `tokenlearner train-worker --output DIR`
(cli/worker.py: the FnArgs of the latest run in DIR, written by the command) or `python -m trainer.worker --fn-args
FN_ARGS.json`.

Multi-worker training outside Vertex AI (several machines, or several processes on one for a test): start one
process per task that TF_CONFIG names, each with its own TF_CONFIG (same cluster, its own task) and the same FnArgs,
a JSON object of the TFX FnArgs fields run_fn reads (`fn_args_values` builds it; `write_fn_args` writes it):

    {"train_files": [".../Split-train/*"], "eval_files": [".../Split-eval/*"],
     "transform_output": ".../transform_graph/6", "model_run_dir": "...", "serving_model_dir": "...",
     "custom_config": {"trainer_config": {...}, "class_names": [...], "model_name": "tokenlearner"}}

The chief writes the model and logs into the folders named there; the folders must be shared (gs://, a shared file
system) when the workers run on different machines.

Each worker is two processes: this one, which never imports TensorFlow, and the training process it starts
(`run_fn`). The split is what makes a worker stoppable: while MultiWorkerMirroredStrategy waits for the other
workers, TensorFlow's call holds the GIL, so no Python code of the training process runs (no timer, no signal
handler), and its coordination service replaces the SIGTERM handler with one that only records the signal
(tsl's preemption notifier): a lone worker waited 608 s and ignored SIGTERM. This process stays in Python: it
times the wait for the peers (`--peer-timeout`), ends the training process on SIGTERM or Ctrl-C, and keeps
TensorFlow's and gRPC's C++ log lines off the console (`-v` shows them).

Exit status (trainer/exit_codes.py): 0 trained and exported; 1 training failed, a peer that stopped answering
included (one line: `trainer.worker: worker 0 of 2 (chief): worker 1 of 2 (host:port) stopped answering: ...`);
2 bad arguments; 5 the other workers did not all connect within --peer-timeout seconds (one line naming them);
143 stopped by SIGTERM; 130 Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import IO, Any, Mapping, Optional, Sequence

from trainer import cluster as cluster_lib
from trainer.contract import EVAL, TRAIN, split_dir
from trainer.exit_codes import (EXIT_INTERRUPTED, EXIT_OK, EXIT_PEER_TIMEOUT, EXIT_TERMINATED, EXIT_TRAINING_FAILED,
                                EXIT_USAGE)

# Fields of tfx.components.FnArgs that run_fn reads and that JSON can carry (data_accessor is an object).
FN_ARGS_FIELDS = ("working_dir", "train_files", "eval_files", "train_steps", "eval_steps", "schema_path",
                  "schema_file", "transform_graph_path", "transform_output", "serving_model_dir", "eval_model_dir",
                  "model_run_dir", "base_model", "hyperparameters", "custom_config")
REQUIRED_FIELDS = ("train_files", "eval_files", "transform_output", "model_run_dir", "serving_model_dir",
                   "custom_config")
PROG = "trainer.worker"
DEFAULT_PEER_TIMEOUT_S = 300.0  # Vertex AI starts a job's replicas within minutes of each other

# C++ log lines of TensorFlow (tsl: "2026-12-08 02:51:14.942650: E external/...cc:539] ...") and of absl/gRPC
# ("E0000 00:00:1796698274.943368   12528 file.cc:303] ..."), and absl's notice before its first line.
_CPP_LOG_LINE = re.compile(rb"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\]"
                           rb"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]"
                           rb"|WARNING: All log messages before absl::InitializeLog\(\) is called)")
# Where a C++ message continues on the next lines (TensorFlow's "Example stragglers:\n/job:worker/replica:0/task:1"),
# a line that starts none of these is part of it.
_OWN_LINE = re.compile(rb"(\d\d:\d\d:\d\d [DIWEC] \S+: |trainer\.worker: |Traceback |tokenlearner)")


def fn_args_values(examples: str, transform_output: str, out_dir: str, custom_config: Mapping[str, Any],
                   base_model: Optional[str] = None) -> dict[str, Any]:
    """The FnArgs fields (JSON values) of a fit on an Examples artifact's `train` and `eval` splits (the URI of
    the artifact, as the TFX Trainer gets it) with a Transform graph, writing the run's files into
    `out_dir`/model_run and the SavedModel into `out_dir`/serving."""
    values: dict[str, Any] = {
        "train_files": [f"{examples}/{split_dir(TRAIN)}/*"], "eval_files": [f"{examples}/{split_dir(EVAL)}/*"],
        "transform_output": transform_output,
        "model_run_dir": os.path.join(out_dir, "model_run"), "serving_model_dir": os.path.join(out_dir, "serving"),
        "custom_config": dict(custom_config)}
    if base_model:
        values["base_model"] = base_model
    return values


def write_fn_args(values: Mapping[str, Any], path: str) -> str:
    """`values` as the JSON `--fn-args` reads, written whole or not at all (every worker of a cluster may write the
    same file at once); returns `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=".fn_args-", suffix=".json", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump(dict(values), f, indent=1)
    os.replace(partial, path)
    return path


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
    for name in REQUIRED_FIELDS:
        if not values.get(name):
            raise ValueError(f"--fn-args {path}: field {name!r} is missing or empty")
    return tfx.components.FnArgs(**values)


# ------------------------------------------------------------------------------------------ the supervising process

class _Stopped(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame: Any) -> None:
    raise _Stopped(signum)


def _kill_with_parent() -> None:
    """In the training process before it starts: SIGKILL when the supervising process dies (Linux), so that a
    supervisor killed with SIGKILL leaves no worker behind still holding its port."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the training process may outlive a killed supervisor
        pass


def _forward(stream: IO[bytes], out: IO[str], verbose: bool) -> None:
    """Copies the training process's stderr to `out`, without C++ log lines unless `verbose`."""
    in_cpp_message = False
    for line in iter(stream.readline, b""):
        if not verbose:
            if _CPP_LOG_LINE.match(line):
                in_cpp_message = True
                continue
            if in_cpp_message and not _OWN_LINE.match(line):
                continue
            in_cpp_message = False
        out.write(line.decode(errors="replace"))
        out.flush()
    stream.close()


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def supervise(fn_args_path: str, peer_timeout: float = DEFAULT_PEER_TIMEOUT_S, verbose: bool = False,
              out: Optional[IO[str]] = None) -> int:
    """Runs the training process of this worker (`run_fn` on the FnArgs file) and returns the worker's exit
    status (module docstring); its own lines and the training process's stderr go to `out` (default stderr)."""
    out = out or sys.stderr
    try:
        workers = cluster_lib.from_env()  # a malformed TF_CONFIG is a usage error, before TensorFlow starts
    except ValueError as e:
        print(f"{PROG}: {e}", file=out)
        return EXIT_USAGE
    who = f"{workers.describe()}: " if workers else ""
    status_read, status_write = os.pipe()
    env = dict(os.environ)
    if not verbose:
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # fewer C++ lines to drop; -v keeps the caller's setting
        env.setdefault("GRPC_VERBOSITY", "NONE")
        env.setdefault("PYTHONWARNINGS", "ignore")  # TFX's imports warn about Python and library versions
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(cluster_lib.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "trainer.worker", "--fn-args", fn_args_path, "--status-fd", str(status_write),
               *(["-v"] if verbose else [])]
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGTERM, signal.SIGINT)} if in_main_thread else {}
    child: Optional[subprocess.Popen] = None
    forwarder: Optional[threading.Thread] = None
    try:
        child = subprocess.Popen(command, env=env, pass_fds=(status_write,), stderr=subprocess.PIPE,
                                 preexec_fn=_kill_with_parent)
        os.close(status_write)
        assert child.stderr is not None
        forwarder = threading.Thread(target=_forward, args=(child.stderr, out, verbose), name="worker-stderr",
                                     daemon=True)
        forwarder.start()
        deadline: Optional[float] = None
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([status_read], [], [], wait)
            if not ready:
                _end(child, forwarder)
                peers = ", ".join(workers.peers()) if workers else "the other workers"
                print(f"{PROG}: {who}peer timeout: {peers} did not connect within {peer_timeout:g} s "
                      f"(--peer-timeout); start every worker that TF_CONFIG names", file=out)
                return EXIT_PEER_TIMEOUT
            data = os.read(status_read, 64)
            if not data:  # the training process closed it: connected, or ended
                break
            for stage in data.decode().split():
                deadline = time.monotonic() + peer_timeout if stage == cluster_lib.WAITING else None
        status = child.wait()
        forwarder.join(timeout=10)
        if status < 0:  # killed by a signal: the kernel's OOM killer, or someone's kill -9
            print(f"{PROG}: {who}the training process was killed by {_signal_name(-status)}", file=out)
            return EXIT_TRAINING_FAILED
        return status
    except _Stopped as stopped:
        if child is not None:
            _end(child, forwarder)
        resume = " (restart every worker to resume from the last finished epoch)" if workers else ""
        print(f"{PROG}: {who}stopped by {_signal_name(stopped.signum)}{resume}", file=out)
        return EXIT_INTERRUPTED if stopped.signum == signal.SIGINT else EXIT_TERMINATED
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(status_read)
        if child is not None and child.poll() is None:
            _end(child, forwarder)


def _end(child: subprocess.Popen, forwarder: Optional[threading.Thread]) -> None:
    """SIGKILL for the training process: SIGTERM would only be recorded by TensorFlow (module docstring)."""
    child.kill()
    child.wait()
    if forwarder is not None:
        forwarder.join(timeout=10)  # its last lines before ours


# ------------------------------------------------------------------------------------------- the training process

def _setup_logging(verbose: bool) -> None:
    """The Trainer's progress; TensorFlow, Beam and absl only with -v (TensorFlow logs every all-reduce, and its
    errors about a dead peer come before the one line that names it)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname).1s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("trainer").setLevel(logging.INFO)
    if not verbose:
        for name in ("tensorflow", "absl", "tfx", "apache_beam"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _train(fn_args_path: str, status_fd: int) -> int:
    status = os.fdopen(status_fd, "w")

    def progress(stage: str) -> None:
        status.write(stage + "\n")
        status.flush()
        if stage == cluster_lib.CONNECTED:
            status.close()  # the supervisor stops timing

    try:
        cluster_lib.from_env()
        fn_args = read_fn_args(fn_args_path)
    except ValueError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_USAGE

    from trainer import distribute, run

    distribute.cluster_progress = progress
    try:
        run.run_fn(fn_args)
    except distribute.PeerFailure as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_TRAINING_FAILED
    except Exception:  # noqa: BLE001 - any failure: its traceback, then the exit status
        traceback.print_exc()
        return EXIT_TRAINING_FAILED
    return EXIT_OK


def positive_seconds(text: str) -> float:
    """argparse type of --peer-timeout."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def add_peer_timeout_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peer-timeout", type=positive_seconds, default=DEFAULT_PEER_TIMEOUT_S, metavar="SECONDS",
                        help="how long a worker waits for every other worker of TF_CONFIG to connect before it "
                             f"exits {EXIT_PEER_TIMEOUT} naming them (default: {DEFAULT_PEER_TIMEOUT_S:g})")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--fn-args", required=True, help="JSON file of the FnArgs run_fn gets")
    add_peer_timeout_argument(parser)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="everything TensorFlow and gRPC log, their C++ lines included")
    parser.add_argument("--status-fd", type=int, default=None, help=argparse.SUPPRESS)  # the training process
    args = parser.parse_args(argv)
    if args.status_fd is not None:
        _setup_logging(args.verbose)
        return _train(args.fn_args, args.status_fd)
    return supervise(args.fn_args, args.peer_timeout, args.verbose)


if __name__ == "__main__":
    exit_status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: after a peer failure the interpreter's shutdown would wait for gRPC and coordination-service
    # threads talking to the dead peer.
    os._exit(exit_status)
