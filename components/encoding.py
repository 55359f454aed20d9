"""Ingestion's encoder: the images a split selected become sharded, GZIP'd TFRecords of
tf.Example{image: PNG bytes, label: int64}, encoded by worker processes in a bounded stream.

Each image is read (a file, bytes staged from an archive or TFRecords, or a row of CIFAR-10's staged pixels),
decoded to 8-bit RGB within `max_pixels` (--max-decode-pixels; images.py) and written as PNG, in order, SHARD_SIZE
examples a shard (trainer/contract.shard_name). Memory stays bounded: at most ENCODE_WINDOW images, and past one a
worker at most ENCODE_WINDOW_BYTES of their sources, are encoded ahead of the writer. A worker that dies (out of
memory) is one DataError, never a hang.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from components import image_folder, images
from components.progress import Progress
from components.sources import MAX_IMAGE_BYTES, DataError, Item, read_file
from trainer.contract import shard_name
from trainer.features import CIFAR10_IMAGE_SIZE, IMAGE_KEY, LABEL_KEY

SHARD_SIZE = 5000
ENCODE_WINDOW = 1024  # images encoded ahead of the writer, at most...
ENCODE_WINDOW_BYTES = 32 * 2**20  # ... and past one per worker, at most this many source bytes (a photo's PNG is big)

log = logging.getLogger(__name__)


_PIXELS: dict[str, np.ndarray] = {}


def _load(item: Item, max_pixels: int, strict: bool) -> tuple[Image.Image, bool]:
    """(an item's pixels as an 8-bit RGB PIL image, whether they were downscaled)."""
    if item.row >= 0 and not item.size:  # a row of staged official pixels, memory-mapped
        if item.ref not in _PIXELS:
            _PIXELS[item.ref] = np.load(item.ref, mmap_mode="r")
        return Image.fromarray(np.asarray(_PIXELS[item.ref][item.row])), False
    if item.size:  # encoded bytes staged from an archive or TFRecords (their size was bounded when staged)
        with open(item.ref, "rb") as f:
            f.seek(item.row)
            data = f.read(item.size)
    else:
        data = read_file(Path(item.ref), MAX_IMAGE_BYTES)
    return images.decode(data, item.display or item.ref, max_pixels, strict)


def _encode(item: Item, max_pixels: int, strict: bool, skip_unreadable: bool) -> tuple[bytes | None, bool]:
    """Worker: an item -> (PNG bytes, whether downscaled); (None, False) for an image Pillow cannot decode when
    `skip_unreadable`."""
    try:
        image, downscaled = _load(item, max_pixels, strict)
    except images.UnreadableImage:
        if not skip_unreadable:
            raise
        return None, False
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), downscaled


def _example(png: bytes, label: int) -> bytes:
    import tensorflow as tf

    return tf.train.Example(features=tf.train.Features(feature={
        IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
        LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    })).SerializeToString(deterministic=True)  # map order fixed: byte-identical reruns


@dataclasses.dataclass
class Tally:
    """What encoding wrote: examples per split and class, images downscaled, unreadable images left out."""

    written: dict[str, list[int]]
    downscaled: int = 0
    unreadable: list[tuple[str, Item]] = dataclasses.field(default_factory=list)  # (split, item)


def _source_bytes(item: Item) -> int:
    if item.size or item.row >= 0:
        return item.size or 3 * CIFAR10_IMAGE_SIZE * CIFAR10_IMAGE_SIZE
    try:
        return os.path.getsize(item.ref)
    except OSError:
        return 0  # the worker names the file


def _encoded(items: Sequence[Item], pool, encode, workers: int) -> Iterator[tuple[Item, tuple[bytes | None, bool]]]:
    """(item, encode(item)) in order, a window at a time: windows bound the encoded images waiting in memory (the
    executor's map submits all it is given), by count and, past one image per worker, by the bytes of their
    sources."""
    start = 0
    while start < len(items):
        end, size = start, 0
        while end < len(items) and end - start < ENCODE_WINDOW and \
                (end - start < workers or size < ENCODE_WINDOW_BYTES):
            size += _source_bytes(items[end])
            end += 1
        window = items[start:end]
        yield from zip(window, pool.map(encode, window, chunksize=max(1, min(64, len(window) // (4 * workers)))))
        start = end


def _write_split(split: str, split_dir: Path, items: Sequence[Item], pool, encode, workers: int, bar: Progress,
                 tally: Tally, span: int = 0) -> None:
    import tensorflow as tf

    split_dir.mkdir(parents=True)
    num_shards = max(1, -(-len(items) // SHARD_SIZE))
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for shard in range(num_shards):
        chunk = items[shard * SHARD_SIZE:(shard + 1) * SHARD_SIZE]
        path = split_dir / shard_name(span, shard, num_shards)
        with tf.io.TFRecordWriter(str(path), options) as writer:
            for it, (png, downscaled) in _encoded(chunk, pool, encode, workers):
                bar.update()
                if png is None:
                    tally.unreadable.append((split, it))
                    continue
                writer.write(_example(png, it.label))
                tally.written[split][it.label] += 1
                tally.downscaled += downscaled


def write_splits(dataset: Path, splits: dict[str, list[Item]], num_classes: int, workers: int | None, *,
                 max_pixels: int, strict: bool, skip_unreadable: bool, span: int = 0) -> Tally:
    """Writes <dataset>/<split>/ shards of span `span` for each split's items; returns what was written."""
    tally = Tally(written={s: [0] * num_classes for s in splits})
    encode = functools.partial(_encode, max_pixels=max_pixels, strict=strict, skip_unreadable=skip_unreadable)
    workers = workers or os.cpu_count() or 1  # cpu_count: None where the count cannot be read
    # Spawn, not fork: the parent may already hold TensorFlow threads. An executor, not multiprocessing.Pool: on an
    # error (a --strict refusal) Pool.terminate() kills workers that may be holding its result queue's lock, and
    # then waits on that lock forever (seen under load: CPython's Pool has no way out of it), and a worker killed by
    # the system (out of memory) leaves Pool waiting forever for its result. The executor lets running encodes
    # finish, drops the queued ones, and turns a dead worker into BrokenProcessPool.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        with Progress(sum(len(v) for v in splits.values()), "encode") as bar:
            for split, items in splits.items():
                try:
                    _write_split(split, dataset / split, items, pool, encode, workers, bar, tally, span)
                except BrokenProcessPool as e:
                    raise DataError(f"encoding the {split} split: a worker process died ({e}); out of memory? Lower "
                                    "--max-decode-pixels or free memory, then run again") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if tally.unreadable:
        names = sorted(it.display or it.ref for _, it in tally.unreadable)
        log.warning("skipped %d unreadable image(s) (--skip-unreadable): %s", len(names),
                    image_folder.first_names(names))
    return tally
