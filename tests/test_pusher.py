"""Publishing model versions: atomic, numbered as TF Serving expects, never the same model twice."""
from __future__ import annotations

from components import pusher


def _model(tmp_path, name="model"):
    path = tmp_path / name
    (path / "variables").mkdir(parents=True, exist_ok=True)
    (path / "saved_model.pb").write_bytes(b"graph")
    (path / "variables" / "variables.index").write_bytes(b"index")
    return path


def test_publish_writes_a_numbered_version_and_no_temporary(tmp_path):
    base = tmp_path / "serving" / "tokenlearner"
    version, written = pusher.publish(str(_model(tmp_path)), str(base), "uri://model/1")
    assert written and version.isdigit()
    assert sorted(p.name for p in base.iterdir()) == [version]
    assert (base / version / "saved_model.pb").read_bytes() == b"graph"
    assert (base / version / "variables" / "variables.index").is_file()


def test_same_model_is_not_pushed_twice_and_new_models_get_higher_versions(tmp_path):
    base = tmp_path / "serving"
    v1, _ = pusher.publish(str(_model(tmp_path, "a")), str(base), "uri://model/1")
    again, written = pusher.publish(str(_model(tmp_path, "a")), str(base), "uri://model/1")
    assert (again, written) == (v1, False)
    v2, written = pusher.publish(str(_model(tmp_path, "b")), str(base), "uri://model/2")
    assert written and int(v2) > int(v1)  # even within the same second
    assert pusher.published_versions(str(base)) == [int(v1), int(v2)]


def test_leftover_temporary_from_a_crash_is_ignored_and_replaced(tmp_path):
    base = tmp_path / "serving"
    (base / ".tmp-123").mkdir(parents=True)  # what a killed push leaves behind
    assert pusher.published_versions(str(base)) == []
    version, _ = pusher.publish(str(_model(tmp_path)), str(base), "uri://model/1")
    assert pusher.published_versions(str(base)) == [int(version)]
