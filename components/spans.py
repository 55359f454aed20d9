"""`tokenlearner data --append`: a source added to an existing dataset as its next span, all or nothing.

The source is read, split and encoded as ingestion does (ingest.py) and must have the dataset's class list; its
shards are built in a staging folder and its statistics (span_stats.py) computed from them; then the shards and
statistics move into the dataset, and writing the manifest commits the span (a failure before it takes them out
again). The pipeline's ImportExampleGen reads a window of spans (span_example_gen.py) and the validator compares
the two newest (validator.py).

The dataset may be local or a URI that tf.io.gfile writes (gs://bucket/data, the data root of a Kubeflow or Vertex
run; datasets.py). Locally the staging folder is beside the dataset, the shards are renamed into it and the manifest
replaced by one rename. In a bucket the staging folder is a local temporary one, the shards are uploaded (an
existing object is never overwritten) and the manifest is replaced last (datasets.write_atomically): an object
store has no atomic rename, but the copy that replaces one object is all or nothing, so readers see the old
manifest or the new one, never a partial one. The shards arrive one by one either way (ImportExampleGen goes by the
shards it finds): append between scheduled runs, not during one.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from components import datasets, image_folder, ingest, span_stats
from components.sources import DataError
from trainer.contract import DATASET_MANIFEST, SPLITS, UTC_STAMP, span_of_shard, span_stats_path

log = logging.getLogger(__name__)


def _remove_unlisted_shards(dataset_dir: datasets.Location, listed: set[int]) -> None:
    """Shards of a span the manifest does not list are what an append stopped between moving its shards and
    writing the manifest left behind: the pipeline would read them, datasets.verify refuses them."""
    stray = [p for s in SPLITS for p in datasets.shards_in(datasets.join(dataset_dir, s))
             if span_of_shard(datasets.file_name(p)) not in listed]
    if stray:
        log.warning("removing %d shard(s) of span(s) %s that %s does not list (an interrupted append): %s",
                    len(stray), sorted({span_of_shard(datasets.file_name(p)) for p in stray}), DATASET_MANIFEST,
                    image_folder.first_names([str(p) for p in stray]))
        for p in stray:
            datasets.remove(p)


def _replace_manifest(written: Path, dataset_dir: datasets.Location) -> None:
    """The append's commit point (a test makes it fail to check the roll-back): locally one rename; in a bucket one
    object replaced whole (datasets.write_atomically)."""
    if datasets.is_uri(dataset_dir):
        datasets.write_atomically(datasets.join(dataset_dir, DATASET_MANIFEST), written.read_bytes())
    else:
        os.replace(written, Path(dataset_dir) / DATASET_MANIFEST)


def _place_shard(shard: Path, target: datasets.Location, span: int) -> None:
    """Moves one built shard into the dataset; an existing file there is an error, never overwritten."""
    message = f"{target}: exists; expected no shard of span {span} before appending it"
    if datasets.is_uri(target):
        import tensorflow as tf

        if tf.io.gfile.exists(str(target)):
            raise DataError(message)
        tf.io.gfile.makedirs(str(target).rsplit("/", 1)[0])
        try:
            tf.io.gfile.copy(str(shard), str(target), overwrite=False)
        except tf.errors.AlreadyExistsError:  # written by someone else since the check
            raise DataError(message) from None
        return
    target = Path(target)
    if target.exists():
        raise DataError(message)
    target.parent.mkdir(exist_ok=True)
    shard.rename(target)


def _take_back(shard: Path, target: datasets.Location) -> None:
    """Undoes `_place_shard` (the roll-back): the shard back to staging, or the uploaded object deleted."""
    if datasets.is_uri(target):
        datasets.remove(target)
    else:
        Path(target).rename(shard)


def _storage_error(error: BaseException) -> bool:
    """A filesystem error from TensorFlow (gfile: no rights, no such bucket, a network failure)."""
    import tensorflow as tf

    return isinstance(error, tf.errors.OpError)


def _appended_manifest(manifest: dict, spans: list[dict], entry: dict, built: dict) -> dict:
    """The dataset's manifest with span `entry` added: "splits" (and the image counts) stay the sums over spans."""
    out = dict(manifest, spans=[*spans, entry])
    out["splits"] = {}
    for split in dict.fromkeys([*manifest["splits"], *entry["splits"]]):
        old = manifest["splits"].get(split, {"examples": 0, "per_class": [0] * manifest["num_classes"]})
        new = entry["splits"].get(split, {"examples": 0, "per_class": [0] * manifest["num_classes"]})
        out["splits"][split] = {"examples": old["examples"] + new["examples"],
                                "per_class": [a + b for a, b in zip(old["per_class"], new["per_class"])]}
    for key in ("downscaled_images", "skipped_unreadable"):
        out[key] = manifest.get(key, 0) + built[key]
    return out


def append(source: str | None, dataset_dir: datasets.Location, limit: int | None = None, cache_dir: Path | None = None,
           workers: int | None = None, strict: bool = False, md5: str | None = None,
           test_fraction: float = ingest.DEFAULT_TEST_FRACTION,
           max_decode_pixels: int = ingest.DEFAULT_MAX_DECODE_PIXELS,
           min_images_per_class: int = ingest.DEFAULT_MIN_IMAGES_PER_CLASS, skip_unreadable: bool = False) -> dict:
    """Adds `source` to the dataset `dataset_dir` as its next span N (`tokenlearner data --append`); returns the new
    span's manifest entry. The source is read, split and encoded as `ingest.prepare` does (same keyword arguments), must
    have the dataset's class list (names and order), and its shards (contract.shard_name(N, ...)) are built in a
    staging folder (beside a local dataset; a local temporary one for a URI); the span's statistics are computed
    from them; only then are the shards moved (uploaded) into <dataset>/<split>/, the statistics into spans/, and
    the manifest replaced (the commit). A failure before the commit leaves the dataset as it was. The earlier
    spans' statistics are computed after it where missing."""
    settings = ingest.Settings(limit, test_fraction, max_decode_pixels, min_images_per_class, strict, skip_unreadable)
    if strict and md5 and md5 != ingest.OFFICIAL_MD5:
        raise DataError(f"MD5 {md5} is not the official release's {ingest.OFFICIAL_MD5}; --strict accepts only the "
                        f"official CIFAR-10 python archive")
    uri = datasets.is_uri(dataset_dir)
    dataset_dir = str(dataset_dir).rstrip("/") if uri else Path(dataset_dir).expanduser().resolve()
    manifest = datasets.load_manifest(dataset_dir)
    path = ingest.resolve_source(source, cache_dir, md5)
    if not uri and path.resolve() == dataset_dir:
        raise DataError(f"{path}: --data is the dataset --append adds to; expected the new images")
    kind = ingest.detect(path)
    unofficial = ingest.check_official_release(path, strict) if kind == "official" else None
    spans = datasets.load_spans(dataset_dir)
    span = spans[-1]["span"] + 1
    name = datasets.file_name(dataset_dir)
    if uri:  # built here, uploaded once complete
        staging = Path(tempfile.mkdtemp(prefix=f"tokenlearner-staging-{name}-span{span}-"))
    else:  # beside the dataset: the same filesystem, so the shards move in by rename
        staging = Path(dataset_dir).parent / f".staging-{name}-span{span}-{os.getpid()}"
        staging.mkdir()
    moved: list[tuple[Path, datasets.Location]] = []
    stats_path = datasets.join(dataset_dir, span_stats_path(span))
    try:
        _remove_unlisted_shards(dataset_dir, {entry["span"] for entry in spans})
        built_dir, built = ingest.build(kind, path, source, staging, workers, settings, span=span,
                                        same_classes_as=dataset_dir)
        shards = datasets.span_shards(built_dir, span)
        stats = span_stats.compute([p for files in shards.values() for p in files], span)
        created = time.strftime(UTC_STAMP, time.gmtime())
        entry = {"span": span, "created_utc": created, "source": built["source"], "format": kind,
                 "limit": settings.limit, "test_split": built["test_split"], "test_fraction": built["test_fraction"],
                 "splits": built["splits"], "downscaled_images": built["downscaled_images"],
                 "skipped_unreadable": built["skipped_unreadable"], "seconds": built["seconds"]}
        written = staging / DATASET_MANIFEST
        written.write_text(json.dumps(_appended_manifest(manifest, spans, entry, built), indent=2) + "\n")
        for split, files in shards.items():
            for shard in files:
                target = datasets.join(dataset_dir, split, datasets.file_name(shard))
                _place_shard(Path(shard), target, span)
                moved.append((Path(shard), target))
        span_stats.write_atomically(stats_path, stats.SerializeToString(deterministic=True))
        _replace_manifest(written, dataset_dir)
    except BaseException as e:
        for shard, target in reversed(moved):
            _take_back(shard, target)
        datasets.remove(stats_path)
        if _storage_error(e):
            raise DataError(f"{dataset_dir}: could not write span {span} ({datasets.storage_reason(e)}); the "
                            f"dataset is as it was") from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for earlier in spans:  # missing for a dataset written before spans; after the commit: a failure changes nothing
        span_stats.load(dataset_dir, earlier["span"])  # the drift check compares span N with the one before it
    if unofficial:
        log.warning("%s", unofficial)
    log.info("appended span %d to %s: %s in %.1f s", span, dataset_dir,
             ", ".join(f"{s} {v['examples']}" for s, v in entry["splits"].items()), entry["seconds"])
    return entry
