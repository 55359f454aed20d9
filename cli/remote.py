"""`tokenlearner compile` and `tokenlearner submit`: their arguments, the config they build, and what they print
(each task's container limits as the compiled spec carries them; what was, or with --dry-run would be, sent).

`submit --schedule CRON` makes the submission recurring: a Vertex AI pipeline schedule, or a Kubeflow Pipelines
recurring run; the cron is checked (pipeline/config/schedule.py) before anything is read, compiled or sent.
The work itself is in pipeline/kubeflow_runner.py and pipeline/vertex_runner.py (compile) and in submission/ (send).

The class list (the model's head, the schema) comes from the dataset's manifest.json at --data-root, read here through
tf.io.gfile; where it cannot be read (no credentials on this machine, a typo in the path) the command stops with one
line naming it, unless the list is given: --classes FILE (the dataset's classes.txt) or --set class_names=a,b,c.
A submission that fails (no credentials, a server that cannot be reached or answers with an HTTP error) is one line
and EXIT_SUBMIT_FAILED; the compiled spec is kept and named in that line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional

import yaml

from components import datasets
from components.sources import DataError
from pipeline import config as config_lib
from pipeline.config import pipeline_config
from pipeline.config import schedule as schedule_lib
from cli import options
from trainer.exit_codes import EXIT_OK, EXIT_SUBMIT_FAILED
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
    p.add_argument("--classes", default=None, metavar="FILE",
                   help="the class list, one name a line in label order (the dataset's classes.txt), for a "
                        "--data-root whose manifest.json cannot be read here; without it (or --set "
                        "class_names=a,b,c, or class_names=cifar10) such a data root is an error")
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
    given = given_classes(args, overrides.pop("class_names", None))
    base = config_lib.from_preset(args.preset, data_root=args.data_root, output_dir=args.output)
    config = config_lib.apply_overrides(base, overrides)
    manifest, about = read_manifest(args.data_root)
    if manifest is not None:
        names = manifest.get("class_names")
        if given is not None and list(given) != names:
            raise config_lib.ConfigError(f"class_names: given as {list(given)}, but {about} lists {names} (the "
                                         f"dataset's own list is used when its manifest can be read: drop the "
                                         f"option)")
        return config_lib.for_dataset(config, manifest)
    if given is None:
        from pipeline import kubeflow_runner  # a local --data-root is refused as such first

        kubeflow_runner.check(config)
        raise config_lib.ConfigError(
            f"{about}; the pipeline's class list comes from it: make it readable here (Google Cloud credentials, "
            f"the right --data-root) or give the list: --classes FILE (the dataset's classes.txt) or --set "
            f"class_names=a,b,c ({pipeline_config.CIFAR10_ALIAS} for CIFAR-10's)")
    log.info("%s; compiling with the %d classes given", about, len(given))
    return pipeline_config.for_classes(config, given)


def given_classes(args, raw: Optional[str]) -> Optional[tuple[str, ...]]:
    """The class list given on the command line (--classes FILE or --set class_names=...), or None."""
    if args.classes is not None and raw is not None:
        raise config_lib.ConfigError("--classes and --set class_names: give the class list once")
    if raw is not None:
        return pipeline_config.parse_class_names(raw)
    if args.classes is None:
        return None
    path = Path(args.classes).expanduser()
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise config_lib.ConfigError(f"--classes {path}: cannot be read ({getattr(e, 'strerror', None) or e}); "
                                     f"expected the dataset's classes.txt, one class name a line") from None
    return pipeline_config.parse_class_names(",".join(line for line in lines if line), where=f"--classes {path}")


def read_manifest(data_root: str) -> tuple[Optional[dict], str]:
    """(the dataset's manifest.json, where it is) when it can be read here (a local folder, or a URI through
    tf.io.gfile: gs://, s3://, ...), else (None, what is wrong, naming the file). A manifest that is read but is
    not one is a ConfigError."""
    try:
        where, data = datasets.read_file(data_root, DATASET_MANIFEST)
    except DataError as e:  # a URI that cannot be read: no credentials, no such bucket, no filesystem for it
        return None, str(e)
    if data is None:
        return None, f"{where}: missing (no dataset written by `tokenlearner data` there)"
    try:
        manifest = json.loads(data)
    except ValueError as e:
        raise config_lib.ConfigError(f"{where}: not a dataset manifest (invalid JSON: {e})") from None
    if not isinstance(manifest, dict):
        raise config_lib.ConfigError(f"{where}: not a dataset manifest (expected a JSON object)")
    return manifest, str(where)


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
    from submission.errors import SubmitError

    try:
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
    except SubmitError as e:  # nothing was created there; the spec stays for `kfp run create` or a later submit
        log.debug("submission failure", exc_info=True)
        print(f"tokenlearner: error: submit failed: {e}; the compiled spec is kept: {out}", file=sys.stderr)
        return EXIT_SUBMIT_FAILED


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
