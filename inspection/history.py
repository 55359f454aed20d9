"""The loop, run by run, from ML Metadata: which spans each run trained on, what the drift check between its newest
two spans decided, whether it warm-started, its test accuracy, whether it was blessed and which version it pushed
(`tokenlearner report` and `tokenlearner history`).

The drift check's verdict is the validator's record (components/drift_records.py): stopped (with the feature,
distance and threshold), accepted (and by which setting), accepted earlier, or no drift. The spans come from the
`spans` custom property the ExampleGen writes on its Examples artifact (components/span_example_gen.py): for a
pushed model that is its lineage, PushedModel <- Pusher <- Model <- Trainer <- Examples. Warm start or not is
what the Trainer wrote in its ModelRun's training.json (trainer/warm_start.py).
"""
from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Optional

from pipeline.config import PipelineConfig
from inspection import summary


@dataclasses.dataclass(frozen=True)
class LoopRow:
    """One pipeline run of the loop."""

    run_id: str
    started_utc: str
    spans: str  # "0,1": the spans the run read (its training window); "" when its ExampleGen did not finish
    span_check: str  # the drift check's verdict (drift_records.SpanCheck.summary); "" when none ran
    warm_start: str  # "from model 12 (span 0)", "scratch: <why>", or "" when the Trainer did not run
    accuracy: Optional[float]
    blessed: Optional[bool]
    pushed_version: str  # "" when nothing was pushed
    stopped: str  # why nothing was pushed ("" when a version was)


def loop_history(config: PipelineConfig, store) -> list[LoopRow]:
    """Every pipeline run in the store, oldest first."""
    rows = []
    for context in sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.create_time_since_epoch):
        run = summary.collect(config, context.name, store=store)
        started = datetime.datetime.fromtimestamp(context.create_time_since_epoch / 1e3, datetime.timezone.utc)
        rows.append(LoopRow(
            run_id=run.run_id, started_utc=started.strftime("%Y-%m-%d %H:%M"), spans=summary.spans_of(run),
            span_check=run.span_check.summary() if run.span_check is not None else "",
            warm_start=summary.warm_start_of(run), accuracy=run.accuracy, blessed=run.blessed,
            pushed_version=os.path.basename(run.pushed_to) if run.pushed_to else "",
            stopped=run.not_pushed_reason))
    return rows


HEADER = ("run", "started (UTC)", "spans", "span check", "start", "test acc.", "blessed", "pushed")
ACCURACY_COLUMN = HEADER.index("test acc.")


def cells(row: LoopRow) -> tuple[str, ...]:
    """The row as the console table and the report show it."""
    blessed = {True: "yes", False: "no", None: "–"}[row.blessed]
    accuracy = f"{row.accuracy:.4f}" if row.accuracy is not None else "–"
    pushed = f"version {row.pushed_version}" if row.pushed_version else f"no: {row.stopped}" if row.stopped else "no"
    return (row.run_id, row.started_utc, row.spans or "–", row.span_check or "–", row.warm_start or "–", accuracy,
            blessed, pushed)


def render(rows: list[LoopRow]) -> str:
    """The history as a plain-text table, one line a run."""
    table = [HEADER] + [cells(r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]).rstrip() for r in table)
