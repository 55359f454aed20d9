"""Trainer module code (Transform preprocessing_fn, model, run_fn) loaded by TFX inside its executors, and what the
other packages share with it without TensorFlow: the graph <-> trainer contract (contract.py), the feature names
(features.py), the exit codes of every command (exit_codes.py), the TF Serving wire contract (serving_api.py) and the trainer settings and presets (config.py).

TF_USE_LEGACY_KERAS must be set before TensorFlow is first imported: TFT and TFMA only work with Keras 2. This is
the one place that sets it; the other packages that can be imported first (cli, components, inspection, pipeline)
import this package for it at their top.
"""
import os as _os

_os.environ["TF_USE_LEGACY_KERAS"] = "1"
