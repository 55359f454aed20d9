"""ML Metadata in a real MySQL-compatible server: a MariaDB started unprivileged on loopback in a scratch folder,
the tiny pipeline run through the CLI (local runner) with its metadata there, and the lineage
Examples -> TransformGraph -> Model -> ModelBlessing -> PushedModel read back from MLMD's events.

Needs Debian's `mariadb-server` (`.ci/run` installs it); skipped, saying so, only where its binaries are absent.
The settings errors (unreachable server, unset password variable) need no server and always run."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import cli
from pipeline import config as config_lib
from pipeline.config import metadata
from tests.helpers import free_port

PASSWORD_ENV = "TOKENLEARNER_MLMD_PASSWORD"
PASSWORD = "s3cret-for-tests"


def _binary(name: str) -> str | None:
    # mariadbd lives in /usr/sbin, which is not on a normal user's PATH.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def _sql(client: str, sock: Path, statement: str) -> subprocess.CompletedProcess:
    return subprocess.run([client, "--no-defaults", "-S", str(sock), "-uroot", "-e", statement],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    """A private MariaDB on 127.0.0.1:<free port> with database `mlmd` and user `mlmd` (password in PASSWORD)."""
    binaries = {name: _binary(name) for name in ("mariadbd", "mariadb-install-db", "mariadb")}
    missing = [name for name, path in binaries.items() if not path]
    if missing:
        pytest.skip(f"MariaDB binaries not found ({', '.join(missing)}): apt-get install mariadb-server")
    root = tmp_path_factory.mktemp("mariadb")
    subprocess.run([binaries["mariadb-install-db"], "--no-defaults", f"--datadir={root / 'data'}",
                    "--auth-root-authentication-method=normal"], check=True, capture_output=True, timeout=300)
    port, sock = free_port(), root / "sock"
    user = ["--user=root"] if os.getuid() == 0 else []  # mariadbd refuses to run as root unless told to
    log = open(root / "server.log", "w")
    server = subprocess.Popen([binaries["mariadbd"], "--no-defaults", f"--datadir={root / 'data'}",
                               f"--socket={sock}", f"--port={port}", "--bind-address=127.0.0.1",
                               f"--pid-file={root / 'pid'}", *user], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while _sql(binaries["mariadb"], sock, "SELECT 1").returncode != 0:
            assert server.poll() is None, (root / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "MariaDB did not start in 120 s"
            time.sleep(0.5)
        created = _sql(binaries["mariadb"], sock, "CREATE DATABASE mlmd; "
                       f"CREATE USER 'mlmd'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
                       "GRANT ALL ON mlmd.* TO 'mlmd'@'127.0.0.1';")
        assert created.returncode == 0, created.stderr
        yield port
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def _mysql_settings(port: int) -> list[str]:
    return ["--set", "metadata_backend=mysql", "--set", "metadata_host=127.0.0.1", "--set", f"metadata_port={port}",
            "--set", "metadata_database=mlmd", "--set", "metadata_user=mlmd"]


@pytest.fixture(scope="module")
def mysql_run(mariadb, shared_cifar, tmp_path_factory):
    """The tiny pipeline through the CLI (-v: every library's log) with its metadata in the server:
    (output folder, printed summary, everything logged). What is checked is where metadata goes and what it links,
    not the model: 100 images per split and one epoch are enough (the tiny preset still blesses: floor 0)."""
    output = tmp_path_factory.mktemp("mysql_run")
    with pytest.MonkeyPatch.context() as env:
        env.setenv(PASSWORD_ENV, PASSWORD)
        printed, logged = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(logged):
            rc = cli.main(["-v", "run", "--data", str(shared_cifar), "--preset", "tiny", "--limit", "100",
                           "--set", "epochs=1", "--output", str(output), "--set", "beam_workers=1",
                           *_mysql_settings(mariadb)])
    assert rc == 0, logged.getvalue()[-3000:]
    return output, printed.getvalue(), logged.getvalue()


@pytest.mark.slow
def test_run_keeps_no_metadata_or_password_on_disk(mysql_run, mariadb, tmp_path, monkeypatch, capsys):
    output, printed, logged = mysql_run
    root = output / "pipeline" / "tokenlearner-cifar10"
    assert not (root / "metadata.sqlite").exists()  # everything went to the server
    saved = (root / "config.json").read_text()
    assert PASSWORD not in saved and '"password_env": "TOKENLEARNER_MLMD_PASSWORD"' in saved
    # The run summary printed by the CLI was read back from the same server.
    assert "Pusher" in printed and "pushed" in printed
    # The password is in no artifact, log, report or compiled spec of the run (docs/security.md).
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert cli.main(["report", "--output", str(output), "--out", str(tmp_path / "report"),
                     "--max-test-examples", "20"]) == 0
    spec = tmp_path / "pipeline.json"
    assert cli.main(["compile", "--target", "kubeflow", "--image", "example.com/tokenlearner:1", "--data-root",
                     "gs://bucket/data", "--output", "gs://bucket/out", "--out", str(spec),
                     "--set", "class_names=cifar10", *_mysql_settings(mariadb)]) == 0
    # -v logged the run, connection setup included: ml_metadata's own line once the server accepted the connection.
    assert "I absl: MetadataStore with DB connection initialized" in logged, logged[-3000:]
    assert PASSWORD not in printed + logged + capsys.readouterr().out
    files = [p for p in (*output.rglob("*"), *(tmp_path / "report").rglob("*"), spec) if p.is_file()]
    assert len(files) > 50 and spec in files and (tmp_path / "report" / "report.html") in files
    leaked = [str(p) for p in files if PASSWORD.encode() in p.read_bytes()]
    assert not leaked


@pytest.mark.slow
def test_pipeline_lineage_in_mysql(mysql_run, mariadb, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    output, _, _ = mysql_run
    config = config_lib.load(str(output))
    assert config.metadata.backend == "mysql" and config.metadata.port == mariadb
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2 as pb

    store = mlmd.MetadataStore(metadata.connection_config(config.metadata, config.metadata_path))
    type_names = {t.id: t.name for t in store.get_artifact_types()}

    def producer(artifact_id: int) -> pb.Execution:
        (event,) = [e for e in store.get_events_by_artifact_ids([artifact_id]) if e.type == pb.Event.OUTPUT]
        return store.get_executions_by_id([event.execution_id])[0]

    def inputs(execution: pb.Execution) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        ids = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id]) if e.type == pb.Event.INPUT]
        for artifact in store.get_artifacts_by_id(ids):
            out.setdefault(type_names[artifact.type_id], set()).add(artifact.id)
        return out

    def node(execution: pb.Execution) -> str:
        return [c.name for c in store.get_contexts_by_execution(execution.id) if c.type == "node"][0].split(".")[-1]

    (pushed,) = store.get_artifacts_by_type("PushedModel")
    assert pushed.custom_properties["pushed"].int_value == 1
    pusher = producer(pushed.id)
    assert node(pusher) == "Pusher"
    (model_id,), (blessing_id,) = inputs(pusher)["Model"], inputs(pusher)["ModelBlessing"]
    evaluator = producer(blessing_id)
    assert node(evaluator) == "Evaluator" and model_id in inputs(evaluator)["Model"]
    (blessing,) = store.get_artifacts_by_id([blessing_id])
    assert blessing.custom_properties["blessed"].int_value == 1
    trainer = producer(model_id)
    assert node(trainer) == "Trainer"
    (examples_id,), (graph_id,) = inputs(trainer)["Examples"], inputs(trainer)["TransformGraph"]
    assert examples_id in inputs(evaluator)["Examples"]  # the Evaluator scored the same examples' test split
    transform = producer(graph_id)
    assert node(transform) == "Transform" and inputs(transform)["Examples"] == {examples_id}
    assert node(producer(examples_id)) == "ImportExampleGen"
    for artifact in store.get_artifacts_by_id([examples_id, graph_id, model_id, blessing_id, pushed.id]):
        assert Path(artifact.uri).exists(), artifact.uri


@pytest.mark.slow
def test_wrong_password_names_the_fields(mariadb, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password-4711")
    rc = cli.main(["run", "--data", str(tmp_path / "none"), "--output", str(tmp_path / "out"),
                   *_mysql_settings(mariadb)])
    err = capsys.readouterr().err
    assert rc == 2 and "metadata_user/metadata_password_env" in err and "$TOKENLEARNER_MLMD_PASSWORD" in err
    assert "not-the-password-4711" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unreachable_server_names_the_fields_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    port = free_port()  # nothing listens there
    rc = cli.main(["run", "--data", str(tmp_path / "none"), "--output", str(tmp_path / "out"),
                   *_mysql_settings(port)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"tokenlearner: error: metadata_host/metadata_port: cannot reach the MySQL server at "
                          f"127.0.0.1:{port}")
    assert not (tmp_path / "out").exists()


def test_password_comes_only_from_the_named_environment_variable(monkeypatch):
    cfg = metadata.MetadataConfig(backend="mysql", password_env="TL_TEST_PW")
    monkeypatch.delenv("TL_TEST_PW", raising=False)
    with pytest.raises(config_lib.ConfigError, match="metadata_password_env: environment variable TL_TEST_PW"):
        metadata.connection_config(cfg, "unused.sqlite")
    monkeypatch.setenv("TL_TEST_PW", "pw")
    connection = metadata.connection_config(cfg, "unused.sqlite")
    assert (connection.mysql.host, connection.mysql.port, connection.mysql.user) == ("127.0.0.1", 3306, "mlmd")
    assert connection.mysql.password == "pw" and "pw" not in str(cfg.__dict__)


def test_the_password_is_masked_in_every_log_record(monkeypatch, caplog):
    """TFX's LocalDagRunner logs the connection config, password included, at INFO ("Using connection config")."""
    monkeypatch.setenv("TL_TEST_PW", "pw-to-mask-0815")
    connection = metadata.connection_config(metadata.MetadataConfig(backend="mysql", password_env="TL_TEST_PW"),
                                            "unused.sqlite")
    import logging

    with caplog.at_level(logging.INFO, logger="masking-test"):  # any logger: the masking is in the log records
        logging.getLogger("masking-test").info("Using connection config:\n %s", connection.mysql)
        logging.getLogger("masking-test").warning("password=%s", "pw-to-mask-0815")
    assert "pw-to-mask-0815" not in caplog.text and all("***" in r.getMessage() for r in caplog.records)
    assert 'user: "mlmd"' in caplog.text


@pytest.mark.parametrize("pairs, match", [
    (["metadata_backend=postgres"], "metadata_backend: unknown 'postgres'"),
    (["metadata_backend=mysql", "metadata_host="], "metadata_host: required by metadata_backend=mysql"),
    (["metadata_port=0"], "metadata_port: expected 1..65535"),
])
def test_bad_metadata_settings_name_the_field(pairs, match):
    with pytest.raises(config_lib.ConfigError, match=match):
        config_lib.apply_overrides(config_lib.from_preset("tiny", data_root="d"), config_lib.parse_overrides(pairs))
