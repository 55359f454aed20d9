"""Vertex AI Pipelines runner: checks the Vertex settings and compiles `create_pipeline(config)` into the same spec as
for Kubeflow (kubeflow_runner.py). Submitting it as a PipelineJob, once or on a schedule, is submission/vertex.py's.
"""
from __future__ import annotations

import re

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
