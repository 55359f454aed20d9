"""AutoGraph leaves tf_keras's own code alone, as it does Keras's: a backport of TensorFlow's later rule.

AutoGraph rewrites the Python source of every function a `tf.function` calls, unless a rule in
`tensorflow/python/autograph/core/config.py` (CONVERSION_RULES) says not to. TensorFlow 2.16 has
`DoNotConvert("keras")` but not `DoNotConvert("tf_keras")`, so with Keras 2 as the separate `tf_keras` package
(TF_USE_LEGACY_KERAS=1) it parses and rewrites Keras's train_step, the functional model's graph runner, the
optimizer and the metrics each time a process first traces a model: measured here, 21 of a tiny Trainer's 47 s
(first epoch 16 s -> 6 s; Xeon, 2 cores). TensorFlow's main branch lists `DoNotConvert("tf_keras")` right after
`DoNotConvert("keras")`; TF 2.15's Keras 2 lived under the `keras` name and was never converted, so tf_keras is
code written to run unconverted. Our layers' `call` methods are still converted (tf_keras's Layer.__call__ converts
them explicitly), as before.
"""
from __future__ import annotations

from tensorflow.python.autograph.core import config as _config

_PACKAGE = "tf_keras"


def skip_tf_keras() -> None:
    """Adds `DoNotConvert("tf_keras")` to AutoGraph's rules when this TensorFlow lacks it (idempotent)."""
    if not any(isinstance(rule, _config.DoNotConvert) and rule.matches(_PACKAGE) for rule in _config.CONVERSION_RULES):
        _config.CONVERSION_RULES = (*_config.CONVERSION_RULES, _config.DoNotConvert(_PACKAGE))
