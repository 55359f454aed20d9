"""Helpers the tests share (fixtures are in conftest.py): synthetic images and CIFAR-10 files in the official
layouts, a tiny real exported model, the CLI run in a fresh interpreter (the shared tiny run) or in this one, and two
datasets that are not CIFAR-10 as image folders (scikit-learn's digits; a 3-class folder of mixed formats, modes and
sizes)."""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = Path(os.environ.get("TOKENLEARNER_SHARED", REPO.parent / "shared")) / "data/cifar10/cifar10-jpg.tar.gz"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


T = TypeVar("T")


def free_port() -> int:
    """A loopback port that nothing listens on and that no other process is handed before a server binds it.

    A port taken from bind(0) and closed again can be handed to the next bind(0) anywhere on the machine (another
    xdist worker's server) before ours binds it. Here the port is left in TIME_WAIT instead: one connection to it,
    closed from its side first. The kernel hands a TIME_WAIT port to no bind(0) for about a minute, while a server
    that sets SO_REUSEADDR, as gRPC (TensorFlow's workers, TF Serving), MariaDB and chromedriver do, binds it at
    once. A client that connects meanwhile is refused: the port is also a closed one."""
    import socket

    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the side that closes first keeps the TIME_WAIT: this port
            client.recv(1)  # the close has arrived: our side's close completes the handshake
    return port


# ------------------------------------------------------------------------ session fixtures built once per test run

def built_once(tmp_path_factory, name: str, build: Callable[[Path], T]) -> T:
    """`build(folder)` once per test run, even when pytest-xdist runs the tests in several worker processes (CI runs
    two: pyproject's addopts), each of which starts its own session. The first worker to ask builds into a folder
    beside every worker's temporary folder and leaves the pickled result there; one that asks meanwhile waits on a
    file lock, then reads it. A build that fails leaves no result, so the next worker to ask builds again (and
    fails the same way). Without xdist, a plain `mktemp(name)`. `build`'s result must pickle (the fixtures' frozen
    dataclasses and paths do)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent  # the run's folder; each worker's basetemp is a popen-gwN in it
    folder, result = shared / name, shared / f"{name}.pickle"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, by a worker that crashed too
        if result.is_file():
            return pickle.loads(result.read_bytes())
        shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
        folder.mkdir()
        value = build(folder)
        result.write_bytes(pickle.dumps(value))
        return value


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


@dataclasses.dataclass(frozen=True)
class PipelineRun:
    """A finished `tokenlearner run` through the CLI (in the test interpreter), shared by the tests that read it
    (fixtures `digits_run`, `mixed_run`). Read it, never write into it."""

    output: Path  # the --output folder
    console: str  # everything the run printed, stdout and stderr
    run_id: str  # the run, as MLMD names it (the first line of the summary)
    data: Path  # the --data source

    @property
    def dataset(self) -> Path:
        """The dataset folder ingestion wrote under <output>/data (train/, eval/, test/, manifest.json)."""
        (manifest,) = (self.output / "data").glob("*/manifest.json")
        return manifest.parent

    @property
    def manifest(self) -> dict:
        import json

        return json.loads((self.dataset / "manifest.json").read_text())

    @property
    def pipeline_root(self) -> Path:
        (config,) = (self.output / "pipeline").glob("*/config.json")
        return config.parent

    def config(self):
        """The PipelineConfig the run saved (its class names, trainer settings, metadata store)."""
        from pipeline import config as config_lib

        return config_lib.load(str(self.output), pipeline_name=self.pipeline_root.name)

    def pushed_versions(self, model_name: str = "tokenlearner") -> list[Path]:
        base = self.output / "serving" / model_name
        return sorted(base.iterdir()) if base.is_dir() else []

    def artifact_uri(self, component: str, type_name: str) -> str:
        """The uri of the run's output `type_name` of `component`, e.g. ("Evaluator", "ModelEvaluation")."""
        from inspection import summary

        run = summary.collect(self.config(), self.run_id)
        step = next(s for s in run.steps if s.component == component)
        return step.outputs[type_name][0].uri


def pyproject_packages() -> list[str]:
    """The packages pyproject.toml's [tool.setuptools] lists (what an install or an sdist carries)."""
    import re

    listed = re.search(r"^packages = \[(.*?)\]", (REPO / "pyproject.toml").read_text(), flags=re.M | re.S).group(1)
    return re.findall(r'"([\w.]+)"', listed)


def docker_build_sources(dest: Path) -> Path:
    """What deploy/Dockerfile's build stage holds in its WORKDIR when it runs `pip install --no-deps .`: each path its
    COPY lines take from the build context (the repository root), copied into `dest`. A path the .dockerignore keeps
    out of the context fails here as `docker build` fails on it (COPY: not found); a package pyproject.toml lists
    but no COPY brings fails at the install, as in the image."""
    whitelist = {line[1:].strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
                 if line.startswith("!")}
    stages = (REPO / "deploy" / "Dockerfile").read_text().split("\nFROM ")
    (build_stage,) = [stage for stage in stages if "pip install --no-deps ." in stage]
    for line in build_stage.splitlines():
        if not line.startswith("COPY ") or "--from=" in line:
            continue
        *sources, target = line.split()[1:]
        for source in sources:
            if source not in whitelist:
                raise AssertionError(f"deploy/Dockerfile: `{line}`: .dockerignore keeps {source} out of the build "
                                     f"context (let it in with `!{source}`)")
            to = dest / Path(source).name if target in (".", "./") or target.endswith("/") else dest / target
            if (REPO / source).is_dir():
                shutil.copytree(REPO / source, to, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / source, to)
    return dest


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 1800, kill_when: str | None = None,
            log: Path | None = None) -> subprocess.CompletedProcess:
    """`tokenlearner ARGS` in a fresh interpreter, as a user runs it; stdout and stderr merged, as on a console.
    With `kill_when`, SIGKILLs its whole process group (Beam workers included) as soon as a line of its output
    matches that regex: the crash of a machine at that point; the returncode is then -9. With `log`, appends the
    command and its output to that file. Past `timeout` seconds the group is killed and TimeoutExpired raised: a
    guard against a hang, not a measurement."""
    proc = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    timed_out = threading.Event()

    def kill(event: threading.Event | None = None) -> None:
        if event is not None:
            event.set()
        with contextlib.suppress(ProcessLookupError):  # the group already gone
            os.killpg(proc.pid, signal.SIGKILL)

    # Reading the output blocks; the timer kills the group of a command that hangs without printing anything.
    watchdog = threading.Timer(timeout, kill, (timed_out,))
    watchdog.start()
    lines: list[str] = []
    killed = False
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if kill_when and re.search(kill_when, line):
                kill()
                killed = True
                break
        rc = proc.wait()
    finally:
        watchdog.cancel()
    out = "".join(lines)
    if log is not None:
        with open(log, "a") as f:
            f.write(f"\n$ tokenlearner {' '.join(args)}\n{out}")
    if timed_out.is_set():
        raise subprocess.TimeoutExpired(proc.args, timeout, output=out)
    return subprocess.CompletedProcess(proc.args, -9 if killed and rc < 0 else rc, stdout=out)


def run_cli_in_process(args: list[str]) -> subprocess.CompletedProcess:
    """`tokenlearner ARGS` called in this interpreter (`cli.main`): the same command without a fresh
    interpreter's ~10 s of imports; its Python-level stdout and stderr (our logs, TFX's component progress, Keras's
    epoch lines, the summary, the error line) merged as `run_cli` merges them. TensorFlow's C++ log lines are not in
    it. For runs with Beam in this process (`beam_workers=1`)."""
    import contextlib

    import cli

    console = io.StringIO()
    with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
        code = cli.main(args)
    return subprocess.CompletedProcess(["tokenlearner", *args], code, stdout=console.getvalue())


def encode_or_die(item, **settings):
    """components.encoding._encode, except that the process encoding an image named 0003.* dies the way the system
    kills one that is out of memory: at once, no exception, no result. Module-level so that the spawned encoding
    processes can import it."""
    from components import encoding

    if Path(item.display or item.ref).name.startswith("0003."):
        os._exit(137)
    return encoding._encode(item, **settings)


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


def extract_cifar_test_jpegs(archive: Path, dest: Path, per_class: int) -> list[Path]:
    """dest/test/<class>/NNNN.jpg: the first `per_class` test JPEGs of each class (by file number) of the CIFAR-10
    JPEG archive, bytes as stored; already there from an earlier call, they are not read again."""
    files = sorted(dest.glob("test/*/*.jpg"))
    if len(files) == per_class * len(CLASSES):
        return files
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and "test" in parts and int(Path(member.name).stem) < per_class:
                out = dest / "test" / parts[-2] / parts[-1]
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(tar.extractfile(member).read())
    return sorted(dest.glob("test/*/*.jpg"))


def write_cifar_spans(archive: Path, dest: Path, spans: dict[str, dict[str, dict[str, int]]], start: int = 100,
                      source: str = "test") -> dict[str, Path]:
    """Image folders of CIFAR-10 JPEGs (the archive's `source` split) for `tokenlearner data --append`, in one pass
    over the archive: dest/<span>/<split>/<class>/NNNN.jpg with `spans[span][split][class]` images each, distinct
    images across spans, splits and classes, from file number `start` on (the --limit 300 runs use test numbers below
    30)."""
    wanted: dict[tuple[str, int], Path] = {}  # (class, file number) -> where it goes
    for class_name in CLASSES:
        number = start
        for span, splits in spans.items():
            for split, counts in splits.items():
                for _ in range(counts.get(class_name, 0)):
                    wanted[(class_name, number)] = dest / span / split / class_name / f"{number:04d}.jpg"
                    number += 1
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and source in parts:
                out = wanted.get((parts[-2], int(Path(member.name).stem)))
                if out is not None:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(tar.extractfile(member).read())
    return {span: dest / span for span in spans}


def serving_default_probabilities(model_dir: str | Path, files: list[Path],
                                  batch: int = 64) -> dict[str, np.ndarray]:
    """file -> probabilities, from the SavedModel's serving_default (a version folder) called directly on the files'
    bytes: the reference batch inference is checked against."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    out = {}
    for i in range(0, len(files), batch):
        chunk = files[i:i + batch]
        probabilities = signature(images=tf.constant([f.read_bytes() for f in chunk]))["probabilities"].numpy()
        out.update((str(f), p) for f, p in zip(chunk, probabilities))
    return out


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


# ------------------------------------------------------------------- your own images: datasets that are not CIFAR-10

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")  # by digit value
DIGITS_RUN_LIMIT = 300  # the shared digits run (fixture `digits_run`): 300 training and 300 test images


def write_digits(root: Path, test_every: int | None = 5) -> Path:
    """scikit-learn's handwritten digits (`sklearn.datasets.load_digits`: 1,797 8x8 grayscale images of values
    0..16, 10 classes, shipped inside its wheel, nothing downloaded) as an image folder of 8-bit grayscale PNGs
    (0..16 scaled to 0..255): train/<digit name>/NNNN.png, and with `test_every` every test_every-th image of each
    digit in test/<digit name>/ instead (None: no test/, ingestion holds out a test split). The folders are named
    "zero" .. "nine", so the class list, sorted by name (eight, five, four, nine, ...), is not the digits' order."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)
    seen = [0] * len(DIGIT_NAMES)
    for image, digit in zip(pixels, digits.target):
        k, seen[digit] = seen[digit], seen[digit] + 1
        split = "test" if test_every and k % test_every == test_every - 1 else "train"
        folder = root / split / DIGIT_NAMES[digit]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{k:04d}.png")  # a 2-D uint8 array: mode L
    return root


# The mixed folder: 3 classes, each a dominant colour (learnable, though no test relies on accuracy), imbalanced.
MIXED_CLASSES = {"ember": (200, 70, 30), "moss": (70, 150, 50), "sky": (70, 130, 220)}  # folder -> dominant RGB
MIXED_PER_CLASS = {"ember": 120, "moss": 90, "sky": 60}  # 270 images; 10% held out: 12, 9, 6
# (Pillow format, mode, file suffix): cycled through, so that each class has every one.
MIXED_KINDS = (("JPEG", "RGB", ".jpg"), ("PNG", "RGBA", ".png"), ("WEBP", "RGB", ".webp"), ("BMP", "P", ".bmp"),
               ("GIF", "P", ".gif"), ("JPEG", "CMYK", ".jpeg"), ("PNG", "L", ".png"), ("WEBP", "RGBA", ".webp"),
               ("BMP", "RGB", ".bmp"), ("PNG", "P", ".png"), ("JPEG", "L", ".jpg"), ("TIFF", "RGB", ".tif"),
               ("PNG", "I;16", ".png"), ("BMP", "L", ".bmp"), ("PNG", "RGB", ".png"))
MIXED_SIZES = ((20, 20), (32, 32), (41, 27), (64, 48), (100, 100), (120, 160), (257, 193), (320, 240), (640, 480))
MIXED_PHOTO = "IMG_0001.JPG"  # in each class folder: a 1600x1200 RGB JPEG named as a phone names it
MIXED_PHOTO_SIZE = (1600, 1200)
MIXED_NESTED = "more"  # every 8th image of a class lies in train/<class>/more/: a class's sub-folders are its images


def _mixed_picture(rng: np.random.Generator, colour, size: tuple[int, int]) -> np.ndarray:
    """An RGB picture (height, width, 3) of `size` (width, height): the class colour in a smooth gradient, a
    rectangle of another colour over at most a quarter of it, and mild noise."""
    width, height = size
    ramp = np.linspace(0.75, 1.15, width)[None, :, None] * np.linspace(1.1, 0.85, height)[:, None, None]
    picture = np.asarray(colour, dtype=np.float32) * ramp
    x0, y0 = int(rng.integers(0, width // 2 + 1)), int(rng.integers(0, height // 2 + 1))
    picture[y0:y0 + height // 2, x0:x0 + width // 2] = rng.integers(0, 256, 3)
    picture += rng.normal(0, 6, size=picture.shape)
    return np.clip(picture, 0, 255).astype(np.uint8)


def _in_mode(picture: np.ndarray, mode: str, rng: np.random.Generator):
    from PIL import Image

    image = Image.fromarray(picture)
    if mode == "RGBA":  # alpha from opaque to half transparent across the picture
        alpha = np.linspace(255, 128, picture.shape[1], dtype=np.uint8)[None, :].repeat(picture.shape[0], axis=0)
        image.putalpha(Image.fromarray(alpha))
        return image
    if mode == "P":
        return image.quantize(colors=32)
    if mode == "I;16":  # 16-bit grayscale
        gray = np.asarray(image.convert("L"), dtype=np.uint16) * 257 + rng.integers(0, 257, picture.shape[:2],
                                                                                    dtype=np.uint16)
        return Image.fromarray(gray)
    return image.convert(mode)  # RGB, L, CMYK


def write_mixed_folder(root: Path) -> Path:
    """A folder as users have them: train/<class>/ only (no test/), 3 classes of 120, 90 and 60 images of mixed
    formats (JPEG, PNG, WebP, BMP, GIF with two frames, TIFF), modes (RGB, RGBA, P, L, CMYK, 16-bit) and sizes (20x20
    to 640x480, and in each class one 1600x1200 phone-style IMG_0001.JPG), some in a nested sub-folder. Built
    deterministically (seeded) in a few seconds."""
    from PIL import Image

    for c, (name, colour) in enumerate(MIXED_CLASSES.items()):
        rng = np.random.default_rng(100 + c)
        folder = root / "train" / name
        (folder / MIXED_NESTED).mkdir(parents=True)
        _in_mode(_mixed_picture(rng, colour, MIXED_PHOTO_SIZE), "RGB", rng).save(folder / MIXED_PHOTO, "JPEG",
                                                                                  quality=85)
        for i in range(1, MIXED_PER_CLASS[name]):
            fmt, mode, suffix = MIXED_KINDS[(i + 5 * c) % len(MIXED_KINDS)]
            size = MIXED_SIZES[(i + 2 * c) % len(MIXED_SIZES)]
            image = _in_mode(_mixed_picture(rng, colour, size), mode, rng)
            path = (folder / MIXED_NESTED if i % 8 == 7 else folder) / f"{name}_{i:04d}{suffix}"
            if fmt == "GIF":  # two frames: ingestion takes the first
                flipped = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                image.save(path, fmt, save_all=True, append_images=[flipped], duration=100)
            else:
                image.save(path, fmt)
    return root


def run_gating_validator(tmp_path: Path, splits: dict[str, list[bytes]], schema_text: str,
                         exec_properties: dict | None = None) -> dict:
    """components/validator.GatingExecutor on real artifacts: each split's serialized tf.Examples -> TFDV statistics
    (as StatisticsGen computes them with the schema: `label` is categorical, so it gets a class histogram), the
    schema, then the executor with `exec_properties` (the label drift threshold, the span drift settings). Returns
    what it recorded: {split: the Anomalies proto it wrote to the ExampleAnomalies artifact}."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
    from tfx.types import artifact_utils, standard_artifacts

    from components.validator import GatingExecutor

    tmp_path.mkdir(parents=True, exist_ok=True)
    stats = standard_artifacts.ExampleStatistics()
    stats.uri = str(tmp_path / "stats")
    stats.split_names = artifact_utils.encode_split_names(list(splits))
    for split, records in splits.items():
        path = tmp_path / f"{split}.tfrecord"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for record in records:
                writer.write(record)
        result = tfdv.generate_statistics_from_tfrecord(
            str(path), stats_options=tfdv.StatsOptions(schema=text_format.Parse(schema_text, schema_pb2.Schema())))
        result.datasets[0].name = split
        (tmp_path / "stats" / f"Split-{split}").mkdir(parents=True)
        (tmp_path / "stats" / f"Split-{split}" / "FeatureStats.pb").write_bytes(result.SerializeToString())
    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "schema")
    (tmp_path / "schema").mkdir()
    (tmp_path / "schema" / "schema.pbtxt").write_text(schema_text)
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(tmp_path / "anomalies")
    GatingExecutor().Do({"statistics": [stats], "schema": [schema]}, {"anomalies": [anomalies]},
                        {"exclude_splits": "[]", **(exec_properties or {})})
    recorded = {}
    for split in splits:
        (written,) = (tmp_path / "anomalies" / f"Split-{split}").iterdir()
        recorded[split] = anomalies_pb2.Anomalies.FromString(written.read_bytes())
    return recorded
