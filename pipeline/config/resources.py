"""What each component's container asks for on Kubeflow Pipelines and Vertex AI: cpu, memory, the Trainer's GPUs.

Plain data; the Kubeflow runner (pipeline/kubeflow_runner.py) turns it into each executor's
`PipelineContainerSpec.ResourceSpec`. Local runs ignore it.

Memory defaults are the full-data peaks measured in docs/reliability.md (default preset, DirectRunner with 2
workers, whole process tree) with about 20% headroom: ImportExampleGen/StatisticsGen 3.34 GiB and Transform 3.18 GiB
-> 4 GiB; Trainer 6.84 GiB (the CLI, the runner and every Beam worker counted too) -> 8 GiB. The Evaluator (Beam,
model + test split) was not measured separately; it stayed under the whole run's 6.84 GiB and gets the Beam size.
ImportSchemaGen, ExampleValidator and Pusher copy or read small files (the TensorFlow import dominates): 2 GiB.
CPU: 2 for the Beam components (= `beam_workers`, the DirectRunner's processes), 4 for the Trainer, 1 otherwise.
"""
from __future__ import annotations

import dataclasses
import re

from pipeline.config.errors import ConfigError
from trainer import contract

# Node id -> field prefix in ResourcesConfig. Resolver nodes are metadata queries the backend runs: no container.
COMPONENT_FIELDS = {
    contract.EXAMPLE_GEN: "example_gen", contract.STATISTICS_GEN: "statistics_gen",
    contract.IMPORT_SCHEMA_GEN: "schema_gen", contract.SCHEMA_GEN: "schema_gen",
    contract.EXAMPLE_VALIDATOR: "example_validator", contract.TRANSFORM: "transform", contract.TRAINER: "trainer",
    contract.EVALUATOR: "evaluator", contract.PUSHER: "pusher",
}
MAX_ACCELERATORS = 16  # the most GPUs one Vertex AI / GKE node offers
_ACCELERATOR_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


@dataclasses.dataclass(frozen=True)
class Resources:
    """One container's limits."""

    cpu: float
    memory_gib: float
    accelerator_type: str = ""
    accelerator_count: int = 0

    @property
    def memory_gb(self) -> float:
        """The spec's unit: KFP's driver reads memory_limit as "<value>G" (10^9 bytes), Vertex as GB."""
        return round(self.memory_gib * 2**30 / 1e9, 3)


@dataclasses.dataclass(frozen=True)
class ResourcesConfig:
    """Per-component cpu (cores) and memory (GiB) limits, and the Trainer's accelerator (off by default).
    `--set resources_trainer_memory_gib=12 --set resources_trainer_accelerator_type=nvidia.com/gpu
    --set resources_trainer_accelerator_count=1` reaches these fields."""

    example_gen_cpu: float = 2.0
    example_gen_memory_gib: float = 4.0
    statistics_gen_cpu: float = 2.0
    statistics_gen_memory_gib: float = 4.0
    schema_gen_cpu: float = 1.0
    schema_gen_memory_gib: float = 2.0
    example_validator_cpu: float = 1.0
    example_validator_memory_gib: float = 2.0
    transform_cpu: float = 2.0
    transform_memory_gib: float = 4.0
    trainer_cpu: float = 4.0
    trainer_memory_gib: float = 8.0
    # Kubeflow: the Kubernetes resource name (nvidia.com/gpu); Vertex AI: the accelerator enum (NVIDIA_TESLA_T4).
    trainer_accelerator_type: str = ""
    trainer_accelerator_count: int = 0
    evaluator_cpu: float = 2.0
    evaluator_memory_gib: float = 4.0
    pusher_cpu: float = 1.0
    pusher_memory_gib: float = 2.0

    def __post_init__(self) -> None:
        for prefix in sorted(set(COMPONENT_FIELDS.values())):
            for field, unit in (("cpu", "cores"), ("memory_gib", "GiB")):
                value = getattr(self, f"{prefix}_{field}")
                if not value > 0:
                    raise ConfigError(f"resources_{prefix}_{field}: expected > 0 {unit}, got {value}")
        count, kind = self.trainer_accelerator_count, self.trainer_accelerator_type
        if not 0 <= count <= MAX_ACCELERATORS:
            raise ConfigError(f"resources_trainer_accelerator_count: expected 0..{MAX_ACCELERATORS}, got {count}")
        if bool(kind) != bool(count):
            raise ConfigError("resources_trainer_accelerator_type/resources_trainer_accelerator_count: set both "
                              f"(e.g. nvidia.com/gpu and 1) or neither; got {kind!r} and {count}")
        if kind and not _ACCELERATOR_TYPE.match(kind):
            raise ConfigError(f"resources_trainer_accelerator_type: {kind!r} is not an accelerator name "
                              "(nvidia.com/gpu on Kubeflow, NVIDIA_TESLA_T4 on Vertex AI)")

    def for_component(self, node_id: str) -> Resources | None:
        """The limits of node `node_id`, or None for nodes without a container (resolvers)."""
        prefix = COMPONENT_FIELDS.get(node_id)
        if prefix is None:
            return None
        resources = Resources(getattr(self, f"{prefix}_cpu"), getattr(self, f"{prefix}_memory_gib"))
        if prefix == "trainer":
            resources = dataclasses.replace(resources, accelerator_type=self.trainer_accelerator_type,
                                            accelerator_count=self.trainer_accelerator_count)
        return resources
