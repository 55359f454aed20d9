"""Each component's container limits in a compiled Kubeflow / Vertex AI spec (kubeflow_runner.py writes both).

Each component's container gets the limits of `config.resources` through TFX's
`with_platform_config(ResourceSpec)`, which the Kubeflow V2 step builder copies into its executor's
`container.resources` (tfx/orchestration/kubeflow/v2/step_builder.py). Units as the backends read them: cpu in
cores; memory in GB of 10^9 bytes (KFP's driver parses `"<memory_limit>G"`, kubeflow/pipelines
backend/src/v2/driver/driver.go); the accelerator type is the pod's resource name on Kubeflow, the accelerator
enum on Vertex AI.
"""
from __future__ import annotations

from typing import TypeAlias

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx

from pipeline.config.resources import Resources, ResourcesConfig

# An alias for annotations (kfp ships no type information, so the checker sees Any).
ResourceSpec: TypeAlias = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


def resource_spec(resources: Resources) -> ResourceSpec:
    spec = ResourceSpec(cpu_limit=resources.cpu, memory_limit=resources.memory_gb)
    if resources.accelerator_count:
        spec.accelerator.type = resources.accelerator_type
        spec.accelerator.count = resources.accelerator_count
    return spec


def set_resources(pipeline: tfx.dsl.Pipeline, config: ResourcesConfig) -> dict[str, ResourceSpec]:
    """Sets each component's limits as its platform config; returns them by node id."""
    specs = {}
    for node in pipeline.components:
        resources = config.for_component(node.id)
        if resources is not None:
            specs[node.id] = resource_spec(resources)
            node.with_platform_config(specs[node.id])
    return specs


def fill_in_resources(job: dict, specs: dict[str, ResourceSpec]) -> None:
    """Puts the limits into the executors the step builder left without them: TFX 1.16 builds FileBasedExampleGen's
    container (ImportExampleGen) in `_build_file_based_example_gen_spec`, which ignores the platform config."""
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    for node_id, spec in specs.items():
        executors[f"{node_id}_executor"]["container"].setdefault("resources", json_format.MessageToDict(spec))
