"""Drift between the two newest spans of the training window: judged on the spans' TFDV statistics (no pipeline
run), reported in one line naming both spans, the feature and its distance, passed with a warning under
accept_drift, and mapped by `tokenlearner run` to its own exit code."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from PIL import Image
from tfx import types
from tfx.types import standard_artifacts

from components import schema as schema_lib
from components import span_stats as span_stats_lib
from components.sources import DataError
from components.validator import (ACCEPT_DRIFT_KEY, DATA_ROOT_KEY, SPAN_IMAGE_DRIFT_KEY, SPAN_LABEL_DRIFT_KEY,
                                   TRAIN_SPANS_KEY, DataValidationError, DriftError, GatedExampleValidator,
                                   check_span_drift, drift_message, span_drift, window_spans)
from pipeline import config as config_lib
from cli import app
from trainer import exit_codes
from tests.helpers import run_gating_validator
from trainer import contract
from trainer.features import CIFAR10_CLASSES

BALANCED = [i % 10 for i in range(200)]
SKEWED = [3 if i % 2 else i % 10 for i in range(200)]  # class 3 at 0.5 instead of 0.1: L-infinity 0.4


def span_stats(labels, brightness_mean=120.0, size=32, seed=0):
    """A span's statistics as ingestion writes them (span_stats_lib.compute, what `data` and `--append` keep in
    spans/span-N.stats.pb), of a shard of one PNG per label: `size` x `size` pixels of one grey level drawn around
    `brightness_mean` (that level is the image's brightness)."""
    levels = np.random.default_rng(seed).normal(brightness_mean, 15.0, len(labels)).round().clip(0, 255)
    with tempfile.TemporaryDirectory() as folder:
        shard = Path(folder) / contract.shard_name(0, 0, 1)
        with tf.io.TFRecordWriter(str(shard), tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
            for label, level in zip(labels, levels):
                png = io.BytesIO()
                Image.fromarray(np.full((size, size, 3), level, np.uint8)).save(png, format="PNG")
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png.getvalue()])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))})).SerializeToString())
        return span_stats_lib.compute([shard], 0)


def drift_error(previous, current, **thresholds) -> str | None:
    return drift_message(1, 2, span_drift(previous, current, **thresholds))


# ------------------------------------------------------------------------------------------ on statistics protos

def test_skewed_labels_are_one_line_naming_the_spans_feature_and_distance():
    message = drift_error(span_stats(BALANCED), span_stats(SKEWED, seed=1))
    assert message == ("drift between span 1 and span 2: feature 'label': L-infinity distance 0.4 > "
                       "span_label_drift 0.1 (set accept_drift=true to train on it)")


def test_label_threshold_is_the_setting():
    assert drift_error(span_stats(BALANCED), span_stats(SKEWED, seed=1), span_label_drift=0.5) is None
    assert "span_label_drift 0.35" in drift_error(span_stats(BALANCED), span_stats(SKEWED, seed=1),
                                                  span_label_drift=0.35)


def test_brightness_shift_names_brightness_only():
    message = drift_error(span_stats(BALANCED, 80.0), span_stats(BALANCED, 190.0, seed=1))
    assert re.fullmatch(r"drift between span 1 and span 2: feature 'brightness': Jensen-Shannon divergence "
                        r"(0\.\d+|1) > span_image_drift 0\.1 \(set accept_drift=true to train on it\)", message), \
        message
    distance = float(message.split("divergence ")[1].split(" ")[0])
    assert 0.5 < distance <= 1.0  # barely overlapping histograms


def test_image_size_change_names_height_and_width():
    message = drift_error(span_stats(BALANCED, size=32), span_stats(BALANCED, size=64, seed=1))
    assert "feature 'height': Jensen-Shannon divergence" in message and "feature 'width'" in message, message
    assert "'label'" not in message and "'brightness'" not in message, message
    assert "\n" not in message


def test_every_feature_is_measured_and_the_same_distribution_passes():
    drifts = span_drift(span_stats(BALANCED), span_stats(BALANCED, seed=1))
    assert [d.feature for d in drifts] == ["label", *contract.SPAN_IMAGE_FEATURES]
    assert all(not d.exceeded for d in drifts), drifts
    assert drifts[0].distance == 0.0  # the same class shares
    assert drift_message(1, 2, drifts) is None


def test_a_distance_just_above_the_threshold_is_not_printed_as_the_threshold():
    from components.validator import FeatureDrift

    assert FeatureDrift("label", 0.1000004, 0.1).describe() == \
        "feature 'label': L-infinity distance 0.1000004 > span_label_drift 0.1"
    assert not FeatureDrift("label", 0.1, 0.1).exceeded  # TFDV's comparators: above the threshold, not at it


def test_statistics_without_a_compared_feature_are_an_error_naming_it():
    no_brightness = tfdv.generate_statistics_from_dataframe(pd.DataFrame(
        {"label": np.asarray(BALANCED, np.int64), "height": np.full(200, 32), "width": np.full(200, 32)}))
    with pytest.raises(ValueError, match=r"^no drift measured for 'brightness': expected categorical 'label' and "
                                         r"numeric height, width, brightness statistics in both spans$"):
        span_drift(span_stats(BALANCED), no_brightness)


def test_the_window_is_the_newest_train_spans():
    assert window_spans([2, 0, 1], 0) == [0, 1, 2]
    assert window_spans([0, 1, 2], 2) == [1, 2]
    assert window_spans([0, 1, 2], 1) == [2]
    assert window_spans([0], 0) == [0]


# ------------------------------------------------------------------------------------- on a dataset's spans

def _png(brightness: int, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), brightness, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_span(dataset: Path, span: int, labels, brightness: int) -> dict:
    """Span `span` as ingestion lays it out: train shard named by the contract, beside the other spans."""
    (dataset / "train").mkdir(parents=True, exist_ok=True)
    path = dataset / "train" / contract.shard_name(span, 0, 1)
    with tf.io.TFRecordWriter(str(path), tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for i, label in enumerate(labels):
            feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_png(brightness + i % 5)])),
                       "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return {"span": span, "created_utc": None, "splits": {"train": {"examples": len(labels)}}}


def dataset_with_spans(root: Path, *spans: tuple[list[int], int]) -> Path:
    """A dataset folder whose manifest lists `spans` (labels, brightness) as spans 0, 1, ...; their statistics are
    computed by span_stats_lib.load from the shards, as for a dataset written before spans had them."""
    entries = [_write_span(root, n, labels, brightness) for n, (labels, brightness) in enumerate(spans)]
    manifest = {"class_names": list(CIFAR10_CLASSES), "num_classes": 10, "spans": entries,
                "splits": {"train": {"examples": sum(e["splits"]["train"]["examples"] for e in entries)}}}
    (root / contract.DATASET_MANIFEST).write_text(json.dumps(manifest))
    return root


def test_drift_between_the_two_newest_spans_of_a_dataset(tmp_path):
    dataset = dataset_with_spans(tmp_path, (BALANCED[:100], 100), (BALANCED[:100], 100), (SKEWED[:100], 100))
    with pytest.raises(DriftError) as error:
        check_span_drift(str(dataset))
    assert str(error.value) == ("drift between span 1 and span 2: feature 'label': L-infinity distance 0.4 > "
                                "span_label_drift 0.1 (set accept_drift=true to train on it)")
    assert isinstance(error.value, DataValidationError)
    assert (dataset / contract.span_stats_path(2)).is_file()  # computed once, kept for the next run
    assert check_span_drift(str(dataset), span_label_drift=0.45) is None


def _copy_to_ram(local: Path, uri: str) -> str:
    """The dataset folder copied into TensorFlow's in-memory filesystem: what the validator sees of a gs:// data
    root on Kubeflow or Vertex (read through tf.io.gfile, never as a local path)."""
    for path in local.rglob("*"):
        if path.is_file():
            tf.io.gfile.makedirs(f"{uri}/{path.parent.relative_to(local)}")
            tf.io.gfile.GFile(f"{uri}/{path.relative_to(local)}", "wb").write(path.read_bytes())
    return uri


def test_a_data_root_in_a_bucket_is_read_through_the_filesystem_api(tmp_path):
    dataset = dataset_with_spans(tmp_path, (BALANCED[:100], 100), (SKEWED[:100], 100))
    for span in (0, 1):
        span_stats_lib.load(dataset, span)  # written locally, as `data --append` does before the upload
    uri = _copy_to_ram(dataset, "ram://bucket/cifar10")
    with pytest.raises(DriftError, match=r"^drift between span 0 and span 1: feature 'label'"):
        check_span_drift(uri)
    tf.io.gfile.remove(f"{uri}/{contract.span_stats_path(1)}")
    with pytest.raises(DataError, match=r"^ram://bucket/cifar10/spans/span-1.stats.pb: missing; expected the "
                                        r"span's statistics, written by `tokenlearner data --append`"):
        check_span_drift(uri)


def test_a_single_span_in_the_window_is_not_checked(tmp_path):
    dataset = dataset_with_spans(tmp_path, (BALANCED[:100], 100), (SKEWED[:100], 100))
    assert check_span_drift(str(dataset), train_spans=1) is None
    assert not (dataset / contract.SPANS_DIR).exists()  # nothing to compare: no statistics read or computed
    only = dataset_with_spans(tmp_path / "one", (BALANCED[:100], 100))
    assert check_span_drift(str(only)) is None


def test_accept_drift_passes_with_the_same_line_as_a_warning(tmp_path, caplog):
    dataset = dataset_with_spans(tmp_path, (BALANCED[:100], 60), (BALANCED[:100], 200))
    with caplog.at_level(logging.WARNING, logger="components.validator"):
        message = check_span_drift(str(dataset), accept_drift=True)
    assert message.startswith("drift between span 0 and span 1: feature 'brightness': Jensen-Shannon divergence ")
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [message]


def test_alike_spans_pass_and_log_their_distances(tmp_path, caplog):
    dataset = dataset_with_spans(tmp_path, (BALANCED[:100], 100), (BALANCED[:100], 100))
    with caplog.at_level(logging.INFO, logger="components.validator"):
        assert check_span_drift(str(dataset)) is None
    assert "no drift between span 0 and span 1: label 0, height 0, width 0, brightness 0" in caplog.text


# ------------------------------------------------------------------------------------------ in the executor

def _validate(tmp_path: Path, exec_properties: dict) -> dict:
    """The gated executor on valid split statistics (curated schema, 100 balanced images), with the span drift
    settings; the Anomalies it recorded per split."""
    image = _png(100)
    records = [tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 10]))})).SerializeToString()
        for i in range(100)]
    return run_gating_validator(tmp_path, {"train": records},
                                open(schema_lib.resolve(schema_lib.PACKAGED_SCHEMA)).read(), exec_properties)


def test_the_executor_stops_on_drift_before_validating_the_splits(tmp_path, caplog):
    dataset = dataset_with_spans(tmp_path / "data", (BALANCED[:100], 100), (SKEWED[:100], 100))
    settings = {DATA_ROOT_KEY: str(dataset), TRAIN_SPANS_KEY: 0, SPAN_LABEL_DRIFT_KEY: 0.1,
                SPAN_IMAGE_DRIFT_KEY: 0.1, ACCEPT_DRIFT_KEY: 0}
    line = ("drift between span 0 and span 1: feature 'label': L-infinity distance 0.4 > span_label_drift 0.1 "
            "(set accept_drift=true to train on it)")
    with pytest.raises(DriftError, match=f"^{re.escape(line)}$"):
        _validate(tmp_path / "stop", settings)

    def said(level=logging.INFO) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "components.validator" and r.levelno >= level]

    with caplog.at_level(logging.INFO, logger="components.validator"):
        # Before the acceptance below, which the dataset may keep: the window of one span compares nothing.
        window = _validate(tmp_path / "window", {**settings, TRAIN_SPANS_KEY: 1})
        assert said() == []
        accepted = _validate(tmp_path / "accept", {**settings, ACCEPT_DRIFT_KEY: 1})
        assert said(logging.WARNING) == [line]
        caplog.clear()
        no_spans = _validate(tmp_path / "no-spans", {})  # no data_root: the split checks only, as before spans
        assert said() == []
    # Each went on to the split checks, which found the 100 balanced images valid.
    for recorded in (window, accepted, no_spans):
        assert list(recorded) == ["train"] and not recorded["train"].anomaly_info, recorded


# ------------------------------------------------------------------------------------------------ settings

def test_component_settings_are_validated():
    statistics = types.Channel(type=standard_artifacts.ExampleStatistics)
    schema = types.Channel(type=standard_artifacts.Schema)
    validator = GatedExampleValidator(statistics, schema, data_root="/data", train_spans=2, span_label_drift=0.2,
                                      span_image_drift=0.3, accept_drift=True)
    assert validator.exec_properties[ACCEPT_DRIFT_KEY] == 1 and validator.exec_properties[TRAIN_SPANS_KEY] == 2
    with pytest.raises(ValueError, match=r"^span_label_drift: expected 0\.\.1 .*got 1\.5$"):
        GatedExampleValidator(statistics, schema, span_label_drift=1.5)
    with pytest.raises(ValueError, match=r"^span_image_drift: expected 0\.\.1 .*got -0\.1$"):
        GatedExampleValidator(statistics, schema, span_image_drift=-0.1)
    with pytest.raises(ValueError, match=r"^train_spans: expected 0 \(every span\) or the number of newest spans"):
        GatedExampleValidator(statistics, schema, train_spans=-1)


@pytest.mark.parametrize("override, match", [
    ({"span_label_drift": "2"}, r"^span_label_drift: expected 0\.\.1"),
    ({"span_image_drift": "-1"}, r"^span_image_drift: expected 0\.\.1"),
    ({"train_spans": "-1"}, r"^train_spans: expected 0"),
    ({"accept_drift": "maybe"}, r"^accept_drift: cannot read 'maybe' as bool"),
])
def test_pipeline_settings_are_validated_in_one_line(override, match):
    with pytest.raises(config_lib.ConfigError, match=match):
        config_lib.apply_overrides(config_lib.from_preset("tiny", data_root="-"), override)
    accepted = config_lib.apply_overrides(config_lib.from_preset("tiny", data_root="-"),
                                          {"accept_drift": "true", "train_spans": "2"})
    assert accepted.accept_drift is True and accepted.train_spans == 2


# ------------------------------------------------------------------------------------------------- exit code

def test_exit_drift_is_a_documented_code_of_its_own():
    assert exit_codes.EXIT_DRIFT == 4
    assert exit_codes.EXIT_DRIFT not in (exit_codes.EXIT_OK, exit_codes.EXIT_USAGE, exit_codes.EXIT_PIPELINE_FAILED,
                                         exit_codes.EXIT_NOT_PUSHED, exit_codes.EXIT_INTERRUPTED)
    assert re.search(r"^\s+4\s+EXIT_DRIFT\s", exit_codes.__doc__, re.M)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "4 stopped before training on drift between the two newest spans" in readme


@pytest.mark.parametrize("error, expected", [
    (DriftError("drift between span 0 and span 1: feature 'label': L-infinity distance 0.4 > span_label_drift 0.1 "
                "(set accept_drift=true to train on it)"), exit_codes.EXIT_DRIFT),
    (DataValidationError("data validation failed: split 'train': feature 'label': Unexpectedly large value: 12"),
     exit_codes.EXIT_PIPELINE_FAILED),
    (RuntimeError("Trainer: out of memory"), exit_codes.EXIT_PIPELINE_FAILED),
])
def test_run_maps_a_pipeline_stopped_on_drift_to_exit_drift(tmp_path, monkeypatch, capsys, error, expected):
    """`tokenlearner run` up to the pipeline for real (settings, metadata store, dataset manifest); the pipeline
    itself replaced by the failure the ExampleValidator raises."""
    dataset = dataset_with_spans(tmp_path / "data", (BALANCED[:20], 100))
    from pipeline import local_runner

    def failing_run(config):
        # As local_runner.run: the pipeline root and its metadata store exist before the first component fails.
        import ml_metadata as mlmd
        from pipeline.config import metadata

        os.makedirs(config.pipeline_root, exist_ok=True)
        mlmd.MetadataStore(metadata.connection_config(config.metadata, config.metadata_path))
        raise error

    monkeypatch.setattr(app, "_prepare", lambda args, out_root: dataset)
    monkeypatch.setattr(local_runner, "run", failing_run)
    assert app.main(["run", "--preset", "tiny", "--output", str(tmp_path / "out")]) == expected
    stderr = capsys.readouterr().err
    assert f"tokenlearner: error: pipeline failed: {str(error)} (details: -v)" in stderr, stderr


def test_a_wrapped_drift_error_still_counts_as_drift():
    try:
        try:
            raise DriftError("drift between span 0 and span 1: ...")
        except DriftError as inner:
            raise RuntimeError("Execution 7 failed") from inner
    except RuntimeError as outer:
        assert app._stopped_on_drift(outer)
    assert not app._stopped_on_drift(RuntimeError("no"))
