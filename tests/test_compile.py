"""Compiling for Kubeflow Pipelines v2 and Vertex AI, offline: the spec is a valid KFP v2 pipeline spec, has every
component in DAG order, runs every executor in the configured image, carries the Beam profile and the Vertex
training machine; the module paths it names import from the installed package; the Vertex dry run sends nothing.

Not covered here (too slow for CI): building a fresh venv from requirements.lock and importing the module paths in
it. The import check below uses a plain (non-editable) install of the project, as the Dockerfile does, next to the
development environment's pinned dependencies."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline import cli
from pipeline import config as config_lib
from tests.helpers import REPO

IMAGE = "europe-west4-docker.pkg.dev/proj/tokenlearner/tokenlearner:0.1.0"
SCHEMA = "gs://bucket/schema/schema.pbtxt"
REMOTE = ["--image", IMAGE, "--data-root", "gs://bucket/data/cifar10-tiny", "--output", "gs://bucket/tokenlearner",
          "--set", f"schema_path={SCHEMA}"]
RUN_FN, PREPROCESSING_FN = "trainer.run.run_fn", "trainer.preprocessing.preprocessing_fn"
RESOLVERS = {"latest_blessed_model_resolver-model-resolver", "latest_blessed_model_resolver-model-blessing-resolver"}
# (a, b): task b runs after task a (directly or through other tasks).
ORDER = [("ImportExampleGen", "StatisticsGen"), ("StatisticsGen", "ExampleValidator"), ("SCHEMA", "ExampleValidator"),
         ("ImportExampleGen", "Transform"), ("SCHEMA", "Transform"), ("Transform", "Trainer"),
         ("ImportExampleGen", "Trainer"), ("Trainer", "Evaluator"),
         ("latest_blessed_model_resolver-model-resolver", "Evaluator"), ("Evaluator", "Pusher"),
         ("Trainer", "Pusher")]


def _compile(tmp_path: Path, target: str, *extra: str) -> dict:
    out = tmp_path / f"{target}.json"
    assert cli.main(["compile", "--target", target, "--preset", "tiny", "--out", str(out), *REMOTE, *extra]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def kubeflow_job(tmp_path_factory) -> dict:
    return _compile(tmp_path_factory.mktemp("kfp"), "kubeflow", "--beam-profile", "dataflow",
                    "--set", "beam_project=proj", "--set", "beam_region=europe-west4",
                    "--set", "beam_temp_location=gs://bucket/tmp")


@pytest.fixture(scope="module")
def vertex_job(tmp_path_factory) -> dict:
    return _compile(tmp_path_factory.mktemp("vertex"), "vertex", "--set", "vertex_project=proj",
                    "--set", "vertex_region=europe-west4", "--set", "vertex_training=true",
                    "--set", "vertex_machine_type=n1-standard-16", "--set", "vertex_accelerator_type=NVIDIA_TESLA_T4",
                    "--set", "vertex_accelerator_count=2", "--set", "mixed_precision=true")


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
    return spec.root.dag.tasks[task].inputs.parameters[name].runtime_value.constant_value.string_value


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_spec_is_a_kfp_v2_pipeline_with_every_component_in_dag_order(target, kubeflow_job, vertex_job):
    spec = _spec(kubeflow_job if target == "kubeflow" else vertex_job)
    assert spec.pipeline_info.name == "tokenlearner-cifar10" and spec.schema_version == "2.0.0"
    tasks = spec.root.dag.tasks
    schema = "ImportSchemaGen" if "ImportSchemaGen" in tasks else "SchemaGen"
    if schema == "ImportSchemaGen":
        assert _param(spec, schema, "schema_file") == SCHEMA
    assert set(tasks) == {"ImportExampleGen", "StatisticsGen", schema, "ExampleValidator", "Transform", "Trainer",
                          "Evaluator", "Pusher", *RESOLVERS}
    for name, task in tasks.items():
        assert set(task.dependent_tasks) <= set(tasks), name
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
    assert custom["trainer_config"]["mixed_precision"] is True
    assert _param(spec, "Trainer", "run_fn") == RUN_FN


def test_kubeflow_yaml_is_what_the_kfp_client_uploads(tmp_path):
    out = tmp_path / "pipeline.yaml"
    assert cli.main(["compile", "--target", "kubeflow", "--preset", "tiny", "--out", str(out), *REMOTE]) == 0
    spec = json_format.ParseDict(yaml.safe_load(out.read_text()), pipeline_spec_pb2.PipelineSpec())
    assert "Trainer" in spec.root.dag.tasks
    assert _executors(spec)["Trainer_executor"].container.image == IMAGE


def test_module_paths_import_from_a_plain_install_outside_the_source_tree(kubeflow_job, tmp_path):
    spec = _spec(kubeflow_job)
    paths = [_param(spec, "Trainer", "run_fn"), _param(spec, "Transform", "preprocessing_fn")]
    assert paths == [RUN_FN, PREPROCESSING_FN]
    # `pip install --no-deps .` as in deploy/Dockerfile, into a folder of its own (a wheel build, not editable).
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(REPO)], check=True, capture_output=True)
    probe = (f"import importlib, sys; sys.path.insert(0, {str(site)!r}); "
             "[getattr(importlib.import_module(p.rpartition('.')[0]), p.rpartition('.')[2]) for p in sys.argv[1:]]; "
             "import trainer; print(trainer.__file__)")
    # -I: no PYTHONPATH, no user site, no cwd on sys.path; run from an unrelated folder.
    done = subprocess.run([sys.executable, "-I", "-c", probe, *paths], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith(str(site))


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

    sent = {}
    monkeypatch.setattr(aiplatform.PipelineJob, "submit", lambda self, **kw: sent.update(kw, job=self))
    config = config_lib.apply_overrides(
        config_lib.from_preset("tiny", data_root="gs://b/d", output_dir="gs://b/o", image=IMAGE),
        {"vertex_project": "proj", "vertex_service_account": "sa@proj.iam.gserviceaccount.com", "schema_path": SCHEMA})
    spec = vertex_runner.compile_spec(config, str(tmp_path / "v.json"))
    job = vertex_runner.submit(config, spec, credentials=AnonymousCredentials())
    assert sent["service_account"] == "sa@proj.iam.gserviceaccount.com" and sent["job"] is job
    assert sent["job"].to_dict()["runtimeConfig"]["gcsOutputDirectory"] == "gs://b/o/pipeline/tokenlearner-cifar10"


@pytest.mark.parametrize("args, match", [
    (["compile", "--target", "vertex"], "vertex_project: required"),
    (["submit", "--dry-run"], "vertex_project: required"),
    (["compile", "--target", "vertex", "--set", "vertex_project=p", "--set", "vertex_training=true",
      "--set", "vertex_accelerator_count=2"], "vertex_accelerator_type/vertex_accelerator_count"),
    (["compile", "--target", "vertex", "--set", "vertex_project=p", "--set", "vertex_labels=Team=x"],
     "vertex_labels"),
])
def test_bad_vertex_settings_exit_2_naming_the_field(args, match, tmp_path, capsys):
    assert cli.main([*args, "--out", str(tmp_path / "x.json"), *REMOTE]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokenlearner: error: ") and match in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("args, field", [
    (["--data-root", "DATA", "--output", "gs://b/o", "--set", f"schema_path={SCHEMA}"], "data_root"),
    (["--data-root", "gs://b/d", "--output", "outputs", "--set", f"schema_path={SCHEMA}"], "output_dir"),
    (["--data-root", "gs://b/d", "--output", "gs://b/o"], "schema_path"),  # the default is a file of this checkout
])
def test_local_paths_are_refused_for_remote_targets(args, field, tmp_path, capsys):
    args = [str(tmp_path) if a == "DATA" else a for a in args]
    rc = cli.main(["compile", "--target", "kubeflow", "--image", IMAGE, *args, "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"tokenlearner: error: {field}: ") and "is on this machine" in err
    assert not (tmp_path / "x.json").exists()


def test_inferred_schema_needs_no_file(tmp_path):
    out = tmp_path / "infer.json"
    assert cli.main(["compile", "--target", "kubeflow", "--image", IMAGE, "--data-root", "gs://b/d", "--output",
                     "gs://b/o", "--set", "schema_path=infer", "--out", str(out)]) == 0
    assert "SchemaGen" in json.loads(out.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]
