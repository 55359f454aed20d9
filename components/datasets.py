"""A dataset folder that `tokenlearner data` wrote, read back: its manifest and spans, a span's shards, and the checks
made before trusting a local one (every shard read and counted; a span's class list).

Layout (trainer/contract.py names the paths): ``<dataset>/{train,eval,test}/`` with each span's shards,
``classes.txt``, ``manifest.json`` (the splits' totals over spans, and one entry a span) and ``spans/span-N.stats.pb``
(span_stats.py). Ingestion (ingest.py) and `--append` (spans.py) write it; the validator, the CLI and run
inspection read it through this module, without PIL or the ingestion code.

A dataset may be a local folder (a Path) or a URI on any filesystem tf.io.gfile has (gs://, s3:// with its plugin,
ram://): the data root of a Kubeflow or Vertex run, which `data --append` adds spans to in place. The helpers
below (`join`, `shards_in`, `write_atomically`, `remove`) take either; only a URI imports TensorFlow.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator, Union

from components.sources import DataError
from components.tfrecord_source import CLASSES_FILE
from trainer.contract import DATASET_MANIFEST, SHARD_GLOB, SPLITS, span_of_shard

# A local folder or file (Path), or a URI read and written through tf.io.gfile (str).
Location = Union[str, Path]


def is_uri(dataset_dir: Location) -> bool:
    """gs://, s3://, ram://, ...: a dataset on a filesystem tf.io.gfile has, e.g. the data root of a Kubeflow or
    Vertex run."""
    return "://" in str(dataset_dir)


def join(dataset_dir: Location, *parts: str) -> Location:
    """`dataset_dir`/`parts` (contract paths, '/'-separated): a Path for a local dataset, a URI string else."""
    if is_uri(dataset_dir):
        return "/".join([str(dataset_dir).rstrip("/"), *parts])
    return Path(dataset_dir).joinpath(*parts)


def file_name(location: Location) -> str:
    """The last component of a local path or a URI."""
    return str(location).rstrip("/").rsplit("/", 1)[-1]


def exists(location: Location) -> bool:
    if is_uri(location):
        import tensorflow as tf

        return bool(tf.io.gfile.exists(str(location)))
    return Path(location).exists()


def shards_in(folder: Location) -> list[Location]:
    """The TFRecord shards (contract.SHARD_GLOB) directly in `folder`, sorted by name; none when it is missing."""
    if is_uri(folder):
        import tensorflow as tf

        pattern = f"{str(folder).rstrip('/')}/{SHARD_GLOB}"
        return sorted(tf.io.gfile.glob(pattern), key=file_name)
    return sorted(Path(folder).glob(SHARD_GLOB))


def write_atomically(target: Location, data: bytes) -> None:
    """Writes `target` whole or not at all, making its folder: readers (a pipeline run beside an append) never see
    a half-written file. A partial file is written beside it and renamed over it. Locally that rename is atomic. An
    object store (gs://, s3://) has no rename: tf.io.gfile makes it a server-side copy that replaces the object
    whole, then a delete of the partial one, so readers still get the old object or the new one. (Writing the
    object in place would be all or nothing there too, but not on every gfile filesystem: ram:// keeps the old
    bytes of a file opened for writing and appends to them.)"""
    if is_uri(target):
        import tensorflow as tf

        parent, name = str(target).rsplit("/", 1)
        tf.io.gfile.makedirs(parent)
        partial = f"{parent}/.{name}.{os.getpid()}.part"
        with tf.io.gfile.GFile(partial, "wb") as f:
            f.write(data)
        tf.io.gfile.rename(partial, str(target), overwrite=True)
        return
    local = Path(target)
    local.parent.mkdir(parents=True, exist_ok=True)
    staged = local.with_name(f".{local.name}.{os.getpid()}.part")
    staged.write_bytes(data)
    os.replace(staged, local)


def storage_reason(error: BaseException) -> str:
    """The first line of a filesystem error (TensorFlow's OpError message, an OSError), short enough for one line."""
    import tensorflow as tf

    text = error.message if isinstance(error, tf.errors.OpError) else str(error)
    return ((text.strip().splitlines() or [type(error).__name__])[0])[:200]


def remove(location: Location) -> None:
    """Deletes a file; a missing one is no error (roll-backs call it on what may not have been written)."""
    if is_uri(location):
        import tensorflow as tf

        with contextlib.suppress(tf.errors.NotFoundError):
            tf.io.gfile.remove(str(location))
        return
    Path(location).unlink(missing_ok=True)


def read_file(dataset_dir: Location, relative: str) -> tuple[Location, bytes | None]:
    """(where, its bytes) of the file `relative` (a contract path) of a dataset here or in a bucket; bytes None when
    it does not exist. `where` is what an error names."""
    where = join(dataset_dir, relative)
    if is_uri(dataset_dir):
        import tensorflow as tf

        try:
            if not tf.io.gfile.exists(str(where)):
                return where, None
            with tf.io.gfile.GFile(str(where), "rb") as f:
                return where, f.read()
        except tf.errors.OpError as e:  # no credentials, no such bucket, no plugin for the scheme: one line
            raise DataError(f"{where}: cannot be read ({storage_reason(e)})") from None
    path = Path(where)
    return path, (path.read_bytes() if path.is_file() else None)


@contextlib.contextmanager
def reading_shard(shard: Location) -> Iterator[None]:
    """Around the reading of one TFRecord shard: a truncated or corrupt file (TensorFlow's DataLossError, a read
    error) becomes one DataError naming the shard, not a TensorFlow traceback."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.OpError, OSError) as e:
        reason = (e.message if isinstance(e, tf.errors.OpError) else str(e)).split(":")[0][:120]
        raise DataError(f"{shard}: corrupt or truncated TFRecord file ({reason})") from None


def load_manifest(dataset_dir: Location) -> dict:
    """The dataset's manifest.json: its source, class list, the splits' totals over spans and one entry a span."""
    where, data = read_file(dataset_dir, DATASET_MANIFEST)
    if data is None:
        raise DataError(f"{where}: missing; expected a dataset written by `tokenlearner data`")
    try:
        manifest = json.loads(data)
    except ValueError as e:
        raise DataError(f"{where}: not a dataset manifest (invalid JSON: {e})") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{where}: not a dataset manifest (expected a JSON object)")
    return manifest


def load_spans(dataset_dir: Location) -> list[dict]:
    """The spans of a dataset, oldest first: {"span": N, "created_utc": ..., "splits": {split: {"examples": n,
    "per_class": [...]}}, ...}. A manifest written before spans is one span 0 (created_utc None: not recorded)."""
    manifest = load_manifest(dataset_dir)
    spans = manifest.get("spans")
    if spans is None:
        return [{"span": 0, "created_utc": None,
                 "splits": {s: {"examples": v["examples"], "per_class": v.get("per_class")}
                            for s, v in manifest["splits"].items()}}]
    return sorted(spans, key=lambda entry: entry["span"])


def span_shards(dataset_dir: Location, span: int) -> dict[str, list[Location]]:
    """split -> the TFRecord shards of span `span` in it (trainer/contract.py names them)."""
    return {split: [p for p in shards_in(join(dataset_dir, split)) if span_of_shard(file_name(p)) == span]
            for split in SPLITS}


def check_same_classes(class_names: list[str], source: Path, dataset_dir: Location) -> None:
    """A span must have the dataset's class list, names and order, or its label ids would mean other classes."""
    expected = load_manifest(dataset_dir)["class_names"]
    if class_names == expected:
        return
    where = f"{source}: its class list differs from {join(dataset_dir, CLASSES_FILE)}"
    new = [n for n in class_names if n not in expected]
    missing = [n for n in expected if n not in class_names]
    if new or missing:
        what = "; ".join(filter(None, [f"new class(es) {new}" if new else "",
                                       f"missing class(es) {missing}" if missing else ""]))
    else:
        i = next(i for i, (a, b) in enumerate(zip(class_names, expected)) if a != b)
        what = f"the same classes in another order (class {i}: {class_names[i]!r} here, {expected[i]!r} there)"
    raise DataError(f"{where}: {what}; a span needs the same class names in the same order (another class list is "
                    "another dataset: write it with `tokenlearner data --out DIR` and run it into a new --output; "
                    "its Trainer trains from scratch)")


def verify(dataset_dir: Path) -> None:
    """Reads every shard of a prepared dataset (a few seconds for all of CIFAR-10): a truncated or corrupted file
    is named here, before the pipeline starts, and each split must hold the examples its manifest lists (the sum over
    its spans), and each shard belong to a span the manifest lists (the pipeline reads every shard beside it)."""
    import tensorflow as tf

    manifest = load_manifest(dataset_dir)
    listed = {entry["span"] for entry in load_spans(dataset_dir)}
    for split, info in manifest["splits"].items():
        shards = sorted((dataset_dir / split).glob(SHARD_GLOB))
        count = 0
        for shard in shards:
            if span_of_shard(shard.name) not in listed:
                raise DataError(f"{shard}: a shard of span {span_of_shard(shard.name)}, which {DATASET_MANIFEST} "
                                f"does not list (spans {sorted(listed)}); left by an interrupted `tokenlearner data "
                                f"--append`? Remove it, or append again (that removes it)")
            with reading_shard(shard):
                count += int(tf.data.TFRecordDataset(str(shard), compression_type="GZIP").reduce(
                    tf.constant(0, tf.int64), lambda n, _: n + 1))
        if count != info["examples"]:
            raise DataError(f"{dataset_dir / split}: {count} examples in {len(shards)} shard(s), {DATASET_MANIFEST} "
                            f"lists {info['examples']}")
