"""A dataset in object storage, and compile/submit off the happy path (issue 40, findings 3-5).

- `data --append` and then `compile` on a dataset that is not on the local disk: TensorFlow's ram:// filesystem
  stands in for a bucket. TF 2.16's own gs:// filesystem has its endpoint built in (no emulator can be named), and
  the tensorflow-io-gcs-filesystem plugin that reads CLOUD_STORAGE_EMULATOR_ENDPOINT crashes (SIGSEGV) on its
  first call here (docs/operations.md). ram:// goes through the same tf.io.gfile calls: glob, exists, copy without
  overwrite, remove, makedirs, whole-file writes.
- compile/submit whose manifest cannot be read stop with one line unless the class list is given.
- submissions that fail (a closed port, an HTTP error on loopback, no Google Cloud credentials) are one line,
  exit 3, and keep the compiled spec.
"""
from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest

import cli
from components import datasets, ingest, spans
from tests.helpers import free_port, write_image_folder
from trainer import contract

IMAGE = "europe-west4-docker.pkg.dev/proj/tokenlearner/tokenlearner:0.1.0"
THREE = ("cat", "dog", "fox")
PER_CLASS = 10  # a class: 9 train + 1 eval, and 10 test


def _upload(local: Path, uri: str) -> None:
    import tensorflow as tf

    for path in sorted(local.rglob("*")):
        if path.is_file():
            target = f"{uri}/{path.relative_to(local).as_posix()}"
            tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
            tf.io.gfile.copy(str(path), target)


def _bucket_files(uri: str) -> dict[str, bytes]:
    import tensorflow as tf

    out = {}
    for folder, _, files in tf.io.gfile.walk(uri):
        for name in files:
            with tf.io.gfile.GFile(f"{folder.rstrip('/')}/{name}", "rb") as f:
                out[f"{folder.rstrip('/')}/{name}"[len(uri) + 1:]] = f.read()
    return out


@pytest.fixture(scope="module")
def local_dataset(tmp_path_factory) -> Path:
    """A 3-class dataset (span 0, its statistics written by `data`) on the local disk."""
    root = tmp_path_factory.mktemp("bucket_src")
    source = write_image_folder(root / "src", per_class=PER_CLASS, classes=THREE)
    assert cli.main(["data", "--data", str(source), "--out", str(root / "out")]) == 0
    return next((root / "out").iterdir())


@pytest.fixture(scope="module")
def new_images(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("bucket_new") / "src", per_class=12, size=24, classes=THREE)


@pytest.fixture
def bucket(local_dataset, request) -> str:
    """The local dataset copied to a ram:// "bucket" of its own (ram:// lives as long as the process)."""
    uri = f"ram://bucket-{request.node.name}/data/{local_dataset.name}"
    _upload(local_dataset, uri)
    return uri


def test_append_to_a_dataset_in_a_bucket_then_compile_from_it(bucket, new_images, tmp_path, capsys):
    assert cli.main(["data", "--data", str(new_images), "--append", bucket]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    # 12 images a class in train/ and in test/: 11 train + 1 eval (every 10th), 12 test; 3 classes. Span 0 had 10
    # a class: 9 + 1 and 10.
    assert last == f"{bucket}: span 1: train 33, eval 3, test 36; all 2 spans: train 60, eval 6, test 66", last
    files = _bucket_files(bucket)
    for split in contract.SPLITS:
        assert sorted(n for n in files if n.startswith(f"{split}/")) == [
            f"{split}/{contract.shard_name(0, 0, 1)}", f"{split}/{contract.shard_name(1, 0, 1)}"]
    assert {contract.span_stats_path(0), contract.span_stats_path(1)} <= set(files)
    manifest = datasets.load_manifest(bucket)
    assert [s["span"] for s in manifest["spans"]] == [0, 1] and manifest["class_names"] == list(THREE)
    assert manifest["splits"]["test"]["examples"] == 3 * PER_CLASS + 36
    assert not any(name.startswith(".") or "staging" in name for name in files)  # no partial or staging files

    # The same command again is the next span; compile then reads the bucket's manifest: 3 classes, its schema.
    assert cli.main(["data", "--data", str(new_images), "--append", bucket]) == 0
    assert "span 2:" in capsys.readouterr().out
    rc, out = _compile(tmp_path, bucket)
    assert rc == 0 and _compiled(out) == (list(THREE), f"{bucket}/schema.pbtxt")


def test_a_failed_append_to_a_bucket_leaves_it_as_it_was(bucket, new_images, monkeypatch):
    before = _bucket_files(bucket)

    def fail(*_):
        raise OSError("network gone")

    monkeypatch.setattr(spans, "_replace_manifest", fail)  # after the shards and statistics were uploaded
    with pytest.raises(OSError, match="network gone"):
        spans.append(str(new_images), bucket)
    assert _bucket_files(bucket) == before


def test_another_class_list_appended_to_a_bucket_is_one_line(bucket, tmp_path, capsys):
    before = _bucket_files(bucket)
    other = write_image_folder(tmp_path / "other", per_class=PER_CLASS, classes=("cat", "dog", "gnu"))
    assert cli.main(["data", "--data", str(other), "--append", bucket]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"tokenlearner: error: {other}: its class list differs from "
                                               f"{bucket}/classes.txt: new class(es) ['gnu']"), err
    assert _bucket_files(bucket) == before


def test_append_to_a_bucket_without_a_dataset_names_its_manifest(new_images, capsys):
    assert cli.main(["data", "--data", str(new_images), "--append", "ram://empty-bucket/data/"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tokenlearner: error: ram://empty-bucket/data/manifest.json: missing; expected a dataset written "
                   "by `tokenlearner data`"], err


# ---------------------------------------------------------------------- compile: the class list, never a guess

def _compile(tmp_path: Path, data_root: str, *extra: str) -> tuple[int, Path]:
    out = tmp_path / "pipeline.json"
    return cli.main(["compile", "--target", "kubeflow", "--preset", "tiny", "--image", IMAGE, "--data-root",
                     data_root, "--output", "gs://b/o", "--out", str(out), *extra]), out


def _compiled(spec: Path) -> tuple[list[str], str]:
    """(the Trainer's class names, the schema file) of a compiled spec."""
    tasks = json.loads(spec.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]

    def param(task: str, name: str) -> str:
        return tasks[task]["inputs"]["parameters"][name]["runtimeValue"]["constant"]

    return json.loads(param("Trainer", "custom_config"))["class_names"], param("ImportSchemaGen", "schema_file")


def test_compile_with_an_unreadable_manifest_stops_unless_the_classes_are_given(tmp_path, capsys):
    missing = "ram://no-such-bucket/data"
    rc, out = _compile(tmp_path, missing)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"tokenlearner: error: {missing}/manifest.json: missing (no dataset written by "
                             f"`tokenlearner data` there); the pipeline's class list comes from it"), err
    assert "--classes FILE" in err[0] and "--set class_names=a,b,c" in err[0]
    assert not out.exists()

    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\nfox\n")
    rc, out = _compile(tmp_path, missing, "--classes", str(classes))
    # The schema is the one `data` writes beside a class list of its own.
    assert rc == 0 and _compiled(out) == (list(THREE), f"{missing}/schema.pbtxt")
    out.unlink()
    rc, out = _compile(tmp_path, missing, "--set", "class_names=cat,dog,fox")
    assert rc == 0 and _compiled(out) == (list(THREE), f"{missing}/schema.pbtxt")


@pytest.mark.parametrize("extra, message", [
    (["--set", "class_names=cat"], "class_names: expected at least 2 class names separated by commas"),
    (["--set", "class_names=cat,dog,cat"], "class_names: class name(s) ['cat'] given more than once"),
    (["--classes", "/nonexistent/classes.txt"], "--classes /nonexistent/classes.txt: cannot be read"),
    (["--classes", "CLASSES", "--set", "class_names=a,b"], "--classes and --set class_names: give the class list once"),
])
def test_a_bad_class_list_is_one_line(extra, message, tmp_path, capsys):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    extra = [str(tmp_path / "classes.txt") if e == "CLASSES" else e for e in extra]
    rc, out = _compile(tmp_path, "ram://no-such-bucket/data", *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_a_class_list_that_contradicts_a_readable_manifest_is_refused(bucket, tmp_path, capsys):
    rc, out = _compile(tmp_path, bucket, "--set", "class_names=cifar10")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("tokenlearner: error: class_names: given as ['airplane', 'automobile'"), err
    assert f"but {bucket}/manifest.json lists ['cat', 'dog', 'fox']" in err[0]


# ---------------------------------------------------------------------- submit: one line, exit 3, the spec kept

REMOTE = ["--image", IMAGE, "--data-root", "gs://bucket/data/cifar10-tiny", "--output", "gs://bucket/tokenlearner",
          "--preset", "tiny", "--set", "class_names=cifar10"]


def _submit(tmp_path: Path, *args: str, suffix: str = ".yaml") -> tuple[int, list[str], Path]:
    import contextlib
    import io

    spec = tmp_path / "spec" / f"pipeline{suffix}"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(["submit", "--out", str(spec), *args, *REMOTE])
    lines = [line for line in err.getvalue().splitlines() if " I cli.remote: " not in line]  # the class-list note
    return rc, lines, spec


def test_kubeflow_at_a_closed_port_is_one_line_and_keeps_the_spec(tmp_path):
    host = f"http://127.0.0.1:{free_port()}"
    rc, err, spec = _submit(tmp_path, "--target", "kubeflow", "--host", host)
    assert rc == 3 and len(err) == 1, err
    assert err[0] == (f"tokenlearner: error: submit failed: Kubeflow Pipelines at {host}: unreachable ([Errno 111] "
                      f"Connection refused); is the API server up and --host right (e.g. after `kubectl "
                      f"port-forward -n kubeflow svc/ml-pipeline 8080:8888`, http://localhost:8080)?; the compiled "
                      f"spec is kept: {spec}"), err
    assert spec.is_file() and "pipelineInfo" in spec.read_text()


class _Refusing(http.server.BaseHTTPRequestHandler):
    """A Kubeflow Pipelines API server that answers every request with one error status."""

    status = 500
    paths: list[str] = []  # the request lines it was sent (each test's subclass has its own list)

    def _answer(self) -> None:
        body = json.dumps({"error": f"refused with {self.status}", "code": 2,
                           "message": f"refused with {self.status}"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        type(self).paths.append(f"{self.command} {self.path.split('?')[0]}")

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("status, reason, args, request_line", [
    # The client's first request, healthz: asked once, not 5 times 5 s apart.
    (500, "Internal Server Error", [], "GET /apis/v2beta1/healthz"),
    # With a namespace the client skips healthz: the experiment lookup is the first request.
    (403, "Forbidden", ["--namespace", "team"], "GET /apis/v2beta1/experiments"),
])
def test_kubeflow_answering_an_http_error_is_one_line_naming_the_status(status, reason, args, request_line,
                                                                          tmp_path):
    handler: type[_Refusing] = type("Handler", (_Refusing,), {"status": status, "paths": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        rc, err, spec = _submit(tmp_path, "--target", "kubeflow", "--host", host, *args)
    finally:
        server.shutdown()
        server.server_close()
    assert rc == 3 and len(err) == 1, err
    assert err[0] == (f"tokenlearner: error: submit failed: Kubeflow Pipelines at {host}: {request_line} answered "
                      f"HTTP {status} {reason}: refused with {status}; the compiled spec is kept: {spec}"), err
    assert handler.paths == [request_line]  # asked once
    assert spec.is_file()


def test_vertex_without_credentials_is_one_line_and_keeps_the_spec(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no gcloud credentials file
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")  # google-auth: not on Compute Engine, ask no metadata server
    spec_args = ["--set", "vertex_project=proj", "--set", "vertex_region=europe-west4"]
    rc, err, spec = _submit(tmp_path, *spec_args, suffix=".json")
    assert rc == 3 and len(err) == 1, err
    assert err[0].startswith("tokenlearner: error: submit failed: Vertex AI (project proj, region europe-west4): no "
                             f"Google Cloud credentials (File {tmp_path / 'missing-key.json'} was not found"), err
    assert err[0].endswith(f"; the compiled spec is kept: {spec}"), err
    assert spec.is_file()
