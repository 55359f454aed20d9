"""The Trainer component of the graph, placed by config: inside the pipeline (default) or as a Vertex AI custom
training job.

`create_pipeline` calls `trainer_component` like the Trainer constructor; only this function looks at
`config.vertex.training`, so the graph itself has no per-platform branches.
"""
from __future__ import annotations

from typing import Any

from tfx import v1 as tfx

from pipeline.config import PipelineConfig

cloud = tfx.extensions.google_cloud_ai_platform


def vertex_training_args(config: PipelineConfig) -> dict[str, Any]:
    """The CustomJob the TFX extension submits: one worker on `config.vertex.machine_spec()` running the pipeline
    image (the extension replaces the container command with its own Trainer executor entry point)."""
    job_spec: dict[str, Any] = {"worker_pool_specs": [{
        "machine_spec": config.vertex.machine_spec(),
        "replica_count": 1,
        "container_spec": {"image_uri": config.image},
    }]}
    if config.vertex.service_account:
        job_spec["service_account"] = config.vertex.service_account
    return {"project": config.vertex.project, "job_spec": job_spec, "labels": config.vertex.label_dict}


def trainer_component(config: PipelineConfig, *, custom_config: dict[str, Any],
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
