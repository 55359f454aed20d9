"""CIFAR-10 into sharded TFRecords of tf.Example{image: PNG bytes, label: int64}, the input of ImportExampleGen.

Sources, detected from what the path holds:
- the official ``cifar-10-python.tar.gz`` (downloaded by default, MD5 checked), as the archive or its extracted
  ``cifar-10-batches-py`` folder. Its batches are pickles, read by a restricted unpickler that builds only what the
  official batches hold (dicts, lists, bytes, ints, uint8 arrays) and runs no code; a local archive whose MD5 is not
  the official release's is a warning (``strict``: an error);
- an image-folder layout ``train/<class>/*.png|jpg`` + ``test/<class>/...``, as a folder or a ``.tar.gz``.

Output ``<out_root>/<dataset id>/``: ``train/``, ``eval/`` (every 10th training image of each class: 45,000 /
5,000), ``test/``, ``classes.txt`` and ``manifest.json``. It is built in a staging folder and renamed into place
only when complete, so an existing dataset is never overwritten or half-written. Memory stays bounded: pixels are
staged on disk and encoded by worker processes in a stream. Reading is bounded (members, bytes per member, bytes in
all): a hostile or broken source is refused with one line saying where and why reading stopped.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import lzma
import multiprocessing
import os
import pickle
import shutil
import sys
import tarfile
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from trainer.contract import EVAL, SHARD_GLOB, SHARD_SUFFIX, TEST, TRAIN
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
# Bounds on what a source may make us read. The official archive has 8 members, 178 MB unpacked, batches of 31 MB;
# the image-folder CIFAR-10 has 60,000 files of a few KB. Generous multiples of that, far below what would hurt.
MAX_MEMBERS = 200_000  # archive members or folder files
MAX_BATCH_BYTES = 64 * 2**20  # one pickled batch
MAX_IMAGE_BYTES = 2**20  # one image file (a 32x32 PNG/JPEG is a few KB)
MAX_TOTAL_BYTES = 2**30  # an archive's unpacked stream

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
    """(archive, member) in archive order, streaming: TarFile would otherwise keep all 60,000 members' TarInfo.
    Stops with a DataError past MAX_MEMBERS members or MAX_TOTAL_BYTES of unpacked stream (checked on each header,
    before its data is decompressed): a tar or gzip bomb costs a bounded read."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for count, member in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    raise DataError(f"{path}: stopped reading after {MAX_MEMBERS:,} members (CIFAR-10 has 60,000 "
                                    f"images); not a CIFAR-10 archive")
                if member.offset_data + member.size > MAX_TOTAL_BYTES:
                    raise DataError(f"{path}: stopped reading at member {member.name}: the archive unpacks to more "
                                    f"than {MAX_TOTAL_BYTES / 2**30:g} GiB (CIFAR-10 is 0.2 GB); not a CIFAR-10 "
                                    f"archive")
                yield tar, member
                tar.members = []
    except _READ_ERRORS as e:
        raise DataError(f"{path}: not a readable tar archive, or truncated ({e})") from e


# What reading a damaged archive raises: tar, gzip/zlib, bz2 (OSError), xz.
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, where: str, limit: int) -> bytes:
    """A member's bytes, refused above `limit` before anything is read; a truncated archive is a DataError."""
    if member.size > limit:
        raise DataError(f"{where}: {member.size:,} bytes, more than the {limit:,} allowed for this file; not "
                        f"CIFAR-10")
    try:
        return tar.extractfile(member).read()
    except _READ_ERRORS as e:
        raise DataError(f"{where}: cannot read it from the archive, truncated or corrupt ({e})") from None


def _read_file(path: Path, limit: int) -> bytes:
    """A file's bytes, at most `limit` (a link to /dev/zero or a huge file is refused, not read to the end)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > limit:
        raise DataError(f"{path}: more than the {limit:,} bytes allowed for this file; not CIFAR-10")
    return data


def _walk_files(path: Path) -> list[str]:
    """Relative paths of the files under `path`, at most MAX_MEMBERS."""
    files = []
    for d, _, names in os.walk(path):
        for f in names:
            files.append(os.path.relpath(os.path.join(d, f), path))
            if len(files) > MAX_MEMBERS:
                raise DataError(f"{path}: stopped listing after {MAX_MEMBERS:,} files (CIFAR-10 has 60,000 images); "
                                f"not a CIFAR-10 folder")
    return files


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
                data = _read_member(tar, member, f"{archive}:{member.name}", MAX_IMAGE_BYTES)
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


_NUMPY_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy.core.multiarray._reconstruct, wherever numpy keeps it


class _ArrayType:
    """What the pickle's ``numpy.ndarray`` global becomes: a token accepted only as _reconstruct's first argument.
    Handing out the real class would let a pickle call ``ndarray(shape)`` and allocate any amount of memory."""

    __slots__ = ()


def _reconstruct(subtype, shape, dtype_code):
    """numpy's ``_reconstruct(ndarray, (0,), b'b')``, the empty array a pickled array starts as (its bytes come with
    the state that follows, checked by numpy against shape and dtype); anything else is refused."""
    if not isinstance(subtype, _ArrayType) or shape != (0,) or not isinstance(dtype_code, bytes):
        raise pickle.UnpicklingError(f"unexpected array reconstruction _reconstruct({subtype!r}, {shape!r}, "
                                     f"{dtype_code!r})")
    return _NUMPY_RECONSTRUCT(np.ndarray, (0,), dtype_code)


def _latin1(text, encoding):
    """``_codecs.encode(text, 'latin1')``: how Python 3 spells bytes in a protocol-2 pickle (Python 2's official
    batches store them directly). Only that encoding: other codecs are refused."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allowlist: it would have run or built something arbitrary."""


class _BatchUnpickler(pickle.Unpickler):
    """Builds only what the official CIFAR-10 python batches hold. Their pickles (protocol 2, written by Python 2)
    reference exactly three globals: ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and
    ``numpy.dtype``; dicts, lists, str (bytes here) and ints need none. Python 3 re-pickles at protocol 2 add
    ``_codecs.encode`` for bytes, and numpy 2 names the module ``numpy._core.multiarray``. Every other global
    (``os.system``, ``builtins.eval``, ...) is refused before it is looked up, so no code from the data runs."""

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data), encoding="bytes")  # Python 2 str -> bytes, as the batches need

    def find_class(self, module: str, name: str):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return _ArrayType()
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("_codecs", "encode"):
            return _latin1
        raise RefusedGlobal(f"{module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not part of a CIFAR-10 batch")


def _unpickle(path: Path, data: bytes) -> dict:
    """A batch pickle -> dict with str keys, through the restricted unpickler; any failure is one DataError."""
    try:
        batch = _BatchUnpickler(data).load()
    except RefusedGlobal as e:
        raise DataError(f"{path}: refused to unpickle global {e} (a CIFAR-10 batch holds only dicts, lists, bytes, "
                        f"ints and numpy arrays); the file is not CIFAR-10 and may be hostile, nothing of it was "
                        f"run") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing here
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR-10 python batch (a pickled {type(batch).__name__}, expected a dict)")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in batch.items()}


def _text(value) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value if isinstance(value, str) else None


def _batch_arrays(name: str, batch: dict) -> tuple[np.ndarray, list[int]]:
    """The checked 'data' (uint8, (N, 3072)) and 'labels' (N ints in 0..9) of a batch."""
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{name}: missing key(s) {[k for k in ('data', 'labels') if k not in batch]}; a CIFAR-10 "
                        f"batch has 'data' and 'labels' (found {sorted(batch)[:10]})")
    pixels, labels = batch["data"], batch["labels"]
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 2 or pixels.shape[1] != 3 * IMAGE_SIZE ** 2 \
            or pixels.dtype != np.uint8:
        raise DataError(f"{name}: field 'data' must be a uint8 array of shape (N, 3072) (32x32 RGB, "
                        f"channel-major); got {getattr(pixels, 'dtype', type(pixels).__name__)} "
                        f"{getattr(pixels, 'shape', '')}")
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        labels = labels.tolist()
    if not isinstance(labels, (list, tuple)) or len(labels) != len(pixels):
        raise DataError(f"{name}: field 'labels' must be a list with one label per row of 'data' ({len(pixels)}); "
                        f"got {type(labels).__name__}"
                        + (f" of {len(labels)}" if isinstance(labels, (list, tuple)) else ""))
    for i, label in enumerate(labels):
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(CIFAR10_CLASSES):
            raise DataError(f"{name}: labels[{i}] = {label!r} is out of range; expected 0..9")
    return pixels, list(labels)


def _official_batches(source: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of batches.meta and every batch, from the archive or the extracted folder."""
    wanted = {"batches.meta", *OFFICIAL_TRAIN_BATCHES, OFFICIAL_TEST_BATCH}
    seen = set()
    if source.is_dir():
        root = _root_with(source, "data_batch_1")
        for name in sorted(wanted):
            if (root / name).is_file():
                seen.add(name)
                yield str(root / name), _read_file(root / name, MAX_BATCH_BYTES)
    else:
        for tar, member in _tar_members(source):
            name = Path(member.name).name
            if member.isfile() and name in wanted:
                seen.add(name)
                where = f"{source}:{member.name}"
                yield where, _read_member(tar, member, where, MAX_BATCH_BYTES)
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
            names = batch.get("label_names", [])
            class_names = [_text(n) for n in names] if isinstance(names, (list, tuple)) else [None]
            if None in class_names:
                raise DataError(f"{name}: 'label_names' must be a list of class names (bytes or str)")
            continue
        pixels, labels = _batch_arrays(name, batch)
        np.save(staging / f"{member}.npy", pixels.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1))
        labels_of[member] = labels
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
    if item.size:  # encoded bytes staged from an archive (their size was bounded when staged)
        with open(item.ref, "rb") as f:
            f.seek(item.row)
            data = f.read(item.size)
    else:
        data = _read_file(Path(item.ref), MAX_IMAGE_BYTES)
    where = item.display or item.ref
    try:
        with Image.open(io.BytesIO(data)) as image:
            # The header's size is checked before any pixel is decoded: a decompression bomb costs nothing.
            if image.size != (IMAGE_SIZE, IMAGE_SIZE) or image.mode != "RGB":
                raise DataError(f"{where}: expected a {IMAGE_SIZE}x{IMAGE_SIZE} RGB image, got "
                                f"{image.size[0]}x{image.size[1]} {image.mode}")
            image.load()
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"{where}: not a readable image ({e})") from None
    except Exception as e:  # noqa: BLE001 - Pillow's decoders raise many types (ValueError, DecompressionBombError)
        raise DataError(f"{where}: not a readable image ({type(e).__name__}: {e})") from None
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
        path = split_dir / f"data-{shard:05d}-of-{num_shards:05d}{SHARD_SUFFIX}"
        with tf.io.TFRecordWriter(str(path), options) as writer:
            # Windows bound the encoded images waiting in memory (imap would run ahead of the writer).
            for start in range(0, len(chunk), ENCODE_WINDOW):
                window = chunk[start:start + ENCODE_WINDOW]
                for it, png in zip(window, pool.imap(_encode, window, chunksize=64)):
                    writer.write(_example(png, it.label))
                    bar.update()


# ------------------------------------------------------------------------------------------------ entry point

def _fingerprint(path: Path) -> str:
    """What the dataset folder is keyed by: the source's bytes (a folder: each file's relative path and bytes).
    Not its path or modification time: a copied, moved or re-mounted source (a new machine, a re-synced share)
    must find the dataset it already made, or the pipeline's cached components and the Trainer's epoch
    checkpoints (keyed by the ExampleGen artifacts) would all start again."""
    digest = hashlib.sha256()
    for name in sorted(_walk_files(path)) if path.is_dir() else [None]:
        if name is not None:
            digest.update(f"{name}\0".encode())
        with open(path / name if name is not None else path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:10]


def resolve_source(source: str | None, cache_dir: Path | None = None, md5: str | None = None) -> Path:
    """None / 'official' -> the downloaded official archive; an http(s)/file URL -> that archive, MD5 checked
    (against `md5` when given, else the official MD5); anything else is a local path."""
    if source in (None, "", "official"):
        return download(OFFICIAL_URL, cache_dir)
    if source.startswith(("http://", "https://", "file://")):
        return download(source, cache_dir, md5)
    return Path(source).expanduser()


def check_official_release(path: Path, strict: bool = False) -> str | None:
    """None when an official-format source is the official release byte for byte (archive MD5); else what is wrong
    (a re-packed archive, a mirror with another MD5, an extracted folder, which cannot be checked), or under
    `strict` a DataError. Such data is still usable: its pickles are read only through the restricted unpickler."""
    if path.is_dir():
        problem = "is an extracted folder, which cannot be checked against the official archive's MD5"
    else:
        actual = _md5(path)
        if actual == OFFICIAL_MD5:
            return None
        problem = f"has MD5 {actual}, not the official release's {OFFICIAL_MD5}"
    if strict:
        raise DataError(f"{path} {problem}; --strict accepts only the official CIFAR-10 python archive")
    return f"{path} {problem}: not the official CIFAR-10 release (read with the restricted unpickler, no code from " \
           f"it runs; --strict refuses it)"


def prepare(source: str | None, out_root: str | Path, limit: int | None = None, cache_dir: Path | None = None,
            workers: int | None = None, strict: bool = False, md5: str | None = None) -> Path:
    """Builds (or reuses) the TFRecord dataset for `source`; returns its folder. `md5` overrides the checksum a
    URL's download is checked against; `strict` refuses official-format data that is not the official release."""
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be a positive number of images per split, got {limit}")
    if strict and md5 and md5 != OFFICIAL_MD5:
        raise DataError(f"MD5 {md5} is not the official release's {OFFICIAL_MD5}; --strict accepts only the "
                        f"official CIFAR-10 python archive")
    path = resolve_source(source, cache_dir, md5)
    if (path / "manifest.json").is_file() and (path / TRAIN).is_dir():  # already a dataset of ours
        if limit is not None:
            raise DataError(f"{path} is a prepared dataset; --limit applies only when converting a source")
        verify_dataset(path)
        return path
    kind = detect(path)
    # Checked before reuse too (--strict must not accept a dataset made from unofficial data); the warning comes
    # once the data has been read, so that a refused source ends in its one error line.
    unofficial = check_official_release(path, strict) if kind == "official" else None
    out_root = Path(out_root)
    out_dir = out_root / f"cifar10-{kind}-{_fingerprint(path)}-{limit or 'all'}"
    if (out_dir / "manifest.json").is_file():
        if unofficial:
            log.warning("%s", unofficial)
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
            files = _walk_files(path)
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
    if unofficial:
        log.warning("%s", unofficial)
    log.info("wrote %s: %s in %.1f s", out_dir,
             ", ".join(f"{s} {v['examples']}" for s, v in manifest["splits"].items()), manifest["seconds"])
    return out_dir


def verify_dataset(dataset_dir: Path) -> None:
    """Reads every shard of a prepared dataset (a few seconds for all of CIFAR-10): a truncated or corrupted file
    is named here, before the pipeline starts, and each split must hold the examples its manifest lists."""
    import tensorflow as tf

    manifest = load_manifest(dataset_dir)
    for split, info in manifest["splits"].items():
        shards = sorted((dataset_dir / split).glob(SHARD_GLOB))
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
