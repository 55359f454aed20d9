"""The TF Serving wire contract of the exported model, and the requests built on it.

One place for the names a client must use (signature ``serving_default``, input ``images``, outputs
``probabilities`` / ``class_ids`` / ``class_names``; the Evaluator's ``serving_tf_example`` and the debugging
``transform_features`` signatures, input ``examples``) and for the two request shapes TF Serving accepts:

- REST: ``POST /v1/models/NAME[/versions/N | /labels/L]:predict`` with a JSON body in the row ("instances")
  format, binary strings as ``{"b64": ...}``;
- gRPC: ``PredictionService.Predict`` with a ``PredictRequest`` whose ``inputs["images"]`` is a DT_STRING tensor.

The one line of a TensorFlow or TF Serving error that says why (`tf_error_line`) is here too: the clients, batch
inference and the multi-worker Trainer report errors with it.

The warmup file written at export time and the ``tokenlearner predict`` client both use these builders, so what
the server is warmed up with is exactly what clients send. Pure functions: no I/O, no network. TensorFlow (and the
tensorflow-serving-api protos, which import it) is imported only by the gRPC helpers, so a REST client starts fast.
"""
from __future__ import annotations

import base64
import re
from typing import Any, Optional, Sequence
from urllib.parse import quote

DEFAULT_MODEL_NAME = "tokenlearner"  # the pipeline pushes <serving dir>/<model_name>/<version>; this by default
SIGNATURE_NAME = "serving_default"
INPUT_KEY = "images"
PROBABILITIES = "probabilities"
CLASS_IDS = "class_ids"
CLASS_NAMES = "class_names"
OUTPUT_KEYS = (PROBABILITIES, CLASS_IDS, CLASS_NAMES)
TF_EXAMPLE_SIGNATURE = "serving_tf_example"  # serialized tf.Example in (what the Evaluator scores), the same outputs
TRANSFORM_SIGNATURE = "transform_features"  # serialized tf.Example in, the Transform graph's features out
EXAMPLES_KEY = "examples"  # the input of both


def _check_selector(version: Optional[int], label: Optional[str]) -> None:
    if version is not None and label:
        raise ValueError("give a model version or a version label, not both")
    if version is not None and version < 0:
        raise ValueError(f"version: expected a non-negative integer, got {version}")


def rest_model_path(model_name: str, version: Optional[int] = None, label: Optional[str] = None) -> str:
    """``/v1/models/NAME``, ``/v1/models/NAME/versions/N`` or ``/v1/models/NAME/labels/L`` (no verb)."""
    _check_selector(version, label)
    path = f"/v1/models/{quote(model_name, safe='')}"
    if version is not None:
        path += f"/versions/{version}"
    elif label:
        path += f"/labels/{quote(label, safe='')}"
    return path


def rest_predict_path(model_name: str, version: Optional[int] = None, label: Optional[str] = None) -> str:
    return rest_model_path(model_name, version, label) + ":predict"


def rest_body(images: Sequence[bytes]) -> dict[str, Any]:
    """The JSON body of a REST predict call: one row per image, the input named, bytes base64-encoded."""
    return {"signature_name": SIGNATURE_NAME,
            "instances": [{INPUT_KEY: {"b64": base64.b64encode(image).decode("ascii")}} for image in images]}


def parse_rest_predictions(payload: dict[str, Any], expected: int) -> list[dict[str, Any]]:
    """A REST predict response in the row format -> one ``{probabilities, class_id, class_name}`` per image.

    Raises ValueError when the response does not have the shape this model's signature produces."""
    rows = payload.get("predictions")
    if not isinstance(rows, list) or len(rows) != expected:
        raise ValueError(f"expected 'predictions' with {expected} rows, got {str(payload)[:200]}")
    out = []
    for row in rows:
        if not isinstance(row, dict) or not set(OUTPUT_KEYS) <= set(row):
            raise ValueError(f"expected rows with outputs {list(OUTPUT_KEYS)}, got {str(row)[:200]}")
        out.append({"probabilities": [float(p) for p in row[PROBABILITIES]], "class_id": int(row[CLASS_IDS]),
                    "class_name": str(row[CLASS_NAMES])})
    return out


def predict_request(images: Sequence[bytes], model_name: str, version: Optional[int] = None,
                    label: Optional[str] = None):
    """A gRPC ``PredictRequest`` for ``serving_default`` with ``images`` as a DT_STRING tensor of shape [N]."""
    _check_selector(version, label)
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = SIGNATURE_NAME
    if version is not None:
        request.model_spec.version.value = version
    elif label:
        request.model_spec.version_label = label
    request.inputs[INPUT_KEY].CopyFrom(tf.make_tensor_proto(list(images), dtype=tf.string, shape=[len(images)]))
    return request


def parse_predict_response(response, expected: int) -> list[dict[str, Any]]:
    """A gRPC ``PredictResponse`` -> one ``{probabilities, class_id, class_name}`` per image."""
    import tensorflow as tf

    missing = [k for k in OUTPUT_KEYS if k not in response.outputs]
    if missing:
        raise ValueError(f"response lacks outputs {missing}; has {sorted(response.outputs)}")
    probabilities = tf.make_ndarray(response.outputs[PROBABILITIES])
    class_ids = tf.make_ndarray(response.outputs[CLASS_IDS]).reshape(-1)
    class_names = tf.make_ndarray(response.outputs[CLASS_NAMES]).reshape(-1)
    if probabilities.ndim != 2 or len(probabilities) != expected or len(class_ids) != expected:
        raise ValueError(f"expected {expected} rows, got probabilities of shape {probabilities.shape}")
    return [{"probabilities": [float(p) for p in probabilities[i]], "class_id": int(class_ids[i]),
             "class_name": class_names[i].decode("utf-8", "replace")} for i in range(expected)]


# What a client reads from an error of TensorFlow or TF Serving: the one line that says why.
_NOISE = ("Graph execution error", "Detected at node", "<stack traces", "File ", "[[")
_FUNCTION_NODE = re.compile(r"^\{\{function_node [^}]*\}\}\s*")  # TF's prefix on errors raised in a function


def tf_error_line(message: str) -> str:
    """The line of a TensorFlow error that says what is wrong ("Unknown image file format. One of JPEG, PNG, GIF,
    BMP required."), without the graph-execution preamble and node names TF and TF Serving wrap it in."""
    for line in message.splitlines():
        line = _FUNCTION_NODE.sub("", line.split("[[{{node")[0].strip())
        if line and not line.startswith(_NOISE):
            return line
    return message.strip()
