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
from components import validator
from components.validator import (ACCEPT_DRIFT_KEY, DATA_ROOT_KEY, SPAN_IMAGE_DRIFT_KEY, SPAN_LABEL_DRIFT_KEY,
                                   TRAIN_SPANS_KEY, DataValidationError, DriftError, GatedExampleValidator,
                                   check_span_drift, drift_message, span_drift, window_spans)
from pipeline import config as config_lib
from cli import app
from trainer import exit_codes
from tests.helpers import REPO, run_gating_validator
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
    # Statistics missing in a bucket are computed from the span's shards and written back, as for a local dataset.
    stats_uri = f"{uri}/{contract.span_stats_path(1)}"
    tf.io.gfile.remove(stats_uri)
    with pytest.raises(DriftError, match=r"^drift between span 0 and span 1: feature 'label'"):
        check_span_drift(uri)
    assert tf.io.gfile.exists(stats_uri)


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
    readme = (REPO / "README.md").read_text()
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


# ------------------------------------------------------------------------- decisions: recorded and remembered

def _drift_settings(dataset: Path, accept: int = 0) -> dict:
    return {DATA_ROOT_KEY: str(dataset), TRAIN_SPANS_KEY: 0, SPAN_LABEL_DRIFT_KEY: 0.1, SPAN_IMAGE_DRIFT_KEY: 0.1,
            ACCEPT_DRIFT_KEY: accept}


def test_a_drift_stop_carries_the_feature_distance_and_threshold_to_the_failed_execution(tmp_path):
    """TFX's launcher stores the ExecutorOutput of the error on the failed ExampleValidator execution (MLMD custom
    property __execution_result__); the summary and `history` read the record back from it."""
    from tfx.orchestration.portable import launcher
    from tfx.orchestration.portable.mlmd import execution_lib
    from ml_metadata.proto import metadata_store_pb2

    from components import drift_records

    dataset = dataset_with_spans(tmp_path, (BALANCED[:100], 100), (SKEWED[:100], 100))
    with pytest.raises(DriftError) as error:
        check_span_drift(str(dataset))
    assert isinstance(error.value, launcher._ExecutionFailedError)  # the class whose output the launcher records
    execution = metadata_store_pb2.Execution()
    execution_lib.set_execution_result(error.value.executor_output.execution_result, execution)
    message, check = drift_records.from_execution_result(
        execution.custom_properties[drift_records.EXECUTION_RESULT_PROPERTY].string_value)
    assert message == str(error.value)
    assert (check.previous_span, check.span, check.verdict) == (0, 1, "stopped")
    assert [(d.feature, round(d.distance, 6), d.threshold) for d in check.beyond] == [("label", 0.4, 0.1)]
    assert check.summary() == "stopped on drift: span 1 vs 0: label 0.4 > span_label_drift 0.1"


def test_an_accepted_span_stays_accepted(tmp_path):
    """accept_drift=true once: the dataset keeps the acceptance, and the same check without it passes; a newer span
    that drifts again stops the run again."""
    dataset = dataset_with_spans(tmp_path / "data", (BALANCED[:100], 100), (SKEWED[:100], 100))
    _validate(tmp_path / "accept", _drift_settings(dataset, accept=1))
    record = json.loads((dataset / "spans" / "span-1.accepted.json").read_text())
    assert (record["previous_span"], record["span"], record["verdict"], record["accepted_by"]) == \
        (0, 1, "accepted", "accept_drift=true")
    assert [d["feature"] for d in record["drifts"] if d["distance"] > d["threshold"]] == ["label"]
    _validate(tmp_path / "again", _drift_settings(dataset))  # no DriftError: accepted earlier
    assert check_span_drift(str(dataset)) is None
    # Span 2 is balanced again: 0.4 away from span 1's shares, a drift of its own.
    dataset = dataset_with_spans(tmp_path / "data", (BALANCED[:100], 100), (SKEWED[:100], 100),
                                 (BALANCED[:100], 100))
    with pytest.raises(DriftError, match=r"^drift between span 1 and span 2: feature 'label'"):
        _validate(tmp_path / "newer", _drift_settings(dataset))


def test_the_executor_publishes_its_decision_on_the_anomalies_artifact(tmp_path, monkeypatch):
    """What TFX publishes is the ExecutorOutput the executor returns: the decision must be on its artifact."""
    from components.drift_records import SpanCheck
    from components.validator import GatingExecutor

    returned = []
    do = GatingExecutor.Do
    monkeypatch.setattr(GatingExecutor, "Do", lambda self, *args: returned.append(do(self, *args)))
    dataset = dataset_with_spans(tmp_path / "data", (BALANCED[:100], 100), (SKEWED[:100], 100))
    _validate(tmp_path / "accept", _drift_settings(dataset, accept=1))
    _validate(tmp_path / "again", _drift_settings(dataset))
    checks = [SpanCheck.from_json(output.output_artifacts["anomalies"].artifacts[0]
                                  .custom_properties["span_check"].string_value, "span_check")
              for output in returned]
    assert [(c.previous_span, c.span, c.verdict, c.accepted_by) for c in checks] == \
        [(0, 1, "accepted", "accept_drift=true"), (0, 1, "accepted earlier", "accept_drift=true")]
    assert checks[1].summary() == "drift accepted earlier (accept_drift=true): span 1 vs 0: label 0.4 > " \
                                  "span_label_drift 0.1"


def test_accepting_is_recorded_only_once_the_split_checks_pass(tmp_path):
    """A run that accepts the drift but then fails a split check (a label outside the schema's 0..9) trains
    nothing: the span is not accepted."""
    dataset = dataset_with_spans(tmp_path / "data", (BALANCED[:100], 100), (SKEWED[:100], 100))
    image = _png(100)
    records = [tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[12]))})).SerializeToString()] * 20
    with pytest.raises(DataValidationError, match=r"^data validation failed: split 'train': feature 'label'"):
        run_gating_validator(tmp_path / "bad", {"train": records},
                             open(schema_lib.resolve(schema_lib.PACKAGED_SCHEMA)).read(),
                             _drift_settings(dataset, accept=1))
    assert not (dataset / "spans" / "span-1.accepted.json").exists()


def test_an_acceptance_in_a_bucket_is_read_and_written_through_the_filesystem_api(tmp_path):
    from components import drift_records

    dataset = dataset_with_spans(tmp_path, (BALANCED[:100], 100), (SKEWED[:100], 100))
    for span in (0, 1):
        span_stats_lib.load(dataset, span)
    uri = _copy_to_ram(dataset, "ram://bucket/accepted")
    with pytest.raises(DriftError):
        check_span_drift(uri)
    accepted = drift_records.SpanCheck(0, 1, (drift_records.FeatureDrift("label", 0.4, 0.1),), "accepted",
                                       run_id="run-7", accepted_by="accept_drift=true")
    assert drift_records.write_acceptance(uri, accepted) == "ram://bucket/accepted/spans/span-1.accepted.json"
    assert drift_records.read_acceptance(uri, 1) == accepted
    assert check_span_drift(uri) is None
    assert not (dataset / "spans" / "span-1.accepted.json").exists()  # the copy in the bucket only


def test_an_unreadable_acceptance_record_is_one_line_naming_it(tmp_path):
    dataset = dataset_with_spans(tmp_path, (BALANCED[:100], 100), (SKEWED[:100], 100))
    (dataset / "spans").mkdir(exist_ok=True)
    (dataset / "spans" / "span-1.accepted.json").write_text("{not json")
    with pytest.raises(DataValidationError, match=rf"^{re.escape(str(dataset))}/spans/span-1\.accepted\.json: not "
                                                  r"JSON \(.*\)$"):
        check_span_drift(str(dataset))
    (dataset / "spans" / "span-1.accepted.json").write_text('{"span": 1, "previous_span": 0, "verdict": "stopped", '
                                                            '"drifts": []}')
    with pytest.raises(DataValidationError, match=r"span-1\.accepted\.json: records span 1 stopped; expected span 1 "
                                                  r"accepted \(remove the file to check span 1 again\)$"):
        check_span_drift(str(dataset))


# ---------------------------------------------------------------------------------------- `tokenlearner spans`

def test_spans_command_shows_each_span_its_statistics_and_the_drift_between_two(tmp_path, capsys):
    dataset = dataset_with_spans(tmp_path, (BALANCED[:100], 100), (BALANCED[:100], 100), (SKEWED[:100], 100))
    assert app.main(["spans", str(dataset)]) == exit_codes.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{dataset}: 3 span(s), 10 classes; thresholds span_label_drift 0.1, span_image_drift 0.1"
    rows = {line.split()[0]: line for line in lines[2:]}
    assert rows["0"].endswith("  –")
    assert "alike: label 0, height 0, width 0, brightness 0" in rows["1"], rows["1"]
    assert "BEYOND span_label_drift: label 0.4, height 0, width 0, brightness 0" in rows["2"], rows["2"]
    assert "train 100" in rows["2"] and "8×8" in rows["2"]  # the images of _write_span: 8x8 PNGs

    assert app.main(["spans", str(dataset), "--span", "2"]) == exit_codes.EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith(f"span 2 of {dataset} (spans/span-2.stats.pb): 100 images, all splits\n")
    # SKEWED[:100]: the odd half is class 3 (cat), the even half 0, 2, 4, 6, 8 ten times each.
    assert re.search(r"^  cat +50 +0\.500$", out, re.M) and re.search(r"^  airplane +10 +0\.100$", out, re.M), out
    assert re.search(r"^  automobile +0 +0\.000$", out, re.M), out
    assert re.search(r"^height: mean 8\.0, std 0\.0, range 8–8$", out, re.M), out

    assert app.main(["spans", str(dataset), "--compare", "1", "2", "--span-label-drift", "0.3"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^label +L-infinity distance +0\.4 +span_label_drift 0\.3 +BEYOND$", out, re.M), out
    assert re.search(r"^brightness +Jensen-Shannon divergence +0 +span_image_drift 0\.1 +within$", out, re.M), out
    assert out.rstrip().endswith("a run whose newest two spans are these stops: drift between span 1 and span 2: "
                                 "feature 'label': L-infinity distance 0.4 > span_label_drift 0.3 (set "
                                 "accept_drift=true to train on it)")


def test_spans_command_shows_an_acceptance(tmp_path, capsys):
    dataset = dataset_with_spans(tmp_path / "data", (BALANCED[:100], 100), (SKEWED[:100], 100))
    _validate(tmp_path / "accept", _drift_settings(dataset, accept=1))  # outside a pipeline: no run id
    assert app.main(["spans", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "accepted (accept_drift=true): label 0.4," in out, out
    assert app.main(["spans", str(dataset), "--compare", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert "span 1: drift accepted (accept_drift=true): span 1 vs 0: label 0.4 > span_label_drift 0.1 " \
           "(spans/span-1.accepted.json)" in out, out
    assert "a run whose newest two spans are these stops" not in out


@pytest.mark.parametrize("args, match", [
    (["--span", "7"], r"manifest\.json: no span 7; the dataset has span\(s\) \[0, 1\]$"),
    (["--compare", "0", "5"], r"manifest\.json: no span 5; the dataset has span\(s\) \[0, 1\]$"),
    (["--span-label-drift", "3"], r"^span_label_drift: expected 0\.\.1"),
])
def test_spans_command_bad_input_is_one_line(tmp_path, capsys, args, match):
    dataset = dataset_with_spans(tmp_path, (BALANCED[:20], 100), (BALANCED[:20], 100))
    assert app.main(["spans", str(dataset), *args]) == exit_codes.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokenlearner: error: ") and "\n" not in err, err
    assert re.search(match, err.removeprefix("tokenlearner: error: ")), err


def test_spans_command_without_a_dataset_is_one_line(tmp_path, capsys):
    assert app.main(["spans", str(tmp_path / "nothing")]) == exit_codes.EXIT_USAGE
    assert capsys.readouterr().err.strip() == (f"tokenlearner: error: {tmp_path}/nothing/manifest.json: missing; "
                                               f"expected a dataset written by `tokenlearner data`")


# ------------------------------------------------------------------- the record of the loop: summary and report

def test_the_run_summary_names_a_drift_stop_as_a_drift_stop():
    from components.drift_records import FeatureDrift, SpanCheck
    from inspection import summary

    check = SpanCheck(1, 2, (FeatureDrift("label", 0.4, 0.1), FeatureDrift("brightness", 0.02, 0.1)), "stopped")
    steps = [summary.Step("ImportExampleGen", "ran", 1.0, {}),
             summary.Step("ExampleValidator", "FAILED", 2.0, {}, error=check.message)]
    run = summary.RunSummary(run_id="r3", steps=steps, examples={}, anomalies=[], accuracy=None,
                             top5_accuracy=None, blessed=None, pushed_to=None,
                             not_pushed_reason=summary._not_reached_reason(steps, check, None), span_check=check)
    text = summary.render_summary(run)
    assert "anomalies" not in text, text
    assert re.search(r"^ExampleValidator +FAILED +2\.0s +stopped on drift: span 2 vs 1: label 0\.4 > "
                     r"span_label_drift 0\.1$", text, re.M), text
    assert text.endswith("\nnot pushed: stopped on drift between span 1 and span 2 (set accept_drift=true to train "
                         "on it)"), text
    # Another component's failure is named as such, not as "did not reach the Pusher".
    failed = [summary.Step("Trainer", "FAILED", 2.0, {})]
    assert summary._not_reached_reason(failed, None, None) == "Trainer failed"


def _fake_store():
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2 as pb

    connection = pb.ConnectionConfig()
    connection.fake_database.SetInParent()
    return mlmd.MetadataStore(connection), pb


def test_the_report_names_the_evaluators_baseline_and_its_version(tmp_path):
    """The baseline is the Evaluator's `baseline_model` input as MLMD records it; its version is what a Pusher
    published it as."""
    from inspection import report, run_store, summary

    store, pb = _fake_store()
    model_type = store.put_artifact_type(pb.ArtifactType(name="Model"))
    pushed_type = store.put_artifact_type(pb.ArtifactType(name="PushedModel"))
    baseline_id, candidate_id = store.put_artifacts([pb.Artifact(type_id=model_type, uri="/pipeline/Trainer/model/4"),
                                                     pb.Artifact(type_id=model_type, uri="/pipeline/Trainer/model/9")])
    pushed = pb.Artifact(type_id=pushed_type, uri="/pipeline/Pusher/pushed_model/5")
    pushed.custom_properties["pushed"].int_value = 1
    pushed.custom_properties["pushed_version"].string_value = "1700000000"
    (pushed_id,) = store.put_artifacts([pushed])
    evaluator, pusher = store.put_executions([pb.Execution(type_id=store.put_execution_type(
        pb.ExecutionType(name="Evaluator"))), pb.Execution(type_id=store.put_execution_type(
            pb.ExecutionType(name="Pusher")))])

    def event(kind, artifact_id, execution_id, key):
        e = pb.Event(type=kind, artifact_id=artifact_id, execution_id=execution_id)
        e.path.steps.add().key = key
        e.path.steps.add().index = 0
        return e

    store.put_events([event(pb.Event.INPUT, candidate_id, evaluator, "model"),
                      event(pb.Event.INPUT, baseline_id, evaluator, "baseline_model"),
                      event(pb.Event.INPUT, baseline_id, pusher, "model"),
                      event(pb.Event.OUTPUT, pushed_id, pusher, "pushed_model")])
    run = summary.RunSummary(run_id="r2", steps=[summary.Step("Evaluator", "ran", 1.0, {}, execution_id=evaluator)],
                             examples={}, anomalies=[], accuracy=0.41, top5_accuracy=None, blessed=True,
                             pushed_to=None, baseline_accuracy=0.39)
    baseline = report.evaluator_baseline(store, run)
    assert baseline.id == baseline_id
    assert run_store.pushed_version(store, baseline_id) == "1700000000"
    assert run_store.pushed_version(store, candidate_id) is None
    config = config_lib.from_preset("tiny", data_root=str(tmp_path))
    facts = dict(report._facts(config, run, config.trainer, params=1, stats={},
                               overall={"sparse_categorical_accuracy": 0.41}, history={"loss": [1.0]},
                               best_epoch=None, baseline=baseline, serving_dir="/s",
                               baseline_version="1700000000"))["Blessing and push"]
    assert dict(facts)["baseline model"] == "Model artifact #%d (version 1700000000): /pipeline/Trainer/model/4" \
        % baseline_id
    assert dict(facts)["test accuracy"] == "this model 0.4100, baseline 0.3900 (+0.0200), on this run's test split"
    first = summary.RunSummary(run_id="r1", steps=[], examples={}, anomalies=[], accuracy=0.3, top5_accuracy=None,
                               blessed=True, pushed_to=None)
    assert report.evaluator_baseline(store, first) is None
    facts = dict(report._facts(config, first, config.trainer, params=1, stats={}, overall={}, history={"loss": [1.0]},
                               best_epoch=None, baseline=None, serving_dir="/s"))["Blessing and push"]
    assert dict(facts)["baseline model"] == "none (first blessed model)"


def test_span_check_by_default_stops_on_drift_and_keeps_no_run_id(tmp_path):
    dataset = dataset_with_spans(tmp_path, (BALANCED[:100], 100), (SKEWED[:100], 100))
    with pytest.raises(DriftError) as error:
        validator.span_check(str(dataset))  # every setting at its default: the whole window, no accept_drift
    assert (error.value.check.previous_span, error.value.check.span) == (0, 1)
    assert (error.value.check.verdict, error.value.check.run_id, error.value.check.accepted_by) == ("stopped", "", "")


def test_an_accepted_span_is_logged_with_the_run_and_setting_that_accepted_it(tmp_path, caplog):
    from components import drift_records

    dataset = dataset_with_spans(tmp_path, (BALANCED[:100], 100), (SKEWED[:100], 100))
    accepted = drift_records.SpanCheck(0, 1, (drift_records.FeatureDrift("label", 0.4, 0.1),), "accepted",
                                       run_id="run-7", accepted_by="accept_drift=true")
    drift_records.write_acceptance(str(dataset), accepted)
    with caplog.at_level(logging.INFO, logger="components.validator"):
        check = validator.span_check(str(dataset))
    assert check is not None and (check.verdict, check.run_id) == ("accepted earlier", "run-7")
    assert [r.getMessage() for r in caplog.records] == [
        f"span 1: drift from span 0 accepted by run run-7 (accept_drift=true, {dataset}/spans/span-1.accepted.json): "
        f"not checked again"]
