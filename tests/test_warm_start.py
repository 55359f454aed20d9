"""Warm start (trainer/warm_start.py, trainer/run.py): a Trainer execution continues the latest blessed model when it
is the same network, trains from scratch with a one-line reason otherwise, and never resumes a finished run's epoch
checkpoints.

The run_fn tests call the real `trainer.run.run_fn` with a hand-made FnArgs on the session's tiny exported model's
data and Transform graph (64 synthetic images, fixture `exported_model`), laid out as TFX lays out an Examples
artifact (`Split-train/`, `Split-eval/`, the ExampleGen's `spans.json`) and a Model artifact (`Format-Serving/`).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from trainer import checkpoints, warm_start
from trainer.config import PRESETS, TrainerConfig
from trainer.contract import (BACKUP_DIR_KEY, CLASS_NAMES_ASSET, CLASS_NAMES_KEY, EPOCH_TIMES_FILE, EVAL, HISTORY_FILE,
                              MODEL_NAME_KEY, SERVING_MODEL_DIR, SPANS_FILE, TRAIN, TRAINER_CONFIG_KEY,
                              TRAINING_FACTS_FILE, split_dir)

CLASSES = [f"class{i}" for i in range(10)]
# Tiny and fast: one epoch of the 64 images for a base, two for a warm start (retrain_epochs, not epochs).
TINY = dataclasses.replace(PRESETS["tiny"], epochs=1, retrain_epochs=2)


@pytest.fixture
def info(caplog):
    caplog.set_level(logging.INFO, logger="trainer")
    return caplog


def _lines(caplog, prefix: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(prefix)]


# ------------------------------------------------------------------------------------------------ settings

@pytest.mark.parametrize("field, value, expected", [
    ("warm_start", "on", "warm_start: expected one of ('auto', 'off'), got 'on'"),
    ("retrain_epochs", 0, "retrain_epochs: expected a positive integer, got 0"),
])
def test_settings_are_validated_in_one_line(field, value, expected):
    with pytest.raises(ValueError) as e:
        TrainerConfig.from_dict({field: value})
    assert str(e.value) == expected


def test_settings_defaults_and_round_trip():
    cfg = TrainerConfig()
    assert (cfg.warm_start, cfg.retrain_epochs) == ("auto", 5)
    assert TrainerConfig.from_dict({**cfg.to_dict(), "warm_start": "off"}).warm_start == "off"


# ------------------------------------------------------------------------------------------------ the decision

def _fake_base(root: Path, cfg: TrainerConfig, classes=CLASSES, spans=None) -> str:
    """A Model artifact as an earlier execution leaves it (weights file content is not read by `plan`)."""
    serving = root / "model" / SERVING_MODEL_DIR
    (serving / CLASS_NAMES_ASSET).parent.mkdir(parents=True)
    (serving / CLASS_NAMES_ASSET).write_text("\n".join(classes) + "\n")
    ws = root / "model" / warm_start.WARM_START_DIR
    ws.mkdir()
    (ws / warm_start.WEIGHTS_FILE).write_bytes(b"")
    (ws / warm_start.CONFIG_FILE).write_text(json.dumps(cfg.to_dict()))
    if spans is not None:
        (ws / TRAINING_FACTS_FILE).write_text(json.dumps({"spans": spans}))
    return str(serving)


def _examples(root: Path, spans=None) -> list[str]:
    """train_files of an Examples artifact at root/examples, with the ExampleGen's spans.json when `spans`."""
    (root / "examples" / split_dir(TRAIN)).mkdir(parents=True, exist_ok=True)
    if spans is not None:
        (root / "examples" / SPANS_FILE).write_text(json.dumps({"spans": spans}))
    return [str(root / "examples" / split_dir(TRAIN) / "*")]


def test_plan_warm_starts_a_base_of_the_same_network_and_names_its_newest_span(tmp_path):
    base = _fake_base(tmp_path, TINY, spans=[0, 1])
    now = dataclasses.replace(TINY, epochs=9, learning_rate=0.5, dropout=0.3)  # the recipe may change
    start = warm_start.plan(now, CLASSES, base, _examples(tmp_path, spans=[1, 2]))
    assert start.message == f"warm start from {base} (span 1)"
    assert start.to_dict() == {"spans": [1, 2], "warm_start_from": base, "base_spans": [0, 1],
                               "epochs": TINY.retrain_epochs, "scratch_reason": None,
                               "examples": str(tmp_path / "examples"), "unchanged_from": None, "trained_in": None}


def test_plan_without_span_files_is_span_0(tmp_path):
    base = _fake_base(tmp_path, TINY)
    start = warm_start.plan(TINY, CLASSES, base, _examples(tmp_path))
    assert start.message == f"warm start from {base} (span 0)" and start.spans == (0,)
    # A hand-made FnArgs whose files are not in an Examples artifact: span 0 too.
    assert warm_start.examples_spans([str(tmp_path / "data" / "train-*.tfrecord.gz")]) == (0,)


@pytest.mark.parametrize("change, reason", [
    ({"warm_start": "off"}, "warm_start=off"),
    ({"num_layers": 3}, "architecture differs: field num_layers base=2 now=3"),
    ({"projection_dim": 64, "token_learner": "v1.1"},
     "architecture differs: field projection_dim base=32 now=64, field token_learner base=v1 now=v1.1"),
])
def test_plan_trains_from_scratch_with_the_reason(tmp_path, change, reason):
    base = _fake_base(tmp_path, TINY)
    start = warm_start.plan(dataclasses.replace(TINY, **change), CLASSES, base, _examples(tmp_path))
    assert start.message == f"training from scratch: {reason}"
    assert not start.warm and start.epochs == TINY.epochs and start.to_dict()["warm_start_from"] is None


def test_plan_without_a_blessed_model_or_its_warm_start_files_trains_from_scratch(tmp_path):
    assert warm_start.plan(TINY, CLASSES, None, []).message == "training from scratch: no blessed model yet"
    base = _fake_base(tmp_path, TINY)
    (tmp_path / "model" / warm_start.WARM_START_DIR / warm_start.WEIGHTS_FILE).unlink()
    message = warm_start.plan(TINY, CLASSES, base, []).message
    assert message.startswith(f"training from scratch: base model {base} has no weights.h5 in ")
    assert message.endswith("(exported before warm start existed)")


@pytest.mark.parametrize("classes, reason", [
    ([*CLASSES[:9], "truck2"], "class list differs: new ['class9'], missing ['truck2']"),
    (list(reversed(CLASSES)), "class list differs: same classes in another order"),
])
def test_plan_with_another_class_list_trains_from_scratch(tmp_path, classes, reason):
    base = _fake_base(tmp_path, TINY, classes=classes)
    assert warm_start.plan(TINY, CLASSES, base, []).message == f"training from scratch: {reason}"


def test_a_malformed_spans_file_is_one_line_naming_it(tmp_path):
    train_files = _examples(tmp_path)
    path = tmp_path / "examples" / SPANS_FILE
    path.write_text(json.dumps({"spans": ["0"]}))
    with pytest.raises(ValueError) as e:
        warm_start.examples_spans(train_files)
    assert str(e.value).startswith(f"{path}: expected a JSON object {{\"spans\": [0, 1, ...]}}")
    assert "\n" not in str(e.value)


def test_a_base_whose_training_facts_lack_spans_is_one_line_naming_the_file(tmp_path):
    base = _fake_base(tmp_path, TINY, spans=[0])
    path = tmp_path / "model" / warm_start.WARM_START_DIR / TRAINING_FACTS_FILE
    path.write_text(json.dumps({"epochs": 2}))
    for read in (lambda: warm_start.plan(TINY, CLASSES, base, _examples(tmp_path)),
                 lambda: warm_start.source_model(str(tmp_path / "model"))):
        with pytest.raises(ValueError) as e:
            read()
        assert str(e.value) == f'{path}: expected a JSON object {{"spans": [0, 1, ...]}} of span numbers, got ' \
                               f'{{"epochs": 2}}'


# ------------------------------------------------------------------------------------------------ checkpoints

def test_backup_key_names_the_base_model_and_keeps_fits_from_scratch_as_they_were(tmp_path):
    args = (str(tmp_path), TINY.to_dict(), ["a/*"], "t")
    scratch = checkpoints.backup_dir(*args)
    assert checkpoints.backup_dir(*args, base_model=None) == scratch
    assert checkpoints.backup_dir(*args, base_model="m1") not in (scratch, checkpoints.backup_dir(*args,
                                                                                                  base_model="m2"))


def test_a_finished_runs_folder_is_discarded_and_a_killed_runs_is_kept(tmp_path, info):
    killed, finished = tmp_path / "killed", tmp_path / "finished"
    for folder in (killed, finished):
        (folder / "state").mkdir(parents=True)
    checkpoints.mark_finished(str(finished), "/models/1/Format-Serving")

    assert checkpoints.discard_finished(str(killed)) is False and (killed / "state").is_dir()
    assert checkpoints.discard_finished(str(finished)) is True and not finished.exists()
    (line,) = _lines(info, "not resuming from")
    assert line.startswith(f"not resuming from {finished}: its run finished (") and "/models/1/Format-Serving" in line


# ------------------------------------------------------------------------------------------------ run_fn

@pytest.fixture(scope="module")
def examples(exported_model, tmp_path_factory) -> Path:
    """An Examples artifact of the 64 images (train and eval alike) holding spans 0 and 1."""
    root = tmp_path_factory.mktemp("examples")
    for split in (TRAIN, EVAL):
        (root / split_dir(split)).mkdir()
        for shard in Path(exported_model.data_pattern).parent.glob("*.tfrecord.gz"):
            shutil.copy(shard, root / split_dir(split) / shard.name)
    (root / SPANS_FILE).write_text(json.dumps({"spans": [0, 1]}))
    return root


def _run(exported_model, examples: Path, out: Path, cfg: TrainerConfig, base_model=None, backup=None) -> Path:
    """run_fn as TFX's Trainer calls it, into the Model artifact out/model (returned) and out/model_run."""
    from tfx import v1 as tfx

    from trainer import run

    custom = {TRAINER_CONFIG_KEY: cfg.to_dict(), CLASS_NAMES_KEY: CLASSES, MODEL_NAME_KEY: "tokenlearner",
              **({BACKUP_DIR_KEY: str(backup)} if backup else {})}
    run.run_fn(tfx.components.FnArgs(
        train_files=[str(examples / split_dir(TRAIN) / "*")], eval_files=[str(examples / split_dir(EVAL) / "*")],
        transform_output=exported_model.transform_dir, model_run_dir=str(out / "model_run"),
        serving_model_dir=str(out / "model" / SERVING_MODEL_DIR), base_model=base_model, custom_config=custom))
    return out / "model"


def _exported_weights(model: Path) -> list[np.ndarray]:
    """The network's weights a Trainer left for warm starts (in layer order)."""
    import h5py

    with h5py.File(model / warm_start.WARM_START_DIR / warm_start.WEIGHTS_FILE) as f:
        arrays = []
        f.visititems(lambda name, item: arrays.append(np.array(item)) if isinstance(item, h5py.Dataset) else None)
        return arrays


def _training(out: Path) -> dict:
    return json.loads((out / "model_run" / TRAINING_FACTS_FILE).read_text())


@pytest.fixture(scope="module")
def base(exported_model, examples, tmp_path_factory) -> Path:
    """A base model: one epoch from scratch on spans 0 and 1 (no blessed model yet)."""
    return _run(exported_model, examples, tmp_path_factory.mktemp("base"), TINY)


def test_the_first_model_trains_from_scratch_and_leaves_what_a_warm_start_needs(base, examples):
    out = base.parent
    assert _training(out) == {"spans": [0, 1], "warm_start_from": None, "base_spans": None, "epochs": 1,
                              "scratch_reason": "no blessed model yet", "examples": str(examples),
                              "unchanged_from": None, "trained_in": None}
    ws = base / warm_start.WARM_START_DIR
    assert json.loads((ws / warm_start.CONFIG_FILE).read_text()) == TINY.to_dict()
    # the base's own facts, and where its learning curves are
    assert json.loads((ws / TRAINING_FACTS_FILE).read_text()) == {**_training(out), "model_run": str(out / "model_run")}
    assert (base / SERVING_MODEL_DIR / "saved_model.pb").is_file()
    assert not (base / SERVING_MODEL_DIR / warm_start.WARM_START_DIR).exists()  # not in what the Pusher publishes


def test_a_warm_start_loads_the_base_weights_and_trains_retrain_epochs(exported_model, examples, base, tmp_path,
                                                                      info):
    # A learning rate of 1e-9: the fitted weights stay the loaded ones, so they show where the fit started.
    still = dataclasses.replace(TINY, learning_rate=1e-9, seed=7)  # another seed: other random initial weights
    base_model = str(base / SERVING_MODEL_DIR)
    warm = _run(exported_model, examples, tmp_path / "warm", still, base_model=base_model)

    assert _lines(info, "warm start from") == [f"warm start from {base_model} (span 1)"]
    assert not _lines(info, "training from scratch")
    assert _training(tmp_path / "warm") == {"spans": [0, 1], "warm_start_from": base_model, "base_spans": [0, 1],
                                            "epochs": 2, "scratch_reason": None, "examples": str(examples),
                                            "unchanged_from": None, "trained_in": None}
    with open(tmp_path / "warm" / "model_run" / HISTORY_FILE) as f:
        assert len(list(csv.DictReader(f))) == TINY.retrain_epochs
    for got, want in zip(_exported_weights(warm), _exported_weights(base), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert json.loads((warm / warm_start.WARM_START_DIR / TRAINING_FACTS_FILE).read_text()) \
        == {**_training(tmp_path / "warm"), "model_run": str(tmp_path / "warm" / "model_run")}

    # The same recipe from scratch (warm_start=off) starts elsewhere: the check above can fail.
    info.clear()
    cold = _run(exported_model, examples, tmp_path / "cold", dataclasses.replace(still, warm_start="off"),
                base_model=base_model)
    assert _lines(info, "training from scratch") == ["training from scratch: warm_start=off"]
    assert not _lines(info, "warm start from")
    assert _training(tmp_path / "cold")["epochs"] == TINY.epochs
    assert not all(np.allclose(a, b, atol=1e-3) for a, b in zip(_exported_weights(cold), _exported_weights(base)))


def test_no_new_data_and_the_same_settings_re_exports_the_base_unchanged_without_training(
        exported_model, examples, base, tmp_path, info):
    """A scheduled re-run on the same spans: the ExampleGen is cached (the same Examples artifact), so the Trainer
    has nothing to learn; it copies the base instead of training it further and pushing a near-duplicate."""
    base_model = str(base / SERVING_MODEL_DIR)
    again = _run(exported_model, examples, tmp_path / "again", TINY, base_model=base_model)

    assert _lines(info, "no new data since") == [
        f"no new data since {base_model} (spans 0,1, same settings): re-exporting it unchanged"]
    assert not _lines(info, "epoch 1/") and not _lines(info, "warm start from")
    for name in ("saved_model.pb", "variables/variables.index", "assets.extra/tf_serving_warmup_requests"):
        assert (again / SERVING_MODEL_DIR / name).read_bytes() == (base / SERVING_MODEL_DIR / name).read_bytes()
    assert _exported_weights(again) and all(
        np.array_equal(a, b) for a, b in zip(_exported_weights(again), _exported_weights(base), strict=True))
    facts = _training(tmp_path / "again")
    assert (facts["epochs"], facts["unchanged_from"], facts["warm_start_from"]) == (0, base_model, base_model)
    # Where the weights were trained: the report's curves and times, and TensorBoard's logs, are read there.
    assert facts["trained_in"] == str(base.parent / "model_run")
    assert not (tmp_path / "again" / "model_run" / HISTORY_FILE).exists()  # this run trained nothing
    assert not (tmp_path / "again" / "model_run" / EPOCH_TIMES_FILE).exists()
    # The Pusher matches published versions by the model whose training made the weights: the base, also for a
    # copy of a copy.
    assert warm_start.source_model(str(again)) == str(base) == warm_start.source_model(str(base))
    info.clear()
    third = _run(exported_model, examples, tmp_path / "third", TINY, base_model=str(again / SERVING_MODEL_DIR))
    assert _lines(info, "no new data since") and warm_start.source_model(str(third)) == str(base)
    assert _training(tmp_path / "third")["trained_in"] == str(base.parent / "model_run")


def test_new_settings_on_the_same_data_warm_start_instead(examples, base, tmp_path):
    base_model = str(base / SERVING_MODEL_DIR)
    train_files = [str(examples / split_dir(TRAIN) / "*")]
    assert warm_start.plan(TINY, CLASSES, base_model, train_files).unchanged
    changed = warm_start.plan(dataclasses.replace(TINY, learning_rate=0.5), CLASSES, base_model, train_files)
    assert not changed.unchanged and changed.message == f"warm start from {base_model} (span 1)"


def test_another_architecture_trains_from_scratch_and_says_which_field(examples, base):
    # Against the settings a real Trainer left beside its export (run_fn logs this message and trains from scratch,
    # as the warm_start=off fit above shows; no need to fit again).
    wider = dataclasses.replace(TINY, mlp_dim=48)
    start = warm_start.plan(wider, CLASSES, str(base / SERVING_MODEL_DIR), [str(examples / split_dir(TRAIN) / "*")])
    assert start.message == "training from scratch: architecture differs: field mlp_dim base=64 now=48"
    assert start.to_dict()["warm_start_from"] is None and start.epochs == TINY.epochs


def test_a_finished_runs_checkpoints_are_not_resumed_into_the_next_run(exported_model, examples, tmp_path, info,
                                                                       monkeypatch):
    cfg = dataclasses.replace(TINY, warm_start="off")
    # The first run's removal of its backup folder fails (killed after the export, a read-only bucket ...).
    monkeypatch.setattr(checkpoints, "remove", lambda directory: None)
    _run(exported_model, examples, tmp_path / "first", cfg, backup=tmp_path / "backup")
    (folder,) = (tmp_path / "backup").iterdir()
    assert (folder / checkpoints.FINISHED_FILE).is_file() and (folder / "state").exists()

    info.clear()
    monkeypatch.undo()
    _run(exported_model, examples, tmp_path / "second", cfg, backup=tmp_path / "backup")  # same key
    assert _lines(info, f"not resuming from {folder}: its run finished")
    assert not _lines(info, "resuming from the epoch checkpoint")
    assert _lines(info, "epoch 1/1 done")  # the epoch trained again instead of being restored as done
    assert not (tmp_path / "backup" / folder.name).exists()  # this run's own folder, removed after its export
