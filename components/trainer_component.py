"""The Trainer component of the graph, placed by config: inside the pipeline (default) or as a Vertex AI custom
training job.

`create_pipeline` calls `trainer_component` like the Trainer constructor; only this function looks at
`config.vertex.training`, so the graph itself has no per-platform branches.

`config` is the pipeline's PipelineConfig (pipeline/config/), described here by the fields this module reads
(`TrainerPlacement`) instead of imported: components/ sits below pipeline/, and pipeline/config imports
components/schema.py (tests/test_layout.py). A type checker matches PipelineConfig against it at the call site.
"""
from __future__ import annotations

from typing import Any, Protocol

from tfx import v1 as tfx

cloud = tfx.extensions.google_cloud_ai_platform


class VertexTraining(Protocol):
    """What this module reads of pipeline/config/vertex.py's VertexConfig (read-only, as that dataclass is frozen)."""

    @property
    def training(self) -> bool: ...
    @property
    def project(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def service_account(self) -> str: ...
    @property
    def label_dict(self) -> dict[str, str]: ...
    def worker_pools(self) -> list[tuple[int, dict[str, object]]]: ...


class TrainerPlacement(Protocol):
    """What this module reads of the pipeline's PipelineConfig: the image every replica runs and the Vertex section."""

    @property
    def image(self) -> str: ...
    @property
    def vertex(self) -> VertexTraining: ...


def vertex_training_args(config: TrainerPlacement) -> dict[str, Any]:
    """The CustomJob the TFX extension submits: its worker pools (`config.vertex.worker_pools()`: the chief alone,
    or the chief and `trainer_workers - 1` workers), each running the pipeline image.

    The extension (tfx/extensions/google_cloud_ai_platform/training_clients.py, VertexJobClient) replaces every
    pool's container command with its own Trainer executor entry point, so every replica runs run_fn; Vertex AI gives
    each the TF_CONFIG of its task (pool 0 `chief`, pool 1 `worker`), from which run_fn builds
    MultiWorkerMirroredStrategy (trainer/cluster.py)."""
    job_spec: dict[str, Any] = {"worker_pool_specs": [
        {"machine_spec": machine_spec, "replica_count": replicas, "container_spec": {"image_uri": config.image}}
        for replicas, machine_spec in config.vertex.worker_pools()]}
    if config.vertex.service_account:
        job_spec["service_account"] = config.vertex.service_account
    return {"project": config.vertex.project, "job_spec": job_spec, "labels": config.vertex.label_dict}


def trainer_component(config: TrainerPlacement, *, custom_config: dict[str, Any],
                      **kwargs: Any) -> tfx.components.Trainer:
    """A Trainer with `kwargs` (run_fn, channels, args) and `custom_config`; on Vertex training the extension's
    Trainer, whose custom_config also carries the training job."""
    if not config.vertex.training:
        return tfx.components.Trainer(custom_config=custom_config, **kwargs)
    return cloud.Trainer(custom_config={
        **custom_config,
        cloud.ENABLE_VERTEX_KEY: True,
        cloud.VERTEX_REGION_KEY: config.vertex.region,
        cloud.TRAINING_ARGS_KEY: vertex_training_args(config),
    }, **kwargs)
