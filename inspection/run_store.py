"""Reading a run back from ML Metadata: the one layer under the run summary, the report and the TensorBoard command.

- `open_store(config)`: the run's store, read-only SQLite under the pipeline root or the configured MySQL server;
- `find_run(store, run_id)`: a `pipeline_run` context by id; `LATEST` (or None) is the newest;
- `node_name(store, execution)`: the graph's node id of an execution (trainer/contract.py), from its node context;
- `input_artifacts(store, execution_id, key)`: what an execution read as input `key` (the Evaluator's
  `baseline_model`);
- `pushed_version(store, model_id)`: the version a Pusher published a Model artifact as;
- `slice_metrics(uri)`, `overall_metrics(uri)`: TFMA metrics of an Evaluator output, per slice and model;
- `dataset_manifest(config)`: the dataset's manifest.json (`datasets.load_manifest`), {} when there is none.
"""
from __future__ import annotations

import os

from typing import TYPE_CHECKING, Optional

from ml_metadata.proto import metadata_store_pb2

from components import datasets
from pipeline.config import PipelineConfig, metadata

if TYPE_CHECKING:  # the store library itself loads when a store is opened: the CLI imports LATEST when it starts
    import ml_metadata as mlmd

LATEST = "LATEST"  # --run's default: the newest pipeline run in the store
CANDIDATE, BASELINE = "candidate", "baseline"  # TFMA's model names in an evaluation with a baseline


def missing_store(config: PipelineConfig) -> Optional[str]:
    """Why the run's metadata cannot be read, when its SQLite file is absent; None otherwise (a MySQL store is
    checked when it is opened)."""
    if config.metadata.backend == "sqlite" and not os.path.isfile(config.metadata_path):
        return f"{config.metadata_path}: missing; expected the metadata of a `tokenlearner run`"
    return None


def open_store(config: PipelineConfig,
               connection: Optional[metadata_store_pb2.ConnectionConfig] = None) -> "mlmd.MetadataStore":
    """The run's metadata store: the configured MySQL server, else read-only SQLite under the pipeline root."""
    import ml_metadata as mlmd

    if connection is None and config.metadata.backend != "sqlite":  # the run's MySQL store (password from env)
        connection = metadata.connection_config(config.metadata, config.metadata_path)
    if connection is None:
        connection = metadata_store_pb2.ConnectionConfig()
        connection.sqlite.filename_uri = config.metadata_path
        connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return mlmd.MetadataStore(connection)


def find_run(store: "mlmd.MetadataStore", run_id: Optional[str] = None) -> metadata_store_pb2.Context:
    """The pipeline run `run_id`, or the newest one for None or LATEST; LookupError when there is none."""
    if run_id == LATEST:
        run_id = None
    runs = store.get_contexts_by_type("pipeline_run")
    if run_id:
        runs = [r for r in runs if r.name == run_id]
    if not runs:
        raise LookupError(f"no pipeline run {run_id or ''} in the metadata store".replace("  ", " "))
    return max(runs, key=lambda c: c.create_time_since_epoch)


def node_name(store: "mlmd.MetadataStore", execution: metadata_store_pb2.Execution) -> str:
    """The node id (`Trainer`, `latest_blessed_model_resolver`, ...) of an execution; its type without a node."""
    nodes = [c.name for c in store.get_contexts_by_execution(execution.id) if c.type == "node"]
    return nodes[0].split(".", 1)[-1] if nodes else execution.type  # node contexts are "<pipeline>.<node id>"


def input_artifacts(store: "mlmd.MetadataStore", execution_id: int,
                    key: str) -> list[metadata_store_pb2.Artifact]:
    """The artifacts execution `execution_id` read as its input `key` (the first step of each INPUT event's path,
    as TFX records it), in input order."""
    events = [e for e in store.get_events_by_execution_ids([execution_id])
              if e.type == metadata_store_pb2.Event.INPUT and e.path.steps and e.path.steps[0].key == key]
    events.sort(key=lambda e: e.path.steps[1].index if len(e.path.steps) > 1 else 0)
    found = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    return [found[e.artifact_id] for e in events if e.artifact_id in found]


def pushed_version(store: "mlmd.MetadataStore", model_id: int) -> Optional[str]:
    """The version under the serving folder that a Pusher published Model artifact `model_id` as (a Pusher that
    found it already published records that version too); None when none did."""
    readers = {e.execution_id for e in store.get_events_by_artifact_ids([model_id])
               if e.type == metadata_store_pb2.Event.INPUT}
    outputs = [e.artifact_id for e in store.get_events_by_execution_ids(sorted(readers))
               if e.type == metadata_store_pb2.Event.OUTPUT]
    for artifact in store.get_artifacts_by_id(outputs):
        properties = artifact.custom_properties
        if "pushed" in properties and properties["pushed"].int_value and "pushed_version" in properties:
            return properties["pushed_version"].string_value
    return None


def slice_metrics(uri: str) -> list[tuple[tuple, dict[str, dict[str, float]]]]:
    """[(slice keys, {model name: {metric: value}})] of a TFMA evaluation, diffs left out; the overall slice has
    no keys. A single-model evaluation's model is reported as CANDIDATE."""
    import tensorflow_model_analysis as tfma

    out = []
    for metrics in tfma.load_metrics(uri):
        models: dict[str, dict[str, float]] = {}
        for kv in metrics.metric_keys_and_values:
            if not kv.key.is_diff:
                models.setdefault(kv.key.model_name or CANDIDATE, {})[kv.key.name] = kv.value.double_value.value
        out.append((tuple(metrics.slice_key.single_slice_keys), models))
    return out


def overall_metrics(uri: str) -> dict[str, dict[str, float]]:
    """{model name: {metric: value}} on the overall slice (CANDIDATE and, when there was one, BASELINE)."""
    out: dict[str, dict[str, float]] = {}
    for keys, models in slice_metrics(uri):
        if not keys:
            for model, values in models.items():
                out.setdefault(model, {}).update(values)
    return out


def dataset_manifest(config: PipelineConfig) -> dict:
    """manifest.json of the run's dataset (components/datasets.py); {} where the folder has none."""
    try:
        return datasets.load_manifest(config.data_root)
    except datasets.DataError:
        return {}
