"""The drift comparator's own decisions (components/validator.py, components/drift_records.py) on hand-made values:
the bounds of its settings, the comparators it builds, how a distance is printed and held to its threshold, and how
an acceptance record is read back. Written against the mutants bench/mutation.py found alive."""
from __future__ import annotations

import json

import pytest
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from components import drift_records, validator
from components.drift_records import FeatureDrift, RecordError, SpanCheck


@pytest.mark.parametrize("train_spans, label, image", [(0, 0.0, 0.0), (3, 1.0, 1.0), (1, 0.5, 0.0)])
def test_settings_at_their_bounds_are_accepted(train_spans, label, image):
    validator.check_span_drift_settings(train_spans, label, image)


@pytest.mark.parametrize("train_spans, label, image, line", [
    (-1, 0.1, 0.1, "train_spans: expected 0 (every span) or the number of newest spans, got -1"),
    (0, 1.01, 0.1, "span_label_drift: expected 0..1 (a distance between two spans' distributions), got 1.01"),
    (0, -0.01, 0.1, "span_label_drift: expected 0..1 (a distance between two spans' distributions), got -0.01"),
    (0, 0.1, 1.5, "span_image_drift: expected 0..1 (a distance between two spans' distributions), got 1.5"),
    (0, 0.1, -1.0, "span_image_drift: expected 0..1 (a distance between two spans' distributions), got -1.0"),
])
def test_settings_out_of_bounds_are_one_line(train_spans, label, image, line):
    with pytest.raises(ValueError) as raised:
        validator.check_span_drift_settings(train_spans, label, image)
    assert str(raised.value) == line


def _stats(**types: int) -> statistics_pb2.DatasetFeatureStatisticsList:
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = stats.datasets.add()
    for name, kind in types.items():
        feature = dataset.features.add(type=kind)
        feature.path.step.append(name)
    return stats


def test_the_drift_schema_compares_label_shares_and_image_histograms_with_the_recorded_types():
    stats = _stats(height=statistics_pb2.FeatureNameStatistics.INT,
                   width=statistics_pb2.FeatureNameStatistics.FLOAT,
                   brightness=statistics_pb2.FeatureNameStatistics.STRING)
    schema = validator.span_drift_schema(stats, 0.25, 0.75)
    features = {f.name: f for f in schema.feature}
    assert list(features) == ["label", "height", "width", "brightness"]
    assert features["label"].type == schema_pb2.INT and features["label"].int_domain.is_categorical
    assert features["label"].drift_comparator.infinity_norm.threshold == 0.25
    assert not features["label"].drift_comparator.HasField("jensen_shannon_divergence")
    assert [features[n].type for n in ("height", "width", "brightness")] == [
        schema_pb2.INT, schema_pb2.FLOAT, schema_pb2.BYTES]
    for name in ("height", "width", "brightness"):
        assert features[name].drift_comparator.jensen_shannon_divergence.threshold == 0.75
        assert not features[name].drift_comparator.HasField("infinity_norm")


def test_a_feature_the_statistics_lack_is_taken_as_int_and_a_name_matches_too():
    stats = _stats()
    stats.datasets[0].features.add(name="width", type=statistics_pb2.FeatureNameStatistics.FLOAT)
    assert validator._schema_type(stats.datasets[0], "width") == schema_pb2.FLOAT
    assert validator._schema_type(stats.datasets[0], "height") == schema_pb2.INT
    struct = _stats(height=statistics_pb2.FeatureNameStatistics.STRUCT)
    assert validator._schema_type(struct.datasets[0], "height") == schema_pb2.STRUCT


def test_statistics_of_other_than_one_dataset_are_refused_naming_the_side():
    one = _stats()
    two = _stats()
    two.datasets.add()
    with pytest.raises(ValueError) as raised:
        validator.span_drift(two, one)
    assert str(raised.value) == "previous span statistics: expected one dataset (all splits of the span), got 2"
    with pytest.raises(ValueError) as raised:
        validator.span_drift(one, statistics_pb2.DatasetFeatureStatisticsList())
    assert str(raised.value) == "current span statistics: expected one dataset (all splits of the span), got 0"


def test_a_label_drift_threshold_goes_into_a_copy_of_a_schema_with_that_comparator():
    schema = schema_pb2.Schema()
    schema.feature.add(name="label").drift_comparator.infinity_norm.threshold = 0.3
    changed = validator.with_label_drift_threshold(schema, 0.05)
    assert changed.feature[0].drift_comparator.infinity_norm.threshold == pytest.approx(0.05)
    assert schema.feature[0].drift_comparator.infinity_norm.threshold == pytest.approx(0.3)
    assert validator.with_label_drift_threshold(schema, None) is schema
    inferred = schema_pb2.Schema()
    inferred.feature.add(name="label")
    assert validator.with_label_drift_threshold(inferred, 0.05) is inferred
    other = schema_pb2.Schema()
    other.feature.add(name="image").drift_comparator.infinity_norm.threshold = 0.3
    assert validator.with_label_drift_threshold(other, 0.05) is other


@pytest.mark.parametrize("distance, threshold, text", [
    (0.4, 0.1, "0.4"), (0.123456, 0.1, "0.12"), (0.1000004, 0.1, "0.1000004"), (0.10004, 0.1, "0.10004"),
    (0.1, 0.1, "0.1"), (0.05, 0.1, "0.05"), (0.0999999, 0.1, "0.1"),
])
def test_a_distance_is_printed_in_two_digits_unless_that_hides_it_is_above(distance, threshold, text):
    assert drift_records.distance_text(distance, threshold) == text


def test_a_distance_above_its_threshold_beyond_nine_digits_is_printed_whole():
    assert drift_records.distance_text(0.1 + 1e-12, 0.1) == repr(0.1 + 1e-12)


def test_only_distances_above_their_thresholds_are_named_in_the_line():
    drifts = (FeatureDrift("label", 0.4, 0.1), FeatureDrift("height", 0.2, 0.2), FeatureDrift("width", 0.5, 0.3))
    check = SpanCheck(4, 5, drifts, "stopped")
    assert [d.feature for d in check.beyond] == ["label", "width"]
    assert check.message == ("drift between span 4 and span 5: feature 'label': L-infinity distance 0.4 > "
                             "span_label_drift 0.1; feature 'width': Jensen-Shannon divergence 0.5 > span_image_drift "
                             "0.3 (set accept_drift=true to train on it)")
    assert FeatureDrift("x", 0.3, 0.2).exceeded and not FeatureDrift("x", 0.2, 0.2).exceeded
    assert SpanCheck(4, 5, drifts[1:2], "alike").message is None
    assert drift_records.drift_message(1, 2, []) is None


RECORD = {"previous_span": 1.0, "span": 2.0, "verdict": "accepted", "run_id": "run-7", "accepted_by": "accept_drift=true",
          "decided_utc": "2026-12-08T03:00:00Z",
          "drifts": [{"feature": "label", "distance": 0.4, "threshold": 0.1}]}


def test_a_record_reads_back_with_whole_span_numbers_and_empty_optional_fields():
    check = SpanCheck.from_dict(RECORD, "here")
    assert check == SpanCheck(1, 2, (FeatureDrift("label", 0.4, 0.1),), "accepted", "run-7", "accept_drift=true",
                              "2026-12-08T03:00:00Z")
    assert isinstance(check.span, int) and isinstance(check.previous_span, int)
    bare = SpanCheck.from_dict({**RECORD, "run_id": None, "accepted_by": None, "decided_utc": None}, "here")
    assert (bare.run_id, bare.accepted_by, bare.decided_utc) == ("", "", "")
    minimal = {k: RECORD[k] for k in ("previous_span", "span", "verdict", "drifts")}
    assert SpanCheck.from_dict(minimal, "here").run_id == ""


@pytest.mark.parametrize("data, line", [
    ([1], "f.json: expected a JSON object of a span drift check, got list"),
    ({**RECORD, "verdict": "maybe"},
     "f.json: verdict 'maybe'; expected one of alike, stopped, accepted, accepted earlier"),
    ({k: v for k, v in RECORD.items() if k != "span"},
     "f.json: no field 'span'; expected previous_span, span, verdict and drifts"),
    ({**RECORD, "span": "two"}, "f.json: not a span drift check (invalid literal for int() with base 10: 'two')"),
    ({**RECORD, "drifts": 3}, "f.json: not a span drift check ('int' object is not iterable)"),
])
def test_a_record_that_is_not_one_is_a_line_naming_where(data, line):
    with pytest.raises(RecordError) as raised:
        SpanCheck.from_dict(data, "f.json")
    assert str(raised.value) == line


def _write(dataset, span, record):
    (dataset / "spans").mkdir(parents=True, exist_ok=True)
    (dataset / "spans" / f"span-{span}.accepted.json").write_text(json.dumps(record))


def test_an_acceptance_record_is_read_only_for_its_own_span_and_verdict(tmp_path):
    assert drift_records.read_acceptance(tmp_path, 2) is None
    _write(tmp_path, 2, RECORD)
    assert drift_records.read_acceptance(str(tmp_path) + "/", 2).run_id == "run-7"
    _write(tmp_path, 3, RECORD)
    with pytest.raises(RecordError) as raised:
        drift_records.read_acceptance(tmp_path, 3)
    assert str(raised.value) == (f"{tmp_path}/spans/span-3.accepted.json: records span 2 accepted; expected span 3 "
                                 "accepted (remove the file to check span 3 again)")
    _write(tmp_path, 2, {**RECORD, "verdict": "stopped"})
    with pytest.raises(RecordError) as raised:
        drift_records.read_acceptance(tmp_path, 2)
    assert str(raised.value).endswith("span-2.accepted.json: records span 2 stopped; expected span 2 accepted "
                                      "(remove the file to check span 2 again)")


def test_an_acceptance_is_recorded_in_the_dataset_and_logged_with_its_spans_and_file(tmp_path, caplog):
    check = SpanCheck(2, 3, (FeatureDrift("label", 0.4, 0.1),), "accepted", "run-9", "accept_drift=true")
    with caplog.at_level("INFO", logger="components.validator"):
        validator.record_acceptance(str(tmp_path), check)
    record = tmp_path / "spans" / "span-3.accepted.json"
    assert drift_records.read_acceptance(str(tmp_path), 3) == check
    assert [r.getMessage() for r in caplog.records] == [
        f"span 3: drift from span 2 accepted with accept_drift=true; recorded in {record}"]


def test_an_acceptance_that_cannot_be_written_is_one_warning_and_the_run_goes_on(tmp_path, caplog):
    not_a_folder = tmp_path / "dataset"
    not_a_folder.write_text("a file where the dataset folder should be")
    check = SpanCheck(2, 3, (FeatureDrift("label", 0.4, 0.1),), "accepted", "run-9", "accept_drift=true")
    with caplog.at_level("INFO", logger="components.validator"):
        validator.record_acceptance(str(not_a_folder), check)  # no exception: the run still trains
    [warning] = caplog.records
    assert warning.levelname == "WARNING"
    assert warning.getMessage().startswith(
        f"{not_a_folder}/spans/span-3.accepted.json: could not record the acceptance of span 3's drift (")
    assert warning.getMessage().endswith("); the next run without accept_drift=true stops on it again")
    assert not_a_folder.read_text() == "a file where the dataset folder should be"
