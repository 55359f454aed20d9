"""`tokenlearner predict`: classify image files through the exported model's ``serving_default`` signature.

Three ways to reach the model, all sending the same encoded image bytes (``trainer/serving_api.py`` builds the
requests): ``--model DIR`` loads the SavedModel here, ``--rest URL`` calls TF Serving's REST API, ``--grpc
HOST:PORT`` its gRPC PredictionService. Files are sent in batches; when the model rejects a batch (InvalidArgument:
a file that is not an image), its files are sent one by one so only the bad ones fail. A TF Serving with
batching refuses a request of more images than its ``max_batch_size`` ("Task size N is larger than maximum input
batch size M"); no API tells that limit beforehand, so the client learns it from the refusal, warns once and sends
batches of M from then on. Network calls have a timeout and are retried with exponential backoff when the server is
unreachable, overloaded or still loading.

Class names: ``--model`` reads the model's ``assets.extra/class_names.txt``. A server answers with the name of each
image's top class only, so the client learns the names from the answers: CIFAR-10's while every name given matches
CIFAR-10's, else those seen so far and ``class <id>`` for a class no answer has named yet (``class_table``).

Exit codes follow the server's status (HTTP code or gRPC status); among INVALID_ARGUMENT answers, TF Serving's
texts about the request itself (``_REQUEST_LEVEL``) are usage errors and the others are about an image.

TLS: ``--rest https://...`` verifies the server against the system's CAs or ``--ca-cert FILE``; ``--grpc`` uses TLS
with ``--tls`` (system CAs) or ``--ca-cert``; ``--client-cert``/``--client-key`` add a client certificate (mutual
TLS) to either. A certificate the client does not trust is a configuration error, never retried.

Exit codes, for scripts:
  0  every file was classified
  1  some files or folders failed (each one reported); the others were classified
  2  usage or configuration error: bad arguments, no SavedModel at --model, the server does not know the model,
     version or label
  3  the server could not be reached, or kept failing, after the retries
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import re
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

from trainer.exit_codes import EXIT_OK, EXIT_SOME_FAILED, EXIT_UNREACHABLE
from trainer.exit_codes import EXIT_USAGE as EXIT_CONFIG  # bad arguments, no model, unknown model/version
from trainer import serving_api
from trainer.contract import CLASS_NAMES_ASSET  # written by trainer/export.py
from trainer.features import CIFAR10_CLASSES
# IMAGE_EXTENSIONS: what a folder is searched for (as ingestion and `infer` do); a file named explicitly is always sent
from trainer.model_files import IMAGE_EXTENSIONS, ModelDirError, resolve_local_model_dir
from trainer.serving_api import DEFAULT_MODEL_NAME


class PredictError(Exception):
    """Stops the whole command: one message, one exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class BadInput(Exception):
    """The model rejected the request's images (TF Serving: InvalidArgument)."""


class Transient(Exception):
    """The server could not be reached or asked to try again later; worth a retry."""


class BatchTooLarge(Exception):
    """The server takes at most ``limit`` images per request (TF Serving batching ``max_batch_size``)."""

    def __init__(self, message: str, limit: int):
        super().__init__(message)
        self.limit = limit


@dataclasses.dataclass(frozen=True)
class PredictSettings:
    """What to classify and how to reach the model; exactly one of model_dir, rest_url, grpc_target."""

    paths: tuple[str, ...]
    model_dir: Optional[str] = None
    rest_url: Optional[str] = None
    grpc_target: Optional[str] = None
    model_name: str = DEFAULT_MODEL_NAME
    version: Optional[int] = None
    label: Optional[str] = None
    top_k: int = 3
    as_json: bool = False
    timeout_s: float = 10.0
    retries: int = 3
    backoff_s: float = 0.5
    batch_size: int = 16
    tls: bool = False  # gRPC over TLS (implied by ca_cert or client_cert); REST: given by the https:// scheme
    ca_cert: Optional[str] = None  # PEM bundle of the CAs that may sign the server's certificate
    client_cert: Optional[str] = None  # PEM client certificate chain, for servers that require mutual TLS
    client_key: Optional[str] = None  # its PEM private key

    def __post_init__(self) -> None:
        targets = [t for t in (self.model_dir, self.rest_url, self.grpc_target) if t]
        if len(targets) != 1:
            raise PredictError("give exactly one of --model DIR, --rest URL, --grpc HOST:PORT", EXIT_CONFIG)
        if not self.paths:
            raise PredictError("give at least one image file or folder", EXIT_CONFIG)
        if self.version is not None and self.label:
            raise PredictError("give --version or --label, not both", EXIT_CONFIG)
        if self.version is not None and self.version < 0:
            raise PredictError(f"--version: expected a non-negative integer, got {self.version}", EXIT_CONFIG)
        if self.label and self.model_dir:
            raise PredictError("--label needs a model server (--rest or --grpc); with --model use --version",
                               EXIT_CONFIG)
        if not self.model_name or "/" in self.model_name:
            raise PredictError(f"--model-name: {self.model_name!r} must be a plain name", EXIT_CONFIG)
        for name, low in (("top_k", 1), ("batch_size", 1), ("retries", 0)):
            if getattr(self, name) < low:
                raise PredictError(f"--{name.replace('_', '-')}: expected >= {low}, got {getattr(self, name)}",
                                   EXIT_CONFIG)
        if self.timeout_s <= 0:
            raise PredictError(f"--timeout: expected seconds > 0, got {self.timeout_s}", EXIT_CONFIG)
        if bool(self.client_cert) != bool(self.client_key):
            raise PredictError("--client-cert and --client-key go together", EXIT_CONFIG)
        tls_options = [o for o, v in (("--tls", self.tls), ("--ca-cert", self.ca_cert),
                                      ("--client-cert", self.client_cert)) if v]
        if tls_options and self.model_dir:
            raise PredictError(f"{'/'.join(tls_options)}: TLS applies to --rest https://... or --grpc, not --model",
                               EXIT_CONFIG)
        if tls_options and self.rest_url and not self.rest_url.startswith("https://"):
            # Never send in clear text what the user meant to protect.
            raise PredictError(f"{'/'.join(tls_options)} given with --rest {self.rest_url}: use an https:// URL",
                               EXIT_CONFIG)


@dataclasses.dataclass(frozen=True)
class FileResult:
    """One file's outcome: the top-k (class name, probability) pairs, or an error."""

    path: str
    top: tuple[tuple[str, float], ...] = ()
    class_id: Optional[int] = None
    error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"file": self.path, "error": self.error}
        return {"file": self.path, "class_id": self.class_id, "class_name": self.top[0][0],
                "top_k": [{"class_name": name, "probability": p} for name, p in self.top]}


class Backend(Protocol):
    """Classifies encoded images: one ``{probabilities, class_id, class_name}`` dict per image, in order.

    Raises BadInput when the model rejects the images, Transient when a retry may help, PredictError otherwise."""

    description: str
    # The model's classes in id order where the client can read them (--model: class_names.txt); None for a
    # server, which names only each answer's top class (`class_table` learns them).
    class_names: Optional[tuple[str, ...]]

    def predict(self, images: list[bytes]) -> list[dict[str, Any]]: ...


# ---------------------------------------------------------------------------------------------------- backends

def resolve_model_dir(path: str, version: Optional[int] = None) -> Path:
    """A SavedModel folder, or a model base folder (``<serving>/<model_name>``) -> the version folder to load:
    ``--version`` if given, else the highest numbered version, as TF Serving's default policy picks
    (trainer.model_files, which `infer --model` uses too)."""
    try:
        return resolve_local_model_dir(path, version)
    except ModelDirError as e:
        raise PredictError(str(e), EXIT_CONFIG) from None


class LocalBackend:
    """The SavedModel loaded in this process, called through ``serving_default`` as TF Serving would."""

    def __init__(self, model_dir: str, version: Optional[int] = None):
        import tensorflow as tf

        self._tf = tf
        path = resolve_model_dir(model_dir, version)
        try:
            loaded = tf.saved_model.load(str(path))
        except (OSError, ValueError, tf.errors.OpError) as e:
            raise PredictError(f"--model {path}: cannot load the SavedModel: {e}", EXIT_CONFIG) from None
        if serving_api.SIGNATURE_NAME not in loaded.signatures:
            raise PredictError(f"--model {path}: no {serving_api.SIGNATURE_NAME!r} signature; has "
                               f"{sorted(loaded.signatures)}", EXIT_CONFIG)
        self._loaded = loaded  # keeps the signature's resources alive
        self._signature = loaded.signatures[serving_api.SIGNATURE_NAME]
        self.description = str(path)
        names = path / CLASS_NAMES_ASSET
        self.class_names = (tuple(n for n in names.read_text().splitlines() if n) if names.is_file()
                            else None)  # a model exported before class_names.txt: named by its answers

    def predict(self, images: list[bytes]) -> list[dict[str, Any]]:
        tf = self._tf
        try:
            out = self._signature(**{serving_api.INPUT_KEY: tf.constant(images, dtype=tf.string)})
        except tf.errors.InvalidArgumentError as e:
            raise BadInput(serving_api.tf_error_line(e.message)) from None
        probabilities = out[serving_api.PROBABILITIES].numpy()
        class_ids = out[serving_api.CLASS_IDS].numpy()
        class_names = out[serving_api.CLASS_NAMES].numpy()
        return [{"probabilities": [float(p) for p in probabilities[i]], "class_id": int(class_ids[i]),
                 "class_name": class_names[i].decode()} for i in range(len(images))]


def _read_pem(path: Optional[str], option: str) -> Optional[bytes]:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise PredictError(f"{option} {path}: cannot read ({e.strerror or e})", EXIT_CONFIG) from None


def ssl_context(ca_cert: Optional[str], client_cert: Optional[str], client_key: Optional[str]) -> ssl.SSLContext:
    """Verifies the server (hostname and chain) against ca_cert, else the system CAs; presents the client
    certificate when given."""
    try:
        context = ssl.create_default_context(cafile=ca_cert)
    except (OSError, ssl.SSLError) as e:
        raise PredictError(f"--ca-cert {ca_cert}: not a readable PEM CA bundle ({e})", EXIT_CONFIG) from None
    if client_cert:
        try:
            context.load_cert_chain(client_cert, client_key)
        except (OSError, ssl.SSLError) as e:
            raise PredictError(f"--client-cert {client_cert} / --client-key {client_key}: cannot load ({e})",
                               EXIT_CONFIG) from None
    return context


class RestBackend:
    """TF Serving's REST API: ``POST <url>/v1/models/NAME[/versions/N|/labels/L]:predict``. TF Serving serves REST
    in plain HTTP only; https:// reaches it through a TLS proxy or ingress (docs/security.md)."""

    def __init__(self, url: str, model_name: str, version: Optional[int], label: Optional[str], timeout_s: float,
                 ca_cert: Optional[str] = None, client_cert: Optional[str] = None, client_key: Optional[str] = None):
        base = url if "://" in url else f"http://{url}"
        if not base.startswith(("http://", "https://")):
            raise PredictError(f"--rest {url}: expected http://HOST:PORT or https://HOST:PORT", EXIT_CONFIG)
        self.url = base.rstrip("/") + serving_api.rest_predict_path(model_name, version, label)
        self.description = self.url
        self.class_names: Optional[tuple[str, ...]] = None
        self._timeout_s = timeout_s
        self._context = ssl_context(ca_cert, client_cert, client_key) if base.startswith("https://") else None

    def predict(self, images: list[bytes]) -> list[dict[str, Any]]:
        body = json.dumps(serving_api.rest_body(images)).encode()
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s, context=self._context) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            message = _rest_error(e)
            if e.code == 400:
                _raise_bad_request(message, self.url)
            if e.code == 404:
                raise PredictError(f"{self.url}: {message}", EXIT_CONFIG) from None
            if e.code in (408, 429) or e.code >= 500:
                raise Transient(f"HTTP {e.code}: {message}") from None
            raise PredictError(f"{self.url}: HTTP {e.code}: {message}", EXIT_UNREACHABLE) from None
        except (ssl.SSLError, urllib.error.URLError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, ssl.SSLError):  # an untrusted or refused certificate: retrying cannot help
                why = getattr(reason, "verify_message", "") or reason
                raise PredictError(f"{self.url}: TLS handshake failed ({why}); check --ca-cert, --client-cert",
                                   EXIT_CONFIG) from None
            raise Transient(str(reason) or type(e).__name__) from None
        except (socket.timeout, ConnectionError, http.client.HTTPException) as e:
            raise Transient(str(getattr(e, "reason", e)) or type(e).__name__) from None
        try:
            return serving_api.parse_rest_predictions(json.loads(raw), expected=len(images))
        except ValueError as e:
            raise PredictError(f"{self.url}: unexpected answer: {e}", EXIT_UNREACHABLE) from None


# TF Serving's InvalidArgument texts about the request itself, not an image: the same for every file, so a usage
# error (tensorflow/serving 2.16.1; the file each comes from).
_REQUEST_LEVEL = (
    "Malformed request",  # model_servers/http_rest_api_handler.cc: a path none of the REST regexes match
    "Missing model name in request",  # http_rest_api_handler.cc
    "Unrecognized servable version label",  # model_servers/server_core.cc
    "Serving signature name",  # http_rest_api_handler.cc GetInfoMap: '... "x" not found in signature def'
    "does not have named input",  # util/json_tensor.cc: "Failed to process element: 0 key: x of 'instances' ..."
    "keys must be equal to",  # json_tensor.cc: a row lacks an input
    "Missing named input",  # json_tensor.cc, columnar format
    "expecting only one of 'inputs' or 'instances'",  # json_tensor.cc
    "Missing 'inputs' or 'instances' key",  # json_tensor.cc
    "input size does not match signature",  # servables/tensorflow/predict_util.cc
    "not found in request and no default value provided",  # TensorFlow cc/saved_model/util.cc GetInputValues
    "input tensor alias not found in signature",  # predict_util.cc before TF Serving 2.14
)
# tensorflow/core/kernels/batching_util/shared_batch_scheduler.h, reached through TF Serving's --enable_batching.
_BATCH_LIMIT = re.compile(r"Task size (\d+) is larger than maximum input batch size (\d+)")


def _raise_bad_request(message: str, where: str) -> None:
    if any(marker in message for marker in _REQUEST_LEVEL):
        raise PredictError(f"{where}: {message}", EXIT_CONFIG) from None
    limit = _BATCH_LIMIT.search(message)
    if limit:
        raise BatchTooLarge(message, int(limit.group(2))) from None
    raise BadInput(message) from None


def _rest_error(error: urllib.error.HTTPError) -> str:
    """TF Serving answers errors as {"error": "..."}."""
    try:
        return serving_api.tf_error_line(str(json.loads(error.read())["error"]))
    except Exception:  # not JSON, or no "error": the status line is all there is
        return str(error.reason)


class GrpcBackend:
    """TF Serving's gRPC ``PredictionService.Predict``."""

    # gRPC status codes -> what they mean here (names, so grpc is imported only when this backend is used).
    _BAD_INPUT = {"INVALID_ARGUMENT"}
    _CONFIG = {"NOT_FOUND", "FAILED_PRECONDITION", "UNIMPLEMENTED", "PERMISSION_DENIED", "UNAUTHENTICATED"}
    _TRANSIENT = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"}

    def __init__(self, target: str, model_name: str, version: Optional[int], label: Optional[str],
                 timeout_s: float, tls: bool = False, ca_cert: Optional[str] = None,
                 client_cert: Optional[str] = None, client_key: Optional[str] = None):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        if "://" in target or ":" not in target:
            raise PredictError(f"--grpc {target}: expected HOST:PORT", EXIT_CONFIG)
        self._grpc = grpc
        limit = 64 * 1024 * 1024  # a batch of large JPEGs exceeds gRPC's 4 MiB default
        options = [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
        if tls or ca_cert or client_cert:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read_pem(ca_cert, "--ca-cert"),  # None: gRPC's default roots
                private_key=_read_pem(client_key, "--client-key"),
                certificate_chain=_read_pem(client_cert, "--client-cert"))
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        scheme = "grpcs" if tls or ca_cert or client_cert else "grpc"
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._model = (model_name, version, label)
        self._timeout_s = timeout_s
        self.description = f"{scheme}://{target} model {model_name}"
        self.class_names: Optional[tuple[str, ...]] = None

    def predict(self, images: list[bytes]) -> list[dict[str, Any]]:
        request = serving_api.predict_request(images, *self._model)
        try:
            response = self._stub.Predict(request, timeout=self._timeout_s)
        except self._grpc.RpcError as e:
            code, details = e.code().name, serving_api.tf_error_line(e.details() or "")
            if code in self._BAD_INPUT:
                _raise_bad_request(details, self.description)
            if code in self._CONFIG:
                raise PredictError(f"{self.description}: {code}: {details}", EXIT_CONFIG) from None
            if code == "UNAVAILABLE" and "handshake" in details.lower():  # TLS refused: retrying cannot help
                raise PredictError(f"{self.description}: TLS handshake failed ({details}); check --tls, "
                                   f"--ca-cert, --client-cert", EXIT_CONFIG) from None
            if code in self._TRANSIENT:
                raise Transient(f"{code}: {details}") from None
            raise PredictError(f"{self.description}: {code}: {details}", EXIT_UNREACHABLE) from None
        try:
            return serving_api.parse_predict_response(response, expected=len(images))
        except ValueError as e:
            raise PredictError(f"{self.description}: unexpected answer: {e}", EXIT_UNREACHABLE) from None


def make_backend(settings: PredictSettings) -> Backend:
    if settings.model_dir:
        return LocalBackend(settings.model_dir, settings.version)
    if settings.rest_url:
        return RestBackend(settings.rest_url, settings.model_name, settings.version, settings.label,
                           settings.timeout_s, settings.ca_cert, settings.client_cert, settings.client_key)
    if settings.grpc_target:
        return GrpcBackend(settings.grpc_target, settings.model_name, settings.version, settings.label,
                           settings.timeout_s, settings.tls, settings.ca_cert, settings.client_cert,
                           settings.client_key)
    # PredictSettings refuses this already; said again here rather than passing None on as a target
    raise PredictError("give exactly one of --model DIR, --rest URL, --grpc HOST:PORT", EXIT_CONFIG)


# -------------------------------------------------------------------------------------------------- the command

def collect_files(paths: Sequence[str]) -> tuple[list[Path], list[FileResult]]:
    """Files named on the command line (sent whatever their suffix: the model decides) and the image files of
    folders (IMAGE_EXTENSIONS, as ingestion and `infer` take them; recursively, sorted); missing paths and folders
    without images are failures."""
    files: list[Path] = []
    failures: list[FileResult] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.name.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                failures.append(FileResult(raw, error=f"folder has no {'/'.join(IMAGE_EXTENSIONS)} files"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            failures.append(FileResult(raw, error="no such file or folder"))
    return files, failures


def with_retries(call: Callable[[], Any], settings: PredictSettings, where: str,
                 sleep: Callable[[float], None] = time.sleep) -> Any:
    """Runs ``call``; on Transient waits backoff_s, 2*backoff_s, ... between at most ``retries`` more tries."""
    for attempt in range(settings.retries + 1):
        try:
            return call()
        except Transient as e:
            last = e
            if attempt < settings.retries:
                sleep(settings.backoff_s * 2 ** attempt)
    raise PredictError(f"{where}: unreachable or failing after {settings.retries + 1} attempt(s) "
                       f"({settings.timeout_s:g} s timeout each): {last}", EXIT_UNREACHABLE)


def class_table(known: Optional[Sequence[str]], learned: Mapping[int, str], size: int) -> tuple[str, ...]:
    """The names of a model's `size` classes in id order: the model's own list where the client has it; else (a
    server names only each answer's top class) CIFAR-10's while every name the server gave is CIFAR-10's for its
    id, otherwise the names the answers gave so far and "class <id>" for the others."""
    if known is not None and len(known) == size:
        return tuple(known)
    if size == len(CIFAR10_CLASSES) and all(CIFAR10_CLASSES[i] == name for i, name in learned.items()):
        return CIFAR10_CLASSES
    return tuple(learned.get(i, f"class {i}") for i in range(size))


def _top_k(prediction: dict[str, Any], class_names: Sequence[str], k: int) -> tuple[tuple[str, float], ...]:
    probabilities = prediction["probabilities"]
    order = sorted(range(len(probabilities)), key=lambda i: -probabilities[i])[:k]
    return tuple((class_names[i], probabilities[i]) for i in order)


def classify(files: Sequence[Path], backend: Backend, settings: PredictSettings,
             on_result: Callable[[FileResult], None] = lambda r: None,
             warn: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[FileResult]:
    """Classifies ``files`` in batches, in order; a batch the model rejects is retried file by file so that only
    the bad files fail, and a batch above the server's limit is split to that limit, which then holds for the
    rest. Calls ``on_result`` as each result is known (text output streams)."""
    results: list[FileResult] = []
    pending: list[tuple[Path, bytes]] = []
    batch_size = [settings.batch_size]

    def emit(result: FileResult) -> None:
        results.append(result)
        on_result(result)

    def predict(images: list[bytes]) -> list[dict[str, Any]]:
        try:
            return with_retries(lambda: backend.predict(images), settings, backend.description)
        except BatchTooLarge as e:
            if not 1 <= e.limit < len(images):
                raise PredictError(f"{backend.description}: {e}", EXIT_UNREACHABLE) from None
            batch_size[0] = e.limit
            warn(f"tokenlearner: warning: the server takes at most {e.limit} images per request (TF Serving "
                 f"batching max_batch_size); sending batches of {e.limit} instead of --batch-size "
                 f"{settings.batch_size}")
            return [p for i in range(0, len(images), e.limit) for p in predict(images[i:i + e.limit])]

    learned: dict[int, str] = {}  # class id -> name, from the answers (a server names each answer's top class)

    def flush() -> None:
        outcomes = _predict_isolating(predict, [data for _, data in pending])
        learned.update((o["class_id"], o["class_name"]) for o in outcomes if not isinstance(o, str))
        for (path, _), outcome in zip(pending, outcomes):
            if isinstance(outcome, str):
                emit(FileResult(str(path), error=f"rejected by the model: {outcome}"))
            else:
                names = class_table(backend.class_names, learned, len(outcome["probabilities"]))
                emit(FileResult(str(path), top=_top_k(outcome, names, settings.top_k), class_id=outcome["class_id"]))
        pending.clear()

    for path in files:
        try:
            data = path.read_bytes()
        except OSError as e:
            emit(FileResult(str(path), error=f"cannot read: {e.strerror or e}"))
            continue
        if not data:
            emit(FileResult(str(path), error="empty file (expected PNG or JPEG bytes)"))
            continue
        pending.append((path, data))
        if len(pending) >= batch_size[0]:
            flush()
    if pending:
        flush()
    return results


def _predict_isolating(predict: Callable[[list[bytes]], list[dict[str, Any]]],
                       images: list[bytes]) -> list[dict[str, Any] | str]:
    """Predictions, or for each image the model rejects, its error message."""
    try:
        return [*predict(images)]  # a list of dicts is not a list[dict | str] to the checker: lists are invariant
    except BadInput as e:
        if len(images) == 1:
            return [str(e)]
        return [outcome for image in images for outcome in _predict_isolating(predict, [image])]


def format_result(result: FileResult) -> str:
    return f"{result.path}\t" + "  ".join(f"{name} {p:.3f}" for name, p in result.top)


def run(settings: PredictSettings, out=None, err=None) -> int:
    """The whole command; returns the exit code (see the module docstring)."""
    out, err = out or sys.stdout, err or sys.stderr

    def report(result: FileResult) -> None:
        if settings.as_json:
            return
        if result.error is None:
            print(format_result(result), file=out, flush=True)
        else:
            print(f"tokenlearner: {result.path}: {result.error}", file=err, flush=True)

    try:
        files, failures = collect_files(settings.paths)
        for failure in failures:
            report(failure)
        backend = make_backend(settings) if files else None
        results = failures + (classify(files, backend, settings, on_result=report,
                                       warn=lambda m: print(m, file=err, flush=True)) if backend else [])
    except PredictError as e:
        print(f"tokenlearner: error: {e}", file=err)
        return e.exit_code
    if settings.as_json:
        json.dump({"model": backend.description if backend else None,
                   "results": [r.to_dict() for r in results]}, out, indent=2)
        print(file=out)
    return EXIT_SOME_FAILED if any(r.error is not None for r in results) else EXIT_OK
