"""What a run's Trainer was given, read back from ML Metadata: the inputs `tokenlearner train-worker` starts a worker
of a multi-worker fit from (cli/worker.py, trainer/worker.py), so that no one writes a FnArgs file by hand.

The Trainer execution of the run (a cached one included) records its input artifacts (`examples`,
`transform_graph`, ...) as INPUT events and the graph's `custom_config` (trainer settings, class names, model name,
checkpoint folder) as a JSON property: the same values the pipeline's Trainer trained with.
"""
from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, Optional

from ml_metadata.proto import metadata_store_pb2

from inspection import run_store
from pipeline.config import PipelineConfig
from trainer import contract

if TYPE_CHECKING:
    import ml_metadata as mlmd

CUSTOM_CONFIG_PROPERTY = "custom_config"  # the TFX Trainer's exec property, stored as JSON text


class NoTrainerInputs(LookupError):
    """The run has no Trainer execution with the inputs a worker needs; the message is one line saying why."""


@dataclasses.dataclass(frozen=True)
class TrainerInputs:
    """The Trainer inputs of one run."""

    run_id: str
    examples: str  # URI of the Examples artifact (its Split-train/ and Split-eval/ folders)
    transform_graph: str  # URI of the Transform graph artifact
    custom_config: dict[str, Any]  # contract.TRAINER_CONFIG_KEY, CLASS_NAMES_KEY, MODEL_NAME_KEY, BACKUP_DIR_KEY


def trainer_inputs(config: PipelineConfig, run_id: Optional[str] = None,
                   store: Optional["mlmd.MetadataStore"] = None) -> TrainerInputs:
    """The Trainer inputs of run `run_id` (None or LATEST: the newest run); NoTrainerInputs when the store has no
    such run or the run did not reach its Trainer."""
    missing = run_store.missing_store(config)
    if missing:
        raise NoTrainerInputs(missing)
    store = store or run_store.open_store(config)
    try:
        run = run_store.find_run(store, run_id)
    except LookupError as e:
        raise NoTrainerInputs(f"{config.metadata_path}: {e}") from None
    trainers = [e for e in store.get_executions_by_context(run.id)
                if run_store.node_name(store, e) == contract.TRAINER]
    if not trainers:
        raise NoTrainerInputs(f"run {run.name} has no {contract.TRAINER} execution (it stopped before training); "
                              f"expected a run that reached the {contract.TRAINER}")
    execution = max(trainers, key=lambda e: e.create_time_since_epoch)
    uris: dict[str, str] = {}
    for event in store.get_events_by_execution_ids([execution.id]):
        keys = [step.key for step in event.path.steps if step.HasField("key")]
        if event.type == metadata_store_pb2.Event.INPUT and keys:
            uris[keys[0]] = store.get_artifacts_by_id([event.artifact_id])[0].uri
    for key in ("examples", "transform_graph"):
        if not uris.get(key):
            raise NoTrainerInputs(f"run {run.name}: its {contract.TRAINER} execution records no {key!r} input")
    text = execution.custom_properties[CUSTOM_CONFIG_PROPERTY].string_value \
        if CUSTOM_CONFIG_PROPERTY in execution.custom_properties else ""
    try:
        custom_config = json.loads(text)
    except json.JSONDecodeError:
        custom_config = None
    if not isinstance(custom_config, dict) or contract.TRAINER_CONFIG_KEY not in custom_config:
        raise NoTrainerInputs(f"run {run.name}: its {contract.TRAINER} execution has no {CUSTOM_CONFIG_PROPERTY} with "
                              f"{contract.TRAINER_CONFIG_KEY!r} (a run of another pipeline?)")
    return TrainerInputs(run_id=run.name, examples=uris["examples"], transform_graph=uris["transform_graph"],
                         custom_config=custom_config)
