"""Progress of ingestion's long steps (the download, the encoding): a tqdm bar for a person at a terminal, and on a
log (CI, a Kubeflow or Vertex pod, a file) a line every 10% with the rate, since a bar's carriage returns make a log
unreadable. The Trainer's progress lines are trainer/progress.py; `tokenlearner infer`'s, per Beam worker, are
inference/job.py.
"""
from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)


class Progress:
    """tqdm bar on a terminal; on a log (CI, Kubeflow) a line every 10% with the rate."""

    def __init__(self, total: int, desc: str, unit: str = "img"):
        self.total, self.desc, self.unit, self.done, self.start = total, desc, unit, 0, time.time()
        self.next_report = 0.1
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total or None, desc=desc, unit=unit, unit_scale=unit == "B")

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.total and self.done / self.total >= self.next_report:
            rate = self.done / max(time.time() - self.start, 1e-9)
            log.info("%s: %d/%d %s (%.0f %s/s)", self.desc, self.done, self.total, self.unit, rate, self.unit)
            self.next_report += 0.1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
