"""Runs a command and reports the peak resident memory of its whole process tree (Beam workers included),
sampled every 0.2 s, plus the peak per top-level phase when the command logs TFX component starts.

    .venv/bin/python bench/peak_memory.py -- .venv/bin/tokenlearner run --data ... --output /tmp/out
"""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import psutil


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def main(argv: list[str]) -> int:
    command = argv[argv.index("--") + 1:] if "--" in argv else argv
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    ps = psutil.Process(proc.pid)
    phase, done = "start", threading.Event()
    peaks: dict[str, int] = {}

    def sample():
        while not done.is_set():
            rss = tree_rss(ps)
            peaks[phase] = max(peaks.get(phase, 0), rss)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stdout is not None  # stdout=PIPE
    for line in proc.stdout:
        sys.stdout.write(line)
        match = re.search(r"Component (\S+) is running", line)
        if match:
            phase = match.group(1)
    rc = proc.wait()
    done.set()
    sampler.join()
    print("\n| phase | peak RSS of the process tree |\n|---|---|")
    for name, peak in peaks.items():
        print(f"| {name} | {peak / 2**30:.2f} GiB |")
    print(f"| whole command | {max(peaks.values()) / 2**30:.2f} GiB |")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
