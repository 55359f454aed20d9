"""`tokenlearner data --append`: a source added to an existing dataset as its next span, all or nothing.

The source is read, split and encoded as ingestion does (ingest.py) and must have the dataset's class list; its
shards are built in a staging folder beside the dataset and its statistics (span_stats.py) computed from them; then
the shards and statistics move into the dataset, and one rename of the manifest commits the span (a failure before
it moves them back). The pipeline's ImportExampleGen reads a window of spans (span_example_gen.py) and the validator
compares the two newest (validator.py).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from components import datasets, image_folder, ingest, span_stats
from components.sources import DataError
from trainer.contract import DATASET_MANIFEST, SHARD_GLOB, SPLITS, UTC_STAMP, span_of_shard, span_stats_path

log = logging.getLogger(__name__)


def _remove_unlisted_shards(dataset_dir: Path, listed: set[int]) -> None:
    """Shards of a span the manifest does not list are what an append stopped between moving its shards and
    writing the manifest left behind: the pipeline would read them, datasets.verify refuses them."""
    stray = [p for files in (sorted((dataset_dir / s).glob(SHARD_GLOB)) for s in SPLITS) for p in files
             if span_of_shard(p.name) not in listed]
    if stray:
        log.warning("removing %d shard(s) of span(s) %s that %s does not list (an interrupted append): %s",
                    len(stray), sorted({span_of_shard(p.name) for p in stray}), DATASET_MANIFEST,
                    image_folder.first_names([str(p) for p in stray]))
        for p in stray:
            p.unlink()


def _replace_manifest(written: Path, dataset_dir: Path) -> None:
    """The append's commit point: one rename (a test makes it fail to check the roll-back)."""
    os.replace(written, dataset_dir / DATASET_MANIFEST)


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


def append(source: str | None, dataset_dir: str | Path, limit: int | None = None, cache_dir: Path | None = None,
           workers: int | None = None, strict: bool = False, md5: str | None = None,
           test_fraction: float = ingest.DEFAULT_TEST_FRACTION,
           max_decode_pixels: int = ingest.DEFAULT_MAX_DECODE_PIXELS,
           min_images_per_class: int = ingest.DEFAULT_MIN_IMAGES_PER_CLASS, skip_unreadable: bool = False) -> dict:
    """Adds `source` to the dataset `dataset_dir` as its next span N (`tokenlearner data --append`); returns the new
    span's manifest entry. The source is read, split and encoded as `ingest.prepare` does (same keyword arguments), must
    have the dataset's class list (names and order), and its shards (contract.shard_name(N, ...)) are built in a
    staging folder beside the dataset; the span's statistics are computed from them; only then are the shards moved
    into <dataset>/<split>/, the statistics into spans/, and the manifest replaced (the commit). A failure before
    the commit leaves the dataset as it was. The earlier spans' statistics are computed after it where missing."""
    settings = ingest.Settings(limit, test_fraction, max_decode_pixels, min_images_per_class, strict, skip_unreadable)
    if strict and md5 and md5 != ingest.OFFICIAL_MD5:
        raise DataError(f"MD5 {md5} is not the official release's {ingest.OFFICIAL_MD5}; --strict accepts only the "
                        f"official CIFAR-10 python archive")
    dataset_dir = Path(dataset_dir).expanduser().resolve()
    manifest = datasets.load_manifest(dataset_dir)
    path = ingest.resolve_source(source, cache_dir, md5)
    if path.resolve() == dataset_dir:
        raise DataError(f"{path}: --data is the dataset --append adds to; expected the new images")
    kind = ingest.detect(path)
    unofficial = ingest.check_official_release(path, strict) if kind == "official" else None
    spans = datasets.load_spans(dataset_dir)
    span = spans[-1]["span"] + 1
    _remove_unlisted_shards(dataset_dir, {entry["span"] for entry in spans})
    staging = dataset_dir.parent / f".staging-{dataset_dir.name}-span{span}-{os.getpid()}"
    staging.mkdir()
    moved: list[tuple[Path, Path]] = []
    stats_path = dataset_dir / span_stats_path(span)
    try:
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
                target = dataset_dir / split / shard.name
                if target.exists():
                    raise DataError(f"{target}: exists; expected no shard of span {span} before appending it")
                target.parent.mkdir(exist_ok=True)
                shard.rename(target)
                moved.append((target, shard))
        span_stats.write_atomically(stats_path, stats.SerializeToString(deterministic=True))
        _replace_manifest(written, dataset_dir)
    except BaseException:
        for target, shard in reversed(moved):
            target.rename(shard)
        stats_path.unlink(missing_ok=True)
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
