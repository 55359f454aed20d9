"""The validator executor against the curated schema (and the one generated for another class list): each kind of
bad data is reported by name, and fails; label drift is judged with the run's threshold."""
from __future__ import annotations

import pytest
import tensorflow as tf

from components import schema as schema_lib
from components.validator import LABEL_DRIFT_THRESHOLD_KEY, DataValidationError
from tests.helpers import png_bytes, random_images, run_gating_validator

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


def balanced(n=100, classes=10):
    return [example(label=i % classes) for i in range(n)]


def validate(tmp_path, splits: dict[str, list[bytes]], schema_text: str | None = None,
             label_drift_threshold: float | None = None) -> dict:
    """Statistics per split (TFDV, as StatisticsGen computes them), then the executor, with real artifacts.
    schema_text: the curated schema by default; label_drift_threshold: the execution parameter (None: not set).
    Returns the Anomalies the executor recorded per split."""
    return run_gating_validator(tmp_path, splits, schema_text or open(SCHEMA_FILE).read(),
                                {LABEL_DRIFT_THRESHOLD_KEY: label_drift_threshold})


def passed_with_label_drift(recorded: dict) -> dict[str, tuple[float, float]]:
    """Asserts that no split has an anomaly; returns {split: (L-infinity distance of its class shares from train's,
    the threshold it was held to)} for every split the label drift comparator measured."""
    drift = {}
    for split, anomalies in recorded.items():
        assert not anomalies.anomaly_info and not anomalies.HasField("dataset_anomaly_info"), (split, anomalies)
        for info in anomalies.drift_skew_info:
            if list(info.path.step) == ["label"]:
                (measured,) = info.drift_measurements
                drift[split] = (pytest.approx(measured.value, abs=1e-6), pytest.approx(measured.threshold))
    return drift


def test_clean_data_passes(tmp_path):
    recorded = validate(tmp_path, {"train": balanced(), "test": balanced(50)})
    # Both splits at 0.1 a class: distance 0 from train's shares, held to the schema's 0.05 (train to itself too).
    assert passed_with_label_drift(recorded) == {"train": (0.0, 0.05), "test": (0.0, 0.05)}


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


def _drifted(n=100):
    """Class 3 at a share of 0.2 and class 0 at 0 instead of 0.1 each: an L-infinity distance of 0.1 from a balanced
    train split."""
    return [example(label=3 if i % 10 == 0 else i % 10) for i in range(n)]


def test_label_drift_is_judged_with_the_runs_threshold(tmp_path):
    with pytest.raises(DataValidationError, match=r"split 'test': feature 'label': .*threshold 0.05"):
        validate(tmp_path / "default", {"train": balanced(), "test": _drifted()})  # the schema's 0.05
    with pytest.raises(DataValidationError, match=r"split 'test': feature 'label': .*threshold 0.08"):
        validate(tmp_path / "tight", {"train": balanced(), "test": _drifted()}, label_drift_threshold=0.08)
    loose = validate(tmp_path / "loose", {"train": balanced(), "test": _drifted()}, label_drift_threshold=0.15)
    assert passed_with_label_drift(loose)["test"] == (0.1, 0.15)  # _drifted's 0.1, under the run's threshold


def test_an_imbalanced_dataset_is_compared_with_its_own_training_split(tmp_path):
    """3 classes at 60/30/10 %: a test split of the same shares passes; each split is held to train's frequencies,
    not to a uniform distribution."""
    shares = [0] * 6 + [1] * 3 + [2]
    imbalanced = [example(label=shares[i % 10]) for i in range(200)]
    three = schema_lib.dataset_schema_text(3)
    same = validate(tmp_path / "same", {"train": imbalanced, "test": imbalanced[:50]}, schema_text=three)
    assert passed_with_label_drift(same)["test"] == (0.0, 0.05)  # 30/15/5 of 50: train's 60/30/10 %
    with pytest.raises(DataValidationError, match=r"split 'test': feature 'label'"):
        validate(tmp_path / "balanced", {"train": imbalanced, "test": balanced(60, classes=3)}, schema_text=three)


def test_the_label_domain_is_the_datasets_class_count(tmp_path):
    three = schema_lib.dataset_schema_text(3)
    ok = validate(tmp_path / "ok", {"train": balanced(90, classes=3), "test": balanced(30, classes=3)},
                  schema_text=three)
    assert passed_with_label_drift(ok)["test"] == (0.0, 0.05)  # labels 0..2 in a domain of 3: no anomaly
    with pytest.raises(DataValidationError, match=r"split 'train': feature 'label': Unexpectedly large value: 3"):
        validate(tmp_path / "bad", {"train": balanced(90, classes=3) + [example(label=3)],
                                    "test": balanced(30, classes=3)}, schema_text=three)
