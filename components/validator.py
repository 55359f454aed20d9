"""ExampleValidator that stops the pipeline on anomalies, so bad data never reaches the Trainer.

The stock ExampleValidator only records anomalies. This one also compares every split's label distribution with
the training split's (the schema's `drift_comparator` on `label`, its threshold replaced by the pipeline's
`label_drift_threshold`), and then fails the execution with one line naming each split, feature and problem; the
Trainer depends on it, so it never runs on such data. The label's domain (0..N-1) is the schema's: the curated
CIFAR-10 schema, or the one ingestion writes for another class list.

With spans (`tokenlearner data --append`) it also compares the two newest spans of the training window (the
dataset's spans, the newest `train_spans` of them): the class shares (L-infinity distance) and the image height,
width and mean brightness (Jensen-Shannon divergence), from each span's statistics that ingestion wrote
(`span_stats.load`). A new span unlike the one before it stops the run before anything trains, with one
line naming both spans, the feature and its distance (`DriftError`, which `tokenlearner run` exits on with
EXIT_DRIFT); `accept_drift` turns that line into a warning, and the dataset keeps the acceptance
(`spans/span-N.accepted.json`): later runs do not stop on span N again. Each decision is recorded with the run
(components/drift_records.py: on the ExampleAnomalies artifact, or on the failed execution for a stop), which the
run summary, `tokenlearner history` and the report show. One span in the window: nothing to compare. This check
comes first; the split checks above still apply to a window whose drift was accepted (a span whose training images
are skewed but whose test images are not then fails them).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Optional, Sequence

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx import types
from tfx.components.example_validator import executor as validator_executor
from tfx.components.example_validator import labels
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils, writer_utils

from components import datasets, drift_records, span_stats
from components.drift_records import (  # noqa: F401  (FeatureDrift, drift_message: this module's API too)
    ACCEPT_DRIFT_KEY, ACCEPT_SETTING, ACCEPTED, ACCEPTED_EARLIER, ALIKE, DEFAULT_SPAN_DRIFT, SPAN_CHECK_PROPERTY,
    SPAN_IMAGE_DRIFT_KEY, SPAN_LABEL_DRIFT_KEY, STOPPED, FeatureDrift, SpanCheck, drift_message)
from trainer.contract import SPAN_IMAGE_FEATURES, SPLIT_PREFIX, TRAIN, span_stats_path
from trainer.exit_codes import EXIT_DRIFT
from trainer.features import LABEL_KEY

log = logging.getLogger(__name__)

REFERENCE_SPLIT = TRAIN  # every split's label distribution is compared with the training split's
LABEL_DRIFT_THRESHOLD_KEY = "label_drift_threshold"  # the execution parameter (PipelineConfig.label_drift_threshold)
# The span drift check's execution parameters, named as PipelineConfig's fields (data_root None: no span check).
DATA_ROOT_KEY = "data_root"
TRAIN_SPANS_KEY = "train_spans"
# SPAN_LABEL_DRIFT_KEY, SPAN_IMAGE_DRIFT_KEY and ACCEPT_DRIFT_KEY (an int 0/1: TFX execution properties have no
# booleans) come from drift_records, whose records name the same settings.


class DataValidationError(RuntimeError):
    """Raised by the validator: the message is the one-line summary of every anomaly."""


def _recorded_failure() -> type:
    """The exception class whose ExecutorOutput TFX's launcher records on the failed execution (a private class of
    tfx.orchestration.portable.launcher, TFX 1.16; tests/test_span_loop.py reads the record back through
    `tokenlearner history`): any other exception leaves a failed execution without a word of why. Exception
    where TFX lacks it: the run still stops, unrecorded."""
    try:
        from tfx.orchestration.portable import launcher
    except ImportError:
        return Exception
    found = getattr(launcher, "_ExecutionFailedError", None)
    return found if isinstance(found, type) and issubclass(found, Exception) else Exception


class DriftError(DataValidationError, _recorded_failure()):  # type: ignore[misc]
    """The newest span of the training window differs from the one before it beyond the run's thresholds: the
    data may be fine, so `tokenlearner run` exits with its own code (EXIT_DRIFT) and the message says how to accept
    it. `check` is the record of the stop; it travels as `executor_output` (an ExecutionResult with the message and
    the record), which TFX's launcher stores on the failed ExampleValidator execution."""

    def __init__(self, message: str, check: Optional[SpanCheck] = None):
        Exception.__init__(self, message)
        self.check = check

    @property
    def executor_output(self):
        from google.protobuf import struct_pb2
        from tfx.proto.orchestration import execution_result_pb2

        result = execution_result_pb2.ExecutionResult(code=EXIT_DRIFT, result_message=str(self))
        if self.check is not None:
            record = struct_pb2.Struct()
            record.update(self.check.to_dict())
            result.metadata_details.add().Pack(record)
        return execution_result_pb2.ExecutorOutput(execution_result=result)


def _explain(info) -> str:
    """Each reason TFDV found (its own short_description only says "Multiple errors" when there are several)."""
    reasons = [r.description or r.short_description for r in info.reason]
    return " / ".join(reasons) if reasons else (info.description or info.short_description)


def with_label_drift_threshold(schema: schema_pb2.Schema, threshold: Optional[float]) -> schema_pb2.Schema:
    """A copy of `schema` whose `label` drift comparator (L-infinity distance of the class frequencies) has
    `threshold`; `schema` itself when there is no threshold or no such comparator (an inferred schema has none,
    so it checks no drift)."""
    copy = schema_pb2.Schema()
    copy.CopyFrom(schema)
    label = next((f for f in copy.feature if f.name == LABEL_KEY), None)
    if threshold is None or label is None or not label.drift_comparator.HasField("infinity_norm"):
        return schema
    label.drift_comparator.infinity_norm.threshold = threshold
    return copy


def describe(split: str, anomalies: anomalies_pb2.Anomalies) -> list[str]:
    problems = [f"split '{split}': feature '{name}': {_explain(info)}"
                for name, info in sorted(anomalies.anomaly_info.items())]
    if anomalies.HasField("dataset_anomaly_info"):
        problems.append(f"split '{split}': dataset: {_explain(anomalies.dataset_anomaly_info)}")
    return problems


def check_span_drift_settings(train_spans: int, span_label_drift: float, span_image_drift: float) -> None:
    """The same bounds PipelineConfig checks, for callers that build the component themselves."""
    if train_spans < 0:
        raise ValueError(f"{TRAIN_SPANS_KEY}: expected 0 (every span) or the number of newest spans, got "
                         f"{train_spans}")
    for name, value in ((SPAN_LABEL_DRIFT_KEY, span_label_drift), (SPAN_IMAGE_DRIFT_KEY, span_image_drift)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}: expected 0..1 (a distance between two spans' distributions), got {value}")


def _schema_type(stats: statistics_pb2.DatasetFeatureStatistics, name: str) -> int:
    """The schema type of feature `name` as the statistics recorded it (ingestion decides int or float)."""
    feature = next((f for f in stats.features if f.name == name or list(f.path.step) == [name]), None)
    kind = statistics_pb2.FeatureNameStatistics.Type.Name(feature.type) if feature is not None else "INT"
    return schema_pb2.FeatureType.Value(kind if kind in ("INT", "FLOAT", "BYTES", "STRUCT") else "BYTES")


def span_drift_schema(statistics: statistics_pb2.DatasetFeatureStatisticsList, span_label_drift: float,
                      span_image_drift: float) -> schema_pb2.Schema:
    """The comparators TFDV measures between two spans: `label` categorical with an L-infinity comparator (the
    largest difference of one class's share), each image feature with a Jensen-Shannon divergence comparator
    (of its histogram)."""
    stats = statistics.datasets[0]
    schema = schema_pb2.Schema()
    label = schema.feature.add(name=LABEL_KEY, type=schema_pb2.INT)
    label.int_domain.is_categorical = True
    label.drift_comparator.infinity_norm.threshold = span_label_drift
    for name in SPAN_IMAGE_FEATURES:
        feature = schema.feature.add(name=name, type=_schema_type(stats, name))
        feature.drift_comparator.jensen_shannon_divergence.threshold = span_image_drift
    return schema


def span_drift(previous: statistics_pb2.DatasetFeatureStatisticsList,
               current: statistics_pb2.DatasetFeatureStatisticsList,
               span_label_drift: float = DEFAULT_SPAN_DRIFT,
               span_image_drift: float = DEFAULT_SPAN_DRIFT) -> list[FeatureDrift]:
    """Each compared feature's distance from `previous` to `current` (label first, then SPAN_IMAGE_FEATURES), as
    measured by tfdv.validate_statistics' drift comparators; a feature either side lacks raises ValueError."""
    for which, stats in (("previous", previous), ("current", current)):
        if len(stats.datasets) != 1:
            raise ValueError(f"{which} span statistics: expected one dataset (all splits of the span), got "
                             f"{len(stats.datasets)}")
    anomalies = tfdv.validate_statistics(current, span_drift_schema(previous, span_label_drift, span_image_drift),
                                         previous_statistics=previous)
    measured = {".".join(info.path.step): m.value for info in anomalies.drift_skew_info
                for m in info.drift_measurements}
    names = (LABEL_KEY, *SPAN_IMAGE_FEATURES)
    missing = [name for name in names if name not in measured]
    if missing:
        raise ValueError(f"no drift measured for {', '.join(repr(m) for m in missing)}: expected categorical "
                         f"'{LABEL_KEY}' and numeric {', '.join(SPAN_IMAGE_FEATURES)} statistics in both spans")
    return [FeatureDrift(name, measured[name], span_label_drift if name == LABEL_KEY else span_image_drift)
            for name in names]


def window_spans(spans: Sequence[int], train_spans: int) -> list[int]:
    """The training window: the newest `train_spans` spans (0: every span), oldest first."""
    ordered = sorted(set(spans))
    return ordered[-train_spans:] if train_spans > 0 else ordered


def span_check(data_root: str, train_spans: int = 0, span_label_drift: float = DEFAULT_SPAN_DRIFT,
               span_image_drift: float = DEFAULT_SPAN_DRIFT, accept_drift: bool = False,
               run_id: str = "") -> Optional[SpanCheck]:
    """Compares the two newest spans of the training window of the dataset at `data_root`: None when the window
    has one span; the record (`alike`, `accepted` with `accept_drift`, or `accepted earlier` when the dataset has an
    acceptance record of the newest span against the same previous span: not measured again) otherwise. A drift
    beyond a threshold without `accept_drift` raises DriftError with the one-line message and the `stopped` record.
    Writes nothing: the executor records an acceptance once the run gets past its split checks."""
    window = window_spans([entry["span"] for entry in datasets.load_spans(data_root)], train_spans)
    if len(window) < 2:
        return None
    previous_span, current_span = window[-2:]
    try:
        accepted = drift_records.read_acceptance(data_root, current_span)
    except drift_records.RecordError as e:
        raise DataValidationError(str(e)) from None
    if accepted is not None and accepted.previous_span == previous_span:
        log.info("span %d: drift from span %d accepted by run %s (%s, %s): not checked again", current_span,
                 previous_span, accepted.run_id or "?", accepted.accepted_by,
                 os.path.join(data_root, drift_records.accepted_path(current_span)))
        return dataclasses.replace(accepted, verdict=ACCEPTED_EARLIER)
    previous = span_stats.load(data_root, previous_span)
    current = span_stats.load(data_root, current_span)
    try:
        drifts = span_drift(previous, current, span_label_drift, span_image_drift)
    except ValueError as e:
        paths = " and ".join(os.path.join(data_root, span_stats_path(span)) for span in (previous_span, current_span))
        raise DataValidationError(f"span drift check of {paths}: {e}") from None
    check = SpanCheck(previous_span, current_span, tuple(drifts), ALIKE, run_id=run_id,
                      decided_utc=drift_records.now_utc())
    message = check.message
    if message is None:
        log.info("no drift between span %d and span %d: %s", previous_span, current_span,
                 ", ".join(f"{d.feature} {d.distance:.2g}" for d in drifts))
        return check
    if not accept_drift:
        raise DriftError(message, dataclasses.replace(check, verdict=STOPPED))
    log.warning("%s", message)
    return dataclasses.replace(check, verdict=ACCEPTED, accepted_by=ACCEPT_SETTING)


def check_span_drift(data_root: str, train_spans: int = 0, span_label_drift: float = DEFAULT_SPAN_DRIFT,
                     span_image_drift: float = DEFAULT_SPAN_DRIFT, accept_drift: bool = False) -> Optional[str]:
    """`span_check`'s drift line: raises DriftError with it, or returns it when `accept_drift` passed it (after
    logging it as a warning); None when the window has one span, the spans are alike or the drift was accepted
    earlier."""
    check = span_check(data_root, train_spans, span_label_drift, span_image_drift, accept_drift)
    return check.message if check is not None and check.verdict == ACCEPTED else None


def record_acceptance(data_root: str, check: SpanCheck) -> None:
    """Keeps `check` (verdict `accepted`) as the dataset's acceptance record of its span, so that later runs do
    not stop on it again; a dataset folder that cannot be written to gets a warning (this run still trains)."""
    try:
        path = drift_records.write_acceptance(data_root, check)
    except Exception as e:  # noqa: BLE001 - tf.errors.* or OSError: the run goes on, the warning says what is lost
        log.warning("%s: could not record the acceptance of span %d's drift (%s); the next run without %s stops "
                    "on it again", os.path.join(data_root, drift_records.accepted_path(check.span)), check.span,
                    getattr(e, "message", None) or e, ACCEPT_SETTING)
        return
    log.info("span %d: drift from span %d accepted with %s; recorded in %s", check.span, check.previous_span,
             ACCEPT_SETTING, path)


class GatingExecutor(validator_executor.Executor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]):
        stats_artifact = artifact_utils.get_single_instance(input_dict[standard_component_specs.STATISTICS_KEY])
        splits = artifact_utils.decode_split_names(stats_artifact.split_names)
        self._reference = (stats_artifact_utils.load_statistics(stats_artifact, REFERENCE_SPLIT).proto()
                           if REFERENCE_SPLIT in splits else None)
        self._drift_threshold = exec_properties.get(LABEL_DRIFT_THRESHOLD_KEY)
        self._problems: list[str] = []
        # Before the split checks: a new span unlike the last one also moves the window's training split away from
        # its test split, and the line naming the span says what changed (DriftError: EXIT_DRIFT, not 1). Once the
        # drift is accepted, the split checks still hold the splits to each other.
        check = None
        data_root: str = exec_properties.get(DATA_ROOT_KEY) or ""
        if data_root:
            run_id = (self._context.pipeline_run_id if self._context is not None else None) or ""
            check = span_check(data_root, int(exec_properties.get(TRAIN_SPANS_KEY) or 0),
                               _threshold(exec_properties, SPAN_LABEL_DRIFT_KEY),
                               _threshold(exec_properties, SPAN_IMAGE_DRIFT_KEY),
                               bool(exec_properties.get(ACCEPT_DRIFT_KEY)), run_id=run_id)
        anomalies = artifact_utils.get_single_instance(output_dict[standard_component_specs.ANOMALIES_KEY])
        if check is not None:
            # The run's record (history, summary, report). Before the stock Do: it returns an ExecutorOutput holding
            # a copy of the artifact as it is then, which is what TFX publishes.
            anomalies.set_string_custom_property(SPAN_CHECK_PROPERTY, check.to_json())
        result = super().Do(input_dict, output_dict, exec_properties)
        if self._problems:
            raise DataValidationError(f"data validation failed: {'; '.join(self._problems)} "
                                      f"(details: {anomalies.uri})")
        if check is not None and check.verdict == ACCEPTED:
            record_acceptance(data_root, check)  # the dataset's record too, once the split checks passed: it trains
        return result

    def _Validate(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> anomalies_pb2.Anomalies:
        schema_diff_path = outputs[labels.SCHEMA_DIFF_PATH]
        # previous_statistics = the training split: the schema's drift comparator on `label` then catches a split
        # whose class distribution is far from training's (a no-op for the training split itself).
        anomalies = tfdv.validate_statistics(
            statistics=inputs[standard_component_specs.STATISTICS_KEY],
            schema=with_label_drift_threshold(inputs[standard_component_specs.SCHEMA_KEY], self._drift_threshold),
            previous_statistics=self._reference,
            custom_validation_config=inputs.get(standard_component_specs.CUSTOM_VALIDATION_CONFIG_KEY))
        writer_utils.write_anomalies(os.path.join(schema_diff_path, validator_executor.DEFAULT_FILE_NAME), anomalies)
        split = schema_diff_path.rstrip("/").rsplit(SPLIT_PREFIX, 1)[-1]
        self._problems += describe(split, anomalies)
        return anomalies


def _threshold(exec_properties: dict[str, Any], key: str) -> float:
    value = exec_properties.get(key)
    return DEFAULT_SPAN_DRIFT if value is None else float(value)


class GatedExampleValidatorSpec(standard_component_specs.ExampleValidatorSpec):
    """The stock spec plus the label drift threshold and the span drift check's settings."""

    PARAMETERS = {**standard_component_specs.ExampleValidatorSpec.PARAMETERS,
                  LABEL_DRIFT_THRESHOLD_KEY: ExecutionParameter(type=float, optional=True),
                  DATA_ROOT_KEY: ExecutionParameter(type=str, optional=True),
                  TRAIN_SPANS_KEY: ExecutionParameter(type=int, optional=True),
                  SPAN_LABEL_DRIFT_KEY: ExecutionParameter(type=float, optional=True),
                  SPAN_IMAGE_DRIFT_KEY: ExecutionParameter(type=float, optional=True),
                  ACCEPT_DRIFT_KEY: ExecutionParameter(type=int, optional=True)}


class GatedExampleValidator(base_component.BaseComponent):
    """`ExampleValidator(statistics, schema)` that fails on anomalies, with the label drift threshold of the run
    (None: the schema's own); with `data_root`, also on drift between the two newest spans of the training window
    (`check_span_drift`; None: no span check)."""

    SPEC_CLASS = GatedExampleValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(GatingExecutor)

    def __init__(self, statistics: types.BaseChannel, schema: types.BaseChannel,
                 label_drift_threshold: Optional[float] = None, data_root: Optional[str] = None,
                 train_spans: int = 0, span_label_drift: float = DEFAULT_SPAN_DRIFT,
                 span_image_drift: float = DEFAULT_SPAN_DRIFT, accept_drift: bool = False):
        check_span_drift_settings(train_spans, span_label_drift, span_image_drift)
        super().__init__(spec=GatedExampleValidatorSpec(
            statistics=statistics, schema=schema, exclude_splits=json_utils.dumps([]),
            label_drift_threshold=label_drift_threshold, data_root=data_root, train_spans=train_spans,
            span_label_drift=span_label_drift, span_image_drift=span_image_drift, accept_drift=int(accept_drift),
            anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies)))
