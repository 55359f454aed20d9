"""Vertex AI Pipelines runner: compile `create_pipeline(config)` (as for Kubeflow) and submit it as a PipelineJob.

`dry_run` builds the very PipelineJob object that would be sent, with anonymous credentials (so nothing, not even
a credentials lookup, touches the network), and returns what it would send instead of sending it.
"""
from __future__ import annotations

from typing import Any, Optional

from pipeline import kubeflow_runner
from pipeline.config import ConfigError, PipelineConfig


def check(config: PipelineConfig) -> None:
    if not config.vertex.project:
        raise ConfigError("vertex_project: required for Vertex AI (--set vertex_project=MY_PROJECT)")
    for name in ("data_root", "output_dir"):
        if not getattr(config, name).startswith("gs://"):
            raise ConfigError(f"{name}: Vertex AI reads and writes Cloud Storage; expected gs://..., got "
                              f"{getattr(config, name)!r}")


def compile_spec(config: PipelineConfig, out: str) -> str:
    check(config)
    return kubeflow_runner.compile_spec(config, out)


def submit(config: PipelineConfig, spec_path: str, dry_run: bool = False, credentials: Any = None) -> dict:
    """Creates the PipelineJob from the compiled spec and submits it (unless `dry_run`); returns the job."""
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
    return describe(job, config, spec_path, sent=not dry_run)


def describe(job: Any, config: PipelineConfig, spec_path: str, sent: bool) -> dict[str, Any]:
    resource = job.to_dict()
    tasks = resource["pipelineSpec"]["root"]["dag"]["tasks"]
    images = {e.get("container", {}).get("image") for e in
              resource["pipelineSpec"]["deploymentSpec"]["executors"].values()} - {None}
    runtime: Optional[dict] = resource.get("runtimeConfig")
    return {
        "sent": sent, "name": resource.get("name", ""),
        "parent": f"projects/{config.vertex.project}/locations/{config.vertex.region}", "job_id": job.job_id,
        "display_name": resource["displayName"], "template_path": spec_path,
        "pipeline_root": runtime.get("gcsOutputDirectory"), "parameter_values": runtime.get("parameterValues", {}),
        "service_account": config.vertex.service_account or "(project default)",
        "labels": resource.get("labels", {}), "enable_caching": config.enable_cache,
        "images": sorted(images), "tasks": sorted(tasks),
    }
