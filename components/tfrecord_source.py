"""TFRecords a user already has, as an ingestion source, checked record by record.

The layout: a folder (or one folder below it) holding ``classes.txt`` (one class name per line, in class-id order)
and ``train/`` files of tf.Example{image: encoded image bytes, label: int64}, named ``*.tfrecord`` or
``*.tfrecords``, either possibly ending in ``.gz``; ``eval/`` and ``test/`` likewise, optionally. Whether a file is
GZIP-compressed is read from its first bytes, not its name.

Records are read here rather than by TensorFlow so that reading stays bounded: a record's declared length is checked
before its bytes are read, and each record's CRC-32C framing is verified as TensorFlow's reader does. Every record
must hold one non-empty image and one label in 0..N-1 (N: the lines of classes.txt); the first that does not is a
DataError naming the file, the record's index and what was expected. The image bytes are staged in one file for
ingestion's encoder (components/encoding.py), which converts them as it converts image files.
"""
from __future__ import annotations

import gzip
import itertools
import struct
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol

import google_crc32c  # CRC-32C, as TFRecord framing uses (installed with apache-beam[gcp]'s Google Cloud clients)

from components.sources import MAX_IMAGE_BYTES, MAX_MEMBERS, MAX_TOTAL_BYTES, READ_ERRORS, DataError, Item, read_file
from trainer.contract import EVAL, TEST, TRAIN
from trainer.features import IMAGE_KEY, LABEL_KEY

CLASSES_FILE = "classes.txt"
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrecord.gz", ".tfrecords.gz")
MAX_CLASSES_FILE_BYTES = 2**20
MAX_RECORD_BYTES = MAX_IMAGE_BYTES + 2**16  # an image and its tf.Example wrapping
_GZIP_MAGIC = b"\x1f\x8b"


def tfrecord_files(folder: Path) -> list[Path]:
    """The TFRecord files directly in `folder`, sorted by name; [] when it is not a folder."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(TFRECORD_SUFFIXES))


def is_source(folder: Path) -> bool:
    return (folder / CLASSES_FILE).is_file() and bool(tfrecord_files(folder / TRAIN))


def read_classes(root: Path) -> list[str]:
    """The class names of classes.txt, in class-id order (blank lines ignored, names unique)."""
    path = root / CLASSES_FILE
    try:
        text = read_file(path, MAX_CLASSES_FILE_BYTES).decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); expected one class name a line")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{path}: class name(s) {repeated} listed more than once; expected each class once")
    return names


def index(root: Path, num_classes: int, blob: Path) -> dict[str, list[Item]]:
    """Items of every split present (train, and eval/test when their folders hold TFRecord files); each record's
    image bytes are appended to `blob`, where its item points."""
    items: dict[str, list[Item]] = {}
    budget = _Budget()
    with open(blob, "wb") as out:
        for split in (TRAIN, EVAL, TEST):
            files = tfrecord_files(root / split)
            if files:
                items[split] = _index_split(files, num_classes, out, budget)
    return items


class _Budget:
    """Records and bytes read so far from the whole source, against MAX_MEMBERS and MAX_TOTAL_BYTES."""

    def __init__(self):
        self.records = self.bytes = 0

    def spend(self, path: Path, size: int) -> None:
        self.records, self.bytes = self.records + 1, self.bytes + size
        if self.records > MAX_MEMBERS or self.bytes > MAX_TOTAL_BYTES:
            raise DataError(f"{path}: stopped reading after {self.records:,} records and {self.bytes:,} bytes, "
                            f"more than ingestion takes from one source ({MAX_MEMBERS:,} records, "
                            f"{MAX_TOTAL_BYTES / 2**30:g} GiB)")


def _index_split(files: list[Path], num_classes: int, out: BinaryIO, budget: _Budget) -> list[Item]:
    items, seen = [], [0] * num_classes
    for path in files:
        for i, record in enumerate(_records(path, budget)):
            where = f"{path}: record {i}"
            image, label = _example(record, where, num_classes)
            items.append(Item(label, seen[label], out.name, out.tell(), len(image), where))
            seen[label] += 1
            out.write(image)
    return items


def _records(path: Path, budget: _Budget) -> Iterator[bytes]:
    """The records of a TFRecord file, GZIP or not, lengths bounded and CRCs checked."""
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
            for i in itertools.count():
                record = next_record(f, f"{path}: record {i}")
                if record is None:
                    return
                budget.spend(path, len(record))
                yield record
    except READ_ERRORS as e:
        raise DataError(f"{path}: cannot read it, truncated or corrupt ({e})") from None


class Readable(Protocol):
    """What next_record reads from: a file, a GzipFile, or inference's stream with its sniffed head put back."""

    def read(self, size: int, /) -> bytes: ...


def next_record(f: Readable, where: str) -> bytes | None:
    header = f.read(12)  # uint64 length, masked CRC-32C of the length; then the data and its masked CRC-32C
    if not header:
        return None
    if len(header) < 12 or _masked_crc(header[:8]) != header[8:]:
        raise DataError(f"{where}: not TFRecord framing (truncated, or a corrupt length header)")
    (length,) = struct.unpack("<Q", header[:8])
    if length > MAX_RECORD_BYTES:
        raise DataError(f"{where}: declares {length:,} bytes, more than the {MAX_RECORD_BYTES:,} allowed for a record")
    data, footer = f.read(length), f.read(4)
    if len(data) < length or _masked_crc(data) != footer:
        raise DataError(f"{where}: truncated, or its CRC does not match its bytes (corrupt)")
    return data


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _example(record: bytes, where: str, num_classes: int) -> tuple[bytes, int]:
    """(image bytes, label) of a serialized tf.Example, checked."""
    from tensorflow.core.example import example_pb2

    try:
        feature = example_pb2.Example.FromString(record).features.feature
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError, or worse
        raise DataError(f"{where}: not a tf.Example ({type(e).__name__}: {e})") from None
    images = feature[IMAGE_KEY].bytes_list.value if IMAGE_KEY in feature else []
    if len(images) != 1 or not images[0]:
        raise DataError(f"{where}: feature {IMAGE_KEY!r} must hold one non-empty bytes value (the encoded image); "
                        f"found {len(images)} value(s)")
    labels = feature[LABEL_KEY].int64_list.value if LABEL_KEY in feature else []
    if len(labels) != 1 or not 0 <= labels[0] < num_classes:
        found = labels[0] if len(labels) == 1 else f"{len(labels)} int64 values"
        raise DataError(f"{where}: label {found} is outside the class list; expected one int64 label in "
                        f"0..{num_classes - 1} ({num_classes} classes in {CLASSES_FILE})")
    return images[0], labels[0]
