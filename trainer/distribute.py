"""How the Trainer uses the machine it gets: MirroredStrategy over several GPUs, mixed precision on GPU.

The same run_fn runs on one CPU (tests, local runs), on one GPU, and on a multi-GPU Vertex AI training machine.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from trainer.config import TrainerConfig

log = logging.getLogger(__name__)


def choose_strategy(gpus: Sequence[object]) -> tf.distribute.Strategy:
    """MirroredStrategy (synchronous data parallelism, one replica per GPU) when more than one GPU is visible;
    the default strategy otherwise: one GPU or a CPU gains nothing from mirroring."""
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def precision_policy(cfg: TrainerConfig, gpus: Sequence[object]) -> str:
    """mixed_float16 only on GPU: on CPU float16 math is emulated and slower than float32."""
    return "mixed_float16" if cfg.mixed_precision and gpus else "float32"


@contextlib.contextmanager
def training_scope(cfg: TrainerConfig, gpus: Optional[Sequence[object]] = None) -> Iterator[tf.distribute.Strategy]:
    """Build and compile the model inside this: the strategy's scope with the dtype policy set. Layers keep the
    policy they were built with, so the global policy is restored on exit (other in-process components)."""
    gpus = tf.config.list_physical_devices("GPU") if gpus is None else gpus
    strategy = choose_strategy(gpus)
    policy = precision_policy(cfg, gpus)
    log.info("training on %d GPU(s): %s, %d replica(s), dtype policy %s", len(gpus), type(strategy).__name__,
             strategy.num_replicas_in_sync, policy)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        with strategy.scope():
            yield strategy
    finally:
        keras.mixed_precision.set_global_policy(previous)
