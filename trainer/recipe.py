"""The training recipe of a TrainerConfig: optimizer with its learning-rate schedule, the loss, and the model
compiled with them.

keras.io: AdamW at a constant 1e-3, weight decay 1e-4, sparse cross-entropy. Keras's AdamW multiplies the decay by
the learning rate (1e-7 a step here); the tensorflow-addons AdamW behind keras.io's published 56.5% did not (1e-4 a
step, `--set weight_decay=0.1` here): docs/benchmarks.md 8.4. The `better` preset adds a linear
warmup + cosine decay (Loshchilov & Hutter, "SGDR", arXiv:1608.03983), label smoothing (Szegedy et al.,
"Rethinking the Inception Architecture", arXiv:1512.00567) and gradient-norm clipping.
"""
from __future__ import annotations

import math

import tf_keras as keras
import tensorflow as tf

from trainer import vit
from trainer.config import TrainerConfig


@keras.utils.register_keras_serializable(package="tokenlearner")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then cosine decay to 0 at `total_steps`."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int):
        self.peak, self.total_steps, self.warmup_steps = peak, total_steps, warmup_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = self.peak * (step + 1) / max(self.warmup_steps, 1)
        progress = tf.clip_by_value((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 0, 1)
        cosine = 0.5 * self.peak * (1 + tf.cos(math.pi * progress))
        return tf.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self) -> dict:
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


@keras.utils.register_keras_serializable(package="tokenlearner")
class SparseLabelSmoothingCrossentropy(keras.losses.Loss):
    """Cross-entropy of probabilities against integer labels smoothed to (1 - e) one-hot + e / K uniform.

    tf_keras' SparseCategoricalCrossentropy has no label smoothing; this keeps labels sparse, so the input
    pipelines, metrics and the Evaluator are the same for every recipe."""

    def __init__(self, smoothing: float = 0.1, name: str = "sparse_label_smoothing_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smoothing = smoothing

    def call(self, y_true, y_pred):
        log_p = tf.math.log(tf.clip_by_value(y_pred, 1e-7, 1.0))  # (B, K)
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)  # (B,)
        nll = -tf.gather(log_p, labels, axis=1, batch_dims=1)  # (B,)
        uniform = -tf.reduce_mean(log_p, axis=-1)  # (B,)
        return (1.0 - self.smoothing) * nll + self.smoothing * uniform

    def get_config(self) -> dict:
        return {**super().get_config(), "smoothing": self.smoothing}


def learning_rate(cfg: TrainerConfig, steps_per_epoch: int):
    if cfg.lr_schedule == "constant" and cfg.warmup_fraction == 0:
        return cfg.learning_rate
    total = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_fraction * total))
    if cfg.lr_schedule == "constant":  # warmup, then constant: a cosine that never starts decaying
        return WarmupCosine(cfg.learning_rate, total_steps=2**31 - 1, warmup_steps=warmup)
    return WarmupCosine(cfg.learning_rate, total_steps=total, warmup_steps=warmup)


def optimizer(cfg: TrainerConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    clip = {"global_clipnorm": cfg.clip_norm} if cfg.clip_norm else {}
    return keras.optimizers.AdamW(learning_rate=learning_rate(cfg, steps_per_epoch),
                                  weight_decay=cfg.weight_decay, **clip)


def loss(cfg: TrainerConfig) -> keras.losses.Loss:
    if cfg.label_smoothing:
        return SparseLabelSmoothingCrossentropy(cfg.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def compile_model(cfg: TrainerConfig, steps_per_epoch: int = 1, jit_compile: bool = False) -> keras.Model:
    """The model of `cfg` (trainer/vit.py), compiled with its optimizer and loss (schedules need `steps_per_epoch`);
    `jit_compile`: training and evaluation steps compiled by XLA (`cfg.jit_compile` as trainer/distribute.py
    resolves it on this machine)."""
    tf.keras.utils.set_random_seed(cfg.seed)
    model = vit.build_model(cfg)
    model.compile(
        optimizer=optimizer(cfg, steps_per_epoch),
        loss=loss(cfg),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                 keras.metrics.SparseTopKCategoricalAccuracy(cfg.top_k, name=cfg.top_k_metric)],
        jit_compile=jit_compile)
    return model
