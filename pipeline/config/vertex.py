"""Vertex AI settings: where `tokenlearner submit` sends the pipeline, and optional Vertex custom training (one
machine, or a chief and workers training together).

Plain data; the Vertex runner (pipeline/vertex_runner.py) and the Trainer component (components/trainer_component.py)
read it.
"""
from __future__ import annotations

import dataclasses
import re

from pipeline.config.errors import ConfigError

# Vertex label rules: lowercase letters, digits, '_' and '-'; keys start with a letter; at most 63 characters.
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


@dataclasses.dataclass(frozen=True)
class VertexConfig:
    """Vertex AI Pipelines job settings and the Trainer's custom-training machine. `--set vertex_project=p
    --set vertex_training=true --set vertex_accelerator_count=2` reaches these fields."""

    project: str = ""  # GCP project of the PipelineJob (required by `submit`) and of the training job
    region: str = "us-central1"  # Vertex AI region of both
    service_account: str = ""  # the job runs as this account; "" = the project's Compute Engine default
    labels: tuple[str, ...] = ()  # key=value labels on the PipelineJob (and the training job)
    # Trainer as a Vertex AI custom training job (TFX google_cloud_ai_platform Trainer) instead of in-pipeline.
    training: bool = False
    machine_type: str = "n1-standard-8"  # training machine
    accelerator_type: str = ""  # e.g. NVIDIA_TESLA_T4, NVIDIA_L4; "" = CPU only
    accelerator_count: int = 0  # GPUs on each machine; >1 makes run_fn train with MirroredStrategy
    # Machines of the training job (`--set trainer_workers=4`): 1 = one machine; N > 1 = worker pool 0 with the chief
    # (1 replica) and worker pool 1 with N - 1 workers, all training one model with MultiWorkerMirroredStrategy.
    trainer_workers: int = 1
    # Machine type of the N - 1 workers; "" = machine_type, as the chief. Their accelerators are the chief's
    # (accelerator_type x accelerator_count on every replica): MultiWorkerMirroredStrategy all-reduces across
    # identical replicas.
    worker_machine_type: str = ""

    def __post_init__(self) -> None:
        _ = self.label_dict  # validates the labels
        if self.accelerator_count < 0:
            raise ConfigError(f"vertex_accelerator_count: expected >= 0, got {self.accelerator_count}")
        if self.trainer_workers < 1:
            raise ConfigError(f"trainer_workers: expected >= 1 (machines of the training job), got "
                              f"{self.trainer_workers}")
        if self.trainer_workers > 1 and not self.training:
            raise ConfigError(f"trainer_workers: {self.trainer_workers} machines need vertex_training=true: only a "
                              "Vertex AI custom training job has worker pools (in a Kubeflow or in-pipeline run the "
                              "Trainer is one container)")
        if self.worker_machine_type and self.trainer_workers == 1:
            raise ConfigError(f"vertex_worker_machine_type: {self.worker_machine_type!r} given but trainer_workers=1 "
                              "(no workers besides the chief)")
        if bool(self.accelerator_type) != bool(self.accelerator_count):
            raise ConfigError("vertex_accelerator_type/vertex_accelerator_count: set both (e.g. NVIDIA_TESLA_T4 "
                              f"and 1) or neither; got {self.accelerator_type!r} and {self.accelerator_count}")
        if self.training:
            for name in ("project", "region", "machine_type"):
                if not getattr(self, name):
                    raise ConfigError(f"vertex_{name}: required by vertex_training=true")

    @property
    def label_dict(self) -> dict[str, str]:
        out = {}
        for label in self.labels:
            key, sep, value = label.partition("=")
            if not sep or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
                raise ConfigError(f"vertex_labels: {label!r} is not key=value with lowercase letters, digits, "
                                  "'_' or '-' (key starting with a letter)")
            out[key] = value
        return out

    def machine_spec(self, machine_type: str = "") -> dict[str, object]:
        """Vertex `MachineSpec` of one replica of the training job (`machine_type` "" = the chief's)."""
        spec: dict[str, object] = {"machine_type": machine_type or self.machine_type}
        if self.accelerator_count:
            spec.update(accelerator_type=self.accelerator_type, accelerator_count=self.accelerator_count)
        return spec

    def worker_pools(self) -> list[tuple[int, dict[str, object]]]:
        """(replica_count, MachineSpec) of each worker pool, in Vertex's order: pool 0 is the chief (Vertex's primary
        replica, `chief` in TF_CONFIG, replica count 1), pool 1 the other `trainer_workers - 1` (`worker`), as
        the aiplatform SDK's own chief-and-workers layout (utils/worker_spec_utils.py, `chief_worker_pool`)."""
        pools = [(1, self.machine_spec())]
        if self.trainer_workers > 1:
            pools.append((self.trainer_workers - 1, self.machine_spec(self.worker_machine_type)))
        return pools
