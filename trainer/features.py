"""The data contract shared by ingestion, Transform, Trainer and serving. No TensorFlow here: ingestion workers
import it."""
from __future__ import annotations

IMAGE_KEY = "image"  # encoded image bytes, any size (PNG or JPEG from ingestion; PNG, JPEG, GIF, BMP from clients)
LABEL_KEY = "label"  # int64 class id in [0, N): the index into the dataset's class list (manifest.json)
CHANNELS = 3
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_IMAGE_SIZE = 32  # every CIFAR-10 image is 32x32
# Transform's default side (TrainerConfig.input_size): CIFAR-10's, so its pixels reach the model without resampling.
DEFAULT_INPUT_SIZE = CIFAR10_IMAGE_SIZE


def transformed_name(key: str) -> str:
    return f"{key}_xf"
