"""`tokenlearner submit --schedule CRON`, offline: a Vertex AI pipeline schedule and a Kubeflow Pipelines recurring run
are built by the real clients (aiplatform's `PipelineJob.create_schedule`, kfp 2.5.0's `kfp.Client`) down to the
request they send, which is checked against the clients' own request types; a malformed cron is one line and exit 2
before anything is compiled or sent. No test opens a socket (`no_network`).

The cron format the flag takes and how each backend gets it: pipeline/config/schedule.py."""
from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
import yaml

import cli
from pipeline import config as config_lib
from pipeline import vertex_runner
from submission import kubeflow as kubeflow_client
from submission import vertex as vertex_client
from pipeline.config import schedule
from cli.remote import KFP_ENDPOINT_ENV

IMAGE = "europe-west4-docker.pkg.dev/proj/tokenlearner/tokenlearner:0.1.0"
REMOTE = ["--image", IMAGE, "--data-root", "gs://bucket/data/cifar10-tiny", "--output", "gs://bucket/tokenlearner",
          "--preset", "tiny", "--set", "class_names=cifar10"]  # the manifest cannot be read from here
VERTEX = [*REMOTE, "--set", "vertex_project=proj", "--set", "vertex_region=europe-west4"]
HOST = "http://kfp.example:8080"
ROOT = "gs://bucket/tokenlearner/pipeline/tokenlearner-cifar10"
TASKS = ["Evaluator", "ExampleValidator", "ImportExampleGen", "ImportSchemaGen", "Pusher", "StatisticsGen", "Trainer",
         "Transform", "latest_blessed_model_resolver-model-blessing-resolver",
         "latest_blessed_model_resolver-model-resolver"]


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network use: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _error(stderr: str) -> str:
    """stderr without compile's INFO line about the (unreadable, gs://) dataset manifest."""
    return "".join(line for line in stderr.splitlines(keepends=True) if " I cli.remote: " not in line)


def _config(**overrides: str) -> config_lib.PipelineConfig:
    base = config_lib.from_preset("tiny", data_root="gs://bucket/data/cifar10-tiny",
                                  output_dir="gs://bucket/tokenlearner", image=IMAGE)
    return config_lib.apply_overrides(base, {"vertex_project": "proj", **overrides})


# ------------------------------------------------------------------------------------------------------ the cron

@pytest.mark.parametrize("given, vertex, kubeflow", [
    ("0 3 * * *", "0 3 * * *", "0 0 3 * * *"),
    ("*/15 8-18/2 1,15 JAN-jun mon-FRI", "*/15 8-18/2 1,15 JAN-jun mon-FRI", "0 */15 8-18/2 1,15 JAN-jun mon-FRI"),
    ("  30 2 * * 0  ", "30 2 * * 0", "0 30 2 * * 0"),
])
def test_a_unix_cron_goes_to_vertex_as_it_is_and_to_kubeflow_with_a_seconds_field_first(given, vertex, kubeflow):
    """KFP's scheduler reads `second minute hour day month [weekday]` (robfig/cron v1): sent unchanged, '0 3 * * *'
    would run at minute 3 of every hour."""
    cron = schedule.parse(given)
    assert cron.for_vertex() == vertex and cron.for_kubeflow() == kubeflow


def test_a_time_zone_prefix_reaches_vertex_and_is_refused_for_kubeflow():
    for prefix in ("TZ", "CRON_TZ"):
        cron = schedule.parse(f"{prefix}=Europe/Berlin 0 3 * * *")
        assert cron.time_zone == "Europe/Berlin" and cron.for_vertex() == "TZ=Europe/Berlin 0 3 * * *"
        with pytest.raises(config_lib.ConfigError, match="Kubeflow Pipelines runs recurring runs in UTC"):
            cron.for_kubeflow()


MALFORMED = [
    ("0 3 * *", "expected 5 cron fields (minute hour day-of-month month day-of-week)"),
    ("0 0 3 * * *", "expected 5 cron fields"),  # KFP's own 6-field form: the flag takes unix cron only
    ("@daily", "expected 5 cron fields"),
    ("60 3 * * *", "minute: 60 is not in 0-59"),
    ("0 24 * * *", "hour: 24 is not in 0-23"),
    ("0 3 0 * *", "day-of-month: 0 is not in 1-31"),
    ("0 3 * 13 *", "month: 13 is not in 1-12"),
    ("0 3 * * 7", "day-of-week: 7 is not in 0-6 (Sunday is 0)"),
    ("0 3 * * ?", "day-of-week: '?' is not *, */step, a value, a-b or a-b/step"),
    ("0 3 * FOO *", "month: 'FOO' is not a number 1-12 or a name (JAN..)"),
    ("*/0 3 * * *", "minute: step 0 must be at least 1"),
    ("0 3 20-10 * *", "day-of-month: range '20-10' ends before it starts"),
    ("TZ=Mars/Olympus 0 3 * * *", "unknown time zone 'Mars/Olympus'"),
]


@pytest.mark.parametrize("target", ["vertex", "kubeflow"])
@pytest.mark.parametrize("cron, match", MALFORMED)
def test_a_malformed_cron_is_one_line_and_exit_2_before_anything_is_compiled_or_sent(cron, match, target, tmp_path,
                                                                                      capsys, no_network):
    out = tmp_path / ("p.yaml" if target == "kubeflow" else "p.json")
    rc = cli.main(["submit", "--target", target, "--schedule", cron, "--host", HOST, "--out", str(out), *VERTEX])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1, err  # not even the manifest lookup ran (its INFO line)
    assert err.startswith(f"tokenlearner: error: --schedule {cron!r}: ") and match in err
    assert not out.exists()


def test_a_time_zone_for_kubeflow_is_refused_before_anything_is_sent(tmp_path, capsys, no_network):
    rc = cli.main(["submit", "--target", "kubeflow", "--schedule", "TZ=Europe/Berlin 0 3 * * *", "--host", HOST,
                   "--out", str(tmp_path / "p.yaml"), *REMOTE])
    err = capsys.readouterr().err
    assert rc == 2 and err == ("tokenlearner: error: --schedule: Kubeflow Pipelines runs recurring runs in UTC and has "
                               "no time zone setting; drop the TZ=Europe/Berlin prefix and give the time in UTC\n")
    assert not (tmp_path / "p.yaml").exists()


# -------------------------------------------------------------------------------------------------- Vertex AI

def test_vertex_dry_run_prints_the_create_schedule_request_and_sends_nothing(tmp_path, capsys, no_network):
    out = tmp_path / "vertex.json"
    rc = cli.main(["submit", "--schedule", "TZ=Europe/Berlin 0 3 * * MON", "--dry-run", "--out", str(out), *VERTEX,
                   "--set", "vertex_service_account=runner@proj.iam.gserviceaccount.com",
                   "--set", "vertex_labels=team=vision"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["sent"] is False and printed["template_path"] == str(out) and out.is_file()
    assert printed["parent"] == "projects/proj/locations/europe-west4"
    assert printed["name"] == "projects/proj/locations/europe-west4/schedules/dry-run"
    assert printed["schedule"] == {"displayName": "tokenlearner-cifar10", "cron": "TZ=Europe/Berlin 0 3 * * MON",
                                   "maxConcurrentRunCount": "1",  # int64: a string in proto JSON
                                   "maxConcurrentActiveRunCount": "1"}
    job = printed["pipeline_job"]
    assert job["runtimeConfig"] == {"gcsOutputDirectory": ROOT} and job["labels"] == {"team": "vision"}
    assert job["serviceAccount"] == "runner@proj.iam.gserviceaccount.com"
    assert job["pipeline"] == "tokenlearner-cifar10" and job["tasks"] == TASKS


def test_vertex_schedule_sends_the_sdk_request_with_the_compiled_spec(tmp_path, monkeypatch, no_network):
    """Not a dry run: aiplatform's own `PipelineJob.create_schedule` reaches the gapic `create_schedule` (faked here:
    the server) with a `CreateScheduleRequest` that parses strictly and carries the compiled pipeline spec."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1
    from google.protobuf import json_format

    received = []

    def server(self, request=None, *, parent=None, schedule=None, **kwargs):
        received.append((parent, schedule))
        answer = aiplatform_v1.Schedule(schedule)
        answer.name = f"{parent}/schedules/1234"
        return answer

    monkeypatch.setattr(aiplatform_v1.ScheduleServiceClient, "create_schedule", server)
    config = _config(enable_cache="false")
    spec_path = vertex_runner.compile_spec(config, str(tmp_path / "v.json"))
    made, request = vertex_client.create_schedule(config, spec_path, schedule.parse("0 3 * * *"),
                                                  credentials=AnonymousCredentials())
    (parent, sent), = received
    assert made.resource_name == "projects/proj/locations/us-central1/schedules/1234"
    assert request == json_format.MessageToDict(aiplatform_v1.CreateScheduleRequest(parent=parent, schedule=sent)._pb)
    strict = json_format.ParseDict(request, aiplatform_v1.CreateScheduleRequest.pb()())  # unknown fields fail
    assert strict.parent == "projects/proj/locations/us-central1" and strict.schedule.cron == "0 3 * * *"
    assert strict.schedule.max_concurrent_run_count == 1 and not strict.schedule.allow_queueing
    assert strict.schedule.max_concurrent_active_run_count == 1  # runs not finished: one at a time
    job = strict.schedule.create_pipeline_job_request.pipeline_job
    assert job.runtime_config.gcs_output_directory == ROOT
    compiled = json.loads(Path(spec_path).read_text())["pipelineSpec"]
    spec = json_format.MessageToDict(job.pipeline_spec)
    assert spec["root"]["dag"]["tasks"].keys() == compiled["root"]["dag"]["tasks"].keys()
    assert spec["deploymentSpec"] == compiled["deploymentSpec"]  # every executor, image and container limit
    # enable_cache=false reaches every task of the scheduled runs, written out on each (the SDK's enable_caching=False):
    # the compiled spec leaves cachingOptions out for false, so a task without them says nothing.
    tasks = spec["root"]["dag"]["tasks"]
    assert {"ImportExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator", "Pusher"} < set(tasks)
    assert {name: t.get("cachingOptions") for name, t in tasks.items()} == {
        name: {"enableCache": False} for name in tasks}


# ------------------------------------------------------------------------------------------- Kubeflow Pipelines

class _KfpServer:
    """A Kubeflow Pipelines API server in the test: answers kfp_server_api's REST calls (healthz single-user; the
    experiment `nightly` exists as exp-7; creations echo their body with an id) and keeps them."""

    def __init__(self):
        self.calls = []

    def request(self, client, method, url, query_params=None, headers=None, body=None, **kwargs):
        self.calls.append((method, url, dict(query_params or ()), body))
        path = url.split("/apis/v2beta1", 1)[1]
        if path == "/healthz":
            return kubeflow_client._Answer({"multi_user": False})
        if path == "/experiments" and method == "GET":
            wanted = json.loads(dict(query_params)["filter"])["predicates"][0]["stringValue"]
            found = [{"experiment_id": "exp-7", "display_name": "nightly"}] if wanted == "nightly" else []
            return kubeflow_client._Answer({"experiments": found})
        ids = {"/experiments": "experiment_id", "/recurringruns": "recurring_run_id", "/runs": "run_id"}
        return kubeflow_client._Answer({**body, ids[path]: "id-1"})


def test_kubeflow_schedule_sends_a_recurring_run_request_the_kfp_client_built(tmp_path, monkeypatch, capsys,
                                                                            no_network):
    from kfp_server_api import ApiClient, V2beta1RecurringRun, rest

    server = _KfpServer()
    monkeypatch.setattr(rest.RESTClientObject, "request", server.request)
    out = tmp_path / "pipeline.yaml"
    rc = cli.main(["submit", "--target", "kubeflow", "--host", HOST, "--experiment", "nightly",
                   "--schedule", "30 2 * * 1-5", "--out", str(out), *REMOTE])
    assert rc == 0
    assert [(m, u.removeprefix(HOST)) for m, u, _, _ in server.calls] == [
        ("GET", "/apis/v2beta1/healthz"), ("GET", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/recurringruns")]  # the experiment existed: not created again
    body = server.calls[-1][3]

    class Response:  # ApiClient.deserialize reads .data
        data = json.dumps(body)

    run = ApiClient().deserialize(Response, "V2beta1RecurringRun")  # the client's own request type
    assert isinstance(run, V2beta1RecurringRun) and run.to_dict()["trigger"] == {
        "cron_schedule": {"cron": "0 30 2 * * 1-5", "start_time": None, "end_time": None}, "periodic_schedule": None}
    assert run.experiment_id == "exp-7" and run.display_name == "tokenlearner-cifar10"
    assert run.mode == "ENABLE" and run.max_concurrency == "1" and run.no_catchup is True  # int64: str in the API
    assert run.runtime_config.pipeline_root == ROOT and run.runtime_config.parameters == {}
    compiled = yaml.safe_load(out.read_text())  # the PipelineSpec the client read from --out
    for task in compiled["root"]["dag"]["tasks"].values():  # enable_cache=true (the preset's) set on every task
        task["cachingOptions"] = {"enableCache": True}
    assert run.pipeline_spec == compiled

    printed = json.loads(capsys.readouterr().out)
    assert printed["sent"] is True and printed["experiment"] == "nightly"
    assert printed["schedule"] == {"given": "30 2 * * 1-5", "cron_expression": "0 30 2 * * 1-5"}
    assert printed["requests"][-1]["body"]["pipeline_spec"] == {"pipeline": "tokenlearner-cifar10", "tasks": TASKS}


def test_kubeflow_dry_run_prints_the_requests_and_sends_nothing(tmp_path, capsys, no_network):
    rc = cli.main(["submit", "--target", "kubeflow", "--host", HOST, "--schedule", "0 3 * * *", "--dry-run",
                   "--out", str(tmp_path / "p.yaml"), *REMOTE])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["sent"] is False and printed["experiment"] == "tokenlearner-cifar10"
    steps = [(r["method"], re.sub(r"\?.*", "", r["url"].removeprefix(HOST))) for r in printed["requests"]]
    assert steps == [("GET", "/apis/v2beta1/healthz"), ("GET", "/apis/v2beta1/experiments"),
                     ("POST", "/apis/v2beta1/experiments"), ("POST", "/apis/v2beta1/recurringruns")]
    run = printed["requests"][-1]["body"]
    assert run["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert run["experiment_id"] == kubeflow_client.DRY_RUN_EXPERIMENT_ID
    assert run["runtime_config"] == {"parameters": {}, "pipeline_root": ROOT}


def test_kubeflow_without_a_schedule_creates_one_run(tmp_path, capsys, no_network):
    rc = cli.main(["submit", "--target", "kubeflow", "--host", HOST, "--dry-run", "--out", str(tmp_path / "p.yaml"),
                   *REMOTE])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    last = printed["requests"][-1]
    assert printed["schedule"] is None and (last["method"], last["url"]) == ("POST", f"{HOST}/apis/v2beta1/runs")
    assert last["body"]["display_name"] == "tokenlearner-cifar10" and "trigger" not in last["body"]


@pytest.mark.parametrize("args, message", [
    ([], "--host: required for --target kubeflow"),
    (["--host", HOST, "--out", "OUT/p.json"], "--out: Kubeflow Pipelines takes the PipelineSpec YAML"),
])
def test_kubeflow_submit_without_a_host_or_with_a_json_spec_is_refused(args, message, tmp_path, capsys, no_network,
                                                                      monkeypatch):
    monkeypatch.delenv(KFP_ENDPOINT_ENV, raising=False)
    args = [a.replace("OUT", str(tmp_path)) for a in args]
    rc = cli.main(["submit", "--target", "kubeflow", "--schedule", "0 3 * * *", *args, *REMOTE])
    err = _error(capsys.readouterr().err)
    assert rc == 2 and err.startswith(f"tokenlearner: error: {message}") and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # refused before compiling

