"""Contract tests of the exported model as TF Serving serves it, and of `tokenlearner predict`.

No TF Serving binary exists here: requests go through `saved_model_cli` (the SavedModel as TensorFlow loads it)
and through tests/tf_serving_emulation.py (TF Serving's documented REST/gRPC mapping on the loaded SavedModel).
With TF_SERVING_REST (e.g. http://localhost:8501) and/or TF_SERVING_GRPC (localhost:8500) set, the live-server
tests at the end run the client against that server too (model TF_SERVING_MODEL_NAME, default tokenlearner; with
TF_SERVING_MODEL_DIR = the base folder the server loads, its answers are compared with the local SavedModel).
"""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc

import cli
from serving_client import predict
from tests import image_bombs
from tests import tf_serving_emulation as tests_emulation
from tests.helpers import REPO, SHARED_CIFAR, free_port, png_bytes, random_images
from tests.tf_serving_emulation import EmulatedServer, ServingError, grpc_predict, rest_predict
from trainer import export, serving_api

SAVED_MODEL_CLI = str(Path(sys.executable).parent / "saved_model_cli")


# ------------------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def images() -> list[tuple[str, bytes]]:
    """Six real CIFAR-10 test JPEGs (../shared), or, where that archive is absent, synthetic PNG and JPEG files."""
    if SHARED_CIFAR.is_file():
        wanted = {f"test/{c}/0000.jpg" for c in ("airplane", "cat", "ship", "frog", "truck", "horse")}
        with tarfile.open(SHARED_CIFAR) as tar:
            found = [(Path(m.name).parent.name + ".jpg", tar.extractfile(m).read())
                     for m in tar if m.name in wanted]
        assert len(found) == len(wanted)
        return sorted(found)
    pictures = random_images(6, seed=11)
    return [(f"synthetic{i}.{'png' if i % 2 else 'jpg'}", png_bytes(p, "PNG" if i % 2 else "JPEG"))
            for i, p in enumerate(pictures)]


@pytest.fixture(scope="module")
def signature(exported_model):
    loaded = tf.saved_model.load(str(exported_model.version_dir))
    yield loaded.signatures[serving_api.SIGNATURE_NAME]
    del loaded


@pytest.fixture(scope="module")
def local_backend(exported_model):
    return predict.LocalBackend(str(exported_model.base_dir))


@pytest.fixture(scope="module")
def server(exported_model):
    with EmulatedServer({exported_model.model_name: exported_model.base_dir},
                        labels={exported_model.model_name: {"stable": exported_model.version}}) as emulated:
        yield emulated


@pytest.fixture
def image_dir(tmp_path, images) -> Path:
    for name, data in images[:3]:
        (tmp_path / name).write_bytes(data)
    return tmp_path


def _probabilities(predictions) -> np.ndarray:
    return np.array([p["probabilities"] for p in predictions])


def _run_client(settings: predict.PredictSettings) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = predict.run(settings, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------------- the SavedModel

def test_serving_default_has_the_contract_names_and_types(signature):
    inputs = signature.structured_input_signature[1]
    assert list(inputs) == [serving_api.INPUT_KEY]
    assert inputs[serving_api.INPUT_KEY].dtype == tf.string
    assert inputs[serving_api.INPUT_KEY].shape.as_list() == [None]
    outputs = signature.structured_outputs
    assert set(outputs) == set(serving_api.OUTPUT_KEYS)
    assert outputs[serving_api.PROBABILITIES].dtype == tf.float32
    assert outputs[serving_api.PROBABILITIES].shape.as_list() == [None, 10]
    assert outputs[serving_api.CLASS_IDS].dtype == tf.int64
    assert outputs[serving_api.CLASS_NAMES].dtype == tf.string


def test_saved_model_cli_show_lists_the_signatures(exported_model):
    shown = subprocess.run([SAVED_MODEL_CLI, "show", "--dir", str(exported_model.version_dir), "--all"],
                           capture_output=True, text=True, check=True).stdout
    for name in ("serving_default", "serving_tf_example", "transform_features"):
        assert f"signature_def['{name}']" in shown
    default = shown.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    assert "inputs['images'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in default
    assert "outputs['probabilities'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 10)" in default
    assert "outputs['class_ids'] tensor_info:\n        dtype: DT_INT64" in default
    assert "outputs['class_names'] tensor_info:\n        dtype: DT_STRING" in default


def test_saved_model_cli_run_on_real_image_bytes_matches_the_client(exported_model, images, local_backend,
                                                                    tmp_path):
    data = [d for _, d in images]
    np.save(tmp_path / "images.npy", np.array(data, dtype=object), allow_pickle=True)
    subprocess.run([SAVED_MODEL_CLI, "run", "--dir", str(exported_model.version_dir), "--tag_set", "serve",
                    "--signature_def", "serving_default", "--inputs", f"images={tmp_path / 'images.npy'}",
                    "--outdir", str(tmp_path / "out")], capture_output=True, text=True, check=True)
    probabilities = np.load(tmp_path / "out" / "probabilities.npy")
    assert probabilities.shape == (len(data), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probabilities, _probabilities(local_backend.predict(data)), atol=1e-6)
    class_names = np.load(tmp_path / "out" / "class_names.npy", allow_pickle=True)
    assert [n.decode() for n in class_names] == [exported_model.class_names[i] for i in probabilities.argmax(1)]


# ------------------------------------------------------------------------------- requests as TF Serving maps them

def test_rest_body_decoded_as_tf_serving_gives_the_local_probabilities(signature, images, local_backend):
    data = [d for _, d in images]
    wire = json.dumps(serving_api.rest_body(data))  # what goes over HTTP
    answer = json.loads(json.dumps(rest_predict(signature, json.loads(wire))))
    predictions = serving_api.parse_rest_predictions(answer, expected=len(data))
    np.testing.assert_allclose(_probabilities(predictions), _probabilities(local_backend.predict(data)), atol=1e-6)
    assert [p["class_name"] for p in predictions] == [p["class_name"] for p in local_backend.predict(data)]


def test_grpc_request_decoded_as_tf_serving_gives_the_local_probabilities(exported_model, signature, images,
                                                                          local_backend):
    data = [d for _, d in images]
    request = serving_api.predict_request(data, exported_model.model_name, version=exported_model.version)
    wire = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert wire.model_spec.name == exported_model.model_name
    assert wire.model_spec.signature_name == "serving_default"
    assert wire.model_spec.version.value == exported_model.version
    assert list(tf.make_ndarray(wire.inputs["images"])) == data  # bytes unchanged, shape [N]
    response = grpc_predict(signature, wire, exported_model.version)
    predictions = serving_api.parse_predict_response(
        predict_pb2.PredictResponse.FromString(response.SerializeToString()), expected=len(data))
    np.testing.assert_allclose(_probabilities(predictions), _probabilities(local_backend.predict(data)), atol=1e-6)


def test_request_builders_select_version_or_label():
    assert serving_api.rest_predict_path("tokenlearner") == "/v1/models/tokenlearner:predict"
    assert serving_api.rest_predict_path("tokenlearner", version=3) == "/v1/models/tokenlearner/versions/3:predict"
    assert serving_api.rest_predict_path("tokenlearner", label="canary") == \
        "/v1/models/tokenlearner/labels/canary:predict"
    request = serving_api.predict_request([b"x"], "m", label="canary")
    assert request.model_spec.version_label == "canary" and not request.model_spec.HasField("version")
    with pytest.raises(ValueError, match="not both"):
        serving_api.rest_predict_path("m", version=1, label="stable")


def test_warmup_file_holds_prediction_logs_that_run_through_the_signature(exported_model, signature):
    path = exported_model.version_dir / "assets.extra" / export.WARMUP_FILE
    records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    n = len(exported_model.warmup_images)
    assert len(records) == n + 1  # one request per image, then all of them as one batch
    assert len(records) <= 1000  # TF Serving reads at most 1,000 warmup records
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == exported_model.model_name
        assert request.model_spec.signature_name == "serving_default"
        sent = list(tf.make_ndarray(request.inputs["images"]))
        assert all(image in exported_model.warmup_images for image in sent)
        response = grpc_predict(signature, request, exported_model.version)
        assert tf.make_ndarray(response.outputs["probabilities"]).shape == (len(sent), 10)


def test_warmup_writer_refuses_an_empty_image_list(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        export.write_warmup_requests(str(tmp_path), "tokenlearner", [])


# --------------------------------------------------------------------------------------------------- bad input

def _encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


_RGB = random_images(1, seed=3)[0]
BAD_INPUTS = {
    # name: (bytes, accepted?)
    "non_image": (b"definitely not an image", False),
    "empty": (b"", False),
    "truncated_png": (png_bytes(_RGB)[:120], False),
    "one_pixel": (_encode(random_images(1, size=1)[0]), True),
    "grayscale": (_encode(_RGB[:, :, 0]), True),
    "rgba": (_encode(np.dstack([_RGB, np.full((32, 32), 128, np.uint8)])), True),
    "large_jpeg": (_encode(random_images(1, size=500)[0], "JPEG"), True),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_unusual_inputs_are_served_or_rejected_with_invalid_argument(name, signature):
    data, accepted = BAD_INPUTS[name]
    if accepted:
        out = signature(images=tf.constant([data]))
        probabilities = out["probabilities"].numpy()
        assert probabilities.shape == (1, 10)
        np.testing.assert_allclose(probabilities.sum(), 1.0, rtol=1e-5)
    else:
        with pytest.raises(tf.errors.InvalidArgumentError):
            signature(images=tf.constant([data]))
        # Through the REST mapping: HTTP 400 with a message that names the problem.
        with pytest.raises(ServingError) as error:
            rest_predict(signature, serving_api.rest_body([data]))
        assert error.value.http_status == 400
        assert error.value.code == "INVALID_ARGUMENT"


# ---------------------------------------------------------------------------------------------------- the client

def test_client_model_dir_takes_the_base_or_a_version_folder(exported_model, image_dir):
    texts = []
    for model_dir in (exported_model.base_dir, exported_model.version_dir):
        code, out, err = _run_client(predict.PredictSettings(paths=(str(image_dir),), model_dir=str(model_dir)))
        assert code == predict.EXIT_OK, err
        texts.append(out)
    assert texts[0] == texts[1]
    lines = texts[0].splitlines()
    assert len(lines) == 3
    for line in lines:
        path, ranked = line.split("\t")
        assert Path(path).parent == image_dir
        pairs = [pair.rsplit(" ", 1) for pair in ranked.split("  ")]
        assert len(pairs) == 3  # --top-k default
        assert all(name in exported_model.class_names for name, _ in pairs)
        probabilities = [float(p) for _, p in pairs]
        assert probabilities == sorted(probabilities, reverse=True)


def test_class_names_come_from_the_model_or_from_the_servers_answers(tmp_path):
    """--model has the model's class_names.txt; a server names only each answer's top class, so the client learns
    the names (CIFAR-10's table while they agree with it) and shows "class <id>" for one no answer named yet."""
    assert predict.class_table(("cat", "dog", "fox"), {}, 3) == ("cat", "dog", "fox")
    assert predict.class_table(None, {3: "cat", 9: "truck"}, 10) == predict.CIFAR10_CLASSES
    assert predict.class_table(None, {3: "3"}, 10) == tuple(f"class {i}" for i in range(3)) + ("3",) + tuple(
        f"class {i}" for i in range(4, 10))  # digits: not CIFAR-10 although 10 classes

    class ThreeClassServer:
        description, class_names = "fake server", None

        def predict(self, images):
            answers = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]
            return [{"probabilities": answers[i % 2], "class_id": [0, 2][i % 2], "class_name": ["cat", "fox"][i % 2]}
                    for i in range(len(images))]

    files = []
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"image bytes")
        files.append(tmp_path / name)
    results = predict.classify(files, ThreeClassServer(), predict.PredictSettings(paths=("x",), rest_url="h:1"))
    assert [r.top for r in results] == [(("cat", 0.7), ("class 1", 0.2), ("fox", 0.1)),
                                        (("fox", 0.6), ("class 1", 0.3), ("cat", 0.1))]


def test_resolve_model_dir_picks_the_highest_version(tmp_path):
    for version in ("7", "12", "3", ".tmp-99"):  # .tmp-99: a version the Pusher is still writing
        (tmp_path / version).mkdir()
        (tmp_path / version / "saved_model.pb").write_bytes(b"")
    (tmp_path / "notes").mkdir()  # neither a SavedModel nor a base folder
    assert predict.resolve_model_dir(str(tmp_path)) == tmp_path / "12"
    assert predict.resolve_model_dir(str(tmp_path), version=3) == tmp_path / "3"
    assert predict.resolve_model_dir(str(tmp_path / "7")) == tmp_path / "7"
    with pytest.raises(predict.PredictError, match="no version 5"):
        predict.resolve_model_dir(str(tmp_path), version=5)
    with pytest.raises(predict.PredictError, match="found neither"):
        predict.resolve_model_dir(str(tmp_path / "notes"))
    with pytest.raises(predict.PredictError, match="no such folder"):
        predict.resolve_model_dir(str(tmp_path / "absent"))


def _bad_files(folder: Path) -> dict[str, bytes]:
    files = {"bad.png": b"not an image at all", "empty.png": b"",
             "truncated.png": png_bytes(random_images(1, seed=5)[0])[:150]}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


@pytest.mark.parametrize("transport", ["rest", "grpc", "model"])
def test_client_reports_each_bad_file_and_classifies_the_others(transport, exported_model, server, image_dir,
                                                                local_backend, images):
    bad = _bad_files(image_dir)
    target = {"rest": {"rest_url": server.rest_url}, "grpc": {"grpc_target": server.grpc_target},
              "model": {"model_dir": str(exported_model.base_dir)}}[transport]
    settings = predict.PredictSettings(paths=(str(image_dir), str(image_dir / "missing.jpg")), as_json=True,
                                       top_k=10, batch_size=4, **target)
    code, out, err = _run_client(settings)
    assert code == predict.EXIT_SOME_FAILED, err
    results = {Path(r["file"]).name: r for r in json.loads(out)["results"]}
    assert set(results) == {name for name, _ in images[:3]} | set(bad) | {"missing.jpg"}
    for name in bad:
        assert "error" in results[name]
    assert "Unknown image file format" in results["bad.png"]["error"]
    assert "empty file" in results["empty.png"]["error"]
    assert results["missing.jpg"]["error"] == "no such file or folder"
    expected = {name: p for (name, _), p in zip(images[:3], local_backend.predict([d for _, d in images[:3]]))}
    for name, prediction in expected.items():
        got = {t["class_name"]: t["probability"] for t in results[name]["top_k"]}
        want = dict(zip(exported_model.class_names, prediction["probabilities"]))
        assert got.keys() == want.keys()
        np.testing.assert_allclose([got[k] for k in want], [want[k] for k in want], atol=1e-6)
        assert results[name]["class_name"] == prediction["class_name"]


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_client_selects_a_label_or_version(transport, exported_model, server, image_dir):
    target = {"rest_url": server.rest_url} if transport == "rest" else {"grpc_target": server.grpc_target}
    for selector in ({"label": "stable"}, {"version": exported_model.version}):
        code, out, err = _run_client(predict.PredictSettings(paths=(str(image_dir),), **selector, **target))
        assert code == predict.EXIT_OK, err
        assert len(out.splitlines()) == 3


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("selector", [{"model_name": "nope"}, {"version": 999}, {"label": "nope"}])
def test_client_unknown_model_version_or_label_is_a_usage_error(transport, selector, server, image_dir):
    target = {"rest_url": server.rest_url} if transport == "rest" else {"grpc_target": server.grpc_target}
    code, out, err = _run_client(predict.PredictSettings(paths=(str(image_dir),), **selector, **target))
    assert code == predict.EXIT_CONFIG
    assert out == ""
    assert err.startswith("tokenlearner: error:") and len(err.splitlines()) == 1


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_client_retries_a_busy_server_with_backoff(transport, exported_model, image_dir):
    with EmulatedServer({exported_model.model_name: exported_model.base_dir}, fail_first=2) as busy:
        target = {"rest_url": busy.rest_url} if transport == "rest" else {"grpc_target": busy.grpc_target}
        settings = predict.PredictSettings(paths=(str(image_dir),), retries=3, backoff_s=0.05, **target)
        code, out, err = _run_client(settings)
        assert code == predict.EXIT_OK, err
        assert busy.calls == 3  # two UNAVAILABLE answers, then the batch went through
    with EmulatedServer({exported_model.model_name: exported_model.base_dir}, fail_first=10) as down:
        target = {"rest_url": down.rest_url} if transport == "rest" else {"grpc_target": down.grpc_target}
        settings = predict.PredictSettings(paths=(str(image_dir),), retries=2, backoff_s=0.05, **target)
        code, out, err = _run_client(settings)
        assert code == predict.EXIT_UNREACHABLE
        assert down.calls == 3 and "after 3 attempt(s)" in err


def test_with_retries_backs_off_exponentially():
    sleeps, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise predict.Transient("busy")
        return "ok"

    settings = predict.PredictSettings(paths=("x",), rest_url="http://h:1", retries=3, backoff_s=0.5)
    assert predict.with_retries(flaky, settings, "h", sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("flag", ["--rest", "--grpc"])
def test_unreachable_server_exits_3(flag, image_dir, capsys):
    """The exit code and the line; how long it takes is bench/fail_fast.py's to measure (docs/benchmarks.md)."""
    port = free_port()  # nothing listens there
    address = f"http://127.0.0.1:{port}" if flag == "--rest" else f"127.0.0.1:{port}"
    code = cli.main(["predict", flag, address, "--timeout", "2", "--retries", "1", str(image_dir)])
    assert code == predict.EXIT_UNREACHABLE == 3
    err = capsys.readouterr().err
    assert "unreachable or failing after 2 attempt(s)" in err


@pytest.mark.parametrize("argv", [
    ["--model", "/nonexistent/model"],
    ["--model", "MODEL", "--label", "stable"],
    ["--rest", "ftp://host:1"],
    ["--grpc", "no-port"],
    ["--model", "MODEL", "--top-k", "0"],
])
def test_usage_errors_exit_2(argv, exported_model, image_dir, capsys):
    argv = [str(exported_model.base_dir) if a == "MODEL" else a for a in argv]
    assert cli.main(["predict", *argv, str(image_dir)]) == predict.EXIT_CONFIG
    assert capsys.readouterr().err.startswith("tokenlearner: error:")


@pytest.mark.parametrize("target, error", [
    ([], "one of the arguments --model --rest --grpc is required"),
    (["--rest", "http://h:1", "--grpc", "h:1"], "argument --grpc: not allowed with argument --rest"),
])
def test_cli_requires_exactly_one_target(target, error, image_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", *target, str(image_dir)])
    assert exit_info.value.code == 2  # argparse's usage error: EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: tokenlearner predict "), err
    assert err.splitlines()[-1] == f"tokenlearner predict: error: {error}", err


# ------------------------------------------------------------------------------ TF Serving's answers, as it gives them
# The texts and codes below are TF Serving 2.16.1's (the emulator cites the source file of each).

BATCHING_PARAMETERS = REPO / "deploy" / "serving" / "batching_parameters.txt"


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict | None]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


@pytest.mark.parametrize("method,path", [
    ("POST", "/v1/models/{m}/versions/latest:predict"),  # version must be a number
    ("POST", "/v1/models/{m}/metadata"),  # POST takes only :classify/:regress/:predict
    ("GET", "/v1/models/{m}:predict"),
    ("POST", "/v1/v1/models/{m}:predict"),
])
def test_malformed_rest_path_is_400_malformed_request(method, path, server, exported_model):
    path = path.format(m=exported_model.model_name)
    status, answer = _http(method, server.rest_url + path, b"{}" if method == "POST" else None)
    assert (status, answer) == (400, {"error": f"Malformed request: {method} {path}"})


def test_path_outside_v1_is_a_plain_404(server, exported_model):
    assert _http("POST", f"{server.rest_url}/v2/models/{exported_model.model_name}:predict", b"{}") == (404, None)


def test_client_with_a_url_path_that_tf_serving_calls_malformed_is_a_usage_error(server, image_dir):
    code, out, err = _run_client(predict.PredictSettings(paths=(str(image_dir),), rest_url=server.rest_url + "/v1"))
    assert code == predict.EXIT_CONFIG and out == ""
    assert "Malformed request: POST /v1/v1/models/" in err


def test_wrong_input_name_gets_tf_servings_texts(server, exported_model, images):
    data = images[0][1]
    status, answer = _http("POST", f"{server.rest_url}/v1/models/{exported_model.model_name}:predict",
                           json.dumps({"instances": [{"image": {"b64": base64.b64encode(data).decode()}}]}).encode())
    assert status == 400
    assert answer["error"] == ("Failed to process element: 0 key: image of 'instances' list. Error: "
                               "INVALID_ARGUMENT: JSON object: does not have named input: image")
    request = serving_api.predict_request([data], exported_model.model_name)
    tensor = tf.make_tensor_proto([data], dtype=tf.string)
    del request.inputs["images"]
    request.inputs["image"].CopyFrom(tensor)
    with grpc.insecure_channel(server.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as error:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("Signature input alias: images(feed name: serving_default_images:0) "
                                            "not found in request and no default value provided.")


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_client_sending_a_wrong_input_name_is_a_usage_error(transport, server, image_dir, monkeypatch):
    monkeypatch.setattr(serving_api, "INPUT_KEY", "image")  # what a client built for another model would send
    target = {"rest_url": server.rest_url} if transport == "rest" else {"grpc_target": server.grpc_target}
    code, out, err = _run_client(predict.PredictSettings(paths=(str(image_dir),), **target))
    assert code == predict.EXIT_CONFIG, err
    assert ("does not have named input: image" if transport == "rest" else
            "not found in request and no default value provided") in err
    assert len(err.splitlines()) == 1  # one usage error, not one rejected file each


def test_both_inputs_and_instances_is_refused(server, exported_model):
    status, answer = _http("POST", f"{server.rest_url}/v1/models/{exported_model.model_name}:predict",
                           b'{"inputs": [], "instances": []}')
    assert status == 400
    assert "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist" in answer["error"]
    with pytest.raises(predict.PredictError) as error:
        predict._raise_bad_request(answer["error"], "here")
    assert error.value.exit_code == predict.EXIT_CONFIG


@pytest.fixture(scope="module")
def two_versions(exported_model, tmp_path_factory) -> Path:
    """A model base folder holding versions 1 and 2 (copies of the exported model)."""
    import shutil

    base = tmp_path_factory.mktemp("two_versions") / exported_model.model_name
    for version in (1, 2):
        shutil.copytree(exported_model.version_dir, base / str(version))
    return base


def test_default_policy_serves_only_the_latest_version(two_versions, exported_model, image_dir):
    name = exported_model.model_name
    with EmulatedServer({name: two_versions}) as latest:
        assert _http("GET", f"{latest.rest_url}/v1/models/{name}") == (200, {"model_version_status": [
            {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
        assert _http("GET", f"{latest.rest_url}/v1/models/{name}/versions/1") == (
            404, {"error": f"Could not find version 1 of model {name}"})
        for target in ({"rest_url": latest.rest_url}, {"grpc_target": latest.grpc_target}):
            code, out, err = _run_client(predict.PredictSettings(paths=(str(image_dir),), version=1, **target))
            assert code == predict.EXIT_CONFIG and f"Servable not found for request: Specific({name}, 1)" in err
            code, out, err = _run_client(predict.PredictSettings(paths=(str(image_dir),), **target))
            assert code == predict.EXIT_OK, err
        status, metadata = _http("GET", f"{latest.rest_url}/v1/models/{name}/metadata")
    # GetModelMetadataResponse as TF Serving writes it (http_rest_api_util.cc ToJsonString).
    assert status == 200 and set(metadata) == {"model_spec", "metadata"}
    assert metadata["model_spec"] == {"name": name, "signature_name": "", "version": "2"}
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    default = signatures["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["images"]["dtype"] == "DT_STRING"
    assert default["inputs"]["images"]["tensor_shape"]["dim"][0]["size"] == "-1"
    assert set(default["outputs"]) == set(serving_api.OUTPUT_KEYS)


def test_version_labels_on_loaded_and_unloaded_versions(two_versions, exported_model, image_dir):
    name = exported_model.model_name
    # A label may only name a version the server has loaded: the config is refused (server_core.cc).
    with pytest.raises(ServingError) as refused:
        EmulatedServer({name: two_versions}, labels={name: {"stable": 1, "canary": 2}})
    assert refused.value.code == "FAILED_PRECONDITION"
    assert str(refused.value) == (f"Request to assign label to version 1 of model {name}, which is not currently "
                                  f"available for inference")
    # --allow_version_labels_for_unavailable_models: the label resolves, but its version is not served.
    with EmulatedServer({name: two_versions}, labels={name: {"stable": 1, "canary": 2}},
                        allow_version_labels_for_unavailable_models=True) as lenient:
        for target in ({"rest_url": lenient.rest_url}, {"grpc_target": lenient.grpc_target}):
            code, out, err = _run_client(predict.PredictSettings(paths=(str(image_dir),), label="canary", **target))
            assert code == predict.EXIT_OK, err
            code, out, err = _run_client(predict.PredictSettings(paths=(str(image_dir),), label="stable", **target))
            assert code == predict.EXIT_CONFIG and f"Servable not found for request: Specific({name}, 1)" in err


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_client_clamps_its_batch_to_the_servers_max_batch_size(transport, exported_model, images, tmp_path):
    limit = tests_emulation.batching_max_batch_size(BATCHING_PARAMETERS)
    assert limit == 32  # deploy/serving/batching_parameters.txt
    for i in range(limit + 3):
        name, data = images[i % len(images)]
        (tmp_path / f"{i:03d}-{name}").write_bytes(data)
    with EmulatedServer({exported_model.model_name: exported_model.base_dir}, max_batch_size=limit) as batching:
        target = {"rest_url": batching.rest_url} if transport == "rest" else {"grpc_target": batching.grpc_target}
        code, out, err = _run_client(predict.PredictSettings(paths=(str(tmp_path),), batch_size=40, **target))
        assert code == predict.EXIT_OK, err
        assert len(out.splitlines()) == limit + 3
        assert batching.calls == 3  # 35 refused ("Task size 35 is larger than ..."), then 32 and 3
        assert err.splitlines() == [f"tokenlearner: warning: the server takes at most {limit} images per request "
                                    f"(TF Serving batching max_batch_size); sending batches of {limit} instead of "
                                    f"--batch-size 40"]
        request = serving_api.predict_request([images[0][1]] * (limit + 1), exported_model.model_name)
        with grpc.insecure_channel(batching.grpc_target) as channel:
            with pytest.raises(grpc.RpcError) as error:
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details() == f"Task size {limit + 1} is larger than maximum input batch size {limit}"


# ------------------------------------------------------------------------------------------- bounded decoding

@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """Each format's header bomb declaring 12000x12000 (the PNG one complete: 420 KB -> 432 MB; ~3 s to build)."""
    return image_bombs.bombs(12000)


@pytest.mark.parametrize("kind", ["bmp", "gif_frame", "gif_screen", "jpeg", "png"])
def test_header_bombs_are_refused_before_decoding(kind, bombs, signature):
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        signature(images=tf.constant([png_bytes(_RGB), bombs[kind]]))
    assert ("image 1 of the request: its header declares 12000x12000 = 144000000 pixels, more than "
            "max_decode_pixels = 16777216") in error.value.message
    # A size under the limit still decodes (and is then rejected only if its pixel data is missing).
    assert signature(images=tf.constant([png_bytes(random_images(1, size=40)[0])]))["probabilities"].shape == (1, 10)


_PEAK_RSS = """
import resource, sys
import tensorflow as tf

def peak_mb():  # VmHWM: this process's peak resident set size
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024

serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
serve(images=tf.constant([open(sys.argv[2], "rb").read()]))  # a valid image: graphs built, memory warm
for bomb in sys.argv[3:]:
    before = peak_mb()
    try:
        serve(images=tf.constant([open(bomb, "rb").read()]))
        print("served", bomb)
    except tf.errors.InvalidArgumentError as e:
        print("INVALID_ARGUMENT" if "max_decode_pixels" in e.message else "other error", bomb)
    print("growth_mb", peak_mb() - before, flush=True)
"""


def test_png_and_jpeg_bombs_leave_peak_memory_almost_unchanged(exported_model, bombs, tmp_path):
    files = {"valid.png": png_bytes(_RGB), "bomb.png": bombs["png"], "bomb.jpg": bombs["jpeg"]}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    run = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(exported_model.version_dir),
                          *(str(tmp_path / n) for n in files)], capture_output=True, text=True, timeout=300)
    lines = run.stdout.splitlines()
    assert run.returncode == 0 and len(lines) == 4, run.stderr[-2000:]
    for verdict, growth in zip(lines[::2], lines[1::2]):
        assert verdict.startswith("INVALID_ARGUMENT"), verdict
        assert float(growth.split()[1]) < 300, (verdict, growth)


def test_max_decode_pixels_is_validated():
    from trainer.config import TrainerConfig

    assert TrainerConfig().max_decode_pixels == 4096 * 4096
    with pytest.raises(ValueError, match="max_decode_pixels: expected a positive integer, got 0"):
        TrainerConfig(max_decode_pixels=0)


# ------------------------------------------------------------------------------------------------- live server

LIVE_NAME = os.environ.get("TF_SERVING_MODEL_NAME", "tokenlearner")


def _live(variable: str) -> str:
    address = os.environ.get(variable)
    if not address:
        pytest.skip(f"{variable} is not set: no live TF Serving to test against (see docs/serving.md)")
    return address


@pytest.mark.parametrize("variable", ["TF_SERVING_REST", "TF_SERVING_GRPC"])
def test_live_server_classifies_real_images_and_reports_bad_files(variable, images, tmp_path):
    address = _live(variable)
    for name, data in images:
        (tmp_path / name).write_bytes(data)
    _bad_files(tmp_path)
    target = {"rest_url": address} if variable == "TF_SERVING_REST" else {"grpc_target": address}
    code, out, err = _run_client(predict.PredictSettings(paths=(str(tmp_path),), model_name=LIVE_NAME,
                                                         as_json=True, top_k=10, **target))
    assert code == predict.EXIT_SOME_FAILED, err
    results = {Path(r["file"]).name: r for r in json.loads(out)["results"]}
    for name, _ in images:
        np.testing.assert_allclose(sum(t["probability"] for t in results[name]["top_k"]), 1.0, rtol=1e-4)
    assert all("error" in results[name] for name in ("bad.png", "empty.png", "truncated.png"))
    model_dir = os.environ.get("TF_SERVING_MODEL_DIR")
    if model_dir:  # the server's answers are the local SavedModel's
        local = predict.LocalBackend(model_dir).predict([d for _, d in images])
        for (name, _), want in zip(images, local):
            got = {t["class_name"]: t["probability"] for t in results[name]["top_k"]}
            np.testing.assert_allclose([got[c] for c in predict.CIFAR10_CLASSES], want["probabilities"],
                                       atol=1e-5)


def test_live_rest_model_status_is_available():
    address = _live("TF_SERVING_REST").rstrip("/")
    with urllib.request.urlopen(address + serving_api.rest_model_path(LIVE_NAME), timeout=10) as response:
        status = json.loads(response.read())
    assert any(v["state"] == "AVAILABLE" for v in status["model_version_status"]), status


def test_pipeline_gives_the_trainer_the_configured_model_name(tmp_path):
    """run_fn writes the warmup requests for the model name it finds in custom_config (trainer/run.py)."""
    from pipeline.config import from_preset
    from pipeline.pipeline import create_pipeline
    from trainer.contract import MODEL_NAME_KEY

    config = from_preset("tiny", data_root=str(tmp_path), output_dir=str(tmp_path), model_name="cifar-vit")
    trainers = [c for c in create_pipeline(config).components if "trainer" in c.id.lower()]
    assert len(trainers) == 1, [c.id for c in create_pipeline(config).components]
    custom = trainers[0].exec_properties["custom_config"]
    custom = json.loads(custom) if isinstance(custom, str) else custom
    assert custom[MODEL_NAME_KEY] == "cifar-vit"
