"""TF_CONFIG as the Trainer reads it (trainer/cluster.py), case by case: which clusters are one, which are refused
and with what line, how workers are numbered and named. Written against the mutants bench/mutation.py found alive."""
from __future__ import annotations

import json

import pytest

from trainer import cluster


def _text(spec, task_type="worker", index=0) -> str:
    return json.dumps({"cluster": spec, "task": {"type": task_type, "index": index}})


def test_a_chief_and_two_workers_are_numbered_chief_first():
    c = cluster.parse(_text({"worker": ["w0:1", "w1:2"], "chief": ["c:9"]}, "worker", 1))
    assert c.workers == (("chief", 0, "c:9"), ("worker", 0, "w0:1"), ("worker", 1, "w1:2"))
    assert c.num_workers == 3
    assert c.worker_id() == 2
    assert c.worker_id("chief", 0) == 0
    assert c.worker_id("worker", 0) == 1
    assert not c.is_chief
    assert c.address == "w1:2"
    assert c.describe() == "worker 2 of 3"
    assert c.describe(0) == "worker 0 of 3 (chief)"
    assert c.named(0) == "worker 0 of 3 (chief, c:9)"
    assert c.named(1) == "worker 1 of 3 (w0:1)"
    assert c.peers() == ["worker 0 of 3 (chief, c:9)", "worker 1 of 3 (w0:1)"]


def test_without_a_chief_worker_0_is_the_chief():
    c = cluster.parse(_text({"worker": ["a:1", "b:2"]}, "worker", 0))
    assert c.is_chief and c.describe() == "worker 0 of 2 (chief)"
    assert c.address == "a:1"
    assert c.peers() == ["worker 1 of 2 (b:2)"]


def test_the_task_index_defaults_to_0_and_an_index_map_is_read_in_index_order():
    c = cluster.parse(json.dumps({"cluster": {"worker": {"1": "b:2", "0": "a:1", "10": "k:3"}},
                                  "task": {"type": "worker"}}))
    assert c.task_index == 0
    assert c.jobs == {"worker": ("a:1", "b:2", "k:3")}


@pytest.mark.parametrize("text", [
    _text({"worker": ["a:1"]}),
    _text({"chief": ["a:1"]}, "chief"),
    _text({"worker": ["a:1"], "ps": []}),
    _text({}),
    json.dumps({"task": {"type": "worker", "index": 0}}),
])
def test_a_single_worker_or_an_empty_cluster_is_no_cluster(text):
    assert cluster.parse(text) is None


def test_from_env_reads_tf_config_and_ignores_blank_text():
    assert cluster.from_env({}) is None
    assert cluster.from_env({"TF_CONFIG": "  \n"}) is None
    assert cluster.from_env({"OTHER": _text({"worker": ["a:1", "b:2"]})}) is None
    c = cluster.from_env({"TF_CONFIG": " " + _text({"worker": ["a:1", "b:2"]}, "worker", 1) + "\n"})
    assert (c.task_type, c.task_index, c.num_workers) == ("worker", 1, 2)


@pytest.mark.parametrize("text, line", [
    ("{not json", "TF_CONFIG: expected JSON, got '{not json'"),
    ("[1, 2]", "TF_CONFIG: expected an object with a 'cluster' object, got '[1, 2]'"),
    ('{"cluster": ["a:1"]}', "TF_CONFIG: expected an object with a 'cluster' object, got "),
    (_text({"worker": ["a:1", "b:2"], "ps": ["p:1"]}), "TF_CONFIG: cluster has 'ps' tasks: parameter servers"),
    (_text({"worker": ["a:1", "b:2"], "evaluator": ["e:1"]}), "TF_CONFIG: cluster has 'evaluator' tasks: a side"),
    (_text({"worker": ["a:1", "b:2"], "master": ["m:1"], "zed": []}),
     "TF_CONFIG: unknown job(s) ['master', 'zed'] in 'cluster'; expected ['chief', 'worker']"),
    (_text({"worker": ["a:1", "b"]}), "TF_CONFIG: cluster.worker: expected a list of 'host:port', got ['a:1', 'b']"),
    (_text({"worker": ["a:1", 2]}), "TF_CONFIG: cluster.worker: expected a list of 'host:port', got ['a:1', 2]"),
    (_text({"worker": "a:1,b:2"}), "TF_CONFIG: cluster.worker: expected a list of 'host:port', got 'a:1,b:2'"),
    (_text({"chief": ["a:1", "b:2"]}, "chief"), "TF_CONFIG: cluster.chief: expected one task, got 2"),
    (_text({"worker": ["a:1", "b:2"]}, "chief"), "TF_CONFIG: task.type: expected one of ['worker'], got 'chief'"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:2"]}}), "TF_CONFIG: task.type: expected one of ['worker'], got None"),
    (_text({"worker": ["a:1", "b:2"]}, "worker", 2),
     "TF_CONFIG: task.index: expected 0..1 for job 'worker', got 2"),
    (_text({"worker": ["a:1", "b:2"]}, "worker", -1),
     "TF_CONFIG: task.index: expected 0..1 for job 'worker', got -1"),
    (_text({"worker": ["a:1", "b:2"]}, "worker", "1"),
     "TF_CONFIG: task.index: expected 0..1 for job 'worker', got '1'"),
])
def test_a_malformed_tf_config_is_one_line_naming_the_field(text, line):
    with pytest.raises(ValueError) as raised:
        cluster.parse(text)
    assert str(raised.value).startswith(line)
    assert "\n" not in str(raised.value)


def test_empty_ps_and_evaluator_lists_are_no_refusal():
    c = cluster.parse(_text({"worker": ["a:1", "b:2"], "ps": [], "evaluator": None}, "worker", 1))
    assert c.jobs == {"worker": ("a:1", "b:2")}


def test_the_quoted_text_of_a_refused_tf_config_is_cut_at_80_characters():
    text = "x" * 200
    with pytest.raises(ValueError) as raised:
        cluster.parse(text)
    assert f"got {'x' * 80!r} (" in str(raised.value)


def test_a_peer_named_in_a_tensorflow_error_is_named_once_and_others_are_not():
    c = cluster.parse(_text({"worker": ["a:1", "b:2", "c:3"]}, "worker", 0))
    text = ("/job:worker/replica:0/task:2 failed; again /job:worker/replica:0/task:2; me /job:worker/replica:0/task:0;"
            " stranger /job:worker/replica:0/task:7")
    assert c.peers_named_in(text) == ["worker 2 of 3 (c:3)"]
    assert c.peers_named_in("no task here") == ["worker 1 of 3 (b:2)", "worker 2 of 3 (c:3)"]
    assert c.peers_named_in("/job:worker/replica:0/task:7 only a stranger") == c.peers()
    assert c.peers_named_in("/job:worker/replica:0/task:1 then /job:worker/replica:0/task:2") == [
        "worker 1 of 3 (b:2)", "worker 2 of 3 (c:3)"]


def test_a_chief_named_in_an_error_is_found_by_its_job():
    c = cluster.parse(_text({"chief": ["c:9"], "worker": ["a:1"]}, "worker", 0))
    assert c.peers_named_in("lost /job:chief/replica:0/task:0") == ["worker 0 of 2 (chief, c:9)"]


def test_tf_config_round_trips_through_parse():
    text = cluster.tf_config({"chief": ["c:9"], "worker": ["a:1"]}, "worker", 0)
    assert json.loads(text) == {"cluster": {"chief": ["c:9"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}


def test_an_index_map_is_ordered_by_number_not_by_text():
    c = cluster.parse(json.dumps({"cluster": {"worker": {"10": "k:11", "2": "c:3", "0": "a:1", "1": "b:2"}},
                                  "task": {"type": "worker", "index": 3}}))
    assert c.jobs["worker"] == ("a:1", "b:2", "c:3", "k:11")
    assert c.address == "k:11"


def test_a_long_refused_tf_config_is_quoted_to_80_characters():
    text = "[" + "1, " * 60 + "1]"
    with pytest.raises(ValueError) as raised:
        cluster.parse(text)
    assert str(raised.value) == f"TF_CONFIG: expected an object with a 'cluster' object, got {text[:80]!r}"


def test_a_stranger_named_first_does_not_hide_a_peer_named_after_it():
    c = cluster.parse(_text({"worker": ["a:1", "b:2", "c:3"]}, "worker", 0))
    assert c.peers_named_in("/job:worker/replica:0/task:9 and /job:worker/replica:0/task:2") == ["worker 2 of 3 (c:3)"]


def test_the_chief_named_in_an_error_is_the_chief_not_the_worker_of_the_same_index():
    c = cluster.parse(_text({"chief": ["c:9"], "worker": ["a:1", "b:2"]}, "worker", 1))
    assert c.peers_named_in("lost /job:chief/replica:0/task:0") == ["worker 0 of 3 (chief, c:9)"]
