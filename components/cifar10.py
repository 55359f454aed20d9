"""CIFAR-10 into sharded TFRecords of tf.Example{image: PNG bytes, label: int64}, the input of ImportExampleGen.

Sources, detected from what the path holds:
- the official ``cifar-10-python.tar.gz`` (downloaded by default, MD5 checked), as the archive or its extracted
  ``cifar-10-batches-py`` folder;
- an image-folder layout ``train/<class>/*.png|jpg`` + ``test/<class>/...``, as a folder or a ``.tar.gz``.

Output ``<out_root>/<dataset id>/``: ``train/``, ``eval/`` (every 10th training image of each class: 45,000 /
5,000), ``test/``, ``classes.txt`` and ``manifest.json``. It is built in a staging folder and renamed into place
only when complete, so an existing dataset is never overwritten or half-written. Memory stays bounded: pixels are
staged on disk and encoded by worker processes in a stream.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import multiprocessing
import os
import pickle
import shutil
import sys
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from trainer.contract import EVAL, TEST, TRAIN
from trainer.features import CIFAR10_CLASSES, IMAGE_KEY, IMAGE_SIZE, LABEL_KEY

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
OFFICIAL_DIR = "cifar-10-batches-py"
OFFICIAL_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
OFFICIAL_TEST_BATCH = "test_batch"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
MAX_NAMED_SKIPPED = 5  # files named in the warning about skipped non-image files
EVAL_EVERY = 10  # every 10th training image of each class goes to the validation split
SHARD_SIZE = 5000
ENCODE_WINDOW = 1024

log = logging.getLogger(__name__)


class DataError(Exception):
    """Bad or missing input data; the message names the file and what was expected."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("TOKENLEARNER_CACHE", Path.home() / ".cache" / "tokenlearner"))


# ---------------------------------------------------------------------------------------------------- sources

def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str = OFFICIAL_URL, cache_dir: Path | None = None, md5: str | None = None) -> Path:
    """Downloads the official archive once into the cache and checks its published MD5."""
    md5 = md5 or OFFICIAL_MD5
    cache_dir = Path(cache_dir or default_cache_dir())
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / Path(urllib.request.urlparse(url).path).name
    if target.exists():
        actual = _md5(target)
        if actual != md5:
            raise DataError(f"{target}: cached archive has MD5 {actual}, expected {md5}; delete it to download "
                            f"again")
        return target
    partial = target.with_name(target.name + ".part")
    log.info("downloading %s -> %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            with Progress(total, "download", unit="B") as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise DataError(f"could not download {url}: {e}. Without internet, pass a local copy: --data PATH") from e
    actual = _md5(partial)
    if actual != md5:
        partial.unlink()
        raise DataError(f"{url}: downloaded archive has MD5 {actual}, expected {md5} (corrupt or not the official "
                        f"CIFAR-10 python archive)")
    partial.rename(target)
    return target


def _tar_members(path: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """(archive, member) in archive order, streaming: TarFile would otherwise keep all 60,000 members' TarInfo."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                yield tar, member
                tar.members = []
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{path}: not a readable tar archive ({e})") from e


def detect(path: Path) -> str:
    """'official' or 'folder', from what the folder or archive holds."""
    if not path.exists():
        raise DataError(f"data source {path} does not exist; expected cifar-10-python.tar.gz, its extracted folder, "
                        f"or an image folder (train/<class>/*, test/<class>/*) as a folder or .tar.gz")
    if path.is_dir():
        candidates = [path, *sorted(p for p in path.iterdir() if p.is_dir())]  # itself or one folder down
        if any((c / "data_batch_1").is_file() for c in candidates):
            return "official"
        if any((c / "train").is_dir() for c in candidates):
            return "folder"
        raise DataError(f"{path}: expected {OFFICIAL_DIR}/data_batch_* files, or train/ and test/ class folders")
    for _, member in _tar_members(path):
        parts = Path(member.name).parts
        if parts and parts[-1] == "data_batch_1":
            return "official"
        if "train" in parts[:2] and member.name.lower().endswith(IMAGE_EXTENSIONS):
            return "folder"
    raise DataError(f"{path}: archive holds neither {OFFICIAL_DIR}/data_batch_* nor train/<class>/ images")


def _stage_selected(archive: Path, splits: dict[str, list[Item]], blob: Path) -> dict[str, list[Item]]:
    """Copies the bytes of the images the splits use into one staging file, in one pass over the archive (60,000
    small files on disk would cost far more); items then point at (offset, size) in it."""
    wanted = {it.ref for items in splits.values() for it in items}
    where: dict[str, tuple[int, int]] = {}
    with open(blob, "wb") as out:
        for tar, member in _tar_members(archive):
            if member.isfile() and member.name in wanted:
                data = tar.extractfile(member).read()
                where[member.name] = (out.tell(), len(data))
                out.write(data)
    return {s: [dataclasses.replace(it, ref=str(blob), row=where[it.ref][0], size=where[it.ref][1],
                                    display=f"{archive}:{it.ref}") for it in items]
            for s, items in splits.items()}


def _root_with(path: Path, child: str) -> Path:
    """The folder under `path` (itself or one level down) that holds `child`."""
    if (path / child).exists():
        return path
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        if (sub / child).exists():
            return sub
    raise DataError(f"{path}: expected {child} in it or in one folder below it")


# ------------------------------------------------------------------------------------------------ indexing

@dataclasses.dataclass(frozen=True, slots=True)  # slots: 60,000 of them make up most of ingestion's heap
class Item:
    label: int
    position: int  # index within its class in the source's order
    ref: str  # image file path, staged .npy pixel array, or staged file of encoded images
    row: int = -1  # row of the pixel array, or byte offset in the staged file
    size: int = 0  # byte size in the staged file of encoded images
    display: str = ""  # where the image came from, for error messages, when ref is a staged copy


def _take_per_class(items: list[Item], limit: int | None) -> list[Item]:
    if limit is None:
        return items
    by_class: dict[int, list[Item]] = {}
    for it in items:
        by_class.setdefault(it.label, []).append(it)
    labels = sorted(by_class)
    quota = {c: limit // len(labels) + (1 if i < limit % len(labels) else 0) for i, c in enumerate(labels)}
    return [it for c in labels for it in by_class[c][:quota[c]]]


def split_items(train: list[Item], test: list[Item], limit: int | None) -> dict[str, list[Item]]:
    """Class-balanced limit, deterministic 9:1 train/eval carve, classes interleaved within each split."""
    train, test = _take_per_class(train, limit), _take_per_class(test, limit)
    splits = {
        TRAIN: [it for it in train if it.position % EVAL_EVERY != EVAL_EVERY - 1],
        EVAL: [it for it in train if it.position % EVAL_EVERY == EVAL_EVERY - 1],
        TEST: test,
    }
    for name, items in splits.items():
        if not items:
            raise DataError(f"split {name!r} is empty (limit={limit}); expected at least one image per split")
        items.sort(key=lambda it: (it.position, it.label))
    return splits


def _index_folder(files: list[str], where: str, base: Path | None = None) -> tuple[dict[str, list[Item]], list[str]]:
    """Items of an image-folder layout from its relative file paths ('[top/]train/<class>/<name>.jpg'); refs are
    base/path (archive member names when base is None). Class folders must be CIFAR-10 class names; label =
    position in CIFAR-10's class list."""
    class_names = list(CIFAR10_CLASSES)
    found: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    skipped: list[str] = []
    for f in files:
        parts = Path(f).parts
        for k in range(min(2, len(parts) - 2)):  # allow one enclosing folder
            if parts[k] in found and len(parts) == k + 3:
                if parts[-1].lower().endswith(IMAGE_EXTENSIONS) and not parts[-1].startswith("."):
                    found[parts[k]].setdefault(parts[k + 1], []).append(f)
                else:
                    skipped.append(f)
                break
    if skipped:  # .bmp, .gif, .webp, no extension, hidden files: never silently left out
        skipped.sort()
        shown = ", ".join(skipped[:MAX_NAMED_SKIPPED]) + (", ..." if len(skipped) > MAX_NAMED_SKIPPED else "")
        log.warning("%s: skipped %d file(s) in class folders that are not %s images: %s", where, len(skipped),
                    "/".join(IMAGE_EXTENSIONS), shown)
    out = {}
    for split, classes in found.items():
        unknown = sorted(set(classes) - set(class_names))
        if unknown:
            raise DataError(f"{where}: unknown class folder(s) {split}/{unknown}; expected the CIFAR-10 classes "
                            f"{class_names}")
        missing = [c for c in class_names if not classes.get(c)]
        if missing:
            raise DataError(f"{where}: no .png/.jpg images in {split}/{missing}; every class needs images in "
                            f"train/ and test/")
        out[split] = [Item(label, i, str(base / f) if base else f) for label, name in enumerate(class_names)
                      for i, f in enumerate(sorted(classes[name]))]
    return out, class_names


def _unpickle(path: Path, data) -> dict:
    try:
        return pickle.loads(data, encoding="bytes")
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing here
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from e


def _official_batches(source: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of batches.meta and every batch, from the archive or the extracted folder."""
    wanted = {"batches.meta", *OFFICIAL_TRAIN_BATCHES, OFFICIAL_TEST_BATCH}
    seen = set()
    if source.is_dir():
        root = _root_with(source, "data_batch_1")
        for name in sorted(wanted):
            if (root / name).is_file():
                seen.add(name)
                yield str(root / name), (root / name).read_bytes()
    else:
        for tar, member in _tar_members(source):
            name = Path(member.name).name
            if member.isfile() and name in wanted:
                seen.add(name)
                yield f"{source}:{member.name}", tar.extractfile(member).read()
    missing = sorted(wanted - seen)
    if missing:
        raise DataError(f"{source}: missing {missing}; expected the files of {OFFICIAL_DIR}/")


def _index_official(source: Path, staging: Path) -> tuple[dict[str, list[Item]], list[str]]:
    """Stages each batch's pixels as an on-disk uint8 array (one batch in memory at a time); items point at rows."""
    labels_of: dict[str, list[int]] = {}
    class_names = None
    for name, data in _official_batches(source):
        batch = _unpickle(Path(name), data)
        member = Path(name.split(":")[-1]).name
        if member == "batches.meta":
            class_names = [n.decode() for n in batch.get(b"label_names", [])]
            continue
        pixels, labels = batch.get(b"data"), batch.get(b"labels")
        if not isinstance(pixels, np.ndarray) or pixels.ndim != 2 or pixels.shape[1] != 3 * IMAGE_SIZE ** 2 \
                or pixels.dtype != np.uint8:
            raise DataError(f"{name}: field 'data' must be a uint8 array of shape (N, 3072) (32x32 RGB, "
                            f"channel-major); got {getattr(pixels, 'dtype', type(pixels))} "
                            f"{getattr(pixels, 'shape', '')}")
        if labels is None or len(labels) != len(pixels):
            raise DataError(f"{name}: field 'labels' must have one label per row of 'data' ({len(pixels)})")
        for i, label in enumerate(labels):
            if not 0 <= int(label) < len(CIFAR10_CLASSES):
                raise DataError(f"{name}: labels[{i}] = {label} is out of range; expected 0..9")
        np.save(staging / f"{member}.npy", pixels.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1))
        labels_of[member] = [int(x) for x in labels]
    # Positions within each class follow the official batch order, whatever order the archive stores them in.
    rows: dict[str, list[Item]] = {"train": [], "test": []}
    for member in (*OFFICIAL_TRAIN_BATCHES, OFFICIAL_TEST_BATCH):
        split = "test" if member == OFFICIAL_TEST_BATCH else "train"
        counts = [sum(1 for it in rows[split] if it.label == c) for c in range(len(CIFAR10_CLASSES))]
        for i, label in enumerate(labels_of[member]):
            rows[split].append(Item(label, counts[label], str(staging / f"{member}.npy"), i))
            counts[label] += 1
    if class_names and class_names != list(CIFAR10_CLASSES):
        log.warning("batches.meta label_names %s differ from the CIFAR-10 names; using them", class_names)
    return rows, class_names or list(CIFAR10_CLASSES)


# ------------------------------------------------------------------------------------------------ encoding

_PIXELS: dict[str, np.ndarray] = {}


def _load(item: Item):
    """An item's pixels as a PIL image; image files must be 32x32 RGB, as CIFAR-10 is."""
    from PIL import Image, UnidentifiedImageError

    if item.row >= 0 and not item.size:  # a row of staged official pixels, memory-mapped
        if item.ref not in _PIXELS:
            _PIXELS[item.ref] = np.load(item.ref, mmap_mode="r")
        return Image.fromarray(np.asarray(_PIXELS[item.ref][item.row]))
    source = item.ref
    if item.size:  # encoded bytes staged from an archive
        with open(item.ref, "rb") as f:
            f.seek(item.row)
            source = io.BytesIO(f.read(item.size))
    try:
        with Image.open(source) as image:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"{item.display or item.ref}: not a readable image ({e})") from e
    if image.size != (IMAGE_SIZE, IMAGE_SIZE) or image.mode != "RGB":
        raise DataError(f"{item.display or item.ref}: expected a {IMAGE_SIZE}x{IMAGE_SIZE} RGB image, got "
                        f"{image.size[0]}x{image.size[1]} {image.mode}")
    return image


def _encode(item: Item) -> bytes:
    """Worker: an item -> PNG bytes."""
    buffer = io.BytesIO()
    _load(item).save(buffer, format="PNG")
    return buffer.getvalue()


def _example(png: bytes, label: int) -> bytes:
    import tensorflow as tf

    return tf.train.Example(features=tf.train.Features(feature={
        IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
        LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    })).SerializeToString(deterministic=True)  # map order fixed: byte-identical reruns


class Progress:
    """tqdm bar on a terminal; on a log (CI, Kubeflow) a line every 10% with the rate."""

    def __init__(self, total: int, desc: str, unit: str = "img"):
        self.total, self.desc, self.unit, self.done, self.start = total, desc, unit, 0, time.time()
        self.next_report = 0.1
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total or None, desc=desc, unit=unit, unit_scale=unit == "B")

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.total and self.done / self.total >= self.next_report:
            rate = self.done / max(time.time() - self.start, 1e-9)
            log.info("%s: %d/%d %s (%.0f %s/s)", self.desc, self.done, self.total, self.unit, rate, self.unit)
            self.next_report += 0.1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def _write_split(split_dir: Path, items: Sequence[Item], pool, bar: Progress) -> None:
    import tensorflow as tf

    split_dir.mkdir(parents=True)
    num_shards = max(1, -(-len(items) // SHARD_SIZE))
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for shard in range(num_shards):
        chunk = items[shard * SHARD_SIZE:(shard + 1) * SHARD_SIZE]
        path = split_dir / f"data-{shard:05d}-of-{num_shards:05d}.tfrecord.gz"
        with tf.io.TFRecordWriter(str(path), options) as writer:
            # Windows bound the encoded images waiting in memory (imap would run ahead of the writer).
            for start in range(0, len(chunk), ENCODE_WINDOW):
                window = chunk[start:start + ENCODE_WINDOW]
                for it, png in zip(window, pool.imap(_encode, window, chunksize=64)):
                    writer.write(_example(png, it.label))
                    bar.update()


# ------------------------------------------------------------------------------------------------ entry point

def _fingerprint(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:10]


def resolve_source(source: str | None, cache_dir: Path | None = None) -> Path:
    """None / 'official' -> the downloaded official archive; an http(s)/file URL -> that archive, MD5 checked;
    anything else is a local path."""
    if source in (None, "", "official"):
        return download(OFFICIAL_URL, cache_dir)
    if source.startswith(("http://", "https://", "file://")):
        return download(source, cache_dir)
    return Path(source).expanduser()


def prepare(source: str | None, out_root: str | Path, limit: int | None = None, cache_dir: Path | None = None,
            workers: int | None = None) -> Path:
    """Builds (or reuses) the TFRecord dataset for `source`; returns its folder."""
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be a positive number of images per split, got {limit}")
    path = resolve_source(source, cache_dir)
    if (path / "manifest.json").is_file() and (path / TRAIN).is_dir():  # already a dataset of ours
        if limit is not None:
            raise DataError(f"{path} is a prepared dataset; --limit applies only when converting a source")
        verify_dataset(path)
        return path
    kind = detect(path)
    out_root = Path(out_root)
    out_dir = out_root / f"cifar10-{kind}-{_fingerprint(path)}-{limit or 'all'}"
    if (out_dir / "manifest.json").is_file():
        log.info("reusing dataset %s", out_dir)
        return out_dir
    if out_dir.exists():
        raise DataError(f"{out_dir} exists but has no manifest.json (incomplete); remove it to rebuild")
    staging = out_root / f".staging-{out_dir.name}-{os.getpid()}"
    staging.mkdir(parents=True)
    start = time.time()
    try:
        if kind == "official":
            items, class_names = _index_official(path, staging)
        elif path.is_dir():
            files = [os.path.relpath(os.path.join(d, f), path) for d, _, names in os.walk(path) for f in names]
            items, class_names = _index_folder(files, str(path), base=path)
        else:
            items, class_names = _index_folder([m.name for _, m in _tar_members(path) if m.isfile()], str(path))
        splits = split_items(items["train"], items["test"], limit)
        if kind == "folder" and path.is_file():
            splits = _stage_selected(path, splits, staging / "images.bin")
        total = sum(len(v) for v in splits.values())
        ctx = multiprocessing.get_context("spawn")  # no fork: the parent may already hold TensorFlow threads
        with ctx.Pool(workers or os.cpu_count()) as pool, Progress(total, "encode") as bar:
            for split, split_items_ in splits.items():
                _write_split(staging / "dataset" / split, split_items_, pool, bar)
        dataset = staging / "dataset"
        (dataset / "classes.txt").write_text("\n".join(class_names) + "\n")
        manifest = {
            "source": str(path if kind == "official" else source), "format": kind, "limit": limit,
            "class_names": class_names,
            "splits": {s: {"examples": len(v),
                           "per_class": [sum(1 for it in v if it.label == c) for c in range(len(class_names))]}
                       for s, v in splits.items()},
            "seconds": round(time.time() - start, 1),
        }
        (dataset / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        dataset.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %s: %s in %.1f s", out_dir,
             ", ".join(f"{s} {v['examples']}" for s, v in manifest["splits"].items()), manifest["seconds"])
    return out_dir


def verify_dataset(dataset_dir: Path) -> None:
    """Reads every shard of a prepared dataset (a few seconds for all of CIFAR-10): a truncated or corrupted file
    is named here, before the pipeline starts, and each split must hold the examples its manifest lists."""
    import tensorflow as tf

    manifest = load_manifest(dataset_dir)
    for split, info in manifest["splits"].items():
        shards = sorted((dataset_dir / split).glob("*.tfrecord.gz"))
        count = 0
        for shard in shards:
            try:
                count += int(tf.data.TFRecordDataset(str(shard), compression_type="GZIP").reduce(
                    tf.constant(0, tf.int64), lambda n, _: n + 1))
            except (tf.errors.OpError, OSError) as e:
                reason = (e.message if isinstance(e, tf.errors.OpError) else str(e)).split(":")[0][:120]
                raise DataError(f"{shard}: corrupt or truncated TFRecord file ({reason})") from None
        if count != info["examples"]:
            raise DataError(f"{dataset_dir / split}: {count} examples in {len(shards)} shard(s), manifest.json "
                            f"lists {info['examples']}")


def load_manifest(dataset_dir: str | Path) -> dict:
    path = Path(dataset_dir) / "manifest.json"
    if not path.is_file():
        raise DataError(f"{path}: missing; expected a dataset written by `tokenlearner data`")
    return json.loads(path.read_text())
