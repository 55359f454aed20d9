"""What a pipeline run did, read back from ML Metadata (run_store.py): each component, cached or ran, wall time, key
numbers; `render_summary` is the table `tokenlearner run` prints."""
from __future__ import annotations

import csv
import dataclasses
import json
import os
from typing import Optional

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2

from components import drift_records
from components.drift_records import SpanCheck
from pipeline.config import PipelineConfig
from inspection import run_store
from inspection.run_store import BASELINE, CANDIDATE, open_store
from trainer import contract

_STATES = {metadata_store_pb2.Execution.COMPLETE: "ran", metadata_store_pb2.Execution.CACHED: "cached",
           metadata_store_pb2.Execution.FAILED: "FAILED", metadata_store_pb2.Execution.RUNNING: "running",
           metadata_store_pb2.Execution.CANCELED: "canceled"}


@dataclasses.dataclass
class Step:
    component: str
    status: str
    seconds: float
    outputs: dict  # artifact type name -> list of artifacts
    execution_id: int = 0
    error: str = ""  # a failed execution's result message, where its executor left one (a drift stop does)


@dataclasses.dataclass
class RunSummary:
    run_id: str
    steps: list[Step]
    examples: dict[str, int]
    anomalies: list[str]  # splits with anomalies
    accuracy: Optional[float]
    top5_accuracy: Optional[float]  # the Evaluator's top-k accuracy, k = top_k (5 for CIFAR-10)
    blessed: Optional[bool]
    pushed_to: Optional[str]
    not_pushed_reason: str = ""  # why the Evaluator did not bless, or why nothing was pushed
    top_k: int = 5  # the k of top5_accuracy: min(5, classes - 1), TrainerConfig.top_k
    span_check: Optional[SpanCheck] = None  # the drift check between the window's newest two spans, when one ran
    baseline_accuracy: Optional[float] = None  # the Evaluator's baseline model on the same test split


def _slice_item(key) -> str:
    return f"{key.column}={getattr(key, key.WhichOneof('kind'))}"


def _validation_failures(uri: str, metrics: dict[str, dict[str, float]]) -> str:
    """TFMA's reasons for not blessing: metric (and slice), candidate value, baseline value, threshold."""
    import tensorflow_model_analysis as tfma

    try:
        result = tfma.load_validation_result(uri)
    except Exception:  # noqa: BLE001 - no validation output: nothing to explain
        return ""
    reasons = []
    for per_slice in result.metric_validations_per_slice:
        keys = per_slice.slice_key.single_slice_keys
        where = f" on slice {', '.join(_slice_item(k) for k in keys)}" if keys else ""
        overall = not keys
        for failure in per_slice.failures:
            name = failure.metric_key.name
            value = failure.metric_value.double_value.value
            candidate = metrics.get(CANDIDATE, {}).get(name) if overall else None
            baseline = metrics.get(BASELINE, {}).get(name) if overall else None
            threshold = failure.metric_threshold
            if failure.metric_key.is_diff:
                limit = threshold.change_threshold.absolute.value
                values = f"candidate {candidate:.4f} vs baseline {baseline:.4f}, " \
                    if candidate is not None and baseline is not None else ""
                reasons.append(f"{name}{where}: {values}change {value:+.4f} is below the allowed {limit:+.4f}")
            else:
                floor = threshold.value_threshold.lower_bound.value
                reasons.append(f"{name}{where}: candidate {value:.4f} is below the floor {floor:.4f}")
    return "; ".join(dict.fromkeys(reasons))


def collect(config: PipelineConfig, run_id: Optional[str] = None,
            store: Optional[mlmd.MetadataStore] = None) -> RunSummary:
    """What run `run_id` (None or LATEST: the newest) did; LookupError when the store has no such run."""
    store = store or open_store(config)
    run = run_store.find_run(store, run_id)
    steps = []
    span_check: Optional[SpanCheck] = None
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.create_time_since_epoch):
        events = [e for e in store.get_events_by_execution_ids([execution.id])
                  if e.type == metadata_store_pb2.Event.OUTPUT]
        outputs: dict[str, list] = {}
        for artifact in store.get_artifacts_by_id([e.artifact_id for e in events]):
            type_name = store.get_artifact_types_by_id([artifact.type_id])[0].name
            outputs.setdefault(type_name, []).append(artifact)
        error, check = "", None
        if drift_records.EXECUTION_RESULT_PROPERTY in execution.custom_properties:
            error, check = drift_records.from_execution_result(
                execution.custom_properties[drift_records.EXECUTION_RESULT_PROPERTY].string_value)
        steps.append(Step(component=run_store.node_name(store, execution),
                          status=_STATES.get(execution.last_known_state, "?"),
                          seconds=(execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1e3,
                          outputs=outputs, execution_id=execution.id, error=error))
        if check is not None:
            span_check = check
    produced = {t: a for s in steps for t, a in s.outputs.items()}
    manifest = run_store.dataset_manifest(config)
    examples = {s: v["examples"] for s, v in manifest["splits"].items()} if manifest else {}
    anomalies = []
    for artifact in produced.get("ExampleAnomalies", [])[:1]:
        if "blessed" in artifact.custom_properties:
            struct = artifact.custom_properties["blessed"].struct_value.fields
            anomalies = sorted(split for split, ok in struct.items() if not ok.number_value)
        span_check = _recorded_check(artifact) or span_check
    metrics, reason = {}, ""
    for artifact in produced.get("ModelEvaluation", []):
        metrics = run_store.overall_metrics(artifact.uri)
        reason = _validation_failures(artifact.uri, metrics)
    blessing = produced.get("ModelBlessing", [])
    blessed = bool(blessing[0].custom_properties["blessed"].int_value) if blessing else None
    pushed = produced.get("PushedModel", [])
    pushed_to = None
    if pushed and pushed[0].custom_properties["pushed"].int_value:
        pushed_to = os.path.join(config.push_dir, pushed[0].custom_properties["pushed_version"].string_value)
    if pushed_to is None and not reason:
        reason = _not_reached_reason(steps, span_check, blessed)
    candidate = metrics.get(CANDIDATE, {})
    return RunSummary(
        run_id=run.name, steps=steps, examples=examples, anomalies=anomalies,
        accuracy=candidate.get("sparse_categorical_accuracy"),
        top5_accuracy=candidate.get("sparse_top_k_categorical_accuracy"),
        blessed=blessed, pushed_to=pushed_to, not_pushed_reason="" if pushed_to else reason,
        top_k=config.trainer.top_k, span_check=span_check,
        baseline_accuracy=metrics.get(BASELINE, {}).get("sparse_categorical_accuracy"))


def _recorded_check(anomalies) -> Optional[SpanCheck]:
    """The span drift check the validator recorded on its ExampleAnomalies artifact (None before the records, or
    without a second span); an unreadable record counts as none rather than hiding the run."""
    if drift_records.SPAN_CHECK_PROPERTY not in anomalies.custom_properties:
        return None
    try:
        return SpanCheck.from_json(anomalies.custom_properties[drift_records.SPAN_CHECK_PROPERTY].string_value,
                                   f"ExampleAnomalies {anomalies.id}")
    except drift_records.RecordError:
        return None


def _not_reached_reason(steps: list[Step], check: Optional[SpanCheck], blessed: Optional[bool]) -> str:
    """Why a run without an Evaluator verdict pushed nothing: the drift stop, the component that failed, or that it
    stopped early (an interrupted run)."""
    if blessed is False:
        return "the Evaluator did not bless the model"
    if check is not None and check.verdict == drift_records.STOPPED:
        return (f"stopped on drift between span {check.previous_span} and span {check.span} "
                f"(set {drift_records.ACCEPT_SETTING} to train on it)")
    failed = next((s for s in steps if s.status == "FAILED"), None)
    if failed is not None:
        return f"{failed.component} failed" + (f": {_first_line(failed.error)}" if failed.error else "")
    return "the run did not reach the Pusher"


def _first_line(text: str, limit: int = 300) -> str:
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[:limit] + " …"


@dataclasses.dataclass(frozen=True)
class EpochTimes:
    """The Trainer's epoch_times.csv: each epoch's wall seconds (validation included), the fit it ran in, and the
    precision/XLA it trained with (contract.trained_with: "float32/on", "?" in files older than those columns)."""
    seconds: list[float]
    fits: int  # 1 + the number of resumes after a killed Trainer
    trained_with: list[str] = dataclasses.field(default_factory=list)

    @property
    def mixed(self) -> str:
        """"" when every epoch trained alike, else which epochs trained how: "float32/on 1-12, bfloat16/off 13-20"."""
        spans: list[list] = []
        for epoch, how in enumerate(self.trained_with, start=1):
            if spans and spans[-1][0] == how:
                spans[-1][2] = epoch
            else:
                spans.append([how, epoch, epoch])
        if len({how for how, _, _ in spans}) < 2:
            return ""
        return ", ".join(f"{how} {a}" + (f"-{b}" if b > a else "") for how, a, b in spans)

    @property
    def text(self) -> str:
        total = sum(self.seconds)
        resumed = f", resumed {self.fits - 1}x" if self.fits > 1 else ""
        mixed = self.mixed
        mixed = f"; epochs trained with precision/XLA {mixed}" if mixed else ""
        per_epoch = total / len(self.seconds)
        # Minutes for CIFAR-10's epochs; seconds for the small datasets whose epochs take a few (0.0 min says nothing).
        pace = f"{per_epoch / 60:.1f} min" if per_epoch >= 60 else f"{per_epoch:.1f} s"
        return f"{_hms(total)} for {len(self.seconds)} epoch(s), {pace} an epoch{resumed}{mixed}"


def epoch_times(model_run_dir: str) -> Optional[EpochTimes]:
    """None for runs made before the Trainer wrote epoch_times.csv."""
    path = os.path.join(model_run_dir, contract.EPOCH_TIMES_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    return EpochTimes([float(r["seconds"]) for r in rows], len({r["fit_started_utc"] for r in rows}),
                      [contract.trained_with(r) for r in rows])


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _trainer_note(step: Step) -> str:
    """The precision the Trainer computed in and whether XLA compiled it, from the model_stats.json it wrote
    (trainer/flops.py), and the fit's training time from its epoch_times.csv (a resumed fit's included)."""
    for artifact in step.outputs.get("ModelRun", []):
        path = os.path.join(artifact.uri, contract.MODEL_STATS_FILE)
        if os.path.isfile(path):
            with open(path) as f:
                stats = json.load(f)
            notes = [f"precision {stats['precision']}"] if stats.get("precision") else []
            notes += [f"XLA {stats['jit_compile']}"] if stats.get("jit_compile") else []
            times = epoch_times(artifact.uri)
            notes += [f"trained {times.text}"] if times else []
            return ", ".join(notes)
    return ""


def spans_of(run: RunSummary) -> str:
    """The spans the run's ExampleGen read ("0,1": the `spans` property of its Examples, components/
    span_example_gen.py); "0" for an Examples artifact from before spans; "" when the ExampleGen output none."""
    for step in run.steps:
        if step.component.startswith(contract.EXAMPLE_GEN):
            for artifact in step.outputs.get("Examples", []):
                if contract.SPANS_PROPERTY in artifact.custom_properties:
                    return artifact.custom_properties[contract.SPANS_PROPERTY].string_value
                return "0"
    return ""


def training_facts(model_run_uri: str) -> dict:
    """The Trainer's training.json in its ModelRun folder ({} when it has none: a run from before warm starts)."""
    path = os.path.join(model_run_uri, contract.TRAINING_FACTS_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def trained_in(model_run_uri: str) -> str:
    """The ModelRun folder where the model of this Trainer execution was trained: its own, or, when the execution
    had no new data and re-exported an earlier model unchanged, that model's (its curves, times and logs)."""
    return training_facts(model_run_uri).get("trained_in") or model_run_uri


def warm_start_of(run: RunSummary) -> str:
    """How the run's Trainer started: "from <base model> (span N)", "scratch: <why>", "unchanged: no new data since
    <base model>" (re-exported without training), "" when it did not run."""
    for step in run.steps:
        if step.component.startswith(contract.TRAINER):
            for artifact in step.outputs.get("ModelRun", []):
                facts = training_facts(artifact.uri)
                if facts.get("unchanged_from"):
                    return f"unchanged: no new data since {facts['warm_start_from']}"
                if facts.get("warm_start_from"):
                    return f"from {facts['warm_start_from']} (span {max(facts.get('base_spans') or [0])})"
                return f"scratch: {facts['scratch_reason']}" if facts.get("scratch_reason") else "scratch"
    return ""


def _note(step: Step, summary: RunSummary) -> str:
    name = step.component
    if name.startswith(contract.EXAMPLE_GEN) and summary.examples:
        spans = spans_of(summary)
        return " · ".join([f"{k} {v:,}" for k, v in summary.examples.items()] + ([f"spans {spans}"] if spans else []))
    if name.startswith(contract.EXAMPLE_VALIDATOR):
        check = summary.span_check
        if step.status == "FAILED":  # it never reached the split checks' verdict
            return check.summary() if check is not None else _first_line(step.error)
        found = f"anomalies in {summary.anomalies}" if summary.anomalies else "no anomalies"
        return f"{found}; {check.summary()}" if check is not None else found
    if name.startswith(contract.TRAINER):
        start = warm_start_of(summary)
        return "; ".join(filter(None, [f"warm start {start}" if start.startswith("from") else start,
                                       _trainer_note(step)]))
    if name.startswith(contract.EVALUATOR) and summary.accuracy is not None:
        top5 = f", top-{summary.top_k} {summary.top5_accuracy:.4f}" if summary.top5_accuracy is not None else ""
        return f"test accuracy {summary.accuracy:.4f}{top5}; {'blessed' if summary.blessed else 'NOT blessed'}"
    if name.startswith(contract.PUSHER):
        return f"pushed {summary.pushed_to}" if summary.pushed_to else "not pushed"
    return ""


def render_summary(summary: RunSummary) -> str:
    rows = [(s.component, s.status, f"{s.seconds:.1f}s", _note(s, summary)) for s in summary.steps]
    header = ("component", "status", "time", "")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    lines = [f"run {summary.run_id}"]
    lines += ["  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]), r[3]]).rstrip()
              for r in [header] + rows]
    if summary.not_pushed_reason:
        lines.append(f"not pushed: {summary.not_pushed_reason}")
    return "\n".join(lines)

