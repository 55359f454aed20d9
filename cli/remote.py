"""`tokenlearner compile` and `tokenlearner submit`: their arguments, the config they build, and what they print
(each task's container limits as the compiled spec carries them; what was, or with --dry-run would be, sent).

`submit --schedule CRON` makes the submission recurring: a Vertex AI pipeline schedule, or a Kubeflow Pipelines
recurring run; the cron is checked (pipeline/config/schedule.py) before anything is read, compiled or sent.
The work itself is in pipeline/kubeflow_runner.py and pipeline/vertex_runner.py (compile) and in submission/ (send).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from typing import Optional

import yaml

from pipeline import config as config_lib
from pipeline.config import schedule as schedule_lib
from cli import options
from trainer.exit_codes import EXIT_OK
from trainer.contract import DATASET_MANIFEST

log = logging.getLogger(__name__)

TARGETS = ("kubeflow", "vertex")
KFP_ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"  # the variable kfp.Client itself reads for its host


def add_arguments(p: argparse.ArgumentParser, submit: bool) -> None:
    if not submit:
        p.add_argument("--target", required=True, choices=TARGETS,
                       help="kubeflow: KFP v2 spec (.yaml for `kfp run create`, .json); vertex: also checks the "
                            "Vertex settings (project, gs:// paths)")
    else:
        p.add_argument("--target", default="vertex", choices=TARGETS,
                       help="vertex (default): Vertex AI Pipelines (--set vertex_project=...); kubeflow: a Kubeflow "
                            "Pipelines API server (--host)")
    p.add_argument("--image", required=True,
                   help="container image built from deploy/Dockerfile; every component (and Dataflow/Vertex "
                        "training workers) runs it")
    p.add_argument("--data-root", required=True, metavar="URI",
                   help="dataset folder written by `tokenlearner data`, copied where the workers read it "
                        "(gs://bucket/data/cifar10-...)")
    p.add_argument("--output", required=True, metavar="URI",
                   help="output folder on shared storage (gs://bucket/tokenlearner): pipeline root, serving dir")
    p.add_argument("--out", default=None if submit else "pipeline.json", metavar="FILE",
                   help="where the compiled spec goes" + ("" if submit else " (default: pipeline.json)"))
    options.add_settings_arguments(
        p, set_help="any config field, e.g. --set vertex_project=p --set beam_temp_location=gs://b/tmp")
    if submit:
        p.add_argument("--schedule", metavar="CRON",
                       help="submit on a schedule instead of once: 5-field unix cron 'minute hour day-of-month month "
                            "day-of-week', e.g. '0 3 * * *' (daily at 03:00); vertex: optionally after "
                            "TZ=<IANA zone>; kubeflow: UTC, sent as 6 fields with seconds 0. Creates a Vertex "
                            "pipeline schedule / a KFP recurring run (one run at a time)")
        p.add_argument("--host", default=os.environ.get(KFP_ENDPOINT_ENV), metavar="URL",
                       help=f"kubeflow: the Kubeflow Pipelines API endpoint (default: ${KFP_ENDPOINT_ENV}), e.g. "
                            "http://localhost:8080 after `kubectl port-forward -n kubeflow svc/ml-pipeline 8080:8888`")
        p.add_argument("--namespace", default=None,
                       help="kubeflow: your namespace on a multi-user Kubeflow (default: the client's)")
        p.add_argument("--experiment", default=None,
                       help="kubeflow: experiment that groups the runs, created if missing (default: the pipeline "
                            "name)")
        p.add_argument("--dry-run", action="store_true",
                       help="build what would be sent (the Vertex PipelineJob or schedule, the KFP requests) with "
                            "the real clients and print it; send nothing")


def build_config(args) -> config_lib.PipelineConfig:
    overrides = options.overrides_from_args(args)
    # The image is applied with the overrides: Beam profiles that need it are validated with it present.
    overrides["image"] = args.image
    base = config_lib.from_preset(args.preset, data_root=args.data_root, output_dir=args.output)
    config = config_lib.apply_overrides(base, overrides)
    manifest = read_manifest(args.data_root)
    return config if manifest is None else config_lib.for_dataset(config, manifest)


def read_manifest(data_root: str) -> Optional[dict]:
    """The dataset's manifest.json (local or gs://, through TFX's fileio), or None with a log line when it cannot
    be read here: the spec is then compiled with the default class list and schema (CIFAR-10's)."""
    from tfx.dsl.io import fileio  # TFX only when compiling, which imports it anyway

    path = f"{data_root.rstrip('/')}/{DATASET_MANIFEST}"
    try:
        with fileio.open(path) as f:
            text = f.read()
    except Exception as e:  # noqa: BLE001 - missing, no credentials, no filesystem plugin: all mean "not here"
        log.info("%s: not readable here (%s); compiling with the CIFAR-10 class list and the curated schema",
                 path, str(e).splitlines()[0] if str(e) else type(e).__name__)
        return None
    try:
        manifest = json.loads(text)
    except ValueError as e:
        raise config_lib.ConfigError(f"{path}: not a dataset manifest (invalid JSON: {e})") from None
    if not isinstance(manifest, dict):
        raise config_lib.ConfigError(f"{path}: not a dataset manifest (expected a JSON object)")
    return manifest


def compile_from_args(args) -> int:
    from pipeline import kubeflow_runner, vertex_runner

    runner = vertex_runner if args.target == "vertex" else kubeflow_runner
    out = runner.compile_spec(build_config(args), args.out)
    with open(out) as f:
        spec = yaml.safe_load(f)  # JSON is YAML too
    for task, limits in describe_resources(spec).items():
        print(f"{task:<18} {limits}")
    print(out)
    return EXIT_OK


def submit_from_args(args) -> int:
    from pipeline import kubeflow_runner, vertex_runner
    from submission import kubeflow as kubeflow_client
    from submission import vertex as vertex_client

    # Checked before the dataset's manifest is read or anything is compiled: a bad cron costs nothing.
    cron = schedule_lib.parse(args.schedule) if args.schedule is not None else None
    if args.target == "kubeflow":
        if cron is not None:
            cron.for_kubeflow()  # refuses a time zone prefix, which Kubeflow would not honour
        if not args.host:
            raise config_lib.ConfigError(f"--host: required for --target kubeflow (the Kubeflow Pipelines API "
                                         f"endpoint, e.g. http://localhost:8080), or set ${KFP_ENDPOINT_ENV}")
        if args.out:
            kubeflow_client.check_spec_path(args.out)
    else:
        given = [flag for flag, value in (("--experiment", args.experiment), ("--namespace", args.namespace)) if value]
        if given:
            raise config_lib.ConfigError(f"{given[0]}: only for --target kubeflow (Vertex AI has no experiments or "
                                         "namespaces to submit into)")
    config = build_config(args)
    suffix = ".yaml" if args.target == "kubeflow" else ".json"  # KFP's client uploads the PipelineSpec YAML
    out = args.out or os.path.join(tempfile.mkdtemp(prefix="tokenlearner-"), f"pipeline{suffix}")
    if args.target == "kubeflow":
        kubeflow_runner.compile_spec(config, out)
        target = kubeflow_client.KubeflowTarget(host=args.host, experiment=args.experiment or config.pipeline_name,
                                                namespace=args.namespace)
        sent = kubeflow_client.submit(config, out, target, cron=cron, dry_run=args.dry_run)
        print(json.dumps(describe_kubeflow(sent, target, cron, out, sent_for_real=not args.dry_run), indent=2))
        return EXIT_OK
    vertex_runner.compile_spec(config, out)
    if cron is None:
        job = vertex_client.submit(config, out, dry_run=args.dry_run)
        print(json.dumps(describe(job, config, out, sent=not args.dry_run), indent=2))
        return EXIT_OK
    schedule, request = vertex_client.create_schedule(config, out, cron, dry_run=args.dry_run)
    print(json.dumps(describe_vertex_schedule(schedule, request, config, out, sent=not args.dry_run), indent=2))
    return EXIT_OK


def describe_vertex_schedule(schedule, request: dict, config: config_lib.PipelineConfig, spec_path: str,
                             sent: bool) -> dict:
    """What `submit --schedule` prints for Vertex AI: the CreateScheduleRequest as built, its pipeline job summed up
    (the spec itself is the compiled file)."""
    body = dict(request["schedule"])
    job = dict(body.pop("createPipelineJobRequest")["pipelineJob"])
    spec = job.pop("pipelineSpec")
    return {
        "sent": sent, "name": schedule.resource_name, "parent": request["parent"], "schedule": body,
        "template_path": spec_path, "pipeline_job": {**job, "pipeline": spec["pipelineInfo"]["name"],
                                                     "tasks": sorted(spec["root"]["dag"]["tasks"])},
        "service_account": config.vertex.service_account or "(project default)",
    }


def describe_kubeflow(sent: list[dict], target, cron: Optional[schedule_lib.CronSchedule], spec_path: str,
                      sent_for_real: bool) -> dict:
    """What `submit --target kubeflow` prints: every request kfp.Client made, in order; the creation's pipeline spec
    summed up (the spec itself is the compiled file)."""
    requests = []
    for request in sent:
        body = request["body"]
        if isinstance(body, dict) and "pipeline_spec" in body:
            spec = body["pipeline_spec"]
            body = {**body, "pipeline_spec": {"pipeline": spec["pipelineInfo"]["name"],
                                              "tasks": sorted(spec["root"]["dag"]["tasks"])}}
        requests.append({"method": request["method"], "url": request["url"], **({"body": body} if body else {})})
    return {"sent": sent_for_real, "host": target.host, "experiment": target.experiment,
            "schedule": None if cron is None else {"given": cron.expression, "cron_expression": cron.for_kubeflow()},
            "template_path": spec_path, "requests": requests}


def describe(job, config: config_lib.PipelineConfig, spec_path: str, sent: bool) -> dict:
    """What `submit` prints: the PipelineJob as built (and sent, unless a dry run)."""
    resource = job.to_dict()
    spec, runtime = resource["pipelineSpec"], resource.get("runtimeConfig", {})
    images = {e.get("container", {}).get("image") for e in spec["deploymentSpec"]["executors"].values()}
    return {
        "sent": sent, "name": resource.get("name", ""),
        "parent": f"projects/{config.vertex.project}/locations/{config.vertex.region}", "job_id": job.job_id,
        "display_name": resource["displayName"], "template_path": spec_path,
        "pipeline_root": runtime.get("gcsOutputDirectory"), "parameter_values": runtime.get("parameterValues", {}),
        "service_account": config.vertex.service_account or "(project default)",
        "labels": resource.get("labels", {}), "enable_caching": config.enable_cache,
        "images": sorted(images - {None}), "tasks": sorted(spec["root"]["dag"]["tasks"]),
        "resources": describe_resources(spec),
    }


def describe_resources(job_or_spec: dict) -> dict[str, str]:
    """Task name -> its container's limits as the compiled spec carries them, e.g. 'cpu 4, memory 8 GiB (8.59 GB),
    accelerator nvidia.com/gpu x1'; tasks without a container (resolvers) are left out."""
    spec = job_or_spec.get("pipelineSpec", job_or_spec)
    out = {}
    for task, body in sorted(spec["root"]["dag"]["tasks"].items()):
        label = spec["components"][body["componentRef"]["name"]]["executorLabel"]
        container = spec["deploymentSpec"]["executors"][label].get("container")
        if container is None:
            continue
        limits = container.get("resources")
        if not limits:
            out[task] = "no limits (the cluster's default)"
            continue
        memory = limits["memoryLimit"]  # GB, as KFP's driver reads it
        text = f"cpu {limits['cpuLimit']:g}, memory {memory * 1e9 / 2**30:.3g} GiB ({memory:g} GB)"
        if "accelerator" in limits:
            text += f", accelerator {limits['accelerator']['type']} x{limits['accelerator']['count']}"
        out[task] = text
    return out
