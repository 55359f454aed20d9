"""Kubeflow Pipelines v2 runner: compiles `create_pipeline(config)` into a pipeline spec (.json: the `PipelineJob`;
.yaml: its `PipelineSpec`, what a KFP API server takes).

Offline: `run_fn` and `preprocessing_fn` are module paths and the default schema a package name, all resolved
inside `config.image`, so nothing is uploaded at compile time. Vertex AI Pipelines runs the same spec
(vertex_runner.py). Sending it to a Kubeflow Pipelines API server, once or on a cron, is submission/kubeflow.py's.

Each container gets the cpu/memory/accelerator limits of `config.resources` (container_limits.py).
"""
from __future__ import annotations

import os

from tfx import v1 as tfx
from tfx import version
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from components import schema
from pipeline import container_limits
from pipeline.config import ConfigError, PipelineConfig
from pipeline.pipeline import create_pipeline


def check(config: PipelineConfig) -> None:
    if not config.image:
        raise ConfigError("image: required to compile (every component runs this container image)")
    # What the pods read or write must be on shared storage (or, for the schema, inside the image, or inferred).
    for name in ("data_root", "output_dir", "schema_path"):
        value = getattr(config, name)
        if "://" not in value and not (name == "schema_path" and (value == "infer" or schema.is_packaged(value))):
            raise ConfigError(f"{name}: {value!r} is on this machine; pipeline pods need shared storage "
                              f"(copy it to gs://bucket/... and pass --set {name}=gs://...)")
    if schema.is_packaged(config.schema_path):
        try:  # the image installs this same project: a name that does not resolve here will not there either
            schema.resolve(config.schema_path)
        except (ValueError, FileNotFoundError) as e:
            raise ConfigError(f"schema_path: {e}") from None


def write_spec(config: PipelineConfig, out: str) -> str:
    """Writes the spec to `out` (.json: the PipelineJob; .yaml: the PipelineSpec) and returns its path."""
    check(config)
    pipeline = create_pipeline(config)
    limits = container_limits.set_resources(pipeline, config.resources)
    # Pipeline spec 2.1: constants as `runtimeValue.constant`, which KFP 2.x's driver passes on as `parameterValues`
    # (the 2.0 form, `constantValue`, it refuses: "param runtime value spec ... not implemented"); Vertex runs both.
    runner_config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=config.image,
                                                                            use_pipeline_spec_2_1=True)
    job = tfx.orchestration.experimental.KubeflowV2DagRunner(config=runner_config).run(pipeline, write_out=False)
    container_limits.fill_in_resources(job, limits)
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    kubeflow_v2_dag_runner._write_pipeline_spec_to_file(  # TFX's own writer, as run(write_out=True) uses it
        job, f"This is converted from TFX pipeline from tfx-{version.__version__}.", out)
    return out


def compile_spec(config: PipelineConfig, out: str) -> str:
    kind = config.resources.trainer_accelerator_type
    if kind and "/" not in kind:  # the KFP driver makes it the name of the pod's resource limit
        raise ConfigError(f"resources_trainer_accelerator_type: Kubeflow expects a Kubernetes resource name such "
                          f"as nvidia.com/gpu, got {kind!r}")
    return write_spec(config, out)
