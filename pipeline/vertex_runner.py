"""Vertex AI Pipelines runner: compile `create_pipeline(config)` (as for Kubeflow) and submit it as a PipelineJob.

`dry_run` builds the very PipelineJob object that would be sent, with anonymous credentials (so nothing, not even
a credentials lookup, touches the network), and returns what it would send instead of sending it.
"""
from __future__ import annotations

import re
from typing import Any

from pipeline import kubeflow_runner
from pipeline.config import ConfigError, PipelineConfig

# Vertex AI's AcceleratorType enum names (aiplatform v1 machine_resources.proto): NVIDIA_TESLA_T4, NVIDIA_L4, TPU_V3
_ACCELERATOR_ENUM = re.compile(r"^[A-Z][A-Z0-9_]*$")


def check(config: PipelineConfig) -> None:
    if not config.vertex.project:
        raise ConfigError("vertex_project: required for Vertex AI (--set vertex_project=MY_PROJECT)")
    for name in ("data_root", "output_dir"):
        if not getattr(config, name).startswith("gs://"):
            raise ConfigError(f"{name}: Vertex AI reads and writes Cloud Storage; expected gs://..., got "
                              f"{getattr(config, name)!r}")
    kind = config.resources.trainer_accelerator_type
    if kind and not _ACCELERATOR_ENUM.match(kind):
        raise ConfigError(f"resources_trainer_accelerator_type: Vertex AI expects an accelerator name such as "
                          f"NVIDIA_TESLA_T4 or NVIDIA_L4, got {kind!r}")


def compile_spec(config: PipelineConfig, out: str) -> str:
    check(config)
    return kubeflow_runner.write_spec(config, out)


def submit(config: PipelineConfig, spec_path: str, dry_run: bool = False, credentials: Any = None) -> Any:
    """Creates the `aiplatform.PipelineJob` from the compiled spec and submits it unless `dry_run`."""
    check(config)
    from google.cloud import aiplatform

    if dry_run:
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    job = aiplatform.PipelineJob(
        display_name=config.pipeline_name, template_path=spec_path, pipeline_root=config.pipeline_root,
        parameter_values={}, enable_caching=config.enable_cache, labels=config.vertex.label_dict or None,
        project=config.vertex.project, location=config.vertex.region, credentials=credentials)
    if not dry_run:
        job.submit(service_account=config.vertex.service_account or None)
    return job
