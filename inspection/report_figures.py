"""The report's figures (matplotlib, Agg): each is drawn at a fixed size in pixels, so the HTML can give every
<img> its width and height and a test can check the PNG files."""
from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 100
LEARNING_CURVES_SIZE = (1500, 450)
CONFUSION_MATRIX_SIZE = (900, 800)
PER_CLASS_SIZE = (900, 450)  # up to 15 classes; taller for more (per_class_size)
PER_CLASS_ROW_PX = 24  # a bar and its 9-pt label
PER_CLASS_LABELED = 100  # beyond this many classes the bars are unlabeled (the report's table names them)
CONFUSION_COUNTS_UP_TO = 20  # classes whose matrix cells still hold a readable count
CONFUSION_NAMES_UP_TO = 40  # classes whose names still fit along the axes; beyond: class ids
NAME_CHARS = 16  # a class name in a panel title is cut to this many characters
PREDICTIONS_COLUMNS, PREDICTIONS_ROWS = 8, 4
PREDICTIONS_SIZE = (1200, 760)
ATTENTION_IMAGES = 4  # rows of the attention figure
ATTENTION_MAX_TOKENS = 8  # columns beyond this would be too small to read


# The Trainer's top-k metric (trainer/config.py `top_k_metric`: "top5_accuracy", "top2_accuracy" for 3 classes).
TOP_K_METRIC = re.compile(r"top(\d+)_accuracy")


def per_class_size(num_classes: int) -> tuple[int, int]:
    """PER_CLASS_SIZE, one PER_CLASS_ROW_PX row per class beyond 15, at most PER_CLASS_LABELED rows."""
    rows = min(num_classes, PER_CLASS_LABELED)
    return PER_CLASS_SIZE[0], max(PER_CLASS_SIZE[1], PER_CLASS_ROW_PX * rows + 90)


def short_name(name: str) -> str:
    """A class name cut to NAME_CHARS characters: folder names can be long, panel titles and axes are not."""
    return name if len(name) <= NAME_CHARS else name[:NAME_CHARS - 1] + "…"


def attention_size(num_tokens: int) -> tuple[int, int]:
    """One column for the image, one per shown token; one row per image."""
    return (170 * (1 + min(num_tokens, ATTENTION_MAX_TOKENS)) + 40, 185 * ATTENTION_IMAGES + 60)


@dataclasses.dataclass(frozen=True)
class Predictions:
    """The model's answers on the test split: images as stored (uint8), true labels, probabilities."""

    images: np.ndarray  # (N, S, S, 3) uint8, S = input_size: as Transform decodes them, before normalizing
    labels: np.ndarray  # (N,) int
    probabilities: np.ndarray  # (N, classes) float

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def worst_first(self) -> np.ndarray:
        """Indices by the probability given to the true class, lowest first: confident mistakes lead."""
        true_probability = self.probabilities[np.arange(len(self.labels)), self.labels]
        return np.argsort(true_probability, kind="stable")


def _figure(size: tuple[int, int]):
    return plt.figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)


def _save(fig, path: str) -> None:
    # No bbox_inches="tight": it would change the size the HTML announces.
    fig.savefig(path, dpi=DPI, format="png")
    plt.close(fig)


def learning_curves(history: Mapping[str, Sequence[float]], best_epoch: int | None, path: str) -> None:
    """Loss, accuracy and top-k accuracy per epoch, training and validation; the kept epoch marked."""
    fig = _figure(LEARNING_CURVES_SIZE)
    axes = fig.subplots(1, 3)
    epochs = np.arange(1, len(history["loss"]) + 1)
    top = next((m for m in map(TOP_K_METRIC.fullmatch, history) if m), None)
    top_k = (top.group(0), f"top-{top.group(1)} accuracy") if top else ("top5_accuracy", "top-5 accuracy")
    for ax, (metric, title) in zip(axes, [("loss", "loss"), ("accuracy", "accuracy"), top_k]):
        for prefix, label, style in [("", "train", "-o"), ("val_", "validation", "--s")]:
            if prefix + metric in history:
                ax.plot(epochs, history[prefix + metric], style, label=label, markersize=4)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.6", linestyle=":", label=f"kept: epoch {best_epoch}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if metric != "loss":
            ax.set_ylim(0, 1)
    axes[0].legend()
    fig.tight_layout()
    _save(fig, path)


def confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str) -> None:
    """Counts per (true, predicted) class; colour = share of the true class's examples. Up to
    CONFUSION_COUNTS_UP_TO classes each cell shows its count, up to CONFUSION_NAMES_UP_TO the axes name the classes;
    beyond, the axes give class ids (the report's table has the names and counts)."""
    fig = _figure(CONFUSION_MATRIX_SIZE)
    ax = fig.subplots()
    n = len(class_names)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if n <= CONFUSION_COUNTS_UP_TO:
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(j, i, f"{int(count)}", ha="center", va="center", fontsize=9 if n <= 10 else 7,
                        color="white" if share[i, j] > 0.5 else "black")
    if n <= CONFUSION_NAMES_UP_TO:
        ticks, size = np.arange(n), 9 if n <= CONFUSION_COUNTS_UP_TO else 6
        names = [short_name(name) for name in class_names]
        ax.set_xticks(ticks, names, rotation=45, ha="right", fontsize=size)
        ax.set_yticks(ticks, names, fontsize=size)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    else:
        ax.set_xlabel("predicted class id")
        ax.set_ylabel("true class id")
    ax.set_title(f"test split: {int(matrix.sum()):,} examples, {int(np.trace(matrix)):,} correct")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    _save(fig, path)


def per_class_accuracy(accuracy: Sequence[float] | np.ndarray, counts: Sequence[int] | np.ndarray,
                       overall: float | None, class_names: Sequence[str], path: str) -> None:
    """One bar per class (`per_class_size` tall), named and labeled with its accuracy up to PER_CLASS_LABELED
    classes; beyond, bars in class-id order."""
    fig = _figure(per_class_size(len(class_names)))
    ax = fig.subplots()
    y = np.arange(len(class_names))
    ax.barh(y, accuracy, color="#4878a8")
    labeled = len(class_names) <= PER_CLASS_LABELED
    if labeled:
        for i, (a, n) in enumerate(zip(accuracy, counts)):
            ax.text(min(a, 0.85) + 0.01, i, f"{a:.1%} of {n}", va="center", fontsize=9)
        ax.set_yticks(y, [short_name(name) for name in class_names])
    else:
        ax.set_ylabel("class id")
    if overall is not None:
        ax.axvline(overall, color="#c44e52", linestyle="--", label=f"overall {overall:.1%}")
        ax.legend(loc="lower right")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("test accuracy")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def prediction_grid(predictions: Predictions, class_names: Sequence[str], path: str) -> None:
    """Test images, worst mistakes first (lowest probability on the true class), with predicted vs true."""
    fig = _figure(PREDICTIONS_SIZE)
    axes = fig.subplots(PREDICTIONS_ROWS, PREDICTIONS_COLUMNS).ravel()
    order = predictions.worst_first()[:len(axes)]
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, order):
        true, predicted = int(predictions.labels[i]), int(predictions.predicted[i])
        ax.imshow(predictions.images[i], interpolation="nearest")
        ax.set_title(f"{short_name(class_names[predicted])} {predictions.probabilities[i, predicted]:.0%}\n"
                     f"true: {short_name(class_names[true])} {predictions.probabilities[i, true]:.0%}",
                     fontsize=9, color="#b00020" if predicted != true else "#1b7f3b")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.93, bottom=0.01, wspace=0.1, hspace=0.45)
    _save(fig, path)


def attention_maps(views: np.ndarray, maps: np.ndarray, titles: Sequence[str], path: str) -> None:
    """Each row: an image as the model sees it (central crop), then each token's spatial weights over it.

    views: (N, S, S, 3) uint8; maps: (N, T, side, side) in [0, 1], each patch covering S / side pixels (rounded
    where side does not divide S, as a conv tokenizer's rounded-up grid). Each map is stretched to its own min..max
    so the pattern shows even when the weights are nearly flat; the range is in the panel's title."""
    shown = min(maps.shape[1], ATTENTION_MAX_TOKENS)
    fig = _figure(attention_size(maps.shape[1]))
    axes = fig.subplots(ATTENTION_IMAGES, 1 + shown, squeeze=False)
    size = views.shape[1]
    for row in range(ATTENTION_IMAGES):
        for ax in axes[row]:
            ax.axis("off")
        if row >= len(views):
            continue
        axes[row, 0].imshow(views[row], interpolation="nearest")
        axes[row, 0].set_title(titles[row], fontsize=9)
        # The patch each pixel lies in (side may not divide size: a conv tokenizer's grid is rounded up).
        patch = np.arange(size) * maps.shape[2] // size
        for t in range(shown):
            m = maps[row, t]
            low, high = float(m.min()), float(m.max())
            weight = (m - low) / (high - low) if high > low else np.ones_like(m)
            # Each patch's weight scales its pixels: what the token pools stays bright, the rest fades.
            mask = weight[np.ix_(patch, patch)][..., None]
            axes[row, 1 + t].imshow((views[row] * (0.12 + 0.88 * mask)).astype(np.uint8), interpolation="nearest")
            axes[row, 1 + t].set_title(f"token {t + 1}: {low:.3g}–{high:.3g}", fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.95, bottom=0.01, wspace=0.05, hspace=0.25)
    _save(fig, path)
