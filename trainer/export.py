"""Serving signatures of the exported SavedModel; each one runs the Transform graph, so there is no skew.

- ``serving_default``: encoded image bytes [N] (PNG/JPEG/GIF/BMP, any size; REST clients send {"b64": ...})
  -> probabilities [N, 10], class_ids [N], class_names [N].
- ``serving_tf_example``: serialized tf.Example [N] (what the Evaluator feeds) -> the same outputs.
- ``transform_features``: serialized tf.Example [N] -> the transformed features, for debugging.
"""
from __future__ import annotations

from typing import Sequence

import tf_keras as keras
import tensorflow as tf
import tensorflow_transform as tft

from trainer import features, inputs
from trainer.config import TrainerConfig

CLASS_NAMES_ASSET = "class_names.txt"


def _write_class_names(export_dir: str, class_names: Sequence[str]) -> None:
    path = f"{export_dir}/assets.extra/{CLASS_NAMES_ASSET}"
    tf.io.gfile.makedirs(f"{export_dir}/assets.extra")
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("\n".join(class_names) + "\n")


def export_serving_model(model: keras.Model, tft_output: tft.TFTransformOutput, cfg: TrainerConfig,
                         class_names: Sequence[str], export_dir: str) -> None:
    # Attached to the model so the SavedModel tracks the TFT graph's resources.
    model.tft_layer = tft_output.transform_features_layer()
    names = tf.constant(list(class_names))
    raw_spec = tft_output.raw_feature_spec()
    image_shape = list(raw_spec[features.IMAGE_KEY].shape)  # [] or [1], as the schema says
    unlabeled_spec = {k: v for k, v in raw_spec.items() if k != features.LABEL_KEY}

    def predict(raw: dict) -> dict:
        transformed = model.tft_layer(raw)
        view = inputs.eval_view(transformed[features.transformed_name(features.IMAGE_KEY)], cfg)
        probabilities = model(view, training=False)
        class_ids = tf.argmax(probabilities, axis=-1)
        return {"probabilities": probabilities, "class_ids": class_ids,
                "class_names": tf.gather(names, class_ids)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve_images(images):
        return predict({features.IMAGE_KEY: tf.reshape(images, [-1] + image_shape)})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_tf_examples(examples):
        return predict(tf.io.parse_example(examples, unlabeled_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, unlabeled_spec))

    signatures = {
        "serving_default": serve_images.get_concrete_function(),
        "serving_tf_example": serve_tf_examples.get_concrete_function(),
        "transform_features": transform_features.get_concrete_function(),
    }
    model.save(export_dir, save_format="tf", signatures=signatures)
    _write_class_names(export_dir, class_names)
