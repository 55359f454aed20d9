"""Kubeflow Pipelines v2 runner: compiles `create_pipeline(config)` into a pipeline spec JSON (a KFP `PipelineJob`).

Offline: `run_fn` and `preprocessing_fn` are module paths that resolve inside `config.image`, so nothing is
uploaded at compile time. Vertex AI Pipelines runs the same spec (pipeline/vertex_runner.py).
"""
from __future__ import annotations

import os

from tfx import v1 as tfx

from pipeline.config import ConfigError, PipelineConfig
from pipeline.pipeline import create_pipeline

# What the pipeline pods read or write must be on shared storage, not on the compiling machine's disk
# (schema_path may also be "infer": no file then).
WORKER_PATHS = ("data_root", "output_dir", "schema_path")


def compile_spec(config: PipelineConfig, out: str) -> str:
    """Writes the spec to `out` (.json or .yaml) and returns its path."""
    if not config.image:
        raise ConfigError("image: required to compile (every component runs this container image)")
    for name in WORKER_PATHS:
        value = getattr(config, name)
        if "://" not in value and not (name == "schema_path" and value == "infer"):
            raise ConfigError(f"{name}: {value!r} is on this machine; pipeline pods need shared storage "
                              f"(copy it to gs://bucket/... and pass --set {name}=gs://...)")
    runner_config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=config.image)
    out = os.path.abspath(out)
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=runner_config, output_dir=os.path.dirname(out), output_filename=os.path.basename(out),
    ).run(create_pipeline(config))
    return out
