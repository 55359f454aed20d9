"""What TF Serving 2.16 does with a request, re-done in Python on the loaded SavedModels of a model base folder.

No TF Serving binary (and no Docker) exists on the development machines, so the contract tests feed the requests
the client builds through this instead. Each behaviour follows a TF Serving (or TensorFlow) source file, cited
where it is emulated (tensorflow/serving at tag 2.16.1); error texts and status codes are copied from there:

- routing and paths: ``model_servers/http_server.cc`` (only ``/v1/.*`` is handled; status -> HTTP code),
  ``model_servers/http_rest_api_util.cc`` (path regexes, "Malformed request", model/label URL-decoding),
  ``model_servers/http_rest_api_handler.cc`` (predict / status / metadata dispatch, signature lookup);
- REST bodies: ``util/json_tensor.cc`` (row and columnar formats, b64, every body error, {"error": ...} answers);
- predict: ``servables/tensorflow/predict_util.cc`` and TensorFlow's ``cc/saved_model/util.cc``
  (``GetInputValues``: input names);
- versions and labels: ``sources/storage_path/file_system_storage_path_source.cc`` (which version folders are
  served: default ``latest {num_versions: 1}``), ``model_servers/server_core.cc`` (labels only on available
  versions, unknown labels), ``core/basic_manager.cc`` + ``core/manager.h`` ("Servable not found for request");
- status and metadata: ``model_servers/get_model_status_impl.cc``, ``servables/tensorflow/
  get_model_metadata_impl.cc`` and ``http_rest_api_util.cc`` (``ToJsonString``: GetModelMetadataResponse JSON);
- batching (``--enable_batching``): ``servables/tensorflow/bundle_factory_util.h`` (``max_batch_size`` is the
  queue's ``input_batch_size_limit``) and TensorFlow's ``core/kernels/batching_util/shared_batch_scheduler.h``
  ("Task size N is larger than maximum input batch size M", INVALID_ARGUMENT).

It is an emulation: it proves the bytes on the wire decode to what the signature expects and that the client reacts
to TF Serving's statuses and texts. What only a live server shows is listed in docs/serving.md; the live tests in
tests/test_serving.py (TF_SERVING_REST / TF_SERVING_GRPC) are the final check.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, model_pb2, predict_pb2,
                                     prediction_service_pb2_grpc)

DEFAULT_SIGNATURE = "serving_default"  # kDefaultServingSignatureDefKey


class ServingError(Exception):
    """A request TF Serving refuses: ``code`` is the canonical status name (INVALID_ARGUMENT, NOT_FOUND...)."""

    # model_servers/http_server.cc, ToHTTPStatusCode.
    HTTP = {"CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404,
            "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
            "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500, "UNAVAILABLE": 503,
            "DATA_LOSS": 500, "UNAUTHENTICATED": 401}

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code

    @property
    def http_status(self) -> int:
        return self.HTTP.get(self.code, 500)


def _invalid(*parts: Any) -> ServingError:
    return ServingError("INVALID_ARGUMENT", "".join(str(p) for p in parts))


def batching_max_batch_size(path: Path) -> Optional[int]:
    """``max_batch_size { value: N }`` of a text BatchingParameters file (session_bundle_config.proto), or None."""
    found = re.search(r"^\s*max_batch_size\s*\{\s*value:\s*(\d+)\s*\}", Path(path).read_text(), re.MULTILINE)
    return int(found.group(1)) if found else None


# ---------------------------------------------------------------------------------------------------- servables

@dataclasses.dataclass
class _Version:
    signatures: dict[str, Any]  # name -> concrete function
    signature_defs: Any  # the MetaGraphDef's signature_def map (protos)


def _load_version(folder: Path, keep: list) -> _Version:
    loaded = tf.saved_model.load(str(folder))
    keep.append(loaded)
    saved_model = saved_model_pb2.SavedModel.FromString((folder / "saved_model.pb").read_bytes())
    return _Version(dict(loaded.signatures), saved_model.meta_graphs[0].signature_def)


def _check_batch(max_batch_size: Optional[int], inputs: dict[str, np.ndarray]) -> None:
    # bundle_factory_util.h GetQueueOptions: input_batch_size_limit = max_batch_size (no large-batch splitting);
    # shared_batch_scheduler.h ValidateBatchTaskQueueCapacity. The task size is the inputs' 0th dimension.
    first = next(iter(inputs.values()), np.zeros([0]))
    size = first.shape[0] if first.ndim else 1
    if max_batch_size is not None and size > max_batch_size:
        raise _invalid(f"Task size {size} is larger than maximum input batch size {max_batch_size}")


def _run(signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    specs = dict(signature.structured_input_signature[1])
    tensors = {}
    for name, value in inputs.items():
        # Emulator's own text: a real session names the feed ("Expects arg[0] to be ...").
        if not specs[name].shape.is_compatible_with(value.shape):
            raise _invalid(f"input {name!r}: shape {value.shape} does not match the signature's {specs[name].shape}")
        tensors[name] = tf.constant(value, dtype=specs[name].dtype)
    try:
        outputs = signature(**tensors)
    except tf.errors.InvalidArgumentError as e:
        raise ServingError("INVALID_ARGUMENT", e.message) from None
    return {name: value.numpy() for name, value in outputs.items()}


# ---------------------------------------------------------------------------------------------------- REST

def _debug(value: Any) -> str:
    """json_tensor.cc JsonValueToDebugString: compact JSON, cut at kMaxJsonDebugStringBytes (100)."""
    return json.dumps(value, separators=(",", ":"))[:100]


def _json_type(value: Any) -> str:
    return {dict: "Object", list: "Array", str: "String", bool: "Bool", type(None): "Null"}.get(type(value), "Number")


def _is_b64(value: Any) -> bool:
    # json_tensor.cc IsValBase64Object: an object with exactly one key "b64" whose value is a string.
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _leaf(value: Any, dtype: tf.DType) -> Any:
    """json_tensor.cc FillTensorProto / JsonDecodeBase64Object / AddValueToTensor for one JSON leaf."""
    if isinstance(value, dict):
        if dtype != tf.string:
            raise _invalid(f"JSON Value: {_debug(value)} Type: Object is not of expected type: {dtype.name}")
        if not _is_b64(value):
            raise _invalid(f"JSON Value: {_debug(value)} not formatted correctly for base64 data")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise _invalid("Unable to base64 decode") from None
    if dtype == tf.string:
        if not isinstance(value, str):
            raise _invalid(f"JSON Value: {_debug(value)} Type: {_json_type(value)} is not of expected type: string")
        return value.encode()
    if isinstance(value, (str, bool)) or value is None:
        raise _invalid(f"JSON Value: {_debug(value)} Type: {_json_type(value)} is not of expected type: "
                       f"{dtype.name}")
    return value


def _json_tensor(value: Any, dtype: tf.DType) -> np.ndarray:
    def convert(v):
        return [convert(x) for x in v] if isinstance(v, list) else _leaf(v, dtype)

    converted = convert(value)
    try:
        return np.array(converted, dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
    except ValueError:  # ragged lists
        raise _invalid(f"JSON Value: {_debug(value)} is not a dense tensor") from None


def _tensors_from_instances(rows: list, specs: dict[str, tf.TensorSpec]) -> dict[str, np.ndarray]:
    """json_tensor.cc FillTensorMapFromInstancesList."""
    names = sorted(specs)
    if not (isinstance(rows[0], dict)) and len(specs) > 1:
        raise _invalid("instances is a plain list, but expecting list of objects as multiple input tensors "
                       "required as per tensorinfo_map")
    named = isinstance(rows[0], dict) and not _is_b64(rows[0])
    columns: dict[str, list] = {name: [] for name in specs}
    for i, row in enumerate(rows):
        if named:
            if not isinstance(row, dict) or _is_b64(row):
                raise _invalid(f"Expecting object but got list at item {i} of input list")
            for key, value in row.items():
                try:
                    if key not in specs:
                        raise _invalid(f"JSON object: does not have named input: {key}")
                    columns[key].append(_json_tensor(value, specs[key].dtype))
                except ServingError as e:
                    raise _invalid(f"Failed to process element: {i} key: {key} of 'instances' list. Error: "
                                   f"{e.code}: {e}") from None
            if set(row) != set(specs):
                raise _invalid(f"Failed to process element: {i} of 'instances' list. JSON object: {_debug(row)} "
                               f"keys must be equal to: {','.join(names)}")
        else:
            if isinstance(row, dict) and not _is_b64(row):
                raise _invalid(f"Expecting value/list but got object at item {i} of input list")
            try:
                columns[names[0]].append(_json_tensor(row, specs[names[0]].dtype))
            except ServingError as e:
                raise _invalid(f"Failed to process element: {i} of 'instances' list. Error: {e.code}: {e}") from None
    stacked = {}
    for name, values in columns.items():
        if len({v.shape for v in values}) > 1:
            raise _invalid(f"Expecting shape {list(values[0].shape)} but got: "
                           f"{next(list(v.shape) for v in values if v.shape != values[0].shape)}")
        stacked[name] = np.stack(values)
    return stacked


def _tensors_from_inputs(given: Any, specs: dict[str, tf.TensorSpec]) -> dict[str, np.ndarray]:
    """json_tensor.cc FillTensorMapFromInputsMap."""
    if not isinstance(given, dict) or _is_b64(given):
        if len(specs) > 1:
            raise _invalid("inputs is a plain value/list, but expecting an object as multiple input tensors "
                           "required as per tensorinfo_map")
        name = next(iter(specs))
        return {name: _json_tensor(given, specs[name].dtype)}
    tensors = {}
    for name in sorted(specs):
        if name not in given:
            raise _invalid(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = _json_tensor(given[name], specs[name].dtype)
    return tensors


def _json_value(name: str, value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_json_value(name, v) for v in value]
    if isinstance(value, bytes):
        # json_tensor.cc: DT_STRING outputs whose alias ends in "_bytes" are written as {"b64": ...}.
        return {"b64": base64.b64encode(value).decode()} if name.endswith("_bytes") else value.decode()
    return value.item() if isinstance(value, np.generic) else value


def _parse_body(raw: bytes) -> dict[str, Any]:
    """json_tensor.cc ParseJson + FillSignature (Python's parse messages differ from rapidjson's)."""
    if not raw:
        raise _invalid("JSON Parse error: The document is empty")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _invalid(f"JSON Parse error: {getattr(e, 'msg', e)} at offset: {getattr(e, 'pos', 0)}") from None
    if not isinstance(body, dict):
        raise _invalid(f"JSON Value: {_debug(body)} Is not object")
    if "signature_name" in body and not isinstance(body["signature_name"], str):
        raise _invalid(f"JSON Value: {_debug(body)} not formatted correctly. 'signature_name' key must be a string "
                       f"value.")
    return body


def rest_predict(signature, body: dict[str, Any], max_batch_size: Optional[int] = None) -> dict[str, Any]:
    """The JSON TF Serving answers to a REST predict body whose signature is resolved (raises ServingError)."""
    specs = dict(signature.structured_input_signature[1])
    # json_tensor.cc FillPredictRequestFromJson, in its order.
    if "instances" in body and "inputs" in body:
        raise _invalid(f"JSON Value: {_debug(body)} Not formatted correctly expecting only one of 'inputs' or "
                       f"'instances' keys to exist ")
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list):
            raise _invalid(f"JSON Value: {_debug(body)} Expecting 'instances' to be an list/array")
        if not rows:
            raise _invalid(f"JSON Value: {_debug(body)} No values in 'instances' array")
        inputs, row_format = _tensors_from_instances(rows, specs), True
    elif "inputs" in body:
        inputs, row_format = _tensors_from_inputs(body["inputs"], specs), False
    else:
        raise _invalid("Missing 'inputs' or 'instances' key")
    _check_batch(max_batch_size, inputs)
    outputs = _run(signature, inputs)
    # json_tensor.cc MakeJsonFromTensors.
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": _json_value(*next(iter(outputs.items())))}
        return {"outputs": {name: _json_value(name, value) for name, value in outputs.items()}}
    n = len(next(iter(inputs.values())))
    if len(outputs) == 1:
        name, value = next(iter(outputs.items()))
        return {"predictions": [_json_value(name, value[i]) for i in range(n)]}
    return {"predictions": [{name: _json_value(name, value[i]) for name, value in outputs.items()}
                            for i in range(n)]}


# ---------------------------------------------------------------------------------------------------- gRPC

def grpc_predict(signature, request: predict_pb2.PredictRequest, version: int,
                 feed_names: Optional[dict[str, str]] = None,
                 max_batch_size: Optional[int] = None) -> predict_pb2.PredictResponse:
    """predict_util.cc RunPredict after the signature is found: input checks, batching, outputs. ``feed_names``:
    the SignatureDef's tensor name of each input (default: TF's ``serving_default_<alias>:0``)."""
    specs = dict(signature.structured_input_signature[1])
    feed_names = feed_names or {alias: f"{DEFAULT_SIGNATURE}_{alias}:0" for alias in specs}
    sent, wanted = set(request.inputs), set(specs)
    if len(sent) > len(wanted) or len(sent) < len(wanted):  # VerifyRequestInputsSize (no signature defaults)
        raise _invalid(f"input size does not match signature: {len(sent)}!={len(wanted)} len({{"
                       f"{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). Sent extra: {{"
                       f"{','.join(sorted(sent - wanted))}}}. Missing but required: {{"
                       f"{','.join(sorted(wanted - sent))}}}.")
    inputs = {}
    for alias in sorted(wanted):  # tensorflow/cc/saved_model/util.cc GetInputValues
        if alias not in sent:
            raise _invalid(f"Signature input alias: {alias}(feed name: {feed_names[alias]}) not found in request "
                           f"and no default value provided. Inputs expected to be in the request "
                           f"{{{','.join(sorted(sent))}}}, or default input alias set: ")
        try:
            inputs[alias] = tf.make_ndarray(request.inputs[alias])
        except Exception:  # Tensor::FromProto failed
            raise _invalid(f"tensor parsing error: {alias}") from None
        if request.inputs[alias].dtype != specs[alias].dtype.as_datatype_enum:
            # Emulator's own text: the session rejects the feed ("Expects arg[0] to be string but float ...").
            raise _invalid(f"Expects arg {alias!r} to be {specs[alias].dtype.name} but "
                           f"{tf.dtypes.as_dtype(request.inputs[alias].dtype).name} is provided")
    _check_batch(max_batch_size, inputs)
    outputs = _run(signature, inputs)
    response = predict_pb2.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = version
    response.model_spec.signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return response


# ---------------------------------------------------------------------------------------------------- servers

@dataclasses.dataclass
class _Model:
    versions: dict[int, _Version]  # the served (aspired and loaded) versions
    labels: dict[str, int]


class EmulatedServer:
    """REST and gRPC endpoints on 127.0.0.1 answering like TF Serving for the models of base folders.

    ``models``: name -> base folder with numbered version folders. ``versions``: name -> the ``specific``
    version policy; models not named there get TF Serving's default ``latest {num_versions: 1}``. ``labels``:
    name -> {label: version}; as TF Serving, a label may only name a served version unless
    ``allow_version_labels_for_unavailable_models`` (else the config is refused: FAILED_PRECONDITION).
    ``max_batch_size``: the server runs with ``--enable_batching`` and this limit (see
    ``batching_max_batch_size``). ``fail_first`` makes the first N predict calls answer UNAVAILABLE (HTTP 503),
    as a server does while it loads or sheds load; ``calls`` counts predict calls. ``tls`` (tests/tls_ca.py
    TlsFiles) serves gRPC as TF Serving's ``--ssl_config_file`` does (``client_verify``: mutual TLS) and REST
    over https, as a TLS proxy in front of TF Serving would (TF Serving's own REST port is plain HTTP)."""

    def __init__(self, models: dict[str, Path], labels: Optional[dict[str, dict[str, int]]] = None,
                 fail_first: int = 0, versions: Optional[dict[str, list[int]]] = None,
                 max_batch_size: Optional[int] = None, allow_version_labels_for_unavailable_models: bool = False,
                 tls=None, client_verify: bool = False):
        self._models: dict[str, _Model] = {}
        self._keep: list = []
        for name, base in models.items():
            # file_system_storage_path_source.cc: children whose names parse as int64 are versions;
            # AspireLatestVersions / AspireSpecificVersions pick the served ones.
            found = sorted(int(c.name) for c in Path(base).iterdir() if c.name.isdigit())
            chosen = [v for v in found if v in set(versions[name])] if versions and name in versions else found[-1:]
            served = {v: _load_version(Path(base) / str(v), self._keep) for v in chosen}
            model_labels = dict((labels or {}).get(name, {}))
            for label, version in model_labels.items():
                # server_core.cc UpdateModelVersionLabelMap.
                if version not in served and not allow_version_labels_for_unavailable_models:
                    raise ServingError("FAILED_PRECONDITION", f"Request to assign label to version {version} of "
                                       f"model {name}, which is not currently available for inference")
            self._models[name] = _Model(served, model_labels)
        self.max_batch_size = max_batch_size
        self.fail_first = fail_first
        self.tls, self.client_verify = tls, client_verify
        self.calls = 0
        self._lock = threading.Lock()

    def resolve(self, name: str, version: Optional[int] = None, label: Optional[str] = None) -> tuple[_Version, int]:
        """A ModelSpec -> the served version (server_core.cc ServableRequestFromModelSpec, basic_manager.cc)."""
        model = self._models.get(name)
        if label:
            if model is None or label not in model.labels:  # server_core.cc GetModelVersionForLabel
                raise _invalid(f"Unrecognized servable version label: {label}")
            version = model.labels[label]
        if version is None:
            if model is None or not model.versions:
                raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
            version = max(model.versions)
        if model is None or version not in model.versions:
            raise ServingError("NOT_FOUND", f"Servable not found for request: Specific({name}, {version})")
        return model.versions[version], version

    @staticmethod
    def signature(served: _Version, name: str, grpc_api: bool):
        name = name or DEFAULT_SIGNATURE
        if name not in served.signatures:
            if grpc_api:  # predict_util.cc RunPredict
                raise ServingError("FAILED_PRECONDITION", f"Serving signature key \"{name}\" not found.")
            raise _invalid(f"Serving signature name: \"{name}\" not found in signature def")  # GetInfoMap
        return served.signatures[name]

    def status(self, name: str, version: Optional[int]) -> dict[str, Any]:
        """get_model_status_impl.cc: one version, or all versions the server knows of (the label is ignored)."""
        model = self._models.get(name)
        known = sorted(model.versions) if model else []
        if version is not None:
            if version not in known:
                raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
            known = [version]
        if not known:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        return {"model_version_status": [{"version": str(v), "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}} for v in known]}

    def metadata(self, name: str, version: Optional[int], label: Optional[str]) -> dict[str, Any]:
        """get_model_metadata_impl.cc + http_rest_api_util.cc ToJsonString(GetModelMetadataResponse)."""
        served, version = self.resolve(name, version, label)
        spec = model_pb2.ModelSpec(name=name)
        spec.version.value = version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, value in served.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(value)
        printed = {"preserving_proto_field_name": True, "including_default_value_fields": True}
        return {"model_spec": json.loads(json_format.MessageToJson(spec, **printed)),
                "metadata": {"signature_def": json.loads(json_format.MessageToJson(signature_map, **printed))}}

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


# http_server.cc kHTTPRestApiHandlerPathRegex and http_rest_api_util.cc kPredictionApiGegex / kModelStatusApiRegex
# (RE2 FullMatch, case-insensitive).
_HANDLED = re.compile(r"(?i)/v1/.*")
_PREDICT_PATH = re.compile(r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                           r":(classify|regress|predict)")
_STATUS_PATH = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                          r"(?:\/(metadata))?")


def _rest_handler(server: EmulatedServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet test output
            pass

        def _answer(self, status: int, payload: Optional[dict[str, Any]]) -> None:
            data = json.dumps(payload, indent=2).encode() if payload is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _process(self, method: str, path: str, body: bytes) -> dict[str, Any]:
            """http_rest_api_handler.cc ProcessRequest."""
            match = (_PREDICT_PATH if method == "POST" else _STATUS_PATH).fullmatch(path) \
                if method in ("POST", "GET") else None
            if not match:
                raise _invalid(f"Malformed request: {method} {path}")
            name, version, label, verb = match.groups()
            name = unquote(name or "")
            version = int(version) if version else None
            label = unquote(label) if label else None
            if method == "GET":
                if not name:
                    raise _invalid("Missing model name in request.")
                return server.metadata(name, version, label) if verb else server.status(name, version)
            if verb.lower() != "predict":
                raise ServingError("UNIMPLEMENTED", f"the emulator answers :predict only, not :{verb}")
            parsed = _parse_body(body)
            served, version = server.resolve(name, version, label)  # GetInfoMap -> GetServableHandle
            signature = server.signature(served, parsed.get("signature_name", ""), grpc_api=False)
            server._count_call()
            return rest_predict(signature, parsed, server.max_batch_size)

        def _route(self) -> None:
            path = urlsplit(self.path).path
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            if not _HANDLED.fullmatch(path):
                return self._answer(404, None)  # no handler registered: net_http's plain 404
            try:
                self._answer(200, self._process(self.command, path, body))
            except ServingError as e:
                self._answer(e.http_status, {"error": str(e)})  # json_tensor.cc MakeJsonFromStatus

        do_GET = do_POST = do_PUT = do_DELETE = _route

    return Handler


class _GrpcServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, server: EmulatedServer):
        self._server = server

    def _resolve(self, spec):
        return self._server.resolve(spec.name, spec.version.value if spec.HasField("version") else None,
                                    spec.version_label or None)

    def Predict(self, request, context):
        try:
            served, version = self._resolve(request.model_spec)
            signature = EmulatedServer.signature(served, request.model_spec.signature_name, grpc_api=True)
            feed_names = {k: v.name for k, v in served.signature_defs[
                request.model_spec.signature_name or DEFAULT_SIGNATURE].inputs.items()}
            self._server._count_call()
            return grpc_predict(signature, request, version, feed_names, self._server.max_batch_size)
        except ServingError as e:
            context.abort(getattr(grpc.StatusCode, e.code), str(e))

    def GetModelMetadata(self, request, context):
        try:
            if not request.metadata_field:  # get_model_metadata_impl.cc ValidateGetModelMetadataRequest
                raise _invalid("GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != "signature_def":
                    raise _invalid(f"Metadata field {field} is not supported")
            body = self._server.metadata(request.model_spec.name, request.model_spec.version.value
                                         if request.model_spec.HasField("version") else None,
                                         request.model_spec.version_label or None)
        except ServingError as e:
            context.abort(getattr(grpc.StatusCode, e.code), str(e))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        json_format.ParseDict(body["model_spec"], response.model_spec)
        signature_map = json_format.ParseDict(body["metadata"]["signature_def"],
                                              get_model_metadata_pb2.SignatureDefMap())
        response.metadata["signature_def"].Pack(signature_map)
        return response


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
