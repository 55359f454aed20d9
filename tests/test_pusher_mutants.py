"""The Pusher's version numbering and de-duplication (components/pusher.py) case by case, the clock fixed: written
against the mutants bench/mutation.py found alive."""
from __future__ import annotations

import json

import pytest

from components import pusher

NOW = 1000.0


@pytest.fixture
def clock(monkeypatch):
    monkeypatch.setattr(pusher.time, "time", lambda: NOW)


def _model(tmp_path, name="model"):
    path = tmp_path / name
    (path / "variables").mkdir(parents=True, exist_ok=True)
    (path / "saved_model.pb").write_bytes(b"graph " + name.encode())
    (path / "variables" / "variables.index").write_bytes(b"index")
    return path


def _version(base, name, uri=None):
    folder = base / name
    folder.mkdir(parents=True)
    if uri is not None:
        (folder / pusher.SOURCE_FILE).parent.mkdir(parents=True)
        (folder / pusher.SOURCE_FILE).write_text(json.dumps({"model_uri": uri}))
    return folder


def test_published_versions_are_the_numbered_folders_in_numeric_order(tmp_path):
    assert pusher.published_versions(str(tmp_path / "absent")) == []
    for name in ("10", "9", ".tmp-11", "latest", "100"):
        (tmp_path / name).mkdir()
    assert pusher.published_versions(str(tmp_path)) == [9, 10, 100]


def test_a_first_version_is_numbered_by_the_clock(tmp_path, clock):
    assert pusher.publish(str(_model(tmp_path)), str(tmp_path / "serving"), "uri://1") == ("1000", True)


def test_a_version_after_one_numbered_past_the_clock_is_one_higher(tmp_path, clock):
    base = tmp_path / "serving"
    _version(base, "2000", "uri://old")
    assert pusher.publish(str(_model(tmp_path)), str(base), "uri://new") == ("2001", True)
    _version(base, "5", "uri://older")
    assert pusher.publish(str(_model(tmp_path, "other")), str(base), "uri://newer") == ("2002", True)


def test_an_older_version_below_the_clock_leaves_the_clock_s_number(tmp_path, clock):
    base = tmp_path / "serving"
    _version(base, "5", "uri://old")
    assert pusher.publish(str(_model(tmp_path)), str(base), "uri://new") == ("1000", True)


def test_the_published_version_records_its_trainer_model_and_holds_the_files(tmp_path, clock):
    base = tmp_path / "serving"
    pusher.publish(str(_model(tmp_path)), str(base), "uri://model/7")
    source = json.loads((base / "1000" / pusher.SOURCE_FILE).read_text())
    assert source == {"model_uri": "uri://model/7", "pushed_at": NOW}
    assert (base / "1000" / "saved_model.pb").read_bytes() == b"graph model"
    assert sorted(p.name for p in base.iterdir()) == ["1000"]


def test_a_model_already_published_is_found_newest_first_and_nothing_is_written(tmp_path, clock):
    base = tmp_path / "serving"
    _version(base, "3", "uri://same")
    _version(base, "4", "uri://other")
    _version(base, "6", "uri://same")
    _version(base, "8")  # no source file: holds no known model
    assert pusher.publish(str(_model(tmp_path)), str(base), "uri://same") == ("6", False)
    assert pusher.published_versions(str(base)) == [3, 4, 6, 8]
    assert pusher._source_of(str(base / "8")) is None
    assert pusher._source_of(str(base / "4")) == "uri://other"


def test_a_leftover_temporary_of_the_same_number_is_replaced_not_merged(tmp_path, clock):
    base = tmp_path / "serving"
    leftover = base / ".tmp-1000"
    leftover.mkdir(parents=True)
    (leftover / "half-written").write_bytes(b"x")
    assert pusher.publish(str(_model(tmp_path)), str(base), "uri://1") == ("1000", True)
    assert not (base / "1000" / "half-written").exists()
    assert sorted(p.name for p in base.iterdir()) == ["1000"]


def test_an_object_store_gets_a_copy_with_saved_model_pb_and_no_temporary(clock, tmp_path):
    from tensorflow.io import gfile

    base = "ram://pusher-test/serving"
    version, written = pusher.publish(str(_model(tmp_path)), base, "uri://1")
    assert (version, written) == ("1000", True)
    assert sorted(n.rstrip("/") for n in gfile.listdir(base)) == ["1000"]
    with gfile.GFile(f"{base}/1000/saved_model.pb", "rb") as f:
        assert f.read() == b"graph model"
    assert gfile.exists(f"{base}/1000/variables/variables.index")
    assert gfile.exists(f"{base}/1000/{pusher.SOURCE_FILE}")


def test_an_object_store_s_folder_names_with_a_trailing_slash_are_versions(monkeypatch):
    # GCS lists a "folder" as its prefix, "1700000000/": the same versions as on a local disk
    monkeypatch.setattr(pusher.fileio, "exists", lambda path: True)
    monkeypatch.setattr(pusher.fileio, "listdir", lambda path: ["12/", "3/", ".tmp-20/", "saved_model.pb"])
    assert pusher.published_versions("gs://bucket/serving") == [3, 12]
