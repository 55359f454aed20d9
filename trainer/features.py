"""The data contract shared by ingestion, Transform, Trainer and serving. No TensorFlow here: ingestion workers
import it."""
from __future__ import annotations

IMAGE_KEY = "image"  # encoded image bytes (PNG from ingestion; PNG or JPEG from serving clients)
LABEL_KEY = "label"  # int64 class id in [0, 10)
IMAGE_SIZE = 32
CHANNELS = 3
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def transformed_name(key: str) -> str:
    return f"{key}_xf"
