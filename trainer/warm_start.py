"""Warm start: a Trainer execution continues the latest blessed model instead of starting from random weights.

New spans (`tokenlearner data --append`) refine a model that already learned the old ones, in `retrain_epochs`
epochs instead of a full fit. The pipeline hands the Trainer the latest blessed model as `fn_args.base_model`: TFX
passes the SavedModel folder of that Model artifact, `<model artifact>/Format-Serving` (None before any model was
blessed). A SavedModel says neither how its network was built nor holds Keras weights a new model can load, so every
export leaves beside it, inside the same Model artifact (outside the SavedModel: the Pusher publishes only that):

    <model artifact>/warm_start/weights.h5            the exported weights (float32 variables whatever the training
                                                       precision; layers only, no optimizer: a warm start begins a
                                                       fresh schedule)
    <model artifact>/warm_start/trainer_config.json   the TrainerConfig it was built with
    <model artifact>/warm_start/training.json         a copy of its training facts (below): the data spans it
                                                       trained on, and its own base

A later execution with `warm_start="auto"` loads the weights when the base's ARCHITECTURE_FIELDS and class list equal
its own, and logs `warm start from <base model path> (span N)` (N: the newest span the base trained on); otherwise
it logs `training from scratch: <reason>`. Either way it writes its training facts, `<model_run>/training.json`
(contract.TRAINING_FACTS_FILE, read by the run summary and history): {"spans": [0, 1], "epochs": n, "warm_start_from":
the base's path or null, "base_spans": [0] (null when from scratch), "scratch_reason": "..." (null when warm),
"examples": the Examples artifact trained on, "unchanged_from" and "trained_in": below; the copy under warm_start/
adds "model_run": this execution's ModelRun folder}.

No new data: when the base trained on this very Examples artifact (the ExampleGen was cached: no span was appended)
with this very TrainerConfig, a scheduled re-run has nothing to learn. The execution then trains nothing: it logs
`no new data since <base> (spans ...): re-exporting it unchanged`, copies the base's SavedModel and warm-start
files, and records `"unchanged_from"`: the SavedModel folder whose training produced the weights, and `"trained_in"`:
the ModelRun folder of that training (its curves, epoch times and TensorBoard logs, which the report and `tokenlearner
tensorboard` show for this run); both are the base's own origin when the base was itself such a copy. The Evaluator
blesses the copy against its original, and the Pusher (components/pusher.py, `source_model`) finds that original
already published instead of pushing a duplicate.

The spans of the training data are those the ExampleGen lists in `<examples artifact>/spans.json` ({"spans": [0,
1]}); an Examples artifact without that file holds span 0 (datasets written before spans existed).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from typing import Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from trainer.config import ARCHITECTURE_FIELDS, TrainerConfig
from trainer.contract import CLASS_NAMES_ASSET, SPANS_FILE, SPLIT_PREFIX, TRAINING_FACTS_FILE

WARM_START_DIR = "warm_start"  # inside a Model artifact, beside Format-Serving
WEIGHTS_FILE = "weights.h5"
CONFIG_FILE = "trainer_config.json"

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How this execution starts: from `base_model`'s weights, or from scratch for `reason`."""

    spans: tuple[int, ...]  # the spans of this execution's training data
    epochs: int  # what this execution's fit trains: retrain_epochs when warm, else epochs
    base_model: Optional[str] = None  # the base's SavedModel folder (fn_args.base_model) when warm, else None
    base_spans: tuple[int, ...] = ()  # the spans the base trained on (warm only)
    reason: str = ""  # why from scratch ("" when warm)
    examples: Optional[str] = None  # the Examples artifact of the training data (None: files outside one)
    unchanged_from: Optional[str] = None  # no new data: the SavedModel folder whose weights are re-exported
    trained_in: Optional[str] = None  # no new data: the ModelRun folder where those weights were trained

    @property
    def warm(self) -> bool:
        return self.base_model is not None

    @property
    def unchanged(self) -> bool:
        return self.unchanged_from is not None

    @property
    def message(self) -> str:
        """The one line the Trainer logs."""
        if self.unchanged:
            return (f"no new data since {self.base_model} (spans {','.join(map(str, self.spans))}, same settings): "
                    "re-exporting it unchanged")
        if self.warm:
            return f"warm start from {self.base_model} (span {max(self.base_spans)})"
        return f"training from scratch: {self.reason}"

    def to_dict(self) -> dict:
        return {"spans": list(self.spans), "warm_start_from": self.base_model,
                "base_spans": list(self.base_spans) if self.warm else None, "epochs": self.epochs,
                "scratch_reason": None if self.warm else self.reason, "examples": self.examples,
                "unchanged_from": self.unchanged_from, "trained_in": self.trained_in}


def artifact_dir(model_dir: str) -> str:
    """`<model artifact>/warm_start` of a Model artifact's SavedModel folder (fn_args.serving_model_dir of this
    execution, or fn_args.base_model of the base)."""
    return os.path.join(os.path.dirname(model_dir.rstrip("/")), WARM_START_DIR)


def _read_json(path: str, expected: str):
    try:
        with tf.io.gfile.GFile(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: expected {expected}, got invalid JSON ({e})") from None


_SPANS_EXPECTED = 'a JSON object {"spans": [0, 1, ...]} of span numbers'


def _spans_in(value, path: str) -> tuple[int, ...]:
    """The validated "spans" list of `value`, read from `path` (an Examples artifact's spans.json or a model's
    training facts)."""
    spans = value.get("spans") if isinstance(value, dict) else None
    if (not isinstance(spans, list) or not spans
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in spans)):
        raise ValueError(f"{path}: expected {_SPANS_EXPECTED}, got {json.dumps(value)[:200]}")
    return tuple(sorted(set(spans)))


def _spans_of(path: str) -> tuple[int, ...]:
    """The spans listed in `path`; span 0 when the file is absent (written before spans existed)."""
    if not tf.io.gfile.exists(path):
        return (0,)
    return _spans_in(_read_json(path, _SPANS_EXPECTED), path)


def examples_dir(train_files: Sequence[str]) -> Optional[str]:
    """The Examples artifact TFX's `<examples artifact>/Split-train/*` patterns are in; None for file patterns that
    are not inside one (a hand-made FnArgs)."""
    split = os.path.dirname(train_files[0].rstrip("/")) if train_files else ""
    return os.path.dirname(split) if os.path.basename(split).startswith(SPLIT_PREFIX) else None


def examples_spans(train_files: Sequence[str]) -> tuple[int, ...]:
    """The spans of the training Examples: the ExampleGen lists the artifact's spans in `<examples
    artifact>/spans.json`. Span 0 without that file, or outside an Examples artifact."""
    examples = examples_dir(train_files)
    return _spans_of(os.path.join(examples, SPANS_FILE)) if examples else (0,)


def _facts(directory: str) -> tuple[dict, tuple[int, ...]]:
    """(facts, spans): the base's training facts (its warm_start/training.json) and the spans it trained on; ({},
    (0,)) when it predates them. A file without a valid "spans" list is an error naming it."""
    path = f"{directory}/{TRAINING_FACTS_FILE}"
    if not tf.io.gfile.exists(path):
        return {}, (0,)
    value = _read_json(path, _SPANS_EXPECTED)
    return value, _spans_in(value, path)


def source_model(model_uri: str) -> str:
    """The Model artifact whose training produced the weights of the Model artifact `model_uri`: itself, or, for a
    re-export without new data, the one it copied (what the Pusher matches published versions by)."""
    facts, _ = _facts(os.path.join(model_uri, WARM_START_DIR))
    origin = facts.get("unchanged_from")
    return os.path.dirname(origin.rstrip("/")) if isinstance(origin, str) and origin else model_uri


def _class_names(base_model: str) -> Optional[list[str]]:
    path = f"{base_model.rstrip('/')}/{CLASS_NAMES_ASSET}"
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return [line for line in f.read().splitlines() if line]


def _architecture_differences(base: dict, cfg: TrainerConfig) -> list[str]:
    """`field X base=a now=b` for every ARCHITECTURE_FIELDS value of the base's config (a field it predates: the
    default it was built with) that differs from `cfg`'s."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainerConfig)}
    differences = []
    for name in ARCHITECTURE_FIELDS:
        was, now = base.get(name, defaults[name]), getattr(cfg, name)
        if was != now:
            differences.append(f"field {name} base={was} now={now}")
    return differences


def _class_difference(base: list[str], now: list[str]) -> str:
    new, missing = [c for c in now if c not in base], [c for c in base if c not in now]
    if not new and not missing:
        return "same classes in another order"
    return ", ".join(part for part in (f"new {new}" if new else "", f"missing {missing}" if missing else "") if part)


def plan(cfg: TrainerConfig, class_names: Sequence[str], base_model: Optional[str],
         train_files: Sequence[str]) -> Plan:
    """Decides how this execution starts (nothing is loaded yet): from `base_model` when `cfg.warm_start` is "auto",
    a base exists and left its warm-start files, and its architecture and class list equal this run's."""
    spans, examples = examples_spans(train_files), examples_dir(train_files)
    scratch = lambda reason: Plan(spans=spans, epochs=cfg.epochs, reason=reason, examples=examples)  # noqa: E731
    if cfg.warm_start == "off":
        return scratch("warm_start=off")
    if not base_model:
        return scratch("no blessed model yet")
    directory = artifact_dir(base_model)
    weights, config_path = f"{directory}/{WEIGHTS_FILE}", f"{directory}/{CONFIG_FILE}"
    missing = [p for p in (weights, config_path) if not tf.io.gfile.exists(p)]
    if missing:
        return scratch(f"base model {base_model} has no {' or '.join(os.path.basename(p) for p in missing)} in "
                       f"{directory} (exported before warm start existed)")
    base_config = _read_json(config_path, "a JSON object of TrainerConfig fields")
    if not isinstance(base_config, dict):
        raise ValueError(f"{config_path}: expected a JSON object of TrainerConfig fields")
    differences = _architecture_differences(base_config, cfg)
    if differences:
        return scratch(f"architecture differs: {', '.join(differences)}")
    base_classes = _class_names(base_model)
    if base_classes is not None and base_classes != list(class_names):
        return scratch(f"class list differs: {_class_difference(base_classes, list(class_names))}")
    facts, base_spans = _facts(directory)
    if examples and facts.get("examples") == examples and base_config == json.loads(json.dumps(cfg.to_dict())):
        return Plan(spans=spans, epochs=0, base_model=base_model, base_spans=base_spans, examples=examples,
                    unchanged_from=facts.get("unchanged_from") or base_model,
                    trained_in=facts.get("trained_in") or facts.get("model_run"))
    return Plan(spans=spans, epochs=cfg.retrain_epochs, base_model=base_model, base_spans=base_spans,
                examples=examples)


def load_weights(model: keras.Model, base_model: str) -> None:
    """Loads the base's weights into `model` (built from a config of the same architecture)."""
    path = f"{artifact_dir(base_model)}/{WEIGHTS_FILE}"
    local = tempfile.mkdtemp(prefix="tokenlearner-warm-start-")
    try:  # HDF5 reads local files only; the artifact may be on gs://
        copy = os.path.join(local, WEIGHTS_FILE)
        tf.io.gfile.copy(path, copy, overwrite=True)
        model.load_weights(copy)
    finally:
        shutil.rmtree(local, ignore_errors=True)


def save(model: keras.Model, cfg: TrainerConfig, run: Plan, serving_model_dir: str, model_run_dir: str) -> str:
    """Writes `<model artifact>/warm_start/` for `serving_model_dir`'s Model artifact: what a later execution warm
    starts from (and `model_run_dir`: where it trained). Returns the folder."""
    directory = artifact_dir(serving_model_dir)
    tf.io.gfile.makedirs(directory)
    local = tempfile.mkdtemp(prefix="tokenlearner-warm-start-")
    try:  # HDF5 writes local files only
        copy = os.path.join(local, WEIGHTS_FILE)
        model.save_weights(copy, save_format="h5")
        tf.io.gfile.copy(copy, f"{directory}/{WEIGHTS_FILE}", overwrite=True)
    finally:
        shutil.rmtree(local, ignore_errors=True)
    _write_json(f"{directory}/{CONFIG_FILE}", cfg.to_dict())
    _write_json(f"{directory}/{TRAINING_FACTS_FILE}", {**run.to_dict(), "model_run": model_run_dir})
    return directory


def reexport(run: Plan, serving_model_dir: str, model_run_dir: str) -> None:
    """No new data (`run.unchanged`): `serving_model_dir`'s Model artifact becomes a copy of the base's (SavedModel
    and warm-start files), with this execution's facts, which say where the weights were trained (`trained_in`)."""
    if run.base_model is None:  # plan() never makes one: "unchanged" is a warm start with nothing to learn
        raise ValueError(f"nothing to re-export: the plan has no base model ({run.message})")
    _copy_tree(run.base_model, serving_model_dir)
    source, directory = artifact_dir(run.base_model), artifact_dir(serving_model_dir)
    tf.io.gfile.makedirs(directory)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        tf.io.gfile.copy(f"{source}/{name}", f"{directory}/{name}", overwrite=True)
    _write_json(f"{directory}/{TRAINING_FACTS_FILE}", {**run.to_dict(), "model_run": model_run_dir})


def _copy_tree(source: str, destination: str) -> None:
    for directory, _, files in tf.io.gfile.walk(source):
        target = os.path.join(destination, os.path.relpath(directory, source))
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(directory, name), os.path.join(target, name), overwrite=True)


def write_training(model_run_dir: str, run: Plan) -> None:
    """`<model_run>/training.json`: the spans trained on and how the fit started (Plan.to_dict)."""
    tf.io.gfile.makedirs(model_run_dir)
    _write_json(os.path.join(model_run_dir, TRAINING_FACTS_FILE), run.to_dict())


def _write_json(path: str, value) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(value, f, indent=1)
