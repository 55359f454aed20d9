"""ExampleValidator that stops the pipeline on anomalies, so bad data never reaches the Trainer.

The stock ExampleValidator only records anomalies. This one also compares every split's label distribution with
the training split's (the schema's `drift_comparator` on `label`, its threshold replaced by the pipeline's
`label_drift_threshold`), and then fails the execution with one line naming each split, feature and problem; the
Trainer depends on it, so it never runs on such data. The label's domain (0..N-1) is the schema's: the curated
CIFAR-10 schema, or the one ingestion writes for another class list.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx import types
from tfx.components.example_validator import executor as validator_executor
from tfx.components.example_validator import labels
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils, writer_utils

from trainer.contract import SPLIT_PREFIX, TRAIN
from trainer.features import LABEL_KEY

REFERENCE_SPLIT = TRAIN  # every split's label distribution is compared with the training split's
LABEL_DRIFT_THRESHOLD_KEY = "label_drift_threshold"  # the execution parameter (PipelineConfig.label_drift_threshold)


class DataValidationError(RuntimeError):
    """Raised by the validator: the message is the one-line summary of every anomaly."""


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


class GatingExecutor(validator_executor.Executor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]):
        stats_artifact = artifact_utils.get_single_instance(input_dict[standard_component_specs.STATISTICS_KEY])
        splits = artifact_utils.decode_split_names(stats_artifact.split_names)
        self._reference = (stats_artifact_utils.load_statistics(stats_artifact, REFERENCE_SPLIT).proto()
                           if REFERENCE_SPLIT in splits else None)
        self._drift_threshold = exec_properties.get(LABEL_DRIFT_THRESHOLD_KEY)
        self._problems: list[str] = []
        result = super().Do(input_dict, output_dict, exec_properties)
        if self._problems:
            anomalies_uri = artifact_utils.get_single_uri(output_dict[standard_component_specs.ANOMALIES_KEY])
            raise DataValidationError(f"data validation failed: {'; '.join(self._problems)} "
                                      f"(details: {anomalies_uri})")
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


class GatedExampleValidatorSpec(standard_component_specs.ExampleValidatorSpec):
    """The stock spec plus the label drift threshold."""

    PARAMETERS = {**standard_component_specs.ExampleValidatorSpec.PARAMETERS,
                  LABEL_DRIFT_THRESHOLD_KEY: ExecutionParameter(type=float, optional=True)}


class GatedExampleValidator(base_component.BaseComponent):
    """`ExampleValidator(statistics, schema)` that fails on anomalies, with the label drift threshold of the run
    (None: the schema's own)."""

    SPEC_CLASS = GatedExampleValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(GatingExecutor)

    def __init__(self, statistics: types.BaseChannel, schema: types.BaseChannel,
                 label_drift_threshold: Optional[float] = None):
        super().__init__(spec=GatedExampleValidatorSpec(
            statistics=statistics, schema=schema, exclude_splits=json_utils.dumps([]),
            label_drift_threshold=label_drift_threshold,
            anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies)))
