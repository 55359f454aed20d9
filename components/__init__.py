"""Pipeline building blocks outside the TFX standard components: data ingestion into TFRecords.

TF_USE_LEGACY_KERAS must be set before TensorFlow is first imported: TFT and TFMA only work with Keras 2.
"""
import os as _os

_os.environ["TF_USE_LEGACY_KERAS"] = "1"
