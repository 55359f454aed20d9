"""Serving signatures of the exported SavedModel; each one runs the Transform graph, so there is no skew.

- ``serving_default``: encoded image bytes [N] (PNG/JPEG/GIF/BMP of any size up to ``cfg.max_decode_pixels`` pixels
  as the header declares, checked before decoding; the Transform graph brings each to ``cfg.input_size``; REST
  clients send {"b64": ...}) -> probabilities [N, num_classes], class_ids [N], class_names [N] (the dataset's, also
  in ``assets.extra/class_names.txt``).
- ``serving_tf_example``: serialized tf.Example [N] (what the Evaluator feeds) -> the same outputs.
- ``transform_features``: serialized tf.Example [N] -> the transformed features, for debugging.

Serving computes in float32 whatever the training precision (``float32_model``): TF Serving on a CPU without bfloat16
hardware would otherwise emulate it, and clients see the same dtypes from every model.

``write_warmup_requests`` adds ``assets.extra/tf_serving_warmup_requests``: TF Serving replays these requests when it
loads a version, before the version serves, so the first user request does not pay for graph initialization.
"""
from __future__ import annotations

from typing import Sequence

import tf_keras as keras
import tensorflow as tf
import tensorflow_transform as tft

from trainer import features, image_header, inputs, recipe, serving_api
from trainer.config import TrainerConfig
from trainer.contract import ASSETS_EXTRA, CLASS_NAMES_ASSET

WARMUP_FILE = "tf_serving_warmup_requests"  # the name TF Serving looks for under assets.extra/


def _write_class_names(export_dir: str, class_names: Sequence[str]) -> None:
    path = f"{export_dir}/{CLASS_NAMES_ASSET}"
    tf.io.gfile.makedirs(f"{export_dir}/{ASSETS_EXTRA}")
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("\n".join(class_names) + "\n")


def float32_model(model: keras.Model, cfg: TrainerConfig) -> keras.Model:
    """`model` when every layer computes in float32; otherwise the model of `cfg` rebuilt under the float32 policy
    with `model`'s weights (mixed policies keep float32 variables, so the copy is exact). The copy is compiled as
    the Trainer compiles, so `tf.keras.models.load_model` of the export gives the same compiled loss and metrics
    as for a float32-trained model."""
    if all(layer.compute_dtype in (None, "float32") for layer in model.layers):
        return model
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = recipe.compile_model(cfg)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    copy.set_weights(model.get_weights())
    return copy


def export_serving_model(model: keras.Model, tft_output: tft.TFTransformOutput, cfg: TrainerConfig,
                         class_names: Sequence[str], export_dir: str) -> None:
    model = float32_model(model, cfg)
    # Attached to the model so the SavedModel tracks the TFT graph's resources.
    model.tft_layer = tft_output.transform_features_layer()
    names = tf.constant(list(class_names))
    raw_spec = tft_output.raw_feature_spec()
    image_shape = list(raw_spec[features.IMAGE_KEY].shape)  # [] or [1], as the schema says
    unlabeled_spec = {k: v for k, v in raw_spec.items() if k != features.LABEL_KEY}

    def predict(raw: dict) -> dict:
        # The Transform graph decodes whatever size a header declares: refuse image bombs before it runs.
        raw = {**raw, features.IMAGE_KEY: image_header.check_declared_sizes(raw[features.IMAGE_KEY],
                                                                           cfg.max_decode_pixels)}
        transformed = model.tft_layer(raw)
        view = inputs.eval_view(transformed[features.transformed_name(features.IMAGE_KEY)], cfg)
        probabilities = model(view, training=False)
        class_ids = tf.argmax(probabilities, axis=-1)
        return {serving_api.PROBABILITIES: probabilities, serving_api.CLASS_IDS: class_ids,
                serving_api.CLASS_NAMES: tf.gather(names, class_ids)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=serving_api.INPUT_KEY)])
    def serve_images(images):
        return predict({features.IMAGE_KEY: tf.reshape(images, [-1] + image_shape)})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=serving_api.EXAMPLES_KEY)])
    def serve_tf_examples(examples):
        return predict(tf.io.parse_example(examples, unlabeled_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=serving_api.EXAMPLES_KEY)])
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, unlabeled_spec))

    signatures = {
        serving_api.SIGNATURE_NAME: serve_images.get_concrete_function(),
        serving_api.TF_EXAMPLE_SIGNATURE: serve_tf_examples.get_concrete_function(),
        serving_api.TRANSFORM_SIGNATURE: transform_features.get_concrete_function(),
    }
    # Without the optimizer: tf.keras.models.load_model (TFMA's model type detection, users' notebooks) would
    # rebuild it and needs every custom schedule (trainer/recipe.py) importable in its process. The Evaluator
    # scores the signature as a plain SavedModel (pipeline/pipeline.py). Training state lives in the Trainer's
    # checkpoints (trainer/checkpoints.py), not in the serving model.
    model.save(export_dir, save_format="tf", signatures=signatures, include_optimizer=False)
    _write_class_names(export_dir, class_names)


def write_warmup_requests(export_dir: str, model_name: str, images: Sequence[bytes]) -> str:
    """Writes ``assets.extra/tf_serving_warmup_requests``: TFRecords of ``PredictionLog`` protos, each a
    ``PredictRequest`` to ``serving_default`` as clients send it. One request per image, then one with all images,
    so both single and batched calls are initialized. Returns the file's path.

    TF Serving refuses to load a version whose warmup request fails, so only images the training data already
    decoded (the caller passes them) belong here.
    """
    if not images:
        raise ValueError("write_warmup_requests: expected at least one encoded image")
    from tensorflow_serving.apis import prediction_log_pb2

    batches = [[image] for image in images] + ([list(images)] if len(images) > 1 else [])
    tf.io.gfile.makedirs(f"{export_dir}/{ASSETS_EXTRA}")
    path = f"{export_dir}/{ASSETS_EXTRA}/{WARMUP_FILE}"
    with tf.io.TFRecordWriter(path) as writer:
        for batch in batches:
            request = serving_api.predict_request(batch, model_name)
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_encoded_images(file_patterns: Sequence[str], count: int) -> list[bytes]:
    """The encoded ``image`` bytes of the first ``count`` records of gzipped raw TFRecords (real warmup inputs)."""
    spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    ds = tf.data.TFRecordDataset(inputs.list_files(list(file_patterns)), compression_type="GZIP").take(count)
    return [tf.io.parse_single_example(record, spec)[features.IMAGE_KEY].numpy() for record in ds]
