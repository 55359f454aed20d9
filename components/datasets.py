"""A dataset folder that `tokenlearner data` wrote, read back: its manifest and spans (here, or in a bucket: gs://...,
the data root of a Kubeflow or Vertex run, read with tf.io.gfile), a span's shards, and the checks made before
trusting a local one (every shard read and counted; a span's class list).

Layout (trainer/contract.py names the paths): ``<dataset>/{train,eval,test}/`` with each span's shards,
``classes.txt``, ``manifest.json`` (the splits' totals over spans, and one entry a span) and ``spans/span-N.stats.pb``
(span_stats.py). Ingestion (ingest.py) and `--append` (spans.py) write it; the validator, the CLI and run
inspection read it through this module, without PIL or the ingestion code.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

from components.sources import DataError
from components.tfrecord_source import CLASSES_FILE
from trainer.contract import DATASET_MANIFEST, SHARD_GLOB, SPLITS, span_of_shard


def is_uri(dataset_dir: str | Path) -> bool:
    """gs://, s3://, ...: the data root of a Kubeflow or Vertex run, read where the validator runs (tf.io.gfile)."""
    return "://" in str(dataset_dir)


def read_file(dataset_dir: str | Path, relative: str) -> tuple[str | Path, bytes | None]:
    """(where, its bytes) of the file `relative` (a contract path) of a dataset here or in a bucket; bytes None when
    it does not exist. `where` is what an error names."""
    if is_uri(dataset_dir):
        import tensorflow as tf

        uri = f"{str(dataset_dir).rstrip('/')}/{relative}"
        return uri, (tf.io.gfile.GFile(uri, "rb").read() if tf.io.gfile.exists(uri) else None)
    path = Path(dataset_dir) / relative
    return path, (path.read_bytes() if path.is_file() else None)


@contextlib.contextmanager
def reading_shard(shard: Path) -> Iterator[None]:
    """Around the reading of one TFRecord shard: a truncated or corrupt file (TensorFlow's DataLossError, a read
    error) becomes one DataError naming the shard, not a TensorFlow traceback."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.OpError, OSError) as e:
        reason = (e.message if isinstance(e, tf.errors.OpError) else str(e)).split(":")[0][:120]
        raise DataError(f"{shard}: corrupt or truncated TFRecord file ({reason})") from None


def load_manifest(dataset_dir: str | Path) -> dict:
    """The dataset's manifest.json: its source, class list, the splits' totals over spans and one entry a span."""
    where, data = read_file(dataset_dir, DATASET_MANIFEST)
    if data is None:
        raise DataError(f"{where}: missing; expected a dataset written by `tokenlearner data`")
    return json.loads(data)


def load_spans(dataset_dir: str | Path) -> list[dict]:
    """The spans of a dataset, oldest first: {"span": N, "created_utc": ..., "splits": {split: {"examples": n,
    "per_class": [...]}}, ...}. A manifest written before spans is one span 0 (created_utc None: not recorded)."""
    manifest = load_manifest(dataset_dir)
    spans = manifest.get("spans")
    if spans is None:
        return [{"span": 0, "created_utc": None,
                 "splits": {s: {"examples": v["examples"], "per_class": v.get("per_class")}
                            for s, v in manifest["splits"].items()}}]
    return sorted(spans, key=lambda entry: entry["span"])


def span_shards(dataset_dir: str | Path, span: int) -> dict[str, list[Path]]:
    """split -> the TFRecord shards of span `span` in it (trainer/contract.py names them)."""
    dataset_dir = Path(dataset_dir)
    return {split: [p for p in sorted((dataset_dir / split).glob(SHARD_GLOB)) if span_of_shard(p.name) == span]
            for split in SPLITS}


def check_same_classes(class_names: list[str], source: Path, dataset_dir: Path) -> None:
    """A span must have the dataset's class list, names and order, or its label ids would mean other classes."""
    expected = load_manifest(dataset_dir)["class_names"]
    if class_names == expected:
        return
    where = f"{source}: its class list differs from {dataset_dir / CLASSES_FILE}"
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
