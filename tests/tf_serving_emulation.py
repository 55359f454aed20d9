"""What TF Serving does with a predict request, re-done in Python on a loaded SavedModel.

No TF Serving binary (and no Docker) exists on the development machines, so the contract tests feed the requests
the client builds through this instead. It follows TF Serving's documented mapping:

- REST (``POST /v1/models/NAME[/versions/N|/labels/L]:predict``): ``instances`` (row format) is a list with one
  element per row; an element is an object keyed by input name, or a bare value when the signature has one input;
  ``{"b64": "..."}`` is base64-decoded into a DT_STRING element; rows are stacked along axis 0. ``inputs``
  (columnar format) gives whole tensors. Row requests are answered ``{"predictions": [...]}`` with one object per
  row keyed by output name (a bare value if there is one output), columnar ones ``{"outputs": {...}}``. Errors are
  ``{"error": "..."}`` with HTTP 400 for InvalidArgument, 404 for an unknown model or version.
- gRPC (``PredictionService.Predict``): ``inputs`` TensorProtos -> tensors (``tf.make_ndarray``), keys must be
  exactly the signature's inputs; outputs -> TensorProtos. Errors are gRPC statuses.

It is an emulation: what it proves is that the bytes on the wire decode to what the signature expects. A live TF
Serving is still the final check (TF_SERVING_REST / TF_SERVING_GRPC in tests/test_serving.py).
"""
from __future__ import annotations

import base64
import dataclasses
import json
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

DEFAULT_SIGNATURE = "serving_default"


class ServingError(Exception):
    """A request TF Serving would refuse: `code` is the canonical status name (INVALID_ARGUMENT, NOT_FOUND...)."""

    HTTP = {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "UNAVAILABLE": 503, "INTERNAL": 500}

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code

    @property
    def http_status(self) -> int:
        return self.HTTP.get(self.code, 500)


def _input_specs(signature) -> dict[str, tf.TensorSpec]:
    return dict(signature.structured_input_signature[1])


def _run(signature, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    try:
        outputs = signature(**inputs)
    except tf.errors.InvalidArgumentError as e:
        raise ServingError("INVALID_ARGUMENT", e.message) from None
    return {name: value.numpy() for name, value in outputs.items()}


# ---------------------------------------------------------------------------------------------------- REST

def _decode_json_value(value: Any, dtype: tf.DType) -> Any:
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise ServingError("INVALID_ARGUMENT", f"JSON object {list(value)} is not {{'b64': ...}}")
        if dtype != tf.string:
            raise ServingError("INVALID_ARGUMENT", f"'b64' given for an input of type {dtype.name}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError as e:
            raise ServingError("INVALID_ARGUMENT", f"Unable to base64 decode: {e}") from None
    if isinstance(value, list):
        return [_decode_json_value(v, dtype) for v in value]
    if dtype == tf.string:
        if not isinstance(value, str):
            raise ServingError("INVALID_ARGUMENT", f"expected a string for a DT_STRING input, got {value!r}")
        return value.encode()
    return value


def _tensor(values: Any, spec: tf.TensorSpec, name: str) -> tf.Tensor:
    array = np.array(values, dtype=object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype)
    if not spec.shape.is_compatible_with(array.shape):
        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: shape {array.shape} does not match the "
                                               f"signature's {spec.shape}")
    return tf.constant(array, dtype=spec.dtype)


def rest_inputs(body: dict[str, Any], signature) -> tuple[dict[str, tf.Tensor], bool]:
    """A REST predict body -> (the signature's named input tensors, whether it was the row format)."""
    specs = _input_specs(signature)
    if ("instances" in body) == ("inputs" in body):
        raise ServingError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key (exactly one is required)")
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise ServingError("INVALID_ARGUMENT", "'instances' must be a non-empty JSON list")
        named = all(isinstance(r, dict) and set(r) != {"b64"} for r in rows)
        if named:
            for row in rows:
                if set(row) != set(specs):
                    raise ServingError("INVALID_ARGUMENT", f"instance keys {sorted(row)} do not match the "
                                                           f"signature inputs {sorted(specs)}")
            columns = {name: [row[name] for row in rows] for name in specs}
        elif len(specs) == 1:
            columns = {next(iter(specs)): rows}
        else:
            raise ServingError("INVALID_ARGUMENT", "unnamed instances need a signature with one input")
        return ({name: _tensor(_decode_json_value(columns[name], specs[name].dtype), specs[name], name)
                 for name in specs}, True)
    given = body["inputs"]
    if not isinstance(given, dict):
        if len(specs) != 1:
            raise ServingError("INVALID_ARGUMENT", "unnamed 'inputs' need a signature with one input")
        given = {next(iter(specs)): given}
    if set(given) != set(specs):
        raise ServingError("INVALID_ARGUMENT", f"inputs {sorted(given)} do not match the signature inputs "
                                               f"{sorted(specs)}")
    return ({name: _tensor(_decode_json_value(given[name], specs[name].dtype), specs[name], name)
             for name in specs}, False)


def _json_value(name: str, value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_json_value(name, v) for v in value]
    if isinstance(value, bytes):
        # TF Serving base64-encodes DT_STRING outputs whose name ends in "_bytes"; others are written as strings.
        return {"b64": base64.b64encode(value).decode()} if name.endswith("_bytes") else value.decode()
    return value.item() if isinstance(value, np.generic) else value


def rest_predict(signature, body: dict[str, Any]) -> dict[str, Any]:
    """The JSON TF Serving answers to a REST predict body (raises ServingError for its error answers)."""
    if body.get("signature_name", DEFAULT_SIGNATURE) != DEFAULT_SIGNATURE:
        raise ServingError("INVALID_ARGUMENT", f"Serving signature name: \"{body['signature_name']}\" not found")
    inputs, rows = rest_inputs(body, signature)
    outputs = _run(signature, inputs)
    if not rows:
        return {"outputs": {name: _json_value(name, value) for name, value in outputs.items()}}
    n = len(next(iter(inputs.values())))
    if len(outputs) == 1:
        name, value = next(iter(outputs.items()))
        return {"predictions": [_json_value(name, value[i]) for i in range(n)]}
    return {"predictions": [{name: _json_value(name, value[i]) for name, value in outputs.items()}
                            for i in range(n)]}


# ---------------------------------------------------------------------------------------------------- gRPC

def grpc_inputs(request: predict_pb2.PredictRequest, signature) -> dict[str, tf.Tensor]:
    specs = _input_specs(signature)
    if set(request.inputs) != set(specs):
        raise ServingError("INVALID_ARGUMENT", f"input size does not match signature: {len(request.inputs)}!="
                                               f"{len(specs)} len({sorted(request.inputs)}) != "
                                               f"len({sorted(specs)})")
    tensors = {}
    for name, spec in specs.items():
        proto = request.inputs[name]
        if proto.dtype != spec.dtype.as_datatype_enum:
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: expects type {spec.dtype.name}, got "
                                                   f"{tf.dtypes.as_dtype(proto.dtype).name}")
        tensors[name] = _tensor(tf.make_ndarray(proto), spec, name)
    return tensors


def grpc_predict(signature, request: predict_pb2.PredictRequest, version: int) -> predict_pb2.PredictResponse:
    if (request.model_spec.signature_name or DEFAULT_SIGNATURE) != DEFAULT_SIGNATURE:
        raise ServingError("INVALID_ARGUMENT",
                           f"Serving signature name: \"{request.model_spec.signature_name}\" not found")
    outputs = _run(signature, grpc_inputs(request, signature))
    response = predict_pb2.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = version
    response.model_spec.signature_name = DEFAULT_SIGNATURE
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return response


# ---------------------------------------------------------------------------------------------------- servers

@dataclasses.dataclass
class _Model:
    signatures: dict[int, Any]
    labels: dict[str, int]


class EmulatedServer:
    """REST and gRPC endpoints on 127.0.0.1 answering like TF Serving for the models of a base folder.

    ``fail_first`` makes the first N predict calls answer UNAVAILABLE (HTTP 503), as a server does while it
    loads or sheds load, to test retries; ``calls`` counts predict calls. ``tls`` (tests/tls_ca.py TlsFiles)
    serves gRPC as TF Serving's ``--ssl_config_file`` does (``client_verify``: mutual TLS) and REST over https,
    as a TLS proxy in front of TF Serving would (TF Serving's own REST port is plain HTTP)."""

    def __init__(self, models: dict[str, Path], labels: Optional[dict[str, dict[str, int]]] = None,
                 fail_first: int = 0, tls=None, client_verify: bool = False):
        self._models = {}
        self._keep = []
        for name, base in models.items():
            signatures = {}
            for version_dir in sorted(Path(base).iterdir()):
                if version_dir.name.isdigit():
                    loaded = tf.saved_model.load(str(version_dir))
                    self._keep.append(loaded)
                    signatures[int(version_dir.name)] = loaded.signatures[DEFAULT_SIGNATURE]
            self._models[name] = _Model(signatures, dict((labels or {}).get(name, {})))
        self.fail_first = fail_first
        self.tls, self.client_verify = tls, client_verify
        self.calls = 0
        self._lock = threading.Lock()

    # Which signature a request means, as TF Serving resolves a ModelSpec.
    def resolve(self, name: str, version: Optional[int] = None, label: Optional[str] = None) -> tuple[Any, int]:
        model = self._models.get(name)
        if model is None or not model.signatures:
            raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
        if label:
            if label not in model.labels:
                raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
            version = model.labels[label]
        if version is None:
            version = max(model.signatures)
        if version not in model.signatures:
            raise ServingError("NOT_FOUND", f"Servable not found for request: Specific({name}, {version})")
        return model.signatures[version], version

    def _count_call(self) -> None:
        with self._lock:
            self.calls += 1
            if self.calls <= self.fail_first:
                raise ServingError("UNAVAILABLE", "model is loading (emulated)")

    def __enter__(self) -> "EmulatedServer":
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _rest_handler(self))
        scheme = "http"
        if self.tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.server_cert, self.tls.server_key)
            if self.client_verify:
                context.load_verify_locations(self.tls.ca_cert)
                context.verify_mode = ssl.CERT_REQUIRED
            self._http.socket = context.wrap_socket(self._http.socket, server_side=True)
            scheme = "https"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.rest_url = f"{scheme}://127.0.0.1:{self._http.server_address[1]}"
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_GrpcServicer(self), self._grpc)
        if self.tls:  # what server.cc builds from SSLConfig{server_key, server_cert, custom_ca, client_verify}
            credentials = grpc.ssl_server_credentials(
                [(self.tls.server_key.read_bytes(), self.tls.server_cert.read_bytes())],
                root_certificates=self.tls.ca_cert.read_bytes() if self.client_verify else None,
                require_client_auth=self.client_verify)
            port = self._grpc.add_secure_port("127.0.0.1:0", credentials)
        else:
            port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self.grpc_target = f"127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._grpc.stop(grace=None)


_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<verb>:predict|/metadata)?$")


def _rest_handler(server: EmulatedServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet test output
            pass

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, post: bool) -> None:
            match = _PATH.match(self.path)
            if not match or (match["verb"] == ":predict") != post:
                return self._answer(404, {"error": f"Malformed request: {self.command} {self.path}"})
            try:
                version = int(match["version"]) if match["version"] else None
                signature, version = server.resolve(match["name"], version, match["label"])
                if not post:
                    return self._answer(200, {"model_version_status": [
                        {"version": str(version), "state": "AVAILABLE", "status": {"error_code": "OK"}}]})
                server._count_call()
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                except json.JSONDecodeError as e:
                    raise ServingError("INVALID_ARGUMENT", f"JSON Parse error: {e}") from None
                self._answer(200, rest_predict(signature, body))
            except ServingError as e:
                self._answer(e.http_status, {"error": str(e)})

        def do_GET(self) -> None:
            self._route(post=False)

        def do_POST(self) -> None:
            self._route(post=True)

    return Handler


class _GrpcServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, server: EmulatedServer):
        self._server = server

    def Predict(self, request, context):
        spec = request.model_spec
        try:
            signature, version = self._server.resolve(
                spec.name, spec.version.value if spec.HasField("version") else None, spec.version_label or None)
            self._server._count_call()
            return grpc_predict(signature, request, version)
        except ServingError as e:
            context.abort(getattr(grpc.StatusCode, e.code), str(e))


def main() -> None:
    """Serve a model base folder: `python -m tests.tf_serving_emulation BASE_DIR [MODEL_NAME]` (prints the
    addresses; for trying the live-server tests and the client by hand)."""
    import sys
    import time

    base = Path(sys.argv[1])
    name = sys.argv[2] if len(sys.argv) > 2 else base.name
    with EmulatedServer({name: base}) as server:
        print(f"TF_SERVING_REST={server.rest_url} TF_SERVING_GRPC={server.grpc_target}", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
