"""How long the commands that cannot work take to say so: the wall time from start to exit, as a user types them
(a fresh interpreter, `python -m cli`, imports included), for

  - `tokenlearner run ... --beam-profile flink --set beam_job_endpoint=localhost:1` (no Flink job server there):
    exit 2 and one line, instead of Beam's 60 s wait for a FutureTimeoutError;
  - `tokenlearner predict --rest http://127.0.0.1:<closed port>` and `--grpc 127.0.0.1:<closed port>`, with
    `--timeout 2 --retries 1`: exit 3 after two refused attempts and the 0.5 s back-off between them.

The tests check the exit code and the line of each (tests/test_beam_profiles.py, tests/test_serving.py); the
seconds are measured here, where a loaded machine makes a number slower instead of a test red.

    nice .venv/bin/python bench/fail_fast.py --repeats 3

Prints one markdown table: per command the exit code and the median and slowest wall seconds of --repeats runs.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed: nothing else on this machine is expected to take it
    during the bench)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def commands(data: str, images: Path, out: Path) -> dict[str, list[str]]:
    port = closed_port()
    return {
        "run, no Flink job server (localhost:1)": [
            "run", "--data", data, "--preset", "tiny", "--limit", "600", "--beam-profile", "flink",
            "--set", "beam_job_endpoint=localhost:1", "--set", "beam_environment_type=LOOPBACK", "--output",
            str(out)],
        "predict --rest, closed port, --timeout 2 --retries 1": [
            "predict", "--rest", f"http://127.0.0.1:{port}", "--timeout", "2", "--retries", "1", str(images)],
        "predict --grpc, closed port, --timeout 2 --retries 1": [
            "predict", "--grpc", f"127.0.0.1:{port}", "--timeout", "2", "--retries", "1", str(images)],
    }


def time_command(args: list[str]) -> tuple[int, float, str]:
    """(exit code, wall seconds, the last line of stderr)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    seconds = time.perf_counter() - start
    lines = proc.stderr.strip().splitlines()
    return proc.returncode, seconds, lines[-1] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/cifar10/cifar10-jpg.tar.gz"))
    parser.add_argument("--work", type=Path, default=Path("outputs/bench/fail_fast"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    images = args.work / "images"
    images.mkdir(parents=True, exist_ok=True)
    # One real PNG: predict reads the files before it calls the server.
    png = images / "one.png"
    if not png.is_file():
        from PIL import Image

        Image.new("RGB", (32, 32), (120, 60, 30)).save(png)
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.2f} at the start, "
          f"{args.repeats} run(s) each\n")
    print("| command | exit | median (s) | slowest (s) | last line of stderr |")
    print("|---|---|---|---|---|")
    for name, command in commands(args.data, images, args.work / "out").items():
        runs = [time_command(command) for _ in range(args.repeats)]
        codes = sorted({code for code, _, _ in runs})
        seconds = [s for _, s, _ in runs]
        line = runs[-1][2].replace("|", "\\|")
        print(f"| {name} | {', '.join(map(str, codes))} | {statistics.median(seconds):.2f} | {max(seconds):.2f} | "
              f"{line[:120]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
