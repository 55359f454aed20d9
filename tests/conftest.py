"""Shared fixtures: real CIFAR-10 from ../shared when present, tiny synthetic files in the official layouts."""
from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = Path(os.environ.get("TOKENLEARNER_SHARED", REPO.parent / "shared")) / "data/cifar10/cifar10-jpg.tar.gz"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="session")
def shared_cifar() -> Path:
    if not SHARED_CIFAR.is_file():
        pytest.skip(f"real CIFAR-10 not found at {SHARED_CIFAR} (the ../shared folder beside the checkout)")
    return SHARED_CIFAR


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def random_images(n: int, seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def write_official(root: Path, per_batch: int = 20, labels=None) -> Path:
    """cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta, as the official pickles."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        images = random_images(per_batch, seed=k)
        batch_labels = list(labels) if labels is not None else [i % 10 for i in range(per_batch)]
        batch = {b"batch_label": name.encode(), b"labels": batch_labels,
                 b"data": images.transpose(0, 3, 1, 2).reshape(per_batch, -1),
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CLASSES]}, protocol=2))
    return folder


def write_image_folder(root: Path, per_class: int = 4, fmt: str = "PNG", size: int = 32,
                       classes=CLASSES) -> Path:
    """train/<class>/NNNN.png and test/<class>/NNNN.png."""
    ext = {"PNG": "png", "JPEG": "jpg"}[fmt]
    for split in ("train", "test"):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            seed = 2 * c + (split == "test")
            for i, image in enumerate(random_images(per_class, seed=seed, size=size)):
                (root / split / name / f"{i:04d}.{ext}").write_bytes(png_bytes(image, fmt))
    return root


def make_tar(src: Path, dest: Path, arcname: str | None = None) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        if arcname is None:
            for child in sorted(src.iterdir()):
                tar.add(child, arcname=child.name)
        else:
            tar.add(src, arcname=arcname)
    return dest
