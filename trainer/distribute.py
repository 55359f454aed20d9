"""How the Trainer uses the machines it gets: MirroredStrategy over several GPUs, MultiWorkerMirroredStrategy over
several workers (TF_CONFIG), the training precision, and whether XLA compiles the training step.

The same run_fn runs on one CPU (tests, local runs), on one GPU, on a multi-GPU Vertex AI training machine, and on
several processes or machines that TF_CONFIG names (Vertex AI worker pools, `python -m trainer.worker`).
Multi-worker training is synchronous data parallelism: every replica takes `batch_size` examples of each global batch
(global batch = batch_size x replicas), gradients are summed over gRPC (ring all-reduce on CPUs), and every worker
ends each step with the same weights. The learning rate is not scaled with the global batch.
`precision=auto` picks the 16-bit format the hardware computes natively, because emulated 16-bit math is slower
than float32: bfloat16 on CPUs with AVX512_BF16 (Zen 4, Cooper Lake and later Xeons) or AMX-BF16 (Sapphire Rapids),
float16 on GPUs with tensor cores (compute capability >= 7.0), float32 everywhere else. `jit_compile=auto` turns XLA
on only where it was measured faster: float32 training on a CPU (docs/benchmarks.md section 7).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Callable, Iterator, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from trainer.cluster import CONNECTED, WAITING, Cluster
from trainer import serving_api
from trainer.config import TrainerConfig

log = logging.getLogger(__name__)

# precision setting -> Keras dtype policy. Mixed policies keep float32 variables; the softmax head is float32 too.
# Under mixed_float16, Model.compile wraps the optimizer in a LossScaleOptimizer (dynamic loss scaling: float16
# gradients would underflow); bfloat16 has float32's exponent range and needs none.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bfloat16 dot products
MIN_FLOAT16_CAPABILITY = (7, 0)  # Volta: the first GPUs whose tensor cores multiply float16


@dataclasses.dataclass(frozen=True)
class Precision:
    """What the Trainer computes in, and why: `precision: bfloat16 (auto: avx512_bf16)`."""

    name: str  # float32 | bfloat16 | float16
    reason: str

    @property
    def policy(self) -> str:
        return POLICIES[self.name]

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (first `flags` line); empty where there is no /proc/cpuinfo (macOS)."""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def gpu_capability(gpu: object) -> Optional[tuple[int, int]]:
    """(major, minor) compute capability of a visible GPU, None when TensorFlow does not report it."""
    try:
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
    except (ValueError, TypeError, tf.errors.OpError):
        return None
    return tuple(capability) if capability else None


def choose_precision(setting: str, gpus: Sequence[object], flags: frozenset[str],
                     capability: Callable[[object], Optional[tuple[int, int]]] = gpu_capability) -> Precision:
    """The precision for `setting` (auto | float32 | bfloat16 | float16) on this machine."""
    if setting != "auto":
        return Precision(setting, f"precision={setting}")
    if gpus:
        capabilities = [capability(gpu) for gpu in gpus]
        known = [c for c in capabilities if c is not None]
        if len(known) == len(capabilities) and min(known) >= MIN_FLOAT16_CAPABILITY:
            lowest = min(known)
            return Precision("float16", f"auto: GPU compute capability {lowest[0]}.{lowest[1]} >= 7.0")
        listed = [f"{c[0]}.{c[1]}" for c in known]
        return Precision("float32", f"auto: GPU compute capability {', '.join(listed) or 'unknown'}, not >= 7.0")
    native = [flag for flag in CPU_BF16_FLAGS if flag in flags]
    if native:
        return Precision("bfloat16", f"auto: {native[0]}")
    return Precision("float32", "auto: no avx512_bf16/amx_bf16 on this CPU")


def machine_precision(cfg: TrainerConfig, gpus: Optional[Sequence[object]] = None,
                      flags: Optional[frozenset[str]] = None) -> Precision:
    """`cfg.precision` resolved on this machine (visible GPUs, /proc/cpuinfo), logged as `precision: ...`."""
    gpus = tf.config.list_physical_devices("GPU") if gpus is None else gpus
    flags = cpu_flags() if flags is None else flags
    choice = choose_precision(cfg.precision, gpus, flags)
    log.info("precision: %s", choice)
    native_on_cpu = {"float32": True, "bfloat16": bool(set(CPU_BF16_FLAGS) & flags), "float16": False}
    if not gpus and not native_on_cpu[choice.name]:
        log.warning("precision: %s is emulated on this CPU and slower than float32", choice.name)
    return choice


@dataclasses.dataclass(frozen=True)
class JitCompile:
    """Whether XLA compiles the training and evaluation steps, and why: `jit_compile: on (auto: float32 on a CPU)`."""

    on: bool
    reason: str

    @property
    def name(self) -> str:
        return "on" if self.on else "off"

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


def choose_jit_compile(setting: str, precision: Precision, gpus: Sequence[object],
                       multi_worker: bool = False, conv_tokenizer: bool = False) -> JitCompile:
    """XLA for `setting` (auto | on | off), training in `precision` on this machine; `conv_tokenizer`: the model
    starts with CCT's convolutional tokenizer (`conv_tokenizer_stages` > 0). "auto" follows the measurements, each
    with the epochs timed from the first step to the last (docs/benchmarks.md 7): float32 on a 2-core Zen 3 trained
    a patch model (keras_io) 1.12x faster with XLA and the conv tokenizer (compact) 0.77x as fast, after 2 more
    minutes of compilation; bfloat16 on a 2-core Zen 4 trained 0.79x as fast with XLA (keras_io) or failed to
    compile (compact: "unsupported operand type BF16 in op dot"), 6.1c. float16, every GPU set-up and multi-worker
    training (whose all-reduce would sit inside the compiled step) are unmeasured, so they keep TensorFlow's
    kernels."""
    if setting != "auto":
        return JitCompile(setting == "on", f"jit_compile={setting}")
    if multi_worker:
        return JitCompile(False, "auto: not measured with MultiWorkerMirroredStrategy")
    if gpus:
        return JitCompile(False, "auto: not measured on GPUs")
    if precision.name != "float32":
        return JitCompile(False, f"auto: {precision.name} on a CPU" + (
            ", where XLA was slower or failed to compile" if precision.name == "bfloat16" else ", not measured"))
    if conv_tokenizer:
        return JitCompile(False, "auto: a convolutional tokenizer on a CPU, where XLA was slower")
    return JitCompile(True, "auto: float32 on a CPU")


def _error_line(error: Exception) -> str:
    """The line of a TensorFlow error that says what is wrong, at most 200 characters."""
    return serving_api.tf_error_line(str(getattr(error, "message", None) or error))[:200]


class XlaUnsupported(RuntimeError):
    """XLA cannot compile the training step in the chosen precision; the message is one line saying what to set."""


def xla_unsupported(precision: Precision, jit_compile: JitCompile, error: Exception) -> Optional[XlaUnsupported]:
    """One line for an UnimplementedError from a step XLA compiles in 16 bits; None for any other error. Seen on
    2026-12-07 (TensorFlow 2.16.2, Zen 4): `compact` in bfloat16 with XLA fails at its first step with "unsupported
    operand type BF16 in op dot" (XLA's CPU backend), while `keras_io` compiles; what `auto` picks does not fail."""
    if not jit_compile.on or precision.name == "float32" or not isinstance(error, tf.errors.UnimplementedError):
        return None
    cause = _error_line(error)
    return XlaUnsupported(f"jit_compile: XLA cannot compile this model's training step in {precision.name} "
                          f"({cause}); set jit_compile=off (what auto picks with {precision.name}) or "
                          f"precision=float32")


def machine_jit_compile(cfg: TrainerConfig, precision: Precision,
                        gpus: Optional[Sequence[object]] = None, multi_worker: bool = False) -> JitCompile:
    """`cfg.jit_compile` resolved on this machine, logged as `jit_compile: ...`."""
    gpus = tf.config.list_physical_devices("GPU") if gpus is None else gpus
    choice = choose_jit_compile(cfg.jit_compile, precision, gpus, multi_worker,
                                conv_tokenizer=cfg.conv_tokenizer_stages > 0)
    log.info("jit_compile: %s", choice)
    return choice


def _no_progress(stage: str) -> None:
    pass


# Told "waiting" right before MultiWorkerMirroredStrategy waits for every worker of the cluster to connect, and
# "connected" once they have: trainer/worker.py's supervising process times that wait (--peer-timeout), since
# TensorFlow's own wait has no timeout and holds the GIL (no timer of the training process can run meanwhile).
cluster_progress: Callable[[str], None] = _no_progress


def choose_strategy(gpus: Sequence[object], cluster: Optional[Cluster] = None) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when TF_CONFIG names several workers (`cluster`, trainer/cluster.py); else
    MirroredStrategy (synchronous data parallelism, one replica per GPU) when more than one GPU is visible; the
    default strategy otherwise: one GPU or a CPU gains nothing from mirroring.

    MultiWorkerMirroredStrategy must be created before the process runs any TensorFlow op: it turns the eager
    context into a gRPC server of the cluster, and tensors or datasets made before live on the old local device
    (run_fn creates it first thing). It waits here until every worker of the cluster has started."""
    if cluster is not None:
        # AUTO: NCCL between GPUs, ring all-reduce over gRPC between CPUs.
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
        cluster_progress(WAITING)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=tf.distribute.cluster_resolver.TFConfigClusterResolver(),
            communication_options=options)
        cluster_progress(CONNECTED)
        return strategy
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def shard_by_example(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` sharded by example (AutoShardPolicy.DATA) across the workers of a MultiWorkerMirroredStrategy.

    TensorFlow's default (AUTO) shards by file and falls back to examples only after failing to: an Examples split
    is often one file (the tiny run's is), fewer than the workers. Every worker reads the whole split (the Trainer
    caches it after the first epoch anyway) and keeps its slice of every global batch, so a global batch is the
    same examples whatever the number of workers."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def describe_multi_worker(cluster: Cluster, strategy: tf.distribute.Strategy, batch_size: int) -> str:
    """'multi-worker: worker 0 of 2 (chief), MultiWorkerMirroredStrategy, global batch 128 = 64 x 2 replicas'."""
    replicas = strategy.num_replicas_in_sync
    return (f"multi-worker: {cluster.describe()}, MultiWorkerMirroredStrategy, global batch {batch_size * replicas} "
            f"= {batch_size} x {replicas} replicas")


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns once every worker of `strategy` got here: an all-reduce of one number."""
    ones = strategy.run(lambda: tf.ones([]))
    strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)


# The errors a collective op or the coordination service raise when a peer is gone: its socket closed or refuses
# (Unavailable: a killed worker, measured 0.16-0.18 s to the survivor's line in 8 of 9 tries on one machine and 8.2 s
# in one, docs/engines.md), it missed the coordination service's heartbeats (Unavailable after ~10 s: a frozen or
# cut-off worker), a collective timed out (DeadlineExceeded), collectives were aborted (Cancelled, Aborted), or a
# peer restarted (FailedPrecondition).
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
               tf.errors.AbortedError, tf.errors.FailedPreconditionError)


class PeerFailure(RuntimeError):
    """A worker of a multi-worker fit stopped answering; the message is one line naming it."""


def peer_failure(cluster: Cluster, error: Exception) -> PeerFailure:
    """One line for the log and the exit: 'worker 0 of 2 (chief): worker 1 of 2 (localhost:23457) stopped answering:
    UnavailableError: Collective ops is aborted by: Socket closed (restart every worker to resume ...)'.
    Restarting every worker resumes from the last finished epoch (trainer/checkpoints.py)."""
    text = str(getattr(error, "message", None) or error)
    # Whole: cut at a fixed length, the line ended mid-word.
    first_line = serving_api.tf_error_line(text) or type(error).__name__
    peers = " or ".join(cluster.peers_named_in(text))
    return PeerFailure(f"{cluster.describe()}: {peers} stopped answering: {type(error).__name__}: {first_line} "
                       f"(restart every worker to resume from the last finished epoch)")


@contextlib.contextmanager
def training_scope(cfg: TrainerConfig, gpus: Optional[Sequence[object]] = None,
                   precision: Optional[Precision] = None,
                   strategy: Optional[tf.distribute.Strategy] = None) -> Iterator[tf.distribute.Strategy]:
    """Build and compile the model inside this: the strategy's scope (`strategy`, default `choose_strategy(gpus)`)
    with the dtype policy of `precision` (default: `machine_precision(cfg)`). Layers keep the policy they were built
    with, so the global policy is restored on exit (other in-process components)."""
    gpus = tf.config.list_physical_devices("GPU") if gpus is None else gpus
    precision = precision or machine_precision(cfg, gpus)
    strategy = strategy or choose_strategy(gpus)
    log.info("training on %d GPU(s): %s, %d replica(s), dtype policy %s", len(gpus), type(strategy).__name__,
             strategy.num_replicas_in_sync, precision.policy)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision.policy)
    try:
        with strategy.scope():
            yield strategy
    finally:
        keras.mixed_precision.set_global_policy(previous)
