"""The RunInference model handler of `tokenlearner infer`: the exported model's ``serving_default`` on a batch of
encoded image bytes; and the checks of --model before a job starts.

Why not Beam's own ``TFModelHandlerTensor`` (apache_beam.ml.inference.tensorflow_inference): in Beam 2.59 that
module imports ``tensorflow_hub``, whose 0.15 release imports ``tf.compat.v1.estimator``, gone from TensorFlow 2.16,
so the module cannot even be imported here; and its handler loads the model with ``tf.keras.models.load_model`` and
calls the Keras model on ``tf.stack``-ed tensors, which is not the serving signature (no decoding, no Transform
graph). So this handler is the smallest ModelHandler that loads the SavedModel (``tf.saved_model.load``) and calls
``signatures['serving_default']``; batching (``BatchElements`` with the sizes below), model sharing across a
worker's threads, metrics and the dead-letter output of failed batches are RunInference's.

A batch the signature rejects (one image it cannot decode, or over its pixel limit, fails the whole call) raises
``Rejected`` with TensorFlow's one-line reason; job.py catches it with ``RunInference.with_exception_handling`` and
sends that batch's images again one by one, so that only the bad images end up in the errors output.
"""
from __future__ import annotations

import threading
from typing import Any, Iterable, Optional, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from trainer import model_files, serving_api
from trainer.contract import CLASS_NAMES_ASSET

METRICS_NAMESPACE = "tokenlearner_infer"  # RunInference's counters and distributions (num_inferences, ...)
_LOADED: dict[str, Any] = {}  # this process's model of the latest job: {"key": (job_id, model_dir), "model": ...}
_LOADED_LOCK = threading.Lock()


class ModelError(Exception):
    """--model is not a SavedModel this command can use; the message names the folder and what was expected."""


class Rejected(Exception):
    """The signature refused a batch (TensorFlow's one-line reason). Its repr is the reason alone: Beam's dead-letter
    output keeps ``repr(exception)``."""

    def __repr__(self) -> str:
        return str(self.args[0]) if self.args else "rejected"


class ServingSignatureHandler(ModelHandler[bytes, PredictionResult, Any]):
    """Encoded image bytes -> PredictionResult(example=None, inference=(probabilities float32 [num_classes],
    class_id int, class_name str)), from the SavedModel at `model_dir` (a version folder; local or gs://).

    `batch_size`: images per signature call, fixed (BatchElements' min = max) so that every runner sends the same
    batches apart from each bundle's last; `min_batch_size` may lower the floor (1: one image per call, the
    isolation pass)."""

    def __init__(self, model_dir: str, batch_size: int, min_batch_size: Optional[int] = None, job_id: str = ""):
        super().__init__()
        self._model_dir = model_dir
        self._batch_size = batch_size
        self._min_batch_size = batch_size if min_batch_size is None else min_batch_size
        self._job_id = job_id

    def load_model(self) -> Any:
        """The loaded SavedModel (it keeps the signature's variables and tables alive; the signature is looked up
        per call). The job's two RunInference steps (batches; failed batches one by one) each load their model when
        a worker sets them up: handlers of the same `job_id` share one load per process (1.4 s saved for the
        keras_io model), and a later job in the process loads afresh (the folder may have changed)."""
        import tensorflow as tf

        with _LOADED_LOCK:
            if _LOADED.get("key") != (self._job_id, self._model_dir) or not self._job_id:
                _LOADED.clear()
                _LOADED.update(key=(self._job_id, self._model_dir), model=tf.saved_model.load(self._model_dir))
            return _LOADED["model"]

    def run_inference(self, batch: Sequence[bytes], model: Any,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        import tensorflow as tf

        signature = model.signatures[serving_api.SIGNATURE_NAME]
        try:
            out = signature(**{serving_api.INPUT_KEY: tf.constant(list(batch), dtype=tf.string)})
        except tf.errors.OpError as e:  # InvalidArgument: not an image, or over the pixel limit; others: per batch
            raise Rejected(serving_api.tf_error_line(e.message)) from None
        probabilities = out[serving_api.PROBABILITIES].numpy()
        class_ids = out[serving_api.CLASS_IDS].numpy()
        names = out[serving_api.CLASS_NAMES].numpy()
        return [PredictionResult(None, (probabilities[i], int(class_ids[i]), names[i].decode("utf-8", "replace")))
                for i in range(len(batch))]

    def get_num_bytes(self, batch: Sequence[bytes]) -> int:
        return sum(len(image) for image in batch)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def batch_elements_kwargs(self) -> dict[str, int]:
        return {"min_batch_size": self._min_batch_size, "max_batch_size": self._batch_size}


# ------------------------------------------------------------------------------------ --model, before the job

def resolve(model: str, version: Optional[int] = None) -> str:
    """A SavedModel version folder, or a model base folder (its highest numbered version, or `version`), local or on
    an object store -> the version folder; the choice is trainer.model_files', which `predict --model` makes too."""
    try:
        if "://" not in model:
            return str(model_files.resolve_local_model_dir(model, version))
        from apache_beam.io.filesystems import FileSystems

        base = model.rstrip("/")
        found = FileSystems.match([f"{base}/*/{model_files.SAVED_MODEL_FILE}"])[0].metadata_list
        versions = [int(v) for v in (m.path[len(base) + 1:].split("/")[0] for m in found) if v.isdigit()]
        is_saved_model = FileSystems.exists(f"{base}/{model_files.SAVED_MODEL_FILE}")
        return model_files.choose_version(base, is_saved_model, versions, version)
    except model_files.ModelDirError as e:
        raise ModelError(str(e)) from None


def check_signature(model_dir: str) -> None:
    """The SavedModel's ``serving_default`` takes a string tensor ``images`` and gives probabilities and class
    ids; read from saved_model.pb alone (no variables restored), so a wrong --model fails in a second."""
    from apache_beam.io.filesystems import FileSystems
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        with FileSystems.open(f"{model_dir}/saved_model.pb") as f:
            saved.ParseFromString(f.read())
    except Exception as e:  # noqa: BLE001 - unreadable or not a SavedModel proto
        raise ModelError(f"--model {model_dir}: cannot read saved_model.pb ({str(e).splitlines()[0]})") from None
    signatures = {k: v for graph in saved.meta_graphs for k, v in graph.signature_def.items()}
    signature = signatures.get(serving_api.SIGNATURE_NAME)
    if signature is None:
        raise ModelError(f"--model {model_dir}: no {serving_api.SIGNATURE_NAME!r} signature; has "
                         f"{sorted(signatures)}")
    images = signature.inputs.get(serving_api.INPUT_KEY)
    missing = [k for k in serving_api.OUTPUT_KEYS if k not in signature.outputs]
    if images is None or images.dtype != types_pb2.DT_STRING or missing:
        raise ModelError(f"--model {model_dir}: {serving_api.SIGNATURE_NAME!r} takes {dict(signature.inputs)!s:.200} "
                         f"and gives {sorted(signature.outputs)}; expected a string input "
                         f"{serving_api.INPUT_KEY!r} (encoded images) and outputs {list(serving_api.OUTPUT_KEYS)}")


def class_names(model_dir: str) -> Optional[tuple[str, ...]]:
    """The model's classes in id order (``assets.extra/class_names.txt``, written at export); None for a model
    exported before that file existed."""
    from apache_beam.io.filesystems import FileSystems

    path = f"{model_dir}/{CLASS_NAMES_ASSET}"
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as f:
        return tuple(n for n in f.read().decode("utf-8").splitlines() if n)
