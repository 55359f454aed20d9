"""The validator executor against the curated schema: each kind of bad data is reported by name, and fails."""
from __future__ import annotations

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tfx.types import artifact_utils, standard_artifacts

from components import schema as schema_lib
from components.validator import DataValidationError, GatingExecutor
from tests.helpers import png_bytes, random_images

IMAGE = png_bytes(random_images(1)[0])
SCHEMA_FILE = schema_lib.resolve(schema_lib.PACKAGED_SCHEMA)  # the curated schema the pipeline imports


def example(label=0, image=IMAGE, **extra) -> bytes:
    feature = {}
    if image is not None:
        feature["image"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
    if label is not None:
        feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
    for name, value in extra.items():
        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def balanced(n=100):
    return [example(label=i % 10) for i in range(n)]


def validate(tmp_path, splits: dict[str, list[bytes]]):
    """Statistics per split (TFDV, as StatisticsGen computes them), then the executor, with real artifacts."""
    stats = standard_artifacts.ExampleStatistics()
    stats.uri = str(tmp_path / "stats")
    stats.split_names = artifact_utils.encode_split_names(list(splits))
    for split, records in splits.items():
        path = tmp_path / f"{split}.tfrecord"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for record in records:
                writer.write(record)
        # As StatisticsGen computes them with the schema: `label` is categorical, so it gets a class histogram.
        result = tfdv.generate_statistics_from_tfrecord(
            str(path), stats_options=tfdv.StatsOptions(schema=tfdv.load_schema_text(SCHEMA_FILE)))
        result.datasets[0].name = split
        (tmp_path / "stats" / f"Split-{split}").mkdir(parents=True)
        (tmp_path / "stats" / f"Split-{split}" / "FeatureStats.pb").write_bytes(result.SerializeToString())
    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "schema")
    (tmp_path / "schema").mkdir()
    (tmp_path / "schema" / "schema.pbtxt").write_text(open(SCHEMA_FILE).read())
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(tmp_path / "anomalies")
    GatingExecutor().Do({"statistics": [stats], "schema": [schema]}, {"anomalies": [anomalies]},
                        {"exclude_splits": "[]"})


def test_clean_data_passes(tmp_path):
    validate(tmp_path, {"train": balanced(), "test": balanced(50)})


@pytest.mark.parametrize("bad_records, match", [
    ([example(label=12)], r"split 'train': feature 'label': Unexpectedly large value: 12"),
    ([example(label=None)], r"split 'train': feature 'label': .*(missing|[Cc]olumn dropped|fraction)"),
    ([example(image=None)], r"split 'train': feature 'image'"),
    ([example(color=3)], r"split 'train': feature 'color': .*(New column|not in the schema)"),
])
def test_bad_examples_fail_with_the_feature_named(tmp_path, bad_records, match):
    with pytest.raises(DataValidationError, match=match):
        validate(tmp_path, {"train": balanced() + bad_records, "test": balanced(50)})


def test_class_distribution_drift_against_train_is_an_anomaly(tmp_path):
    only_cats = [example(label=3) for _ in range(50)]
    with pytest.raises(DataValidationError, match=r"split 'test': feature 'label': .*(drift|[Hh]igh Linfty)"):
        validate(tmp_path, {"train": balanced(), "test": only_cats})
