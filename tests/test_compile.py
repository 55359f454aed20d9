"""Compiling for Kubeflow Pipelines v2 and Vertex AI, offline: the spec is a valid KFP v2 pipeline spec, has every
component in DAG order, runs every executor in the configured image with the configured cpu/memory (and the
Trainer's accelerator when asked), carries the Beam profile and the Vertex training machine (or, with
`--set trainer_workers=N`, a chief pool and a pool of N - 1 workers); the module paths and
the packaged schema it names resolve in the installed package; the Vertex dry run sends nothing.

Not covered here (too slow for CI): building a fresh venv from requirements.lock and importing the module paths in
it. The import check below uses a plain (non-editable) install of the project, as the Dockerfile does, next to the
development environment's pinned dependencies."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.cloud import aiplatform_v1
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from components.schema import PACKAGE_SCHEME, PACKAGED_SCHEMA
import cli
from pipeline import config as config_lib

IMAGE = "europe-west4-docker.pkg.dev/proj/tokenlearner/tokenlearner:0.1.0"
SCHEMA = "gs://bucket/schema/schema.pbtxt"
# All a user must give: the schema defaults to the one installed in the image.
# The gs:// manifest cannot be read from here: the class list is given (CIFAR-10's, by name).
REMOTE = ["--image", IMAGE, "--data-root", "gs://bucket/data/cifar10-tiny", "--output", "gs://bucket/tokenlearner",
          "--set", "class_names=cifar10"]
RUN_FN, PREPROCESSING_FN = "trainer.run.run_fn", "trainer.preprocessing.preprocessing_fn"
RESOLVERS = {"latest_blessed_model_resolver-model-resolver", "latest_blessed_model_resolver-model-blessing-resolver"}
# (a, b): task b runs after task a (directly or through other tasks).
ORDER = [("ImportExampleGen", "StatisticsGen"), ("StatisticsGen", "ExampleValidator"), ("SCHEMA", "ExampleValidator"),
         ("ImportExampleGen", "Transform"), ("SCHEMA", "Transform"), ("Transform", "Trainer"),
         ("ImportExampleGen", "Trainer"), ("Trainer", "Evaluator"),
         ("latest_blessed_model_resolver-model-resolver", "Evaluator"),
         ("latest_blessed_model_resolver-model-resolver", "Trainer"), ("Evaluator", "Pusher"),
         ("Trainer", "Pusher")]


def _errors(stderr: str) -> str:
    """stderr without the INFO line compile logs when the dataset's manifest.json is not readable here (these tests'
    gs:// data roots) and the class list is given: the error itself is one line."""
    notice = re.compile(r"\d\d:\d\d:\d\d I cli\.remote: .*manifest\.json: .*; compiling with the \d+ classes given")
    return "".join(line for line in stderr.splitlines(keepends=True) if not notice.match(line))


def _compile(tmp_path: Path, target: str, *extra: str) -> dict:
    out = tmp_path / f"{target}.json"
    assert cli.main(["compile", "--target", target, "--preset", "tiny", "--out", str(out), *REMOTE, *extra]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def kubeflow_job(tmp_path_factory) -> dict:
    """With a gs:// schema: the override of the packaged one."""
    return _compile(tmp_path_factory.mktemp("kfp"), "kubeflow", "--set", f"schema_path={SCHEMA}",
                    "--beam-profile", "dataflow",
                    "--set", "beam_project=proj", "--set", "beam_region=europe-west4",
                    "--set", "beam_temp_location=gs://bucket/tmp")


@pytest.fixture(scope="module")
def vertex_job(tmp_path_factory) -> dict:
    return _compile(tmp_path_factory.mktemp("vertex"), "vertex", "--set", "vertex_project=proj",
                    "--set", "vertex_region=europe-west4", "--set", "vertex_training=true",
                    "--set", "vertex_machine_type=n1-standard-16", "--set", "vertex_accelerator_type=NVIDIA_TESLA_T4",
                    "--set", "vertex_accelerator_count=2", "--set", "precision=float16")


def _spec(job: dict) -> pipeline_spec_pb2.PipelineSpec:
    """Strict parse (unknown fields fail) into the KFP v2 protos, as the KFP client and Vertex do."""
    parsed = json_format.ParseDict(job, pipeline_spec_pb2.PipelineJob())
    return json_format.ParseDict(json_format.MessageToDict(parsed.pipeline_spec), pipeline_spec_pb2.PipelineSpec())


def _executors(spec: pipeline_spec_pb2.PipelineSpec) -> dict:
    """The deployment spec is a Struct in PipelineSpec; strict parse into its own proto."""
    deployment = json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec),
                                       pipeline_spec_pb2.PipelineDeploymentConfig())
    return dict(deployment.executors)


def _param(spec: pipeline_spec_pb2.PipelineSpec, task: str, name: str) -> str:
    return spec.root.dag.tasks[task].inputs.parameters[name].runtime_value.constant.string_value


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_spec_is_a_kfp_v2_pipeline_with_every_component_in_dag_order(target, kubeflow_job, vertex_job):
    spec = _spec(kubeflow_job if target == "kubeflow" else vertex_job)
    assert spec.pipeline_info.name == "tokenlearner-cifar10" and spec.schema_version == "2.1.0"
    tasks = spec.root.dag.tasks
    schema = "ImportSchemaGen" if "ImportSchemaGen" in tasks else "SchemaGen"
    assert _param(spec, schema, "schema_file") == (SCHEMA if target == "kubeflow" else PACKAGED_SCHEMA)
    assert set(tasks) == {"ImportExampleGen", "StatisticsGen", schema, "ExampleValidator", "Transform", "Trainer",
                          "Evaluator", "Pusher", *RESOLVERS}
    for name, task in tasks.items():
        assert set(task.dependent_tasks) <= set(tasks), name
        # KFP 2.x's driver takes `runtimeValue.constant` only (the spec 2.0 form `constantValue` it refuses).
        assert all(p.runtime_value.WhichOneof("value") == "constant" for p in task.inputs.parameters.values()), name
        assert task.component_ref.name in spec.components
    before = {name: set(task.dependent_tasks) for name, task in tasks.items()}
    changed = True
    while changed:  # transitive closure of "runs after"
        changed = False
        for name in before:
            grown = before[name].union(*(before[d] for d in before[name]))
            changed |= grown != before[name]
            before[name] = grown
    assert all(name not in deps for name, deps in before.items()), "cycle in the DAG"
    for a, b in ORDER:
        assert a.replace("SCHEMA", schema) in before[b], f"{b} does not wait for {a}"


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_every_executor_runs_the_configured_image(target, kubeflow_job, vertex_job):
    spec = _spec(kubeflow_job if target == "kubeflow" else vertex_job)
    executors = _executors(spec)
    containers = {name: e.container for name, e in executors.items() if e.HasField("container")}
    others = set(executors) - set(containers)
    assert others == {f"{r}_executor" for r in RESOLVERS}  # resolvers are metadata queries, run by the backend
    assert len(containers) == 8
    for name, container in containers.items():
        assert container.image == IMAGE, name
        assert list(container.command[:3]) == ["python", "-m", "tfx.orchestration.kubeflow.v2.container."
                                               "kubeflow_v2_run_executor"]


def test_kubeflow_spec_carries_the_beam_profile(kubeflow_job):
    spec = _spec(kubeflow_job)
    args = list(_executors(spec)["Transform_executor"].container.args)
    expected = ["--runner=DataflowRunner", "--project=proj", "--region=europe-west4",
                "--temp_location=gs://bucket/tmp", "--autoscaling_algorithm=THROUGHPUT_BASED",
                f"--sdk_container_image={IMAGE}"]
    assert args[-len(expected):] == expected
    root = kubeflow_job["runtimeConfig"]["gcsOutputDirectory"]
    assert root == "gs://bucket/tokenlearner/pipeline/tokenlearner-cifar10"


def test_vertex_spec_carries_the_training_job_machine_spec(vertex_job):
    spec = _spec(vertex_job)
    trainer = _executors(spec)["Trainer_executor"].container
    assert "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor" in trainer.args
    custom = json.loads(_param(spec, "Trainer", "custom_config"))
    assert custom["ai_platform_enable_vertex"] is True and custom["ai_platform_vertex_region"] == "europe-west4"
    job = custom["ai_platform_training_args"]
    assert job["project"] == "proj"
    (pool,) = job["job_spec"]["worker_pool_specs"]
    assert pool["machine_spec"] == {"machine_type": "n1-standard-16", "accelerator_type": "NVIDIA_TESLA_T4",
                                    "accelerator_count": 2}
    assert pool["replica_count"] == 1 and pool["container_spec"] == {"image_uri": IMAGE}
    assert custom["trainer_config"]["precision"] == "float16"
    assert _param(spec, "Trainer", "run_fn") == RUN_FN


def _vertex_custom_job(training_args: dict) -> aiplatform_v1.CustomJob:
    """The CustomJob TFX 1.16's Vertex Trainer would send for these training args: its own
    `VertexJobClient.create_training_job` (the method that sets each pool's container command; no API client is
    created, so nothing is sent), converted strictly into the aiplatform v1 message `JobServiceClient.create_custom_job`
    sends (an unknown or misspelt field fails)."""
    from tfx.extensions.google_cloud_ai_platform import training_clients

    client = object.__new__(training_clients.VertexJobClient)  # no __init__: it would build a gRPC client
    job = client.create_training_job({}, {}, {"custom_config": "{}"}, "tfx.components.trainer.executor.GenericExecutor",
                                     json.loads(json.dumps(training_args)), None, None)
    return aiplatform_v1.CustomJob(job)


def test_trainer_workers_4_puts_a_chief_and_3_workers_in_the_vertex_training_job(tmp_path):
    """The issue's command: pool 0 is the chief (Vertex's primary replica, `chief` in TF_CONFIG), pool 1 the 3 workers
    (`worker`); the workers get their own machine type and the same GPUs as the chief (per replica). Each replica of
    both pools runs the TFX Trainer executor in the pipeline image: the extension sets the command of every pool."""
    job = _compile(tmp_path, "vertex", "--set", "vertex_project=proj", "--set", "vertex_training=true",
                   "--set", "trainer_workers=4", "--set", "vertex_machine_type=n1-standard-16",
                   "--set", "vertex_worker_machine_type=n1-standard-8",
                   "--set", "vertex_accelerator_type=NVIDIA_TESLA_T4", "--set", "vertex_accelerator_count=1")
    spec = _spec(job)
    custom = json.loads(_param(spec, "Trainer", "custom_config"))
    chief, workers = custom["ai_platform_training_args"]["job_spec"]["worker_pool_specs"]
    gpu = {"accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 1}
    assert chief == {"machine_spec": {"machine_type": "n1-standard-16", **gpu}, "replica_count": 1,
                     "container_spec": {"image_uri": IMAGE}}
    assert workers == {"machine_spec": {"machine_type": "n1-standard-8", **gpu}, "replica_count": 3,
                       "container_spec": {"image_uri": IMAGE}}
    assert "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor" in \
        _executors(spec)["Trainer_executor"].container.args

    custom_job = _vertex_custom_job(custom["ai_platform_training_args"])
    pools = custom_job.job_spec.worker_pool_specs
    assert [(p.replica_count, p.machine_spec.machine_type, p.machine_spec.accelerator_count) for p in pools] == [
        (1, "n1-standard-16", 1), (3, "n1-standard-8", 1)]
    for pool in pools:
        assert pool.container_spec.image_uri == IMAGE
        assert list(pool.container_spec.command[:5]) == [
            "python", "-m", "tfx.scripts.run_executor", "--executor_class_path",
            "tfx.components.trainer.executor.GenericExecutor"]


def test_one_trainer_machine_is_a_single_pool_without_workers(vertex_job):
    custom = json.loads(_param(_spec(vertex_job), "Trainer", "custom_config"))
    (pool,) = _vertex_custom_job(custom["ai_platform_training_args"]).job_spec.worker_pool_specs
    assert pool.replica_count == 1 and pool.machine_spec.machine_type == "n1-standard-16"


def test_kubeflow_can_run_the_worker_pools_through_a_vertex_training_job(tmp_path):
    """On Kubeflow the Trainer pod only submits the Vertex AI custom job (vertex_training=true), which has the pools."""
    job = _compile(tmp_path, "kubeflow", "--set", "vertex_project=proj", "--set", "vertex_training=true",
                   "--set", "trainer_workers=2")
    custom = json.loads(_param(_spec(job), "Trainer", "custom_config"))
    pools = custom["ai_platform_training_args"]["job_spec"]["worker_pool_specs"]
    assert [p["replica_count"] for p in pools] == [1, 1]


def test_kubeflow_yaml_is_what_the_kfp_client_uploads(tmp_path):
    out = tmp_path / "pipeline.yaml"
    assert cli.main(["compile", "--target", "kubeflow", "--preset", "tiny", "--out", str(out), *REMOTE]) == 0
    spec = json_format.ParseDict(yaml.safe_load(out.read_text()), pipeline_spec_pb2.PipelineSpec())
    assert "Trainer" in spec.root.dag.tasks
    assert _executors(spec)["Trainer_executor"].container.image == IMAGE


def test_module_paths_import_from_a_plain_install_outside_the_source_tree(kubeflow_job, installed_project,
                                                                         tmp_path):
    spec = _spec(kubeflow_job)
    paths = [_param(spec, "Trainer", "run_fn"), _param(spec, "Transform", "preprocessing_fn")]
    assert paths == [RUN_FN, PREPROCESSING_FN]
    # `pip install --no-deps .` as in deploy/Dockerfile, into a folder of its own (a wheel build, not editable):
    # the session's `installed_project` (tests/conftest.py), shared with test_container_entrypoint.py.
    site = installed_project
    probe = (f"import importlib, sys; sys.path.insert(0, {str(site)!r}); "
             "[getattr(importlib.import_module(p.rpartition('.')[0]), p.rpartition('.')[2]) for p in sys.argv[1:]]; "
             f"import trainer; from components import schema; print(trainer.__file__); "
             f"print(schema.resolve({PACKAGED_SCHEMA!r}))")
    # -I: no PYTHONPATH, no user site, no cwd on sys.path; run from an unrelated folder.
    done = subprocess.run([sys.executable, "-I", "-c", probe, *paths], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    trainer_file, schema_file = done.stdout.split()
    assert trainer_file.startswith(str(site))
    assert schema_file == str(site / PACKAGED_SCHEMA.removeprefix(PACKAGE_SCHEME))  # package data, installed


def test_vertex_dry_run_prints_the_job_and_sends_nothing(tmp_path, capsys, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError(f"network use in a dry run: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    out = tmp_path / "vertex.json"
    rc = cli.main(["submit", "--dry-run", "--preset", "tiny", "--out", str(out), *REMOTE,
                   "--set", "vertex_project=proj", "--set", "vertex_labels=team=vision,stage=dev",
                   "--set", "vertex_service_account=runner@proj.iam.gserviceaccount.com",
                   "--set", "enable_cache=false"])
    assert rc == 0
    job = json.loads(capsys.readouterr().out)
    assert job["sent"] is False and job["display_name"] == "tokenlearner-cifar10"
    assert job["template_path"] == str(out) and out.is_file()
    assert job["pipeline_root"] == "gs://bucket/tokenlearner/pipeline/tokenlearner-cifar10"
    assert job["parameter_values"] == {} and job["enable_caching"] is False
    assert job["service_account"] == "runner@proj.iam.gserviceaccount.com"
    assert job["labels"] == {"team": "vision", "stage": "dev"}
    assert job["parent"] == "projects/proj/locations/us-central1" and job["images"] == [IMAGE]


def test_vertex_submit_sends_the_job_with_the_service_account(tmp_path, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    from pipeline import vertex_runner
    from submission import vertex as vertex_client

    sent = {}
    monkeypatch.setattr(aiplatform.PipelineJob, "submit", lambda self, **kw: sent.update(kw, job=self))
    config = config_lib.apply_overrides(
        config_lib.from_preset("tiny", data_root="gs://b/d", output_dir="gs://b/o", image=IMAGE),
        {"vertex_project": "proj", "vertex_service_account": "sa@proj.iam.gserviceaccount.com", "schema_path": SCHEMA})
    spec = vertex_runner.compile_spec(config, str(tmp_path / "v.json"))
    job = vertex_client.submit(config, spec, credentials=AnonymousCredentials())
    assert sent["service_account"] == "sa@proj.iam.gserviceaccount.com" and sent["job"] is job
    assert sent["job"].to_dict()["runtimeConfig"]["gcsOutputDirectory"] == "gs://b/o/pipeline/tokenlearner-cifar10"


@pytest.mark.parametrize("args, match", [
    (["compile", "--target", "vertex"], "vertex_project: required"),
    (["submit", "--dry-run"], "vertex_project: required"),
    (["compile", "--target", "vertex", "--set", "vertex_project=p", "--set", "vertex_training=true",
      "--set", "vertex_accelerator_count=2"], "vertex_accelerator_type/vertex_accelerator_count"),
    (["compile", "--target", "vertex", "--set", "vertex_project=p", "--set", "vertex_labels=Team=x"],
     "vertex_labels"),
    # Worker pools exist only in a Vertex AI custom training job: not in-pipeline, not as a Kubeflow pod.
    (["compile", "--target", "vertex", "--set", "vertex_project=p", "--set", "trainer_workers=4"],
     "trainer_workers: 4 machines need vertex_training=true"),
    (["compile", "--target", "kubeflow", "--set", "trainer_workers=4"],
     "trainer_workers: 4 machines need vertex_training=true"),
    (["compile", "--target", "vertex", "--set", "vertex_project=p", "--set", "vertex_training=true",
      "--set", "trainer_workers=0"], "trainer_workers: expected >= 1"),
    (["compile", "--target", "vertex", "--set", "vertex_project=p", "--set", "vertex_training=true",
      "--set", "vertex_worker_machine_type=n1-standard-8"], "vertex_worker_machine_type: 'n1-standard-8' given but"),
])
def test_bad_vertex_settings_exit_2_naming_the_field(args, match, tmp_path, capsys):
    assert cli.main([*args, "--out", str(tmp_path / "x.json"), *REMOTE]) == 2
    err = _errors(capsys.readouterr().err)
    assert err.startswith("tokenlearner: error: ") and match in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("args, field", [
    (["--data-root", "DATA", "--output", "gs://b/o"], "data_root"),
    (["--data-root", "gs://b/d", "--output", "outputs"], "output_dir"),
    (["--data-root", "gs://b/d", "--output", "gs://b/o", "--set", "schema_path=DATA/schema.pbtxt"], "schema_path"),
])
def test_local_paths_are_refused_for_remote_targets(args, field, tmp_path, capsys):
    args = [a.replace("DATA", str(tmp_path)) for a in args]
    rc = cli.main(["compile", "--target", "kubeflow", "--image", IMAGE, *args, "--out", str(tmp_path / "x.json")])
    err = _errors(capsys.readouterr().err)
    assert rc == 2 and err.startswith(f"tokenlearner: error: {field}: ") and "is on this machine" in err
    assert not (tmp_path / "x.json").exists()


def test_inferred_schema_needs_no_file(tmp_path):
    out = tmp_path / "infer.json"
    assert cli.main(["compile", "--target", "kubeflow", "--image", IMAGE, "--data-root", "gs://b/d", "--output",
                     "gs://b/o", "--set", "schema_path=infer", "--set", "class_names=cifar10", "--out", str(out)]) == 0
    assert "SchemaGen" in json.loads(out.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]


# ------------------------------------------------------------------------------------------------ resources

GB = 2**30 / 1e9  # GiB in the spec's unit (GB: KFP's driver reads memory_limit as "<value>G")
# Defaults (pipeline/config/resources.py): node -> (cpu, GiB); sized from the measured peaks in docs/reliability.md.
DEFAULT_LIMITS = {"ImportExampleGen": (2, 4), "StatisticsGen": (2, 4), "ImportSchemaGen": (1, 2),
                  "ExampleValidator": (1, 2), "Transform": (2, 4), "Trainer": (4, 8), "Evaluator": (2, 4),
                  "Pusher": (1, 2)}


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_every_container_gets_its_cpu_and_memory_limits(target, kubeflow_job, vertex_job):
    executors = _executors(_spec(kubeflow_job if target == "kubeflow" else vertex_job))
    for node, (cpu, gib) in DEFAULT_LIMITS.items():
        resources = executors[f"{node}_executor"].container.resources
        assert resources.cpu_limit == cpu, node
        assert resources.memory_limit == pytest.approx(gib * GB, abs=1e-3), node
        assert not resources.HasField("accelerator"), node  # off by default
    assert executors["Trainer_executor"].container.resources.memory_limit >= 8 * GB


@pytest.mark.parametrize("target, accelerator", [("kubeflow", "nvidia.com/gpu"), ("vertex", "NVIDIA_TESLA_T4")])
def test_trainer_accelerator_and_limits_are_set_from_the_command_line(target, accelerator, tmp_path, capsys):
    job = _compile(tmp_path, target, "--set", "vertex_project=proj",
                   "--set", f"resources_trainer_accelerator_type={accelerator}",
                   "--set", "resources_trainer_accelerator_count=2", "--set", "resources_trainer_memory_gib=12",
                   "--set", "resources.transform_cpu=3")
    executors = _executors(_spec(job))
    trainer = executors["Trainer_executor"].container.resources
    assert trainer.cpu_limit == 4 and trainer.memory_limit == pytest.approx(12 * GB, abs=1e-3)
    assert trainer.accelerator.type == accelerator and trainer.accelerator.count == 2
    assert executors["Transform_executor"].container.resources.cpu_limit == 3
    assert not executors["Evaluator_executor"].container.resources.HasField("accelerator")
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1].endswith(f"{target}.json")
    lines = {line.split()[0]: line.split(None, 1)[1] for line in printed[:-1]}
    assert set(lines) == set(DEFAULT_LIMITS)  # every container task, no resolver
    assert lines["Trainer"] == f"cpu 4, memory 12 GiB (12.885 GB), accelerator {accelerator} x2"
    assert lines["ImportExampleGen"] == "cpu 2, memory 4 GiB (4.295 GB)"


@pytest.mark.parametrize("args, match", [
    (["--target", "kubeflow", "--set", "resources_trainer_accelerator_count=1"],
     "resources_trainer_accelerator_type/resources_trainer_accelerator_count: set both"),
    (["--target", "kubeflow", "--set", "resources_trainer_memory_gib=0"],
     "resources_trainer_memory_gib: expected > 0 GiB, got 0.0"),
    (["--target", "kubeflow", "--set", "resources_pusher_cpu=lots"], "resources_pusher_cpu: cannot read 'lots'"),
    (["--target", "kubeflow", "--set", "resources_trainer_accelerator_type=nvidia.com/gpu",
      "--set", "resources_trainer_accelerator_count=17"], "resources_trainer_accelerator_count: expected 0..16"),
    (["--target", "kubeflow", "--set", "resources_trainer_accelerator_type=NVIDIA_TESLA_T4",
      "--set", "resources_trainer_accelerator_count=1"], "resources_trainer_accelerator_type: Kubeflow expects"),
    (["--target", "vertex", "--set", "vertex_project=p", "--set", "resources_trainer_accelerator_type=nvidia.com/gpu",
      "--set", "resources_trainer_accelerator_count=1"], "resources_trainer_accelerator_type: Vertex AI expects"),
    (["--target", "vertex", "--set", "vertex_project=p", "--set", "vertex_training=true",
      "--set", "resources_trainer_accelerator_type=NVIDIA_TESLA_T4", "--set", "resources_trainer_accelerator_count=1"],
     "give the job its GPUs with vertex_accelerator_type/vertex_accelerator_count"),
])
def test_bad_resources_exit_2_naming_the_field(args, match, tmp_path, capsys):
    assert cli.main(["compile", *args, "--out", str(tmp_path / "x.json"), *REMOTE]) == 2
    err = _errors(capsys.readouterr().err)
    assert err.startswith("tokenlearner: error: ") and match in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


def test_schema_defaults_to_the_one_installed_in_the_image(vertex_job):
    """No --set schema_path: the spec names the package data, which the schema importer resolves where it runs (the
    image; tests/test_container_entrypoint.py runs that executor from a plain install)."""
    spec = _spec(vertex_job)
    assert _param(spec, "ImportSchemaGen", "schema_file") == PACKAGED_SCHEMA
    args = list(_executors(spec)["ImportSchemaGen_executor"].container.args)
    assert args[args.index("--executor_class_path") + 1] == "components.schema_gen.PackagedSchemaExecutor"


def test_a_packaged_schema_that_does_not_resolve_is_refused_at_compile_time(tmp_path, capsys):
    rc = cli.main(["compile", "--target", "kubeflow", *REMOTE, "--set", "schema_path=package:pipeline/nope.pbtxt",
                   "--out", str(tmp_path / "x.json")])
    err = _errors(capsys.readouterr().err)
    assert rc == 2 and err.startswith("tokenlearner: error: schema_path: 'package:pipeline/nope.pbtxt': no file")
    assert not (tmp_path / "x.json").exists()


def test_evaluator_validator_and_transform_follow_the_dataset():
    """3 classes: top-2 (top-5 of 3 classes would always be right), the floor relative to chance, the dataset's
    schema; the run's label drift threshold and input size reach their components. CIFAR-10: top-5, floor 0.5."""
    from pipeline.pipeline import create_pipeline, eval_config

    def gate(config):
        metrics = {m.class_name: m for m in eval_config(config).metrics_specs[0].metrics}
        (threshold,) = metrics["SparseCategoricalAccuracy"].per_slice_thresholds
        return (json.loads(metrics["SparseTopKCategoricalAccuracy"].config)["k"],
                threshold.threshold.value_threshold.lower_bound.value)

    cifar = config_lib.from_preset("keras_io", data_root="gs://b/d", output_dir="gs://b/o")
    assert gate(cifar) == (5, 0.5)
    three = config_lib.apply_overrides(
        config_lib.for_dataset(cifar, {"class_names": ["cat", "dog", "fox"]}),
        {"label_drift_threshold": "0.1", "input_size": "64"})
    k, floor = gate(three)
    assert k == 2 and floor == pytest.approx(1 / 3 + 2 / 3 * 4 / 9)
    nodes = {c.id: c for c in create_pipeline(three).components}
    assert nodes["ExampleValidator"].exec_properties["label_drift_threshold"] == 0.1
    assert json.loads(nodes["Transform"].exec_properties["custom_config"]) == {"input_size": 64}
    assert nodes["ImportSchemaGen"].exec_properties["schema_file"] == "gs://b/d/schema.pbtxt"
    assert json.loads(nodes["Trainer"].exec_properties["custom_config"])["class_names"] == ["cat", "dog", "fox"]
