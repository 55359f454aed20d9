"""The trust boundaries of docs/security.md, each tried as an attacker would: hostile data sources, sources that are
not the official release, the predict client over TLS, and the deploy/ policy (non-root, read-only, no escalation,
no capabilities, bounded resources)."""
from __future__ import annotations

import codecs
import pickle
import pickletools
import re
from pathlib import Path

import numpy as np
import pytest

from components import cifar10_batches, ingest
import cli
from tests.helpers import REPO, make_tar, write_official
from tests.hostile_data import PAYLOADS, Reducer, hostile_batch, write_official_py2


# ------------------------------------------------------------------------------------ no code from data

def test_a_hostile_batch_would_run_code_through_plain_pickle(tmp_path):
    """The attack is real: what ingestion did before (pickle.loads) runs the payload."""
    marker = tmp_path / "pwned"
    pickle.loads(hostile_batch(PAYLOADS["os.system"](marker)), encoding="bytes")
    assert marker.exists()


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize("form", ["archive", "folder"])
def test_hostile_batches_are_refused_in_one_line_and_run_nothing(payload, form, tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = write_official(tmp_path / "src", per_batch=10)
    (folder / "data_batch_1").write_bytes(hostile_batch(PAYLOADS[payload](marker)))
    source = make_tar(folder, tmp_path / "cifar-10-python.tar.gz", arcname=folder.name) if form == "archive" \
        else folder.parent
    rc = cli.main(["data", "--data", str(source), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    # protocol 2 writes Python 2 module names (fix_imports): builtins -> __builtin__, subprocess -> commands
    refused = {"os.system": "posix.system", "builtins.exec": "__builtin__.exec", "subprocess.call": "commands.call"}
    member = "cifar-10-python.tar.gz:cifar-10-batches-py/data_batch_1" if form == "archive" \
        else "cifar-10-batches-py/data_batch_1"
    assert member in err[0] and f"refused to unpickle global {refused[payload]}" in err[0], err[0]
    assert not marker.exists()
    assert not (tmp_path / "out").exists() or not any(p.name.startswith("cifar10-") for p in
                                                      (tmp_path / "out").iterdir())


def test_the_official_python2_batches_reference_only_the_allowed_globals_and_load(tmp_path, capsys, caplog):
    """Batches written opcode for opcode as Python 2 wrote the release load, pixels intact; their only globals are
    numpy's array and dtype reconstruction."""
    folder = write_official_py2(tmp_path / "src", per_batch=20)
    globals_ = {arg for op, arg, _ in pickletools.genops((folder / "data_batch_1").read_bytes())
                if op.name == "GLOBAL"}
    assert globals_ == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    archive = make_tar(folder, tmp_path / "cifar-10-python.tar.gz", arcname=folder.name)
    with caplog.at_level("WARNING", logger="components.ingest"):
        dataset = ingest.prepare(str(archive), tmp_path / "out")
    # Not the official bytes: a warning naming the file, and the data still loads.
    assert f"{archive} has MD5" in caplog.text and "not the official CIFAR-10 release" in caplog.text
    expected = pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")
    import tensorflow as tf
    from PIL import Image
    import io

    records = list(tf.data.TFRecordDataset(sorted(str(p) for p in (dataset / "test").glob("*.tfrecord.gz")),
                                           compression_type="GZIP"))
    got = set()
    for record in records:
        example = tf.train.Example.FromString(record.numpy())
        png = example.features.feature["image"].bytes_list.value[0]
        got.add(np.asarray(Image.open(io.BytesIO(png))).transpose(2, 0, 1).tobytes())
    assert got == {row.tobytes() for row in expected[b"data"]}


@pytest.mark.parametrize("payload, match", [
    (Reducer(codecs.encode, "x", "rot13"), "refused _codecs.encode with encoding 'rot13'"),
    (Reducer(np.ndarray, (10**12,)), "not callable"),  # would allocate a terabyte
    (Reducer(np.core.multiarray._reconstruct, np.ndarray, (10**12,), b"b"), "unexpected array reconstruction"),
])
def test_allowed_globals_cannot_be_abused(payload, match):
    with pytest.raises(ingest.DataError, match=match):
        cifar10_batches.unpickle(Path("data_batch_1"), pickle.dumps({b"data": payload}, protocol=2))


# ------------------------------------------------------------------------------ the official release, or not

def _unofficial_archive(tmp_path) -> Path:
    folder = write_official(tmp_path / "src", per_batch=10)
    return make_tar(folder, tmp_path / "cifar-10-python.tar.gz", arcname=folder.name)


@pytest.mark.parametrize("form", ["archive", "folder"])
def test_strict_refuses_what_is_not_the_official_release(form, tmp_path, capsys):
    archive = _unofficial_archive(tmp_path)
    source = archive if form == "archive" else tmp_path / "src"
    rc = cli.main(["data", "--data", str(source), "--out", str(tmp_path / "out"), "--strict"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(source) in err[0] and "--strict accepts only the official" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_url_with_an_overridden_md5_is_not_the_official_release(tmp_path, monkeypatch):
    archive = _unofficial_archive(tmp_path)
    monkeypatch.setenv("TOKENLEARNER_CACHE", str(tmp_path / "cache"))
    md5 = ingest._md5(archive)
    with pytest.raises(ingest.DataError, match=f"MD5 {md5} is not the official release's"):
        ingest.prepare(archive.as_uri(), tmp_path / "out", md5=md5, strict=True)
    assert not (tmp_path / "cache").exists()  # refused before downloading
    downloaded = ingest.resolve_source(archive.as_uri(), md5=md5)
    assert ingest.check_official_release(downloaded) == \
        f"{downloaded} has MD5 {md5}, not the official release's {ingest.OFFICIAL_MD5}: not the official CIFAR-10 " \
        f"release (read with the restricted unpickler, no code from it runs; --strict refuses it)"


# ------------------------------------------------------------------------------ predict client over TLS

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    from tests.tls_ca import make_ca

    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from tests.helpers import png_bytes, random_images

    folder = tmp_path_factory.mktemp("images")
    for i, image in enumerate(random_images(3, seed=5)):
        (folder / f"{i}.png").write_bytes(png_bytes(image))
    return folder


@pytest.fixture(scope="module", params=[False, True], ids=["tls", "mtls"])
def tls_server(request, exported_model, tls_files):
    from tests.tf_serving_emulation import EmulatedServer

    with EmulatedServer({exported_model.model_name: exported_model.base_dir}, tls=tls_files,
                        client_verify=request.param) as server:
        yield server


def predict_cli(capsys, images, *options) -> tuple[int, str, list[str]]:
    rc = cli.main(["predict", str(images), "--retries", "0", "--timeout", "5", *options])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.strip().splitlines()


def test_predict_over_tls_with_the_test_ca(tls_server, tls_files, images, capsys):
    client = ["--client-cert", str(tls_files.client_cert), "--client-key", str(tls_files.client_key)] \
        if tls_server.client_verify else []
    for target in (["--grpc", tls_server.grpc_target], ["--rest", tls_server.rest_url]):
        rc, out, err = predict_cli(capsys, images, *target, "--ca-cert", str(tls_files.ca_cert), *client)
        assert rc == 0 and not err, err
        assert len(out.strip().splitlines()) == 3
        if tls_server.client_verify:  # mutual TLS: no client certificate, no answer
            rc, out, err = predict_cli(capsys, images, *target, "--ca-cert", str(tls_files.ca_cert))
            assert rc in (2, 3) and not out and len(err) == 1, err


def test_predict_refuses_a_server_it_cannot_trust(tls_server, tls_files, images, capsys):
    """System CAs only: the test CA's server is not trusted; a configuration error at once, not retried."""
    for target in (["--grpc", tls_server.grpc_target, "--tls"], ["--rest", tls_server.rest_url]):
        rc, _, err = predict_cli(capsys, images, *target)
        assert rc == 2 and len(err) == 1 and "TLS handshake failed" in err[0], err


@pytest.mark.parametrize("options, match", [
    (["--rest", "http://127.0.0.1:1", "--ca-cert", "ca.pem"], "use an https:// URL"),
    (["--grpc", "127.0.0.1:1", "--client-cert", "c.pem"], "--client-cert and --client-key go together"),
    (["--grpc", "127.0.0.1:1", "--ca-cert", "/nonexistent/ca.pem"], "--ca-cert /nonexistent/ca.pem: cannot read"),
])
def test_tls_options_misused_are_usage_errors(options, match, images, capsys):
    rc, _, err = predict_cli(capsys, images, *options)
    assert rc == 2 and len(err) == 1 and match in err[0], err


# ------------------------------------------------------------------------------ container image and manifests

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}


def pod_spec(doc: dict) -> dict:
    spec = doc["spec"]
    if doc["kind"] == "Pod":
        return spec
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def workload_violations(doc: dict) -> list[str]:
    """What a workload does against the policy: non-root, read-only root filesystem, no privilege escalation, all
    capabilities dropped, CPU and memory limits, no service account token unless needed, pinned image tags."""
    pod = pod_spec(doc)
    where = f"{doc['kind']}/{doc['metadata']['name']}"
    problems = []
    pod_security = pod.get("securityContext", {})
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: automountServiceAccountToken must be false")
    for c in pod.get("initContainers", []) + pod["containers"]:
        name, security = f"{where}/{c['name']}", c.get("securityContext", {})
        if not (security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True):
            problems.append(f"{name}: runAsNonRoot")
        if security.get("runAsUser", pod_security.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        if security.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        if security.get("privileged"):
            problems.append(f"{name}: privileged")
        if "ALL" not in security.get("capabilities", {}).get("drop", []) or security["capabilities"].get("add"):
            problems.append(f"{name}: capabilities must drop ALL and add none")
        limits = c.get("resources", {}).get("limits", {})
        if not {"cpu", "memory"} <= set(limits):
            problems.append(f"{name}: resources.limits cpu and memory")
        image = c["image"]
        if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            problems.append(f"{name}: image {image} must have a pinned tag")
    return problems


def deploy_documents() -> list[tuple[Path, dict]]:
    import yaml

    return [(path, doc) for path in sorted((REPO / "deploy").rglob("*.y*ml"))
            for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]


def test_every_kubernetes_workload_in_deploy_meets_the_policy():
    workloads = [doc for _, doc in deploy_documents() if doc.get("kind") in WORKLOADS]
    assert workloads, "no Kubernetes workload found under deploy/"
    assert [p for doc in workloads for p in workload_violations(doc)] == []


def test_the_policy_check_catches_a_weakened_manifest():
    (doc,) = [doc for _, doc in deploy_documents() if doc.get("kind") == "Deployment"]
    weak = pickle.loads(pickle.dumps(doc))
    container = pod_spec(weak)["containers"][0]
    container["securityContext"] = {"allowPrivilegeEscalation": True, "capabilities": {"add": ["NET_ADMIN"]}}
    del container["resources"]["limits"]
    pod_spec(weak)["securityContext"]["runAsNonRoot"] = False
    problems = " ".join(workload_violations(weak))
    for expected in ("runAsNonRoot", "readOnlyRootFilesystem", "allowPrivilegeEscalation", "drop ALL",
                     "resources.limits"):
        assert expected in problems


def test_compose_services_meet_the_same_policy():
    services = [(path, name, s) for path, doc in deploy_documents() if "services" in doc
                for name, s in doc["services"].items()]
    assert services
    for path, name, service in services:
        user = str(service.get("user", "0")).split(":")[0]
        assert user not in ("0", "root"), f"{path}:{name}: runs as root"
        assert service.get("read_only") is True and "ALL" in service.get("cap_drop", [])
        assert "no-new-privileges:true" in service.get("security_opt", [])
        assert {"cpus", "memory"} <= set(service["deploy"]["resources"]["limits"])


def test_the_pipeline_image_runs_as_a_numeric_non_root_user():
    text = (REPO / "deploy" / "Dockerfile").read_text()
    final_stage = re.split(r"^FROM .*$", text, flags=re.M)[-1]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))
    users = re.findall(r"^USER (\S+)$", final_stage, flags=re.M)
    assert users, "the final stage sets no USER: the image would run as root"
    uid = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], users[-1]).split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so Kubernetes' runAsNonRoot can verify it
    assert not re.search(r"chmod [ugo]*\+s|setcap|sudo|^ADD https?://", text, flags=re.M)
