"""Beam profiles: each becomes the exact beam_pipeline_args list, chosen by config (`--set`) or CLI flag; bad
profiles stop with the field named."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

import cli
from pipeline import config as config_lib
from pipeline.config.beam import BeamConfig
from pipeline.config import ConfigError
from tests.helpers import REPO, pyproject_packages

IMAGE = "europe-docker.pkg.dev/proj/repo/tokenlearner:1.0"


def _config(*pairs: str, image: str = IMAGE) -> config_lib.PipelineConfig:
    overrides = config_lib.parse_overrides(list(pairs))
    return config_lib.apply_overrides(config_lib.from_preset("tiny", data_root="gs://b/data", image=image), overrides)


def test_direct_is_the_default_and_unchanged():
    cfg = config_lib.from_preset("tiny", data_root="d")
    assert cfg.beam.profile == "direct"
    assert cfg.beam_pipeline_args == ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    assert _config("beam_workers=0").beam_pipeline_args == ["--direct_running_mode=multi_processing",
                                                            "--direct_num_workers=0"]


def test_dataflow_runs_workers_in_the_pipeline_image():
    cfg = _config("beam_profile=dataflow", "beam_project=proj", "beam_region=europe-west4",
                  "beam_temp_location=gs://b/tmp", "beam_machine_type=n2-standard-4", "beam_max_workers=20")
    assert cfg.beam_pipeline_args == [
        "--runner=DataflowRunner", "--project=proj", "--region=europe-west4", "--temp_location=gs://b/tmp",
        "--autoscaling_algorithm=THROUGHPUT_BASED", "--max_num_workers=20", "--machine_type=n2-standard-4",
        f"--sdk_container_image={IMAGE}"]


def test_dataflow_fixed_workers_and_setup_file_instead_of_image():
    cfg = _config("beam.profile=dataflow", "beam.project=proj", "beam.region=us-central1",
                  "beam.temp_location=gs://b/tmp", "beam_autoscaling=NONE", "beam_num_workers=5",
                  "beam_setup_file=/src/tokenlearner/setup.py", image="")
    assert cfg.beam_pipeline_args == [
        "--runner=DataflowRunner", "--project=proj", "--region=us-central1", "--temp_location=gs://b/tmp",
        "--autoscaling_algorithm=NONE", "--num_workers=5", "--setup_file=/src/tokenlearner/setup.py"]


def test_the_checkouts_setup_file_stages_an_sdist_of_every_package(tmp_path):
    """`beam_setup_file=<checkout>/setup.py`: the sdist Beam's own stager builds from it (Stager._build_setup_package:
    `python -m build --sdist`, else `python setup.py sdist`, in that file's folder) holds every package pyproject.toml
    lists and the packaged schema, which Dataflow workers then pip-install."""
    import tarfile

    from apache_beam.runners.portability.stager import Stager

    tarball = Stager._build_setup_package(str(REPO / "setup.py"), str(tmp_path))
    with tarfile.open(tarball) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    packages = pyproject_packages()
    assert "submission" in packages and len(packages) >= 8, packages
    missing = [p for p in packages if f"{p.replace('.', '/')}/__init__.py" not in names]
    assert missing == [], f"the staged sdist lacks {missing}"
    assert "pipeline/config/schema/schema.pbtxt" in names


def test_flink_and_spark_go_through_the_portable_runner():
    flink = _config("beam_profile=flink", "beam_job_endpoint=flink-jobserver:8099", "beam_parallelism=8")
    assert flink.beam_pipeline_args == [
        "--runner=PortableRunner", "--job_endpoint=flink-jobserver:8099", "--environment_type=DOCKER",
        f"--environment_config={IMAGE}", "--parallelism=8", f"--sdk_container_image={IMAGE}"]
    other_image = _config("beam_profile=flink", "beam_job_endpoint=jm:8099", "beam_environment_config=beam:sdk")
    assert other_image.beam_pipeline_args == [
        "--runner=PortableRunner", "--job_endpoint=jm:8099", "--environment_type=DOCKER",
        "--environment_config=beam:sdk"]
    spark = _config("beam_profile=spark", "beam_job_endpoint=spark-jobserver:8099",
                    "beam_environment_type=EXTERNAL", "beam_environment_config=localhost:50000")
    assert spark.beam_pipeline_args == [
        "--runner=PortableRunner", "--job_endpoint=spark-jobserver:8099", "--environment_type=EXTERNAL",
        "--environment_config=localhost:50000"]
    loopback = _config("beam_profile=spark", "beam_job_endpoint=localhost:8099", "beam_environment_type=LOOPBACK")
    assert loopback.beam_pipeline_args == ["--runner=PortableRunner", "--job_endpoint=localhost:8099",
                                           "--environment_type=LOOPBACK"]


@pytest.mark.parametrize("pairs, image, match", [
    (["beam_profile=samza"], IMAGE, "beam_profile: unknown 'samza'"),
    (["beam_profile=dataflow"], IMAGE, "beam_project: required by beam_profile=dataflow"),
    (["beam_profile=dataflow", "beam_project=p", "beam_region=r", "beam_temp_location=/tmp"], IMAGE,
     "beam_temp_location: Dataflow needs a gs:// folder"),
    (["beam_profile=dataflow", "beam_project=p", "beam_region=r", "beam_temp_location=gs://b/t"], "",
     "image: required by beam_profile=dataflow"),
    (["beam_profile=flink"], IMAGE, "beam_job_endpoint: required by beam_profile=flink"),
    (["beam_profile=spark", "beam_job_endpoint=h:1"], "", "image: required by beam_profile=spark"),
    (["beam_profile=spark", "beam_job_endpoint=h:1", "beam_environment_type=EXTERNAL"], IMAGE,
     "beam_environment_config: required"),
    (["beam_environment_type=KUBERNETES"], IMAGE, "beam_environment_type: unknown"),
    (["beam_max_workers=-1"], IMAGE, "beam_max_workers: expected >= 0"),
    (["beam_setup_file=pyproject.toml"], IMAGE, "beam_setup_file: Beam expects a path to a file named setup.py"),
    (["beam_setup_file=setup.py"], IMAGE, "beam_setup_file: expected a path with its folder"),
    (["beam.nope=1"], IMAGE, "beam.nope: unknown beam field"),
])
def test_bad_profiles_name_the_field(pairs, image, match):
    with pytest.raises(ConfigError, match=match):
        _config(*pairs, image=image)


def test_profile_survives_the_saved_config_round_trip():
    cfg = _config("beam_profile=flink", "beam_job_endpoint=jm:8099", "vertex_labels=team=ml")
    again = config_lib.PipelineConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.beam_pipeline_args == cfg.beam_pipeline_args


def test_a_config_saved_before_the_sections_existed_still_loads():
    values = config_lib.from_preset("tiny", data_root="d").to_dict()
    for section in ("beam", "metadata", "vertex", "image"):
        values.pop(section)
    assert config_lib.PipelineConfig.from_dict(values).beam.profile == "direct"


def test_cli_flag_and_unknown_profile_exit_2(capsys):
    rc = cli.main(["compile", "--target", "kubeflow", "--image", IMAGE, "--data-root", "gs://b/d",
                   "--output", "gs://b/o", "--set", "beam_profile=samza"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("tokenlearner: error: beam_profile: unknown 'samza'") and len(err.splitlines()) == 1
    rc = cli.main(["compile", "--target", "kubeflow", "--image", IMAGE, "--data-root", "gs://b/d",
                   "--output", "gs://b/o", "--beam-profile", "flink"])
    assert rc == 2 and "beam_job_endpoint: required by beam_profile=flink" in capsys.readouterr().err


# ---- a job server that is not there -------------------------------------------------------------------------

def test_a_missing_job_server_is_one_named_error_and_nothing_is_written(shared_cifar, tmp_path):
    """The issue's command, as a user types it (a fresh interpreter, the real data): Beam alone would wait 60 s
    and then say only FutureTimeoutError, which the exact stderr below rules out. How many seconds the refusal
    takes is measured by bench/fail_fast.py (docs/benchmarks.md), not here."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "cli", "run", "--data", str(shared_cifar), "--preset",
                           "tiny", "--limit", "600", "--beam-profile", "flink", "--set", "beam_job_endpoint=localhost:1",
                           "--set", "beam_environment_type=LOOPBACK", "--output", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)  # a hang guard, not a bound
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == ("tokenlearner: error: beam_job_endpoint localhost:1 (flink profile): no Beam job server "
                           "answers (connection refused); start the Flink job server or fix --set "
                           "beam_job_endpoint\n"), proc.stderr
    assert proc.stdout == ""
    assert not out.exists()


def test_a_missing_job_server_overwrites_nothing_of_a_previous_run(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "pipeline" / "tokenlearner-cifar10").mkdir(parents=True)
    (out / "pipeline" / "tokenlearner-cifar10" / "config.json").write_text("{}")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    rc = cli.main(["run", "--data", str(tmp_path / "not-read"), "--preset", "tiny", "--beam-profile", "spark",
                   "--set", "beam_job_endpoint=localhost:1", "--set", "beam_environment_type=LOOPBACK",
                   "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("tokenlearner: error: beam_job_endpoint localhost:1 (spark profile): no Beam "
                                      "job server answers") and "Spark job server" in err, err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_something_that_is_not_a_job_server_is_named_too():
    with socket.socket() as listener:  # accepts TCP connections, never speaks gRPC
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        endpoint = f"127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(ConfigError, match=rf"beam_job_endpoint {endpoint} \(flink profile\): no Beam job server "
                                              r"answers \(something listens there but no gRPC server answered"):
            BeamConfig(profile="flink", job_endpoint=endpoint, environment_type="LOOPBACK").check_job_server(1)


@pytest.mark.parametrize("endpoint, match", [
    ("jobserver", "beam_job_endpoint: expected host:port"),
    ("no-such-host.invalid:8099", "cannot resolve host 'no-such-host.invalid'"),
])
def test_bad_job_endpoints_name_the_field(endpoint, match):
    with pytest.raises(ConfigError, match=match):
        BeamConfig(profile="spark", job_endpoint=endpoint).check_job_server(1)


def test_in_process_job_server_and_other_profiles_need_no_check(monkeypatch):
    from pipeline.config import beam

    tried = []

    def connect(address, timeout=None):
        tried.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(beam.socket, "create_connection", connect)
    BeamConfig(profile="flink", job_endpoint="embed", environment_type="LOOPBACK").check_job_server(1)
    BeamConfig(profile="direct", job_endpoint="localhost:1").check_job_server(1)
    assert tried == []  # no connection tried: nothing to wait for
    with pytest.raises(ConfigError, match=r"\(connection refused\)"):  # where a check is due, the same stand-in
        BeamConfig(profile="spark", job_endpoint="localhost:1").check_job_server(1)
    assert tried == [("localhost", 1)]
