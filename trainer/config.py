"""Typed, frozen trainer settings: the model and the training recipe.

Built once by the pipeline, sent to the Trainer as a plain dict through ``custom_config`` and rebuilt there with
``TrainerConfig.from_dict``. Layers receive the values they need as arguments; nothing reads module globals.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

TOKEN_LEARNER_VARIANTS = ("none", "v1")


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """Model and recipe of the mini ViT with TokenLearner (defaults: the keras.io recipe).

    Defaults reproduce keras.io "Learning to tokenize in Vision Transformers": 6x6 patches of 48x48 crops
    (64 tokens), width 128, 4 blocks, TokenLearner to 4 tokens after block index 2, AdamW 1e-3 / 1e-4,
    batch 256, 20 epochs. keras.io reports 56.5% top-1 on CIFAR-10 at 20 epochs (mean of 5 runs).
    Run it with ``make run`` (preset ``keras_io``).
    """

    # Input views: Transform gives 32x32 normalized images; training crops at random, eval/serving centrally.
    image_size: int = 48
    resize_to: int = 52
    # Model.
    patch_size: int = 6
    projection_dim: int = 128
    num_layers: int = 4
    num_heads: int = 4
    mlp_dim: int = 256
    dropout: float = 0.1
    layer_norm_eps: float = 1e-6
    token_learner: str = "v1"
    num_tokens: int = 4
    token_learner_layer: int = 2
    num_classes: int = 10
    # Recipe.
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 42

    def __post_init__(self) -> None:
        if self.token_learner not in TOKEN_LEARNER_VARIANTS:
            raise ValueError(
                f"token_learner: expected one of {TOKEN_LEARNER_VARIANTS}, got {self.token_learner!r}")
        if self.image_size > self.resize_to:
            raise ValueError(f"image_size ({self.image_size}) must not exceed resize_to ({self.resize_to})")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
        if self.token_learner != "none" and not 0 <= self.token_learner_layer < self.num_layers - 1:
            raise ValueError(
                f"token_learner_layer: expected 0..{self.num_layers - 2} so that at least one block runs on the "
                f"learned tokens, got {self.token_learner_layer}")
        for name in ("epochs", "batch_size", "num_tokens", "num_layers", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown trainer config field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


PRESETS: dict[str, TrainerConfig] = {
    # Seconds per epoch on a few hundred images: for tests and smoke runs, not for accuracy.
    "tiny": TrainerConfig(projection_dim=32, num_layers=2, num_heads=2, mlp_dim=64, token_learner_layer=0,
                          epochs=2, batch_size=64),
    "keras_io": TrainerConfig(),
}
