"""Spans: `tokenlearner data --append` adds a source as the dataset's next span (shards, manifest, TFDV statistics),
refuses another class list in one line, and leaves the dataset as it was when it fails."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from components import datasets, ingest, span_stats, spans
from tests.helpers import CLASSES, write_image_folder
from trainer import contract

PER_CLASS = 10  # images per class in train/ and in test/: 9 train + 1 eval, 10 test a class


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def count_records(files) -> int:
    import tensorflow as tf

    return sum(1 for f in files for _ in tf.data.TFRecordDataset(str(f), compression_type="GZIP"))


def features(stats) -> dict:
    (dataset,) = stats.datasets
    return {feature.path.step[0]: feature for feature in dataset.features}


@pytest.fixture(scope="module")
def base_dataset(tmp_path_factory) -> Path:
    """A 10-class dataset of 32x32 images (span 0), built once; tests that change it work on a copy."""
    root = tmp_path_factory.mktemp("spans_base")
    return ingest.prepare(str(write_image_folder(root / "src", per_class=PER_CLASS)), root / "out")


@pytest.fixture(scope="module")
def new_images(tmp_path_factory) -> Path:
    """The same classes as 24x24 images, 12 a class: a span that differs in size and counts."""
    return write_image_folder(tmp_path_factory.mktemp("spans_new") / "src", per_class=12, size=24)


@pytest.fixture
def dataset(base_dataset, tmp_path) -> Path:
    return Path(shutil.copytree(base_dataset, tmp_path / "data" / base_dataset.name))


def test_data_then_append_writes_spans_shards_manifest_and_statistics(tmp_path, new_images, capsys):
    import cli

    source = write_image_folder(tmp_path / "src", per_class=PER_CLASS)
    assert cli.main(["data", "--data", str(source), "--out", str(tmp_path / "out")]) == 0
    dataset = Path(capsys.readouterr().out.strip())
    assert (dataset / contract.span_stats_path(0)).is_file()  # `data` writes span 0's statistics
    assert [s["span"] for s in datasets.load_manifest(dataset)["spans"]] == [0]

    assert cli.main(["data", "--data", str(new_images), "--append", str(dataset)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (f"{dataset}: span 1: train 110, eval 10, test 120; all 2 spans: train 200, eval 20, "
                    f"test 220"), last
    for split in contract.SPLITS:
        names = sorted(p.name for p in (dataset / split).glob(contract.SHARD_GLOB))
        assert names == [contract.shard_name(0, 0, 1), contract.shard_name(1, 0, 1)]
    manifest = datasets.load_manifest(dataset)
    entries = datasets.load_spans(dataset)
    assert [s["span"] for s in entries] == [0, 1] and entries == manifest["spans"]
    assert entries[1]["created_utc"].endswith("Z") and entries[1]["source"] == str(new_images)
    assert {s: v["examples"] for s, v in entries[1]["splits"].items()} == {"train": 110, "eval": 10, "test": 120}
    assert manifest["splits"]["train"] == {"examples": 200, "per_class": [9 + 11] * 10}  # sums over the spans
    assert manifest["class_names"] == list(CLASSES)
    datasets.verify(dataset)  # counts every span's shards against the totals
    assert count_records((dataset / "test").glob(contract.SHARD_GLOB)) == 220

    stats = span_stats.load(dataset, 1)
    assert stats.datasets[0].name == "span-1" and stats.datasets[0].num_examples == 240
    assert (dataset / contract.span_stats_path(1)).is_file()
    by_name = features(stats)
    assert sorted(by_name) == sorted(["label", *contract.SPAN_IMAGE_FEATURES])
    label = by_name["label"].string_stats  # categorical: class shares for the L-infinity comparator
    assert {int(v.value): v.frequency for v in label.top_values} == {c: 24 for c in range(10)}
    assert len(label.rank_histogram.buckets) == 10
    assert by_name["height"].num_stats.mean == by_name["width"].num_stats.mean == 24
    brightness = by_name["brightness"].num_stats  # random pixels: mean near 127.5
    assert 100 < brightness.mean < 155 and 0 <= brightness.min <= brightness.max <= 255
    assert features(span_stats.load(dataset, 0))["height"].num_stats.mean == 32


def test_a_third_span_and_statistics_that_the_drift_comparators_read(dataset, new_images, tmp_path):
    import tensorflow_data_validation as tfdv

    spans.append(str(new_images), dataset)
    third = write_image_folder(tmp_path / "third", per_class=PER_CLASS, size=40)
    assert spans.append(str(third), dataset)["span"] == 2
    assert [s["span"] for s in datasets.load_spans(dataset)] == [0, 1, 2]
    assert sorted(p.name for p in (dataset / "eval").iterdir())[-1] == contract.shard_name(2, 0, 1)
    datasets.verify(dataset)
    assert count_records((dataset / "train").glob(contract.SHARD_GLOB)) == 90 + 110 + 90
    schema = span_stats.schema()
    tfdv.get_feature(schema, "label").drift_comparator.infinity_norm.threshold = 0.5
    for name in contract.SPAN_IMAGE_FEATURES:
        tfdv.get_feature(schema, name).drift_comparator.jensen_shannon_divergence.threshold = 0.5
    anomalies = tfdv.validate_statistics(span_stats.load(dataset, 2), schema,
                                         previous_statistics=span_stats.load(dataset, 1))
    measured = {info.path.step[0]: info.drift_measurements[0] for info in anomalies.drift_skew_info}
    assert measured["label"].value == pytest.approx(0, abs=1e-6)  # both spans: 10 % a class
    assert measured["height"].value > 0.5 and "height" in anomalies.anomaly_info  # 24 vs 40 pixels
    assert "label" not in anomalies.anomaly_info


def test_another_class_list_is_one_line_and_leaves_the_dataset_as_it_was(dataset, tmp_path, capsys):
    import cli

    before = snapshot(dataset)
    other = write_image_folder(tmp_path / "other", per_class=PER_CLASS, classes=(*CLASSES[:9], "zebra"))
    assert cli.main(["data", "--data", str(other), "--append", str(dataset)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert (f"{other}: its class list differs from {dataset / 'classes.txt'}: new class(es) ['zebra']; missing "
            f"class(es) ['truck']; a span needs the same class names in the same order") in err[0]
    assert snapshot(dataset) == before
    assert sorted(p.name for p in dataset.parent.iterdir()) == [dataset.name]  # no staging left behind
    with pytest.raises(ingest.DataError, match=r"the same classes in another order \(class 0: 'automobile' here, "
                                               r"'airplane' there\)"):
        datasets.check_same_classes([CLASSES[1], CLASSES[0], *CLASSES[2:]], tmp_path / "x", dataset)
    assert cli.main(["data", "--append", str(dataset)]) == 2
    assert "--append DATASET needs --data NEW" in capsys.readouterr().err


def test_a_failure_before_the_commit_rolls_the_shards_back(dataset, new_images, monkeypatch):
    before = snapshot(dataset)

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(spans, "_replace_manifest", fail)
    with pytest.raises(OSError, match="disk full"):
        spans.append(str(new_images), dataset)
    assert snapshot(dataset) == before
    assert sorted(p.name for p in dataset.parent.iterdir()) == [dataset.name]


def test_a_dataset_from_before_spans_is_span_0_and_gets_its_statistics_when_appending(dataset, new_images):
    manifest = datasets.load_manifest(dataset)
    del manifest["spans"]
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    assert not (dataset / contract.SPANS_DIR).exists()
    assert datasets.load_spans(dataset) == [{"span": 0, "created_utc": None, "splits": manifest["splits"]}]
    spans.append(str(new_images), dataset)
    assert (dataset / contract.span_stats_path(0)).is_file() and (dataset / contract.span_stats_path(1)).is_file()
    entries = datasets.load_manifest(dataset)["spans"]
    assert [s["span"] for s in entries] == [0, 1] and entries[0]["splits"] == manifest["splits"]
    with pytest.raises(ingest.DataError, match=r"manifest.json: no span 7; the dataset has span\(s\) \[0, 1\]"):
        span_stats.load(dataset, 7)


def test_shards_of_an_unlisted_span_are_refused_then_cleared_by_the_next_append(dataset, new_images, caplog):
    # What an append stopped between moving its shards and replacing the manifest leaves.
    stray = dataset / "train" / contract.shard_name(1, 0, 1)
    shutil.copyfile(dataset / "train" / contract.shard_name(0, 0, 1), stray)
    with pytest.raises(ingest.DataError, match=f"{stray}: a shard of span 1, which manifest.json does not list"):
        datasets.verify(dataset)
    caplog.set_level("WARNING", logger="components")
    spans.append(str(new_images), dataset)
    assert any("removing 1 shard(s) of span(s) [1]" in r.getMessage() for r in caplog.records)
    datasets.verify(dataset)
    assert datasets.load_manifest(dataset)["splits"]["train"]["examples"] == 90 + 110


def test_statistics_computed_from_a_truncated_shard_name_it_in_one_line(dataset):
    assert not (dataset / contract.span_stats_path(0)).exists()  # so loading them computes them from the shards
    shard = dataset / "test" / contract.shard_name(0, 0, 1)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(ingest.DataError, match=re.escape(f"{shard}: corrupt or truncated TFRecord file (")):
        span_stats.load(dataset, 0)
    assert not (dataset / contract.span_stats_path(0)).exists()  # nothing half-computed is kept
