"""Typed, frozen trainer settings: the model and the training recipe.

Built once by the pipeline, sent to the Trainer as a plain dict through ``custom_config`` and rebuilt there with
``TrainerConfig.from_dict``. Layers receive the values they need as arguments; nothing reads module globals.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from trainer.features import CIFAR10_CLASSES, DEFAULT_INPUT_SIZE

TOKEN_LEARNER_VARIANTS = ("none", "v1", "v1.1")
LR_SCHEDULES = ("constant", "cosine")
POOLINGS = ("mean", "sequence")
# Training arithmetic (trainer/distribute.py turns it into a Keras dtype policy). "auto" picks the fastest that the
# hardware runs natively; serving is always float32 (trainer/export.py).
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
# XLA compilation of the training and evaluation steps (trainer/distribute.py resolves "auto").
JIT_COMPILE = ("auto", "on", "off")
# Warm start (trainer/warm_start.py): "auto" continues the latest blessed model when it is the same network,
# "off" always trains from scratch.
WARM_STARTS = ("auto", "off")
# The fields that decide the network's weights (their shapes, order and meaning): a base model whose values of these
# differ from this run's cannot lend it its weights. The recipe (epochs, rates, dropout, precision, views) may
# change between a base and its warm start.
ARCHITECTURE_FIELDS = ("image_size", "patch_size", "conv_tokenizer_stages", "conv_tokenizer_filters",
                       "projection_dim", "num_layers", "num_heads", "key_dim", "mlp_dim", "layer_norm_eps",
                       "token_learner", "num_tokens", "token_learner_layer", "token_learner_groups",
                       "token_learner_bottleneck", "token_fuser", "pooling", "num_classes")
# input_size bounds: below 8 pixels a side there is nothing to learn from; above 1024 one cached training image
# alone takes 12 MiB (float32).
INPUT_SIZES = (8, 1024)
# Fields that existed once: reading them names what replaced them, instead of "unknown field".
RETIRED_FIELDS = {
    "mixed_precision": "replaced by precision = auto | float32 | bfloat16 | float16 (auto: mixed_float16 on GPUs "
                       "of compute capability >= 7.0, mixed_bfloat16 on CPUs with avx512_bf16/amx_bf16, float32 "
                       "otherwise); e.g. --set precision=float16",
}


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """Model and recipe of the mini ViT with TokenLearner (defaults: the keras.io recipe).

    Defaults reproduce keras.io "Learning to tokenize in Vision Transformers": 6x6 patches of 48x48 crops
    (64 tokens), width 128, 4 blocks, TokenLearner to 4 tokens after block index 2, AdamW 1e-3 / 1e-4,
    batch 256, 20 epochs. keras.io reports 56.5% top-1 on CIFAR-10 at 20 epochs (mean of 5 runs), trained with
    tensorflow-addons' AdamW, whose decay is not scaled by the learning rate (`weight_decay=0.1` here gives it).
    Run it with ``make run`` (preset ``keras_io``).
    """

    # The side of the square image Transform makes of every input (aspect-preserving resize of the shorter side,
    # then a center crop; trainer/preprocessing.py): the size the Trainer caches and every view is taken from. 32 in
    # every preset, CIFAR-10's own size, so its pixels are not resampled; photos want 64-224 (memory: the Trainer
    # caches input_size^2 x 3 float32 values per training image).
    input_size: int = DEFAULT_INPUT_SIZE
    # Input views of the input_size x input_size normalized image: resized to resize_to, then cropped to image_size,
    # at random for training, centrally for eval and serving.
    image_size: int = 48
    resize_to: int = 52
    # Model.
    patch_size: int = 6  # patch embedding: a Conv2D with kernel = stride = patch_size (unused by the conv tokenizer)
    # > 0: CCT's convolutional tokenizer instead of patches, this many stages of (Conv2D 3x3, ReLU, MaxPool 3x3
    # stride 2), each halving the grid; the earlier stages have conv_tokenizer_filters filters, the last
    # projection_dim (Hassani et al., "Escaping the Big Data Paradigm with Compact Transformers", arXiv:2104.05704).
    conv_tokenizer_stages: int = 0
    conv_tokenizer_filters: int = 64
    projection_dim: int = 128
    num_layers: int = 4
    num_heads: int = 4
    key_dim: int = 0  # width of each attention head; 0 = projection_dim (keras.io), projection_dim / heads is usual
    mlp_dim: int = 256
    dropout: float = 0.1
    layer_norm_eps: float = 1e-6
    token_learner: str = "v1"  # "none" (plain ViT), "v1" (keras.io / paper), "v1.1" (scenic TokenLearnerModuleV11)
    num_tokens: int = 4
    token_learner_layer: int = 2
    # v1.1 only. 0: scenic's MLP bottleneck (LayerNorm -> Dense(bottleneck, GELU) -> Dense(num_tokens)); G >= 1: the
    # form keras.io benchmarked ("groups/tokens" rows): grouped 1x1 projections with G groups.
    token_learner_groups: int = 0
    token_learner_bottleneck: int = 64  # hidden width of the v1.1 and TokenFuser MLPs (scenic: 64)
    # TokenFuser (scenic EncoderModFuser): every block after token_learner_layer runs on freshly learned tokens and
    # is fused back onto the full grid (+ residual), so TokenLearner is used once per such block.
    token_fuser: bool = False
    stochastic_depth: float = 0.0  # drop rate of the last block's residual branches, linear from 0 at block 0
    pooling: str = "mean"  # head: "mean" over tokens (keras.io) or "sequence" (CCT's learned attention pooling)
    # Units of the softmax head: the dataset's class count (pipeline.config.for_dataset sets it from the manifest).
    num_classes: int = len(CIFAR10_CLASSES)
    # Recipe.
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3  # peak rate when a schedule is used
    weight_decay: float = 1e-4
    lr_schedule: str = "constant"  # "constant" (keras.io) or "cosine" decay to 0 after the warmup
    warmup_fraction: float = 0.0  # linear warmup over this fraction of all steps (0.1 = 2 of 20 epochs)
    label_smoothing: float = 0.0
    clip_norm: float = 0.0  # global gradient-norm clipping; 0 = off
    crop_padding: int = 0  # training view: zero-pad (the channel mean) by this much before the random crop
    seed: int = 42
    # auto | float32 | bfloat16 | float16 (mixed: float32 variables and softmax head, 16-bit compute). "auto":
    # bfloat16 on CPUs with avx512_bf16/amx_bf16, float16 on GPUs of compute capability >= 7.0, else float32.
    precision: str = "auto"
    # auto | on | off: compile the training and evaluation steps with XLA (Keras `jit_compile`), which fuses the
    # element-wise ops around the matmuls. "auto": on where it was measured faster (float32 on a CPU, patch models;
    # not the conv tokenizer, which XLA slowed), else off.
    # Serving signatures are never XLA-compiled: TF Serving's CPU build runs XLA only with
    # --xla_cpu_compilation_enabled, off by default.
    jit_compile: str = "auto"
    # Warm start: "auto" starts from the weights of the latest blessed model (the Trainer's base_model) when its
    # ARCHITECTURE_FIELDS and class list equal this run's, and then trains retrain_epochs epochs instead of `epochs`
    # (new spans refine a model that already learned the old ones); "off" trains from scratch every run.
    warm_start: str = "auto"
    retrain_epochs: int = 5
    # Serving: an image whose header declares more pixels is refused before decoding (trainer/image_header.py);
    # 4096x4096 admits real photos while a decoded image stays under 50 MB (RGB uint8).
    max_decode_pixels: int = 4096 * 4096

    def __post_init__(self) -> None:
        if self.token_learner not in TOKEN_LEARNER_VARIANTS:
            raise ValueError(
                f"token_learner: expected one of {TOKEN_LEARNER_VARIANTS}, got {self.token_learner!r}")
        # Before the checks below divide by them.
        for name in ("image_size", "resize_to", "patch_size", "projection_dim", "mlp_dim", "epochs", "batch_size",
                     "num_tokens", "num_layers", "num_heads", "token_learner_bottleneck", "max_decode_pixels",
                     "conv_tokenizer_filters", "retrain_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        low, high = INPUT_SIZES
        if not low <= self.input_size <= high:
            raise ValueError(f"input_size: expected {low}..{high} pixels (the side Transform resizes every image "
                             f"to), got {self.input_size}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes: expected at least 2 classes, got {self.num_classes}")
        if self.image_size > self.resize_to:
            raise ValueError(f"image_size: expected at most resize_to ({self.resize_to}), the view it is cropped "
                             f"from; got {self.image_size}")
        if not self.conv_tokenizer_stages and self.image_size % self.patch_size:
            raise ValueError(f"image_size: expected a multiple of patch_size ({self.patch_size}), got "
                             f"{self.image_size} (or set patch_size to a divisor of it)")
        if self.token_learner != "none" and not 0 <= self.token_learner_layer < self.num_layers - 1:
            raise ValueError(
                f"token_learner_layer: expected 0..{self.num_layers - 2} so that at least one block runs on the "
                f"learned tokens, got {self.token_learner_layer}")
        if self.token_learner_groups < 0 or (self.token_learner_groups and (
                self.token_learner != "v1.1" or self.projection_dim % self.token_learner_groups)):
            raise ValueError(f"token_learner_groups: expected 0, or with token_learner='v1.1' a divisor of "
                             f"projection_dim ({self.projection_dim}); got {self.token_learner_groups} "
                             f"(token_learner={self.token_learner!r})")
        if self.token_fuser and self.token_learner == "none":
            raise ValueError("token_fuser: needs a TokenLearner (token_learner 'v1' or 'v1.1'), got 'none'")
        for name in ("conv_tokenizer_stages", "key_dim"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if self.image_size < 2 ** self.conv_tokenizer_stages:
            raise ValueError(f"conv_tokenizer_stages: {self.conv_tokenizer_stages} stages halve the grid below one "
                             f"token for image_size {self.image_size}; expected at most "
                             f"{self.image_size.bit_length() - 1}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {self.pooling!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {self.precision!r}")
        if self.jit_compile not in JIT_COMPILE:
            raise ValueError(f"jit_compile: expected one of {JIT_COMPILE}, got {self.jit_compile!r}")
        if self.warm_start not in WARM_STARTS:
            raise ValueError(f"warm_start: expected one of {WARM_STARTS}, got {self.warm_start!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule: expected one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        for name in ("warmup_fraction", "label_smoothing", "stochastic_depth", "dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1), got {getattr(self, name)}")
        for name in ("clip_norm", "crop_padding", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate: expected > 0, got {self.learning_rate}")

    @property
    def grid_side(self) -> int:
        """Side of the token grid the tokenizer gives: image_size / patch_size, or halved (rounded up, as
        "same" max-pooling does) once per conv tokenizer stage."""
        if not self.conv_tokenizer_stages:
            return self.image_size // self.patch_size
        side = self.image_size
        for _ in range(self.conv_tokenizer_stages):
            side = -(-side // 2)
        return side

    @property
    def num_patches(self) -> int:
        return self.grid_side ** 2

    @property
    def top_k(self) -> int:
        """k of the top-k accuracy the Trainer and the Evaluator report: 5, or N - 1 for fewer than 6 classes
        (with k >= N every prediction would count as right)."""
        return min(5, self.num_classes - 1)

    @property
    def top_k_metric(self) -> str:
        """The Keras name of that metric: history.csv's column and the TensorBoard scalar ("top5_accuracy")."""
        return f"top{self.top_k}_accuracy"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        values = dict(values)
        if "mixed_precision" in values and "precision" not in values:
            # A config stored before `precision` existed: false was float32 everywhere; true was float16 on GPU,
            # which `auto` still picks there.
            values["precision"] = "auto" if values.pop("mixed_precision") else "float32"
        retired = sorted(set(values) & set(RETIRED_FIELDS))
        if retired:
            raise ValueError("; ".join(f"{name}: {RETIRED_FIELDS[name]}" for name in retired))
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown trainer config field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


PRESETS: dict[str, TrainerConfig] = {
    # Seconds per epoch on a few hundred images: for tests and smoke runs, not for accuracy.
    # float32 on every machine, so tests compare exact numbers; no XLA, whose compile time would outlast the training.
    "tiny": TrainerConfig(projection_dim=32, num_layers=2, num_heads=2, mlp_dim=64, token_learner_layer=0,
                          epochs=2, batch_size=64, precision="float32", jit_compile="off"),
    # keras.io's model and recipe (the defaults above). Expect ~66.3% test top-1 at 20 epochs on the full data
    # (66.96% and 65.66%, two seeds, docs/benchmarks.md 8.4, 8.4b; keras.io reports 56.5% on 40,000 images):
    # `make run` (3.5 h on a 2-core Zen 3 CPU, 1 h 57 min on a 2-core Xeon with AVX-512).
    "keras_io": TrainerConfig(),
    # Same model (TokenLearner v1, 4 tokens after block 2, width 128, 4 blocks) and the same 20 epochs; a modern
    # small-ViT recipe: higher peak rate with warmup + cosine decay, decoupled weight decay 0.05, label smoothing,
    # gradient clipping, and pad-and-crop + flip on the full 32x32 image shown at 48x48 (no border lost at eval).
    # Expect ~69.5% test top-1 at 20 epochs on the full data (measured once, docs/benchmarks.md section 8.3; keras.io's
    # recipe: 56.5%): `make run PRESET=better` (2 h 40 min to 3 h 30 min on a 2-core Zen 3 CPU).
    "better": TrainerConfig(resize_to=48, crop_padding=6, learning_rate=2e-3, weight_decay=0.05,
                            lr_schedule="cosine", warmup_fraction=0.1, label_smoothing=0.1, clip_norm=1.0,
                            stochastic_depth=0.1),
    # A compact TokenLearner ViT after CCT (keras.io "Compact Convolutional Transformers": 76.8% at 30 epochs with
    # 0.4M parameters): a 2-stage conv tokenizer (64 -> 128 filters) on the 32x32 image gives an 8x8 grid of 64
    # tokens; 6 blocks with 4 heads of 32; TokenLearner to 16 tokens after block 3, so the last 2 blocks see 16;
    # sequence pooling; the `better` recipe at peak learning rate 1e-3, pad-4 crop + flip at 32x32, no dropout. About
    # 0.9M parameters, and cheaper per image than keras_io (whose 4 heads are 128 wide each). Expect ~80.5% test
    # top-1 at 20 epochs on the full data (80.61% and 80.35%, two seeds, docs/benchmarks.md 8.2, 8.2b):
    # `make run PRESET=compact` (3.5 h on a 2-core Zen 3 CPU, 1 h 51 min on a 2-core Xeon with AVX-512).
    "compact": TrainerConfig(image_size=32, resize_to=32, crop_padding=4, conv_tokenizer_stages=2,
                             conv_tokenizer_filters=64, projection_dim=128, num_layers=6, num_heads=4, key_dim=32,
                             mlp_dim=256, dropout=0.0, num_tokens=16, token_learner_layer=3, pooling="sequence",
                             learning_rate=1e-3, weight_decay=0.05, lr_schedule="cosine", warmup_fraction=0.1,
                             label_smoothing=0.1, clip_norm=1.0, stochastic_depth=0.1),
}
# `compact` for small images (icons, scans, 8-28 pixel digits): Transform brings every image to 16x16, the 2-stage
# conv tokenizer gives a 4x4 grid of 16 tokens, TokenLearner keeps 8; pad-2 crop + flip at 16x16; batch 64 and 30
# epochs, for datasets of a few thousand images. Expect ~99% test top-1 on scikit-learn's digits (1,797 images;
# docs/benchmarks.md section 9): `tokenlearner run --data DIGITS_FOLDER --preset small_images` (a few minutes of
# training on a 2-core CPU).
PRESETS["small_images"] = dataclasses.replace(PRESETS["compact"], input_size=16, image_size=16, resize_to=16,
                                              crop_padding=2, num_tokens=8, epochs=30, batch_size=64)
