"""Any image-classification source into sharded TFRecords of tf.Example{image: PNG bytes, label: int64}, the input of
ImportExampleGen. CIFAR-10 is the default source and comes out byte for byte as it always has.

Sources, detected from what the path holds:
- CIFAR-10's official ``cifar-10-python.tar.gz`` (downloaded by default, MD5 checked), as the archive or its
  extracted folder; its pickles are read without running code (components/cifar10_batches.py). A local archive
  whose MD5 is not the official release's is a warning (``strict``: an error);
- an image folder ``<class>/...`` or ``train/<class>/...`` (optionally ``test/<class>/...``), as a folder or a
  ``.tar.gz`` (components/image_folder.py), symbolic links followed; its images, any format, mode and size Pillow
  reads, become 8-bit RGB within stated bounds (components/images.py: ``max_decode_pixels``, downscaled above it
  or refused under ``strict``);
- TFRecords of tf.Example{image, label} with a classes.txt (components/tfrecord_source.py), their images converted
  as image files are;
- a dataset folder this module wrote (it has manifest.json): verified and used as it is (datasets.py reads one
  back; spans.py appends a source to one as its next span).
2 to 1,000 classes. An image with an image's name that Pillow cannot decode is an error naming it, or under
``skip_unreadable`` left out and named in one warning.

Splits. Test: the source's, or else held out from train/ (or the class folders), class by class: of a class's n
images in path order, image i goes to test when ceil((i+1)f) > ceil(i f), f = ``test_fraction``: ceil(n f) images
evenly spread, the first included (f = 0.1: images 0, 10, 20, ...). Eval: the source's (TFRecords), or else every
10th remaining training image of each class (CIFAR-10: 45,000 / 5,000). Each class needs ``min_images_per_class``
images for train and eval, counted before decoding (and again without the unreadable ones skipped).

Output ``<out_root>/<dataset id>/``: ``train/``, ``eval/``, ``test/``, ``classes.txt``, ``manifest.json`` and, for a
class list other than CIFAR-10's, ``schema.pbtxt`` (the curated schema with label domain 0..N-1). The id is
``cifar10-<format>-<fingerprint of the source's bytes>-<limit or all>`` for CIFAR-10's class list and ``images-...``
for any other, with ``-tf<f>`` / ``-px<n>`` appended for a test fraction / max_decode_pixels other than the
default. It is built in a staging folder and renamed into place only when complete, so an existing dataset is never
overwritten or half-written. Memory stays bounded: pixels are staged on disk and encoded by worker processes in a
stream, a window of images at a time (components/encoding.py). Reading is bounded (components/sources.py): a
hostile or broken source is refused with one line saying where and why reading stopped.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
import urllib.parse
import urllib.request
from fractions import Fraction
from pathlib import Path
from typing import Sequence

from components import cifar10_batches, datasets, encoding, image_folder, tfrecord_source
from components.cifar10_batches import OFFICIAL_DIR
from components.progress import Progress
from components.schema import dataset_schema_text
from components.sources import (MAX_IMAGE_BYTES, DataError, Item, read_member, tar_members, walk_files,
                                walk_files_lazily)
from trainer.contract import DATASET_MANIFEST, DATASET_SCHEMA, EVAL, TEST, TRAIN, UTC_STAMP
from trainer.features import CIFAR10_CLASSES

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
CLASSES_FILE = tfrecord_source.CLASSES_FILE  # the class list, one name a line: in a TFRecord source and our output
MIN_CLASSES, MAX_CLASSES = 2, 1000
DEFAULT_TEST_FRACTION = 0.1
DEFAULT_MAX_DECODE_PIXELS = 4096 * 4096  # 16.8 MP: a phone's 12 MP photo is kept whole, a 50 MP one downscaled
# 10: the fewest that give every class an eval image (its 10th) besides training images. A held-out test split takes
# its images (at least one a class) on top of these.
DEFAULT_MIN_IMAGES_PER_CLASS = 10
EVAL_EVERY = 10  # every 10th training image of each class goes to the validation split

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a dataset is built with, beside its source (prepare's keyword arguments)."""

    limit: int | None = None
    test_fraction: float = DEFAULT_TEST_FRACTION
    max_decode_pixels: int = DEFAULT_MAX_DECODE_PIXELS
    min_images_per_class: int = DEFAULT_MIN_IMAGES_PER_CLASS
    strict: bool = False
    skip_unreadable: bool = False

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise DataError(f"--limit must be a positive number of images per split, got {self.limit}")
        if not 0 < self.test_fraction < 1:
            raise DataError(f"--test-fraction must be between 0 and 1 (exclusive), got {self.test_fraction}")
        if self.max_decode_pixels < 1:
            raise DataError(f"--max-decode-pixels must be a positive number of pixels, got {self.max_decode_pixels}")
        if self.min_images_per_class < 1:
            raise DataError(f"--min-images-per-class must be at least 1, got {self.min_images_per_class}")


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
    target = cache_dir / Path(urllib.parse.urlparse(url).path).name
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


def detect(path: Path) -> str:
    """'official', 'tfrecord' or 'folder', from what the folder or archive holds: an image folder is any source
    with an image file in it that is neither of the others (image_folder.py reads its layout, or says why not)."""
    if not path.exists():
        raise DataError(f"data source {path} does not exist; expected an image folder (<class>/* or "
                        f"train/<class>/*, optionally test/<class>/*) as a folder or .tar.gz, TFRecords with a "
                        f"{CLASSES_FILE}, or cifar-10-python.tar.gz or its extracted folder")
    if path.is_dir():
        candidates = _candidates(path)
        if any((c / "data_batch_1").is_file() for c in candidates):
            return "official"
        if any(tfrecord_source.is_source(c) for c in candidates):
            return "tfrecord"
        if any((c / TRAIN).is_dir() for c in candidates):
            return "folder"
        files = 0
        for entry in walk_files_lazily(path):
            if image_folder.holds_images(entry):
                return "folder"
            files += 1
        raise DataError(f"{path}: no image files in it ({files:,} other file(s)); expected <class>/<image> or "
                        f"train/<class>/<image> image folders, or {CLASSES_FILE} and train/*.tfrecord files, or "
                        f"{OFFICIAL_DIR}/data_batch_* files")
    links = 0
    for _, member in tar_members(path):
        parts = Path(member.name).parts
        if parts and parts[-1] == "data_batch_1":
            return "official"
        if member.isfile() and image_folder.holds_images(member.name):
            return "folder"
        links += member.issym() or member.islnk()
    raise DataError(f"{path}: archive holds neither {OFFICIAL_DIR}/data_batch_* nor image files; expected "
                    f"<class>/<image> or train/<class>/<image> members" + (
                        f" (its {links:,} link member(s) are not followed: pack it with tar --dereference)"
                        if links else ""))


def _candidates(path: Path) -> list[Path]:
    """Where a source folder's layout may start: in it, or in one folder below it."""
    return [path, *sorted(p for p in path.iterdir() if p.is_dir())]


def _index(kind: str, path: Path, staging: Path) -> tuple[dict[str, list[Item]], list[str], str | None]:
    """The source's items by split (train; test and eval when the source has them), its class names, and for an
    image folder where its class folders are ('train/' or '' for the top; None for other sources)."""
    if kind == "official":
        return (*cifar10_batches.index_official(path, staging), None)
    if kind == "tfrecord":
        root = next(c for c in _candidates(path) if tfrecord_source.is_source(c))
        class_names = tfrecord_source.read_classes(root)
        return tfrecord_source.index(root, len(class_names), staging / "records.bin"), class_names, None
    if path.is_dir():
        return image_folder.index(walk_files(path, folders=True), str(path), "/", base=path)
    entries, links = [], []
    for _, member in tar_members(path):
        if member.isfile() or member.isdir():
            entries.append(member.name + ("/" if member.isdir() else ""))
        elif member.issym() or member.islnk():
            links.append(member.name)
    if links:  # not followed: the archive is read in one streaming pass (_stage_selected), a target may be behind
        log.warning("%s: skipped %d link member(s), which are not followed inside an archive (pack it with tar "
                    "--dereference): %s", path, len(links), image_folder.first_names(sorted(links)))
    return image_folder.index(entries, str(path), ":")


def _check_class_count(class_names: list[str], where: str) -> None:
    if not MIN_CLASSES <= len(class_names) <= MAX_CLASSES:
        shown = f" {class_names}" if len(class_names) < MIN_CLASSES else ""
        raise DataError(f"{where}: {len(class_names):,} class(es){shown}; expected {MIN_CLASSES} to {MAX_CLASSES:,} "
                        f"classes (an image folder: one folder per class, in train/ or at the top)")
    odd = next((name for name in class_names if not name.isprintable()), None)
    if odd is not None:
        raise DataError(f"{where}: class name {odd!r} has a line break or control character; expected printable "
                        f"names (they go into {CLASSES_FILE}, one a line)")


def _stage_selected(archive: Path, splits: dict[str, list[Item]], blob: Path) -> dict[str, list[Item]]:
    """Copies the bytes of the images the splits use into one staging file, in one pass over the archive (60,000
    small files on disk would cost far more); items then point at (offset, size) in it."""
    wanted = {it.ref for items in splits.values() for it in items}
    where: dict[str, tuple[int, int]] = {}
    with open(blob, "wb") as out:
        for tar, member in tar_members(archive):
            if member.isfile() and member.name in wanted:
                data = read_member(tar, member, f"{archive}:{member.name}", MAX_IMAGE_BYTES)
                where[member.name] = (out.tell(), len(data))
                out.write(data)
    return {s: [dataclasses.replace(it, ref=str(blob), row=where[it.ref][0], size=where[it.ref][1],
                                    display=f"{archive}:{it.ref}") for it in items]
            for s, items in splits.items()}


# ------------------------------------------------------------------------------------------------ splits

def _per_class(items: Sequence[Item], num_classes: int) -> list[int]:
    counts = [0] * num_classes
    for it in items:
        counts[it.label] += 1
    return counts


def _renumbered(items: list[Item]) -> list[Item]:
    """Positions counted again within each class, in the items' order."""
    seen: dict[int, int] = {}
    out = []
    for it in items:
        out.append(dataclasses.replace(it, position=seen.get(it.label, 0)))
        seen[it.label] = out[-1].position + 1
    return out


def hold_out(train: list[Item], test_fraction: float) -> tuple[list[Item], list[Item]]:
    """(train, test): the class-stratified held-out test split of the module docstring, in exact arithmetic (a
    float's 30 * 0.1 is not 3)."""
    f = Fraction(test_fraction).limit_denominator(10**6)
    kept: list[Item] = []
    held: list[Item] = []
    for it in train:
        crossed = math.ceil((it.position + 1) * f) > math.ceil(it.position * f)
        (held if crossed else kept).append(it)
    return _renumbered(kept), _renumbered(held)


def _take_per_class(items: list[Item], limit: int | None) -> list[Item]:
    if limit is None:
        return items
    by_class: dict[int, list[Item]] = {}
    for it in items:
        by_class.setdefault(it.label, []).append(it)
    labels = sorted(by_class)
    quota = {c: limit // len(labels) + (1 if i < limit % len(labels) else 0) for i, c in enumerate(labels)}
    return [it for c in labels for it in by_class[c][:quota[c]]]


def split_items(train: list[Item], test: list[Item], limit: int | None,
                eval_: list[Item] | None = None) -> dict[str, list[Item]]:
    """Class-balanced limit, the deterministic 9:1 train/eval carve (unless the source has an eval split), classes
    interleaved within each split."""
    train, test = _take_per_class(train, limit), _take_per_class(test, limit)
    if eval_ is not None:
        splits = {TRAIN: train, EVAL: _take_per_class(eval_, limit), TEST: test}
    else:
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


def _check_class_sizes(class_dir: str | None, source: Path, class_names: list[str], counts: list[int], minimum: int,
                       held: list[int] | None = None, unreadable: list[int] | None = None) -> None:
    """Each class has at least `minimum` images for train and eval (`counts`): else a DataError naming the class
    (its folder, under `class_dir`, for an image folder), its count, and what was held out for test or skipped as
    unreadable."""
    for c, (name, n) in enumerate(zip(class_names, counts)):
        place = f"class folder {class_dir}{name}" if class_dir is not None else f"class {name!r}"
        note = "".join([f", {held[c]} more held out for test" if held else "",
                        f", {unreadable[c]} unreadable skipped" if unreadable and unreadable[c] else ""])
        if n == 0 and unreadable and unreadable[c]:
            raise DataError(f"{source}: {place} has no readable image ({unreadable[c]} unreadable skipped)")
        if n < minimum:
            raise DataError(f"{source}: {place} has {n} image(s) for training and eval{note}; each class needs at "
                            f"least {minimum} (--min-images-per-class)")


# ------------------------------------------------------------------------------------------------ entry point

def _fingerprint(path: Path) -> str:
    """What the dataset folder is keyed by: the source's bytes (a folder: each file's relative path and bytes).
    Not its path or modification time: a copied, moved or re-mounted source (a new machine, a re-synced share)
    must find the dataset it already made, or the pipeline's cached components and the Trainer's epoch
    checkpoints (keyed by the ExampleGen artifacts) would all start again."""
    digest = hashlib.sha256()
    for name in sorted(walk_files(path)) if path.is_dir() else [None]:
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
            workers: int | None = None, strict: bool = False, md5: str | None = None,
            test_fraction: float = DEFAULT_TEST_FRACTION, max_decode_pixels: int = DEFAULT_MAX_DECODE_PIXELS,
            min_images_per_class: int = DEFAULT_MIN_IMAGES_PER_CLASS, skip_unreadable: bool = False) -> Path:
    """Builds (or reuses) the TFRecord dataset for `source`; returns its folder. `md5` overrides the checksum a
    URL's download is checked against; `strict` refuses official-format data that is not the official release and
    images above `max_decode_pixels` (else downscaled); `skip_unreadable` leaves out, with one warning, image files
    Pillow cannot decode (else each is an error). The rest: the module docstring."""
    settings = Settings(limit, test_fraction, max_decode_pixels, min_images_per_class, strict, skip_unreadable)
    if strict and md5 and md5 != OFFICIAL_MD5:
        raise DataError(f"MD5 {md5} is not the official release's {OFFICIAL_MD5}; --strict accepts only the "
                        f"official CIFAR-10 python archive")
    path = resolve_source(source, cache_dir, md5)
    if (path / DATASET_MANIFEST).is_file() and (path / TRAIN).is_dir():  # already a dataset of ours
        if limit is not None:
            raise DataError(f"{path} is a prepared dataset; --limit applies only when converting a source")
        _check_reuse(path, settings)
        datasets.verify(path)
        return path
    kind = detect(path)
    # Checked before reuse too (--strict must not accept a dataset made from unofficial data); the warning comes
    # once the data has been read, so that a refused source ends in its one error line.
    unofficial = check_official_release(path, strict) if kind == "official" else None
    out_root = Path(out_root)
    fingerprint = _fingerprint(path)  # hashes every byte of the source: once
    names = {cifar10: _dataset_name(cifar10, kind, fingerprint, settings) for cifar10 in (True, False)}
    for name in names.values():
        if (out_root / name / DATASET_MANIFEST).is_file():
            _check_reuse(out_root / name, settings)
            if unofficial:
                log.warning("%s", unofficial)
            log.info("reusing dataset %s", out_root / name)
            return out_root / name
        if (out_root / name).exists():
            raise DataError(f"{out_root / name} exists but has no {DATASET_MANIFEST} (incomplete); remove it to "
                            f"rebuild")
    staging = out_root / f".staging-{names[False]}-{os.getpid()}"
    staging.mkdir(parents=True)
    try:
        dataset, manifest = build(kind, path, source, staging, workers, settings)
        out_dir = out_root / names[manifest["class_names"] == list(CIFAR10_CLASSES)]
        dataset.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if unofficial:
        log.warning("%s", unofficial)
    log.info("wrote %s: %s in %.1f s", out_dir,
             ", ".join(f"{s} {v['examples']}" for s, v in manifest["splits"].items()), manifest["seconds"])
    return out_dir


def _dataset_name(cifar10: bool, kind: str, fingerprint: str, settings: Settings) -> str:
    suffix = "".join([f"-tf{settings.test_fraction:g}" if settings.test_fraction != DEFAULT_TEST_FRACTION else "",
                      f"-px{settings.max_decode_pixels}"
                      if settings.max_decode_pixels != DEFAULT_MAX_DECODE_PIXELS else ""])
    return f"{'cifar10' if cifar10 else 'images'}-{kind}-{fingerprint}-{settings.limit or 'all'}{suffix}"


def _check_reuse(dataset: Path, settings: Settings) -> None:
    """A dataset is reused only where building it again would succeed: not one with downscaled images under
    --strict, nor one that left unreadable images out without --skip-unreadable."""
    manifest = datasets.load_manifest(dataset)
    if settings.strict and manifest.get("downscaled_images"):
        raise DataError(f"{dataset}: built with {manifest['downscaled_images']} image(s) downscaled to "
                        f"max_decode_pixels, which --strict refuses; remove it to rebuild with --strict")
    if not settings.skip_unreadable and manifest.get("skipped_unreadable"):
        raise DataError(f"{dataset}: built leaving out {manifest['skipped_unreadable']} unreadable image(s); pass "
                        f"--skip-unreadable to use it, or remove it to rebuild")


def build(kind: str, path: Path, source: str | None, staging: Path, workers: int | None,
          settings: Settings, span: int = 0,
          same_classes_as: datasets.Location | None = None) -> tuple[Path, dict]:
    """The dataset folder, complete, in `staging`, and its manifest: a new dataset (span 0), or the shards of span
    `span` of the dataset `same_classes_as`, whose class list the source's must equal (checked before encoding)."""
    start = time.time()
    items, class_names, class_dir = _index(kind, path, staging)
    _check_class_count(class_names, str(path))
    if same_classes_as is not None:
        datasets.check_same_classes(class_names, path, same_classes_as)
    num_classes = len(class_names)
    train, test, held = items[TRAIN], items.get(TEST), None
    if test is None:
        train, test = hold_out(train, settings.test_fraction)
        held = _per_class(test, num_classes)
    source_counts = _per_class(train, num_classes)
    _check_class_sizes(class_dir, path, class_names, source_counts, settings.min_images_per_class, held)
    splits = split_items(train, test, settings.limit, items.get(EVAL))
    if kind == "folder" and path.is_file():
        splits = _stage_selected(path, splits, staging / "images.bin")
    dataset = staging / "dataset"
    tally = encoding.write_splits(dataset, splits, num_classes, workers, max_pixels=settings.max_decode_pixels,
                                  strict=settings.strict, skip_unreadable=settings.skip_unreadable, span=span)
    if tally.unreadable:
        lost = _per_class([it for split, it in tally.unreadable if split != TEST], num_classes)
        _check_class_sizes(class_dir, path, class_names, [n - k for n, k in zip(source_counts, lost)],
                           settings.min_images_per_class, held, lost)
    (dataset / CLASSES_FILE).write_text("\n".join(class_names) + "\n")
    split_counts = {s: {"examples": sum(counts), "per_class": counts} for s, counts in tally.written.items()}
    if class_names != list(CIFAR10_CLASSES):
        (dataset / DATASET_SCHEMA).write_text(dataset_schema_text(num_classes))
    manifest = {
        "source": str(path if kind == "official" else source), "format": kind, "limit": settings.limit,
        "class_names": class_names, "num_classes": num_classes,
        "test_split": "source" if held is None else "held_out",
        "test_fraction": None if held is None else settings.test_fraction,
        "splits": split_counts,
        "downscaled_images": tally.downscaled, "skipped_unreadable": len(tally.unreadable),
        "seconds": round(time.time() - start, 1),
        "spans": [{"span": span, "created_utc": time.strftime(UTC_STAMP, time.gmtime()), "splits": split_counts}],
    }
    (dataset / DATASET_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return dataset, manifest
