"""Helpers the tests share (fixtures are in conftest.py): synthetic images and CIFAR-10 files in the official
layouts, a tiny real exported model, and the CLI run in a fresh interpreter (the shared tiny run)."""
from __future__ import annotations

import dataclasses
import io
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = Path(os.environ.get("TOKENLEARNER_SHARED", REPO.parent / "shared")) / "data/cifar10/cifar10-jpg.tar.gz"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# ------------------------------------------------------------------------------------- the shared tiny pipeline run

@dataclasses.dataclass(frozen=True)
class TinyRun:
    """A finished `tokenlearner run --preset tiny --limit 300` with default settings (Beam DirectRunner, two
    worker processes), shared by every test that only reads a run (fixture `tiny_run`). Read it, never write into
    it; the one test that runs again into `output` (test_pipeline_e2e's cached re-run) leaves the first run's
    artifacts as they are, so readers name the first run by `run_id` instead of asking for the latest."""

    output: Path  # the --output folder
    console: str  # everything the run printed, stdout and stderr, Beam workers and interpreter exit included
    run_id: str  # the first run, as MLMD names it (the first line of the summary)


TINY_RUN_LIMIT = 300  # images per class-balanced split: 270 train + 30 eval, 300 test


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    """`tokenlearner ARGS` in a fresh interpreter, as a user runs it; stdout and stderr merged, as on a console."""
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


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


# ------------------------------------------------------------------------------------------------ exported model

@dataclasses.dataclass(frozen=True)
class ExportedModel:
    """A tiny real model exported through the pipeline's code path, laid out as the Pusher publishes it."""

    base_dir: Path  # <serving>/<model_name>: what TF Serving's model_base_path points at
    version_dir: Path  # base_dir/<version>: the SavedModel
    model_name: str
    version: int
    class_names: tuple[str, ...]
    warmup_images: tuple[bytes, ...] = dataclasses.field(repr=False)  # the images in the warmup file
    data_pattern: str  # gzipped raw TFRecords {image, label} the model was fitted on
    transform_dir: str  # tft.TFTransformOutput folder (what the Transform component writes)


def build_exported_model(root: Path, model_name: str = "tokenlearner", version: int = 1, n: int = 64,
                         warmup: int = 3) -> ExportedModel:
    """Transform analysis (tft_beam) on `n` synthetic 32x32 PNG examples, the `tiny` preset model compiled by
    `trainer.recipe.compile_model`, one training step, then `trainer.export.export_serving_model` and
    `write_warmup_requests` into root/serving/<model_name>/<version>/. About 30 s."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from trainer import export, features, inputs, preprocessing, recipe
    from trainer.config import PRESETS

    images = [png_bytes(image) for image in random_images(n, seed=7)]
    labels = [i % 10 for i in range(n)]
    data_dir = root / "data"
    data_dir.mkdir(parents=True)
    data_pattern = str(data_dir / "train-*.tfrecord.gz")
    with tf.io.TFRecordWriter(str(data_dir / "train-00000.tfrecord.gz"), options="GZIP") as writer:
        for image, label in zip(images, labels):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                features.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            })).SerializeToString())
    # The feature shapes SchemaGen infers for ingestion's examples (infer_feature_shape=True).
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec({
        features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
        features.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64)}))
    transform_dir = str(root / "transform")
    raw = [{features.IMAGE_KEY: [image], features.LABEL_KEY: [label]} for image, label in zip(images, labels)]
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=str(root / "tft_tmp")):
        transform_fn = (p | beam.Create(raw), metadata) | tft_beam.AnalyzeDataset(preprocessing.preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    # The raw schema beside the graph, as the Transform component writes it (the serving signatures parse with it).
    metadata_io.write_metadata(metadata, os.path.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    tft_output = tft.TFTransformOutput(transform_dir)

    cfg = PRESETS["tiny"]
    model = recipe.compile_model(cfg)
    train = inputs.make_dataset([data_pattern], tft_output, cfg, training=True, num_examples=n)
    model.fit(train, epochs=1, steps_per_epoch=1, verbose=0)
    base_dir = root / "serving" / model_name
    version_dir = base_dir / str(version)
    export.export_serving_model(model, tft_output, cfg, CLASSES, str(version_dir))
    export.write_warmup_requests(str(version_dir), model_name, images[:warmup])
    return ExportedModel(base_dir=base_dir, version_dir=version_dir, model_name=model_name, version=version,
                         class_names=CLASSES, warmup_images=tuple(images[:warmup]), data_pattern=data_pattern,
                         transform_dir=transform_dir)
