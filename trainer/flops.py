"""FLOPs and parameters of the exact Keras model, computed from its inference graph at batch 1.

Two counts, because the keras.io table uses a convention that differs from the usual one:

- ``macs`` (direct count): the multiply-adds of every Conv2D, MatMul, BatchMatMul and Einsum in the frozen graph,
  attention included; ``gflops = 2 * macs / 1e9``. Element-wise ops (LayerNorm, GELU, softmax) are not counted.
- ``keras_io_gflops``: what the keras.io example reports. It used ``tf.compat.v1.profiler`` with
  ``float_operation()`` on the frozen graph and halved the total (the regnety ``get_flops`` utility keras.io links:
  ``total_float_ops // 2``). The profiler only counts ops with a registered "flops" statistic; ``Einsum`` has none,
  and Keras' MultiHeadAttention is all Einsum (Q/K/V/output projections, QK^T and AV). So that column is the
  MLPs, the patch embedding and TokenLearner's convolutions, in multiply-adds, without attention.

The Trainer writes both into ``model_stats.json`` (model_run dir and the SavedModel's ``assets.extra``);
``tokenlearner flops`` prints them for any preset and overrides.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import string

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2_as_graph

from trainer import contract

STATS_FILE = contract.MODEL_STATS_FILE
_LINEAR_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3",
               "Einsum")

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ModelStats:
    """Size and cost of one forward pass of one image."""

    model: str
    params: int
    trainable_params: int
    input_shape: tuple[int, ...]  # (1, H, W, 3): the view the model sees
    macs: int  # direct count, attention included
    macs_by_op: dict[str, int]
    profiler_float_ops: int  # tf.compat.v1.profiler float_operation() total (2 per multiply-add; no Einsum)
    precision: str = ""  # what the Trainer trained in and why, "bfloat16 (auto: avx512_bf16)"; "" outside it
    jit_compile: str = ""  # whether XLA compiled the training step and why, "on (auto: float32 on a CPU)"

    @property
    def gflops(self) -> float:
        return 2 * self.macs / 1e9

    @property
    def keras_io_gflops(self) -> float:
        return self.profiler_float_ops / 2 / 1e9

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "input_shape": list(self.input_shape), "gflops": self.gflops,
                "keras_io_gflops": self.keras_io_gflops}


def frozen_graph(model: keras.Model, batch: int = 1) -> tf.Graph:
    """The inference graph (training=False) of `model` at a fixed batch, variables folded into constants."""
    spec = tf.TensorSpec([batch, *model.input_shape[1:]], model.inputs[0].dtype)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen, _ = convert_variables_to_constants_v2_as_graph(concrete)
    return frozen.graph


def _shape(tensor: tf.Tensor, op: tf.Operation) -> list[int]:
    if not tensor.shape.is_fully_defined():
        raise ValueError(f"{op.name} ({op.type}): shape {tensor.shape} is not static; cannot count its FLOPs")
    return tensor.shape.as_list()


def _einsum_macs(op: tf.Operation) -> int:
    """Multiply-adds of a two-operand einsum: the product of the sizes of every index it names."""
    equation = op.get_attr("equation").decode()
    operands = equation.split("->")[0].split(",")
    if len(operands) != 2:
        return 0  # a transpose or reduction: no multiply-adds
    spare = iter(c for c in string.ascii_uppercase if c not in equation)
    sizes: dict[str, int] = {}
    ellipsis = [next(spare) for _ in range(8)]
    for subscripts, tensor in zip(operands, op.inputs):
        shape = _shape(tensor, op)
        if "..." in subscripts:  # broadcast dims: name them, right-aligned, so both operands share the names
            n = len(shape) - len(subscripts.replace("...", ""))
            subscripts = subscripts.replace("...", "".join(ellipsis[len(ellipsis) - n:]))
        for letter, size in zip(subscripts, shape):
            sizes[letter] = max(sizes.get(letter, 1), size)
    return int(np.prod(list(sizes.values()), dtype=np.int64))


def _op_macs(op: tf.Operation) -> int:
    if op.type == "Einsum":
        return _einsum_macs(op)
    out = int(np.prod(_shape(op.outputs[0], op), dtype=np.int64))
    if op.type in ("Conv2D", "DepthwiseConv2dNative"):
        kh, kw, cin = _shape(op.inputs[1], op)[:3]
        return out * kh * kw * (1 if op.type == "DepthwiseConv2dNative" else cin)
    a = _shape(op.inputs[0], op)
    if op.type == "MatMul":
        return out * (a[0] if op.get_attr("transpose_a") else a[1])
    return out * (a[-2] if op.get_attr("adj_x") else a[-1])  # BatchMatMul*


def count_macs(graph: tf.Graph) -> dict[str, int]:
    """{op type: multiply-adds} over the Conv2D / MatMul / BatchMatMul / Einsum ops of `graph`."""
    totals: dict[str, int] = {}
    for op in graph.get_operations():
        if op.type in _LINEAR_OPS:
            totals[op.type] = totals.get(op.type, 0) + _op_macs(op)
    return totals


def profiler_float_ops(graph: tf.Graph) -> int:
    """tf.compat.v1.profiler's float-operation total of `graph` (the keras.io convention's raw number)."""
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    tf_log = tf.get_logger()
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)  # the v1 profiler's shape helpers log deprecation warnings
    try:
        profile = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                                options=options)
    finally:
        tf_log.setLevel(level)
    return int(profile.total_float_ops)


def model_stats(model: keras.Model) -> ModelStats:
    graph = frozen_graph(model)
    by_op = count_macs(graph)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return ModelStats(model=model.name, params=int(model.count_params()), trainable_params=trainable,
                      input_shape=(1, *model.input_shape[1:]), macs=sum(by_op.values()), macs_by_op=by_op,
                      profiler_float_ops=profiler_float_ops(graph))


def write(stats: ModelStats | None, directory: str) -> str | None:
    """Writes `directory`/model_stats.json; nothing when the stats could not be computed."""
    if stats is None:
        return None
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, STATS_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(stats.to_dict(), f, indent=2)
    return path


def read(directory: str) -> dict:
    with tf.io.gfile.GFile(os.path.join(directory, STATS_FILE)) as f:
        return json.load(f)


def render(stats: ModelStats) -> str:
    by_op = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in sorted(stats.macs_by_op.items()))
    return "\n".join([
        f"model               {stats.model}, input {list(stats.input_shape)}",
        f"parameters          {stats.params:,} ({stats.trainable_params:,} trainable)",
        f"multiply-adds       {stats.macs / 1e6:.2f}M ({by_op})",
        f"GFLOPs (direct)     {stats.gflops:.4f}  = 2 x multiply-adds, attention included",
        f"GFLOPs (keras.io)   {stats.keras_io_gflops:.4f}  = tf.compat.v1.profiler float ops / 2; Einsum (all of "
        f"attention) not counted",
    ] + ([f"trained in          {stats.precision}"] if stats.precision else [])
      + ([f"XLA (jit_compile)   {stats.jit_compile}"] if stats.jit_compile else []))


def report(model: keras.Model, directory: str, precision: str = "", jit_compile: str = "") -> ModelStats | None:
    """Compute, log and write the stats of `model` (trained in `precision`, XLA `jit_compile`) into
    `directory`/model_stats.json. A
    model the counter cannot freeze (e.g. variables of an unusual distribution strategy) is logged and skipped:
    training goes on."""
    try:
        stats = dataclasses.replace(model_stats(model), precision=precision, jit_compile=jit_compile)
    except Exception as e:  # noqa: BLE001 - statistics must never fail a training run
        log.warning("model %s: FLOPs not computed (%s: %s)", model.name, type(e).__name__, e)
        return None
    log.info("model %s: %d parameters, %.4f GFLOPs per image (direct), %.4f GFLOPs in the keras.io convention",
             stats.model, stats.params, stats.gflops, stats.keras_io_gflops)
    write(stats, directory)
    return stats
