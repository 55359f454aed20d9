"""ExampleValidator that stops the pipeline on anomalies, so bad data never reaches the Trainer.

The stock ExampleValidator only records anomalies. This one also compares every split's label distribution with
the training split's (the schema's `drift_comparator` on `label`), and then fails the execution with one line
naming each split, feature and problem; the Trainer depends on it, so it never runs on such data.
"""
from __future__ import annotations

import os
from typing import Any

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.components import ExampleValidator
from tfx.components.example_validator import executor as validator_executor
from tfx.components.example_validator import labels
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import writer_utils

from trainer.contract import SPLIT_PREFIX, TRAIN

REFERENCE_SPLIT = TRAIN  # every split's label distribution is compared with the training split's


class DataValidationError(RuntimeError):
    """Raised by the validator: the message is the one-line summary of every anomaly."""


def _explain(info) -> str:
    """Each reason TFDV found (its own short_description only says "Multiple errors" when there are several)."""
    reasons = [r.description or r.short_description for r in info.reason]
    return " / ".join(reasons) if reasons else (info.description or info.short_description)


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
            schema=inputs[standard_component_specs.SCHEMA_KEY],
            previous_statistics=self._reference,
            custom_validation_config=inputs.get(standard_component_specs.CUSTOM_VALIDATION_CONFIG_KEY))
        writer_utils.write_anomalies(os.path.join(schema_diff_path, validator_executor.DEFAULT_FILE_NAME), anomalies)
        split = schema_diff_path.rstrip("/").rsplit(SPLIT_PREFIX, 1)[-1]
        self._problems += describe(split, anomalies)
        return anomalies


class GatedExampleValidator(ExampleValidator):
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(GatingExecutor)
