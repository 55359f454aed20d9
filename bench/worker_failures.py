"""How fast a multi-worker fit ends on each failure (docs/engines.md, "Multi-worker training"): two
`tokenlearner train-worker` commands on loopback ports, on a finished run's data.

    nice .venv/bin/python bench/worker_failures.py --output OUTPUT [--repeats 3] [--only kill] [--keep DIR]

- peer killed: worker 1's command is SIGKILLed (its training process dies with it) in epoch 2 of 4; seconds from the
  kill to the chief's `... stopped answering: ...` line on its console, and to its exit;
- SIGTERM: a lone chief waiting for a worker that never starts (`-v`, so that TensorFlow's "Waiting for 1/2 tasks to
  connect" shows when it waits) gets SIGTERM; seconds from the signal to its exit;
- peer timeout: the same lone chief with `--peer-timeout 5`; seconds from its start to its exit (the TensorFlow
  import and start-up included) and the exit status.

Prints one markdown table. OUTPUT is the --output folder of a `tokenlearner run` (its latest run's data is used);
nothing is written there (the workers write into a temporary folder).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.helpers import free_port  # noqa: E402
from trainer import cluster  # noqa: E402


def _tf_config(addresses: list[str], index: int) -> str:
    return cluster.tf_config({"worker": addresses}, "worker", index)


def _start(args: list[str], log: Path, tf_config: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**{k: v for k, v in os.environ.items() if k != "TF_CONFIG"}, "TF_CONFIG": tf_config, **(extra_env or {})}
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPO, env=env, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(log: Path, text: str, proc: subprocess.Popen, step: float = 0.01) -> float:
    """time.monotonic() when `text` shows up in `log`; RuntimeError if `proc` ends first."""
    while text not in log.read_text():
        if proc.poll() is not None:
            raise RuntimeError(f"{log}: ended ({proc.returncode}) before {text!r}:\n{log.read_text()[-3000:]}")
        time.sleep(step)
    return time.monotonic()


def peer_killed(output: str, folder: Path) -> tuple[float, float, int]:
    """(seconds from the kill to the chief's line, to its exit, its exit status)."""
    addresses = [f"localhost:{free_port()}", f"localhost:{free_port()}"]
    out = folder / "out"
    logs = [folder / "worker0.log", folder / "worker1.log"]
    args = ["train-worker", "--output", output, "--out", str(out), "--set", "epochs=4", "--set", "batch_size=16"]
    workers = [_start(args, log, _tf_config(addresses, i)) for i, log in enumerate(logs)]
    try:
        _wait_for(logs[0], "epoch 1/4 done", workers[0])
        time.sleep(0.2)
        os.killpg(workers[1].pid, signal.SIGKILL)
        killed = time.monotonic()
        line = _wait_for(logs[0], "stopped answering", workers[0]) - killed
        status = workers[0].wait(timeout=600)
        return line, time.monotonic() - killed, status
    finally:
        for proc in workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)


def sigterm(output: str, folder: Path) -> tuple[float, int]:
    """(seconds from SIGTERM to the exit of a chief waiting for its peer, its exit status)."""
    log = folder / "lone.log"
    proc = _start(["-v", "train-worker", "--output", output, "--out", str(folder / "lone")], log,
                  _tf_config([f"localhost:{free_port()}", f"localhost:{free_port()}"], 0), {"TF_CPP_MIN_LOG_LEVEL": "0"})
    try:
        _wait_for(log, "Waiting for 1/2 tasks to connect", proc)
        time.sleep(1.0)  # well inside the wait
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        status = proc.wait(timeout=600)
        return time.monotonic() - sent, status
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def peer_timeout(output: str, folder: Path, seconds: float = 5.0) -> tuple[float, int]:
    """(seconds from the start to the exit of a lone chief with --peer-timeout `seconds`, its exit status)."""
    log = folder / "timeout.log"
    started = time.monotonic()
    proc = _start(["train-worker", "--output", output, "--out", str(folder / "timeout"), "--peer-timeout",
                   f"{seconds:g}"], log, _tf_config([f"localhost:{free_port()}", f"localhost:{free_port()}"], 0))
    try:
        status = proc.wait(timeout=600)
        return time.monotonic() - started, status
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="the --output folder of a `tokenlearner run`")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("kill", "sigterm", "timeout"), default=None, help="measure only this")
    parser.add_argument("--keep", default=None, metavar="DIR", help="keep each try's logs in DIR/N/ (default: none)")
    args = parser.parse_args()
    tries = iter(range(10**6))

    def folder() -> "contextlib.AbstractContextManager[str]":
        if args.keep is None:
            return tempfile.TemporaryDirectory()
        path = Path(args.keep) / str(next(tries))
        path.mkdir(parents=True)
        return contextlib.nullcontext(str(path))

    rows: dict[str, list[float]] = {"kill -> line": [], "kill -> exit": [], "SIGTERM -> exit": [],
                                    "start -> exit (--peer-timeout 5)": []}
    statuses: dict[str, set[int]] = {name: set() for name in rows}
    for _ in range(args.repeats):
        if args.only in (None, "kill"):
            with folder() as tmp:
                line, end, status = peer_killed(args.output, Path(tmp))
            rows["kill -> line"].append(line)
            rows["kill -> exit"].append(end)
            statuses["kill -> line"].add(status)
            statuses["kill -> exit"].add(status)
        if args.only in (None, "sigterm"):
            with folder() as tmp:
                seconds, status = sigterm(args.output, Path(tmp))
            rows["SIGTERM -> exit"].append(seconds)
            statuses["SIGTERM -> exit"].add(status)
        if args.only in (None, "timeout"):
            with folder() as tmp:
                seconds, status = peer_timeout(args.output, Path(tmp))
            rows["start -> exit (--peer-timeout 5)"].append(seconds)
            statuses["start -> exit (--peer-timeout 5)"].add(status)
    print("| what | runs | seconds (each) | median | exit status |")
    print("|---|---|---|---|---|")
    for name, values in rows.items():
        if not values:
            continue
        each = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {len(values)} | {each} | {statistics.median(values):.2f} | "
              f"{', '.join(map(str, sorted(statuses[name])))} |")


if __name__ == "__main__":
    main()
