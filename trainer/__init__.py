"""Trainer module code (Transform preprocessing_fn, model, run_fn) loaded by TFX inside its executors, and the
graph <-> trainer contract (contract.py, no TensorFlow) that the pipeline and the other packages import.

TF_USE_LEGACY_KERAS must be set before TensorFlow is first imported: TFT and TFMA only work with Keras 2.
"""
import os as _os

_os.environ["TF_USE_LEGACY_KERAS"] = "1"
