"""Which training cluster this Trainer process belongs to, read from TF_CONFIG, without TensorFlow.

Vertex AI custom jobs (and TFX's Vertex Trainer, one process per replica of each worker pool) and a user starting
workers by hand (`python -m trainer.worker`) describe the cluster in the TF_CONFIG environment variable:

    {"cluster": {"chief": ["host0:2222"], "worker": ["host1:2222", "host2:2222"]},
     "task": {"type": "worker", "index": 0}}

Every `chief` and `worker` task trains one synchronous replica set (MultiWorkerMirroredStrategy, trainer/distribute.py).
The chief is the `chief` task, or `worker` 0 when there is none (TensorFlow's rule); it alone writes what the run
keeps. Workers are numbered chief first, then the workers in order: "worker 0 of 3 (chief)", "worker 2 of 3".
Parameter servers and evaluator tasks belong to other strategies and are refused.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Mapping, Optional

TF_CONFIG = "TF_CONFIG"
TRAINING_JOBS = ("chief", "worker")  # in numbering order: the chief is worker 0
UNSUPPORTED_JOBS = {
    "ps": "parameter servers belong to ParameterServerStrategy; this Trainer trains synchronous replicas only",
    "evaluator": "a side-car evaluator is not supported; the Trainer validates on every worker",
}
# What the training process of a worker reports while it joins the cluster (distribute.cluster_progress ->
# trainer/worker.py's supervising process): about to wait for every worker to connect; all connected.
WAITING, CONNECTED = "waiting", "connected"
# How TensorFlow names a task in errors and device strings: /job:worker/replica:0/task:1
_TASK_IN_TEXT = re.compile(r"/job:(chief|worker)/replica:\d+/task:(\d+)")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """One process's place in a multi-worker training cluster (only built for two or more workers)."""

    task_type: str  # "chief" | "worker", as TF_CONFIG names this process's job
    task_index: int  # index within that job
    jobs: Mapping[str, tuple[str, ...]]  # job -> host:port of its tasks ("chief" and "worker" only)

    @property
    def workers(self) -> tuple[tuple[str, int, str], ...]:
        """Every training task in numbering order: (job, index in the job, host:port)."""
        return tuple((job, i, address) for job in TRAINING_JOBS for i, address in enumerate(self.jobs.get(job, ())))

    @property
    def num_workers(self) -> int:
        return len(self.workers)

    def worker_id(self, task_type: Optional[str] = None, task_index: Optional[int] = None) -> int:
        """The number of a task (default: this one) in numbering order; the chief is 0."""
        key = (task_type or self.task_type, self.task_index if task_index is None else task_index)
        return next(n for n, (job, i, _) in enumerate(self.workers) if (job, i) == key)

    @property
    def is_chief(self) -> bool:
        return self.worker_id() == 0

    @property
    def address(self) -> str:
        return self.jobs[self.task_type][self.task_index]

    def describe(self, worker_id: Optional[int] = None) -> str:
        """'worker 0 of 2 (chief)' for this process, or for the worker numbered `worker_id`."""
        n = self.worker_id() if worker_id is None else worker_id
        return f"worker {n} of {self.num_workers}" + (" (chief)" if n == 0 else "")

    def named(self, worker_id: int) -> str:
        """A worker with its address: 'worker 1 of 2 (localhost:23456)', 'worker 0 of 2 (chief, localhost:23455)'."""
        chief = "chief, " if worker_id == 0 else ""
        return f"worker {worker_id} of {self.num_workers} ({chief}{self.workers[worker_id][2]})"

    def peers(self) -> list[str]:
        """The other workers, `named`, in numbering order."""
        return [self.named(n) for n in range(self.num_workers) if n != self.worker_id()]

    def peers_named_in(self, text: str) -> list[str]:
        """The other workers a TensorFlow error message names (/job:worker/replica:0/task:1), described as in
        `peers`; every other worker when it names none (a peer that vanished is often not named)."""
        me = self.worker_id()
        named = []
        for job, index in _TASK_IN_TEXT.findall(text):
            try:
                n = self.worker_id(job, int(index))
            except StopIteration:  # a task outside this cluster: not ours to name
                continue
            if n != me and self.named(n) not in named:
                named.append(self.named(n))
        return named or self.peers()


def from_env(environ: Mapping[str, str] = os.environ) -> Optional[Cluster]:
    """The cluster TF_CONFIG describes, or None when there is no TF_CONFIG or it names a single worker (one
    process: the Trainer's usual single-machine strategy). Raises ValueError naming TF_CONFIG and what was expected
    when it is malformed."""
    text = environ.get(TF_CONFIG, "").strip()
    if not text:
        return None
    return parse(text)


def parse(text: str) -> Optional[Cluster]:
    """`from_env` on the text of a TF_CONFIG."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{TF_CONFIG}: expected JSON, got {text[:80]!r} ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster", {}), dict):
        raise ValueError(f"{TF_CONFIG}: expected an object with a 'cluster' object, got {text[:80]!r}")
    spec = config.get("cluster") or {}
    for job, why in UNSUPPORTED_JOBS.items():
        if spec.get(job):
            raise ValueError(f"{TF_CONFIG}: cluster has {job!r} tasks: {why}")
    unknown = sorted(set(spec) - set(TRAINING_JOBS) - set(UNSUPPORTED_JOBS))
    if unknown:
        raise ValueError(f"{TF_CONFIG}: unknown job(s) {unknown} in 'cluster'; expected {list(TRAINING_JOBS)}")
    jobs = {}
    for job in TRAINING_JOBS:
        addresses = spec.get(job) or []
        if isinstance(addresses, dict):  # TensorFlow also accepts {index: address}
            addresses = [addresses[k] for k in sorted(addresses, key=int)]
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise ValueError(f"{TF_CONFIG}: cluster.{job}: expected a list of 'host:port', got {addresses!r}")
        if addresses:
            jobs[job] = tuple(addresses)
    if len(jobs.get("chief", ())) > 1:
        raise ValueError(f"{TF_CONFIG}: cluster.chief: expected one task, got {len(jobs['chief'])}")
    if sum(len(a) for a in jobs.values()) <= 1:
        return None
    task = config.get("task") or {}
    task_type, task_index = task.get("type"), task.get("index", 0)
    if task_type not in jobs:
        raise ValueError(f"{TF_CONFIG}: task.type: expected one of {sorted(jobs)}, got {task_type!r}")
    if not isinstance(task_index, int) or not 0 <= task_index < len(jobs[task_type]):
        raise ValueError(f"{TF_CONFIG}: task.index: expected 0..{len(jobs[task_type]) - 1} for job {task_type!r}, "
                         f"got {task_index!r}")
    return Cluster(task_type=task_type, task_index=task_index, jobs=jobs)


def tf_config(jobs: Mapping[str, list[str]], task_type: str, task_index: int) -> str:
    """The TF_CONFIG text of task (`task_type`, `task_index`) in a cluster of `jobs` (for launching workers)."""
    return json.dumps({"cluster": {job: list(addresses) for job, addresses in jobs.items()},
                       "task": {"type": task_type, "index": task_index}})
