"""Typed, frozen pipeline settings, named presets, `--set key=value` overrides, and the dataset's part of them.

`PipelineConfig` is built once (by the CLI or a runner) and passed down: `create_pipeline(config)` reads it, and
the Trainer gets `config.trainer` through `custom_config`. The class list, the head's size and the schema of a
dataset other than CIFAR-10 come from the dataset folder's manifest (`for_dataset`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import typing
from typing import Any, Mapping, Optional, Union

from components.schema import PACKAGED_SCHEMA
from pipeline.config.beam import BeamConfig
from pipeline.config.errors import ConfigError
from pipeline.config.metadata import MetadataConfig
from pipeline.config.resources import ResourcesConfig
from pipeline.config.vertex import VertexConfig
from trainer.config import PRESETS as TRAINER_PRESETS
from trainer.config import RETIRED_FIELDS, TrainerConfig
from trainer.contract import DATASET_SCHEMA
from trainer.features import CIFAR10_CLASSES
from trainer.serving_api import DEFAULT_MODEL_NAME


# The default schema_path: the curated schema, package data resolved where the component runs (components/schema.py).
DEFAULT_SCHEMA = PACKAGED_SCHEMA
DEFAULT_PIPELINE_NAME = "tokenlearner-cifar10"
CONFIG_FILE = "config.json"  # under the pipeline root: the settings of the latest run (`load`)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Where the pipeline reads and writes, how it validates and blesses, and the trainer settings."""

    data_root: str  # dataset folder written by `tokenlearner data` (train/, eval/, test/ TFRecords)
    output_dir: str = "outputs"  # pipeline root, metadata and serving dir go under it
    pipeline_name: str = DEFAULT_PIPELINE_NAME
    model_name: str = DEFAULT_MODEL_NAME  # TF Serving model name: <serving_dir>/<model_name>/<version>/
    # The dataset's classes in label order; `tokenlearner run` (and compile/submit when the dataset's manifest is
    # readable) take them from the manifest (`for_dataset`), and trainer.num_classes with them.
    class_names: tuple[str, ...] = CIFAR10_CLASSES
    # The Evaluator blesses only models at or above this test accuracy. None (`--set accuracy_floor=auto`): relative
    # to chance, see `blessing_floor` (0.5 for 10 classes).
    accuracy_floor: Optional[float] = None
    regression_tolerance: float = 0.01  # ... and not worse than the latest blessed model by more than this
    # The ExampleValidator fails a split whose class frequencies differ from the training split's by more than this
    # (L-infinity distance: the largest difference of one class's share). It replaces the threshold of the schema's
    # label drift comparator; 0.05 is the curated schema's.
    label_drift_threshold: float = 0.05
    # Spans (`tokenlearner data --append`): the Trainer's window, 0 = every span of the dataset, K = the newest K.
    train_spans: int = 0
    # Drift between the newest span and the one before it, checked before anything trains: the largest difference
    # of one class's share (L-infinity), and the Jensen-Shannon divergence of the image height, width and mean
    # brightness histograms. Above either, the run stops naming both spans, the feature and the distance, unless
    # accept_drift=true.
    span_label_drift: float = 0.1
    span_image_drift: float = 0.1
    accept_drift: bool = False
    beam_workers: int = 2  # Beam DirectRunner multi-processing workers; 0 = one per CPU
    enable_cache: bool = True
    # Curated schema every split is validated against (ImportSchemaGen); "infer" = SchemaGen infers one per run.
    # The default names the package data, resolved where the component runs: this checkout, or the container image.
    schema_path: str = DEFAULT_SCHEMA
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    # Container image of every Kubeflow/Vertex component, Dataflow worker and Vertex training job.
    image: str = ""
    beam: BeamConfig = dataclasses.field(default_factory=BeamConfig)  # --set beam_profile=dataflow ...
    metadata: MetadataConfig = dataclasses.field(default_factory=MetadataConfig)  # --set metadata_backend=mysql
    vertex: VertexConfig = dataclasses.field(default_factory=VertexConfig)  # --set vertex_project=...
    # Kubeflow/Vertex container limits: --set resources_trainer_memory_gib=12
    resources: ResourcesConfig = dataclasses.field(default_factory=ResourcesConfig)

    def __post_init__(self) -> None:
        if not self.data_root:
            raise ConfigError("data_root: required (the folder written by `tokenlearner data`)")
        if self.accuracy_floor is not None and not 0.0 <= self.accuracy_floor <= 1.0:
            raise ConfigError(f"accuracy_floor: expected 0..1 or auto, got {self.accuracy_floor}")
        if self.regression_tolerance < 0:
            raise ConfigError(f"regression_tolerance: expected >= 0, got {self.regression_tolerance}")
        if not 0.0 <= self.label_drift_threshold <= 1.0:
            raise ConfigError(f"label_drift_threshold: expected 0..1 (a distance between class frequencies), got "
                              f"{self.label_drift_threshold}")
        if self.train_spans < 0:
            raise ConfigError(f"train_spans: expected 0 (every span) or the number of newest spans, got "
                              f"{self.train_spans}")
        for name in ("span_label_drift", "span_image_drift"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}: expected 0..1 (a distance between two spans' distributions), got "
                                  f"{getattr(self, name)}")
        if len(self.class_names) != self.trainer.num_classes:
            raise ConfigError(f"class_names: {len(self.class_names)} names for num_classes="
                              f"{self.trainer.num_classes} (`tokenlearner run` takes both from the dataset)")
        for name in ("model_name", "pipeline_name"):
            value = getattr(self, name)
            if not value or "/" in value or value.startswith(".") or os.sep in value:
                raise ConfigError(f"{name}: {value!r} must be a plain name (no '/', no leading '.')")
        _ = self.beam_pipeline_args  # raises ConfigError naming what the Beam profile still lacks
        if self.vertex.training and not self.image:
            raise ConfigError("image: required by vertex_training=true (the training job runs it)")
        if self.vertex.training and self.resources.trainer_accelerator_count:
            raise ConfigError("resources_trainer_accelerator_type/resources_trainer_accelerator_count: with "
                              "vertex_training=true the Trainer step only submits the training job; give the job "
                              "its GPUs with vertex_accelerator_type/vertex_accelerator_count")

    @property
    def blessing_floor(self) -> float:
        """The test accuracy a model needs to be blessed: `accuracy_floor` when set, else 4/9 of the way from
        chance (1/N for N classes) to 1, which is 0.5 for CIFAR-10's 10 classes (the floor before it was relative)
        and asks as much above chance of 3 classes (0.63) or 100 (0.45)."""
        if self.accuracy_floor is not None:
            return self.accuracy_floor
        chance = 1 / len(self.class_names)
        return chance + (1 - chance) * 4 / 9

    @property
    def pipeline_root(self) -> str:
        return pipeline_root_dir(self.output_dir, self.pipeline_name)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.pipeline_root, "metadata.sqlite")

    @property
    def serving_dir(self) -> str:
        return os.path.join(self.output_dir, "serving")

    @property
    def push_dir(self) -> str:
        """What TF Serving's --model_base_path points at: versions appear under it."""
        return os.path.join(self.serving_dir, self.model_name)

    @property
    def config_path(self) -> str:
        """The settings of the latest `tokenlearner run`, saved for `report`, benchmarks and humans."""
        return os.path.join(self.pipeline_root, CONFIG_FILE)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PipelineConfig":
        values = dict(values)
        trainer = TrainerConfig.from_dict(values.pop("trainer", {}))
        # Sections missing from configs saved by older versions get their defaults.
        sections = {name: section(**_tuples(values.pop(name, {}))) for name, section in _SECTIONS.items()}
        return cls(trainer=trainer, **sections,
                   **{**values, "class_names": tuple(values.get("class_names", CIFAR10_CLASSES))})

    def save(self) -> None:
        os.makedirs(self.pipeline_root, exist_ok=True)
        with open(self.config_path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    @property
    def beam_pipeline_args(self) -> list[str]:
        """Arguments of the Beam profile `beam.profile` (pipeline/config/beam.py); direct = multi-processing."""
        return self.beam.pipeline_args(direct_workers=self.beam_workers, image=self.image)


# Settings sections besides `trainer`: `--set <section>_<field>=v` or `--set <section>.<field>=v` reach them.
_SECTIONS: dict[str, type] = {"beam": BeamConfig, "metadata": MetadataConfig, "vertex": VertexConfig,
                              "resources": ResourcesConfig}
# Section fields also reachable by a bare name: `--set trainer_workers=4` sizes the Vertex AI training job, so it
# lives in VertexConfig, but reads as what it counts. A table, not a search of every section: `--set project=` must
# not silently pick one.
_SHORT_NAMES: dict[str, tuple[str, str]] = {"trainer_workers": ("vertex", "trainer_workers")}


def _tuples(values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON gives lists where the dataclasses hold tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


# Pipeline-level settings of each preset; the trainer part comes from trainer.config.PRESETS.
_PIPELINE_PRESETS: dict[str, dict[str, Any]] = {
    # Accuracy floor at chance level: a 2-epoch model on a few hundred images is only a smoke test.
    "tiny": {"accuracy_floor": 0.0, "regression_tolerance": 1.0},
    "keras_io": {},
    "better": {},  # same model and 20 epochs, a stronger recipe (trainer/config.py)
    "compact": {},  # conv tokenizer + TokenLearner + sequence pooling, the `better` recipe (trainer/config.py)
    "small_images": {},  # `compact` at 16x16 for small images, e.g. digits (trainer/config.py)
}
PRESETS = tuple(_PIPELINE_PRESETS)
DEFAULT_PRESET = "keras_io"


def from_preset(preset: str, data_root: str, **fields: Any) -> PipelineConfig:
    if preset not in _PIPELINE_PRESETS:
        raise ConfigError(f"preset: unknown {preset!r}; expected one of {list(PRESETS)}")
    values = {**_PIPELINE_PRESETS[preset], **fields}
    return PipelineConfig(data_root=data_root, trainer=TRAINER_PRESETS[preset], **values)


def _coerce(field_type: Any, raw: str, name: str) -> Any:
    origin = typing.get_origin(field_type)
    if origin is Union and type(None) in typing.get_args(field_type):
        # Optional[X]: "auto" leaves the choice to the pipeline (accuracy_floor=auto -> relative to chance).
        if raw.strip().lower() == "auto":
            return None
        (field_type,) = [t for t in typing.get_args(field_type) if t is not type(None)]
    try:
        if field_type is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if origin is tuple:
            return tuple(x.strip() for x in raw.split(",") if x.strip())
        if field_type in (int, float, str):
            return field_type(raw)
    except ValueError:
        raise ConfigError(f"{name}: cannot read {raw!r} as {getattr(field_type, '__name__', field_type)}") from None
    raise ConfigError(f"{name}: cannot be set from the command line")


def apply_overrides(config: PipelineConfig, overrides: Mapping[str, str]) -> PipelineConfig:
    """`{"epochs": "1", "accuracy_floor": "0.3", "trainer.num_tokens": "8"}` -> a new config.

    A bare name is looked up in the pipeline fields first, then in `_SHORT_NAMES` (trainer_workers), then as
    `<section>_<field>` (beam_profile, metadata_host, vertex_project), then in the trainer fields; `<section>.<field>` names a section explicitly."""
    top = typing.get_type_hints(PipelineConfig)
    sections = {"trainer": TrainerConfig, **_SECTIONS}
    hints = {name: typing.get_type_hints(cls) for name, cls in sections.items()}
    plain = set(top) - set(sections)
    top_values: dict[str, Any] = {}
    section_values: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for key, raw in overrides.items():
        section, dot, name = key.partition(".")
        retired = name if section == "trainer" and dot else key
        if retired in RETIRED_FIELDS:
            raise ConfigError(f"{key}: {RETIRED_FIELDS[retired]}")
        if dot:
            if section not in sections:
                raise ConfigError(f"{key}: unknown section {section!r}; known: {sorted(sections)}")
            if name not in hints[section]:
                raise ConfigError(f"{key}: unknown {section} field; known: {sorted(hints[section])}")
        elif key in plain:
            top_values[key] = _coerce(top[key], raw, key)
            continue
        elif key in _SHORT_NAMES:
            section, name = _SHORT_NAMES[key]
        else:
            section, _, name = key.partition("_")
            if section not in _SECTIONS or name not in hints[section]:
                section, name = "trainer", key
            if name not in hints[section]:
                known = (plain | set(hints["trainer"]) | set(_SHORT_NAMES)
                         | {f"{s}_{f}" for s in _SECTIONS for f in hints[s]})
                raise ConfigError(f"{key}: unknown setting; known: {sorted(known)}")
        section_values[section][name] = _coerce(hints[section][name], raw, key)
    try:
        replaced = {name: dataclasses.replace(getattr(config, name), **values)
                    for name, values in section_values.items() if values}
        return dataclasses.replace(config, **replaced, **top_values)
    except ValueError as e:  # ConfigError, or TrainerConfig's ValueError: both name the field
        raise ConfigError(str(e)) from None


def for_dataset(config: PipelineConfig, manifest: Mapping[str, Any]) -> PipelineConfig:
    """`config` for the dataset whose manifest.json (written by `tokenlearner data`) is `manifest`: its class names
    (label order) and their count as the head's size; for a class list other than CIFAR-10's, the dataset's own
    schema (`<data_root>/schema.pbtxt`, label domain 0..N-1) unless `schema_path` was set. A CIFAR-10 manifest
    gives `config` back unchanged.

    The class list comes from the data: class names set in `config` that differ from the default and from the
    manifest are an error, not silently replaced."""
    names = manifest.get("class_names")
    if not isinstance(names, (list, tuple)) or len(names) < 2 or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"class_names: expected the dataset manifest's list of at least 2 class names, got "
                          f"{names!r}")
    names = tuple(names)
    if manifest.get("num_classes", len(names)) != len(names):
        raise ConfigError(f"num_classes: the dataset manifest says {manifest['num_classes']} but lists "
                          f"{len(names)} class names")
    if config.class_names not in (CIFAR10_CLASSES, names):
        raise ConfigError(f"class_names: set to {list(config.class_names)}, but the dataset's are {list(names)} "
                          f"(class names come from the data: rename its class folders instead)")
    return for_classes(config, names)


# `--set class_names=cifar10`: CIFAR-10's list by name (a list of one class is never valid, so no name is lost).
CIFAR10_ALIAS = "cifar10"


def parse_class_names(raw: str, where: str = "class_names") -> tuple[str, ...]:
    """The class list given by hand where the dataset's manifest cannot be read (compile/submit): names separated
    by commas in label order, or `cifar10`; at least 2, no repeats."""
    if raw.strip().lower() == CIFAR10_ALIAS:
        return CIFAR10_CLASSES
    names = tuple(n.strip() for n in raw.split(","))
    if len(names) < 2 or not all(names):
        raise ConfigError(f"{where}: expected at least 2 class names separated by commas, in label order (the "
                          f"dataset's classes.txt), or {CIFAR10_ALIAS}; got {raw!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{where}: class name(s) {repeated} given more than once")
    return names


def for_classes(config: PipelineConfig, names: tuple[str, ...]) -> PipelineConfig:
    """`config` with the class list `names` (label order): the head's size follows, and a list other than
    CIFAR-10's takes the dataset's own schema (`<data_root>/schema.pbtxt`, which `tokenlearner data` writes for
    it) unless `schema_path` was set."""
    schema_path = config.schema_path
    if names != CIFAR10_CLASSES and schema_path == DEFAULT_SCHEMA:
        schema_path = f"{config.data_root.rstrip('/')}/{DATASET_SCHEMA}"
    # One replace with both the names and the head's size, so validation sees them consistent.
    return dataclasses.replace(config, class_names=names, schema_path=schema_path,
                               trainer=dataclasses.replace(config.trainer, num_classes=len(names)))


def pipeline_root_dir(output_dir: str, pipeline_name: str) -> str:
    """Where a pipeline's artifacts, metadata and saved config live inside an output folder."""
    return os.path.join(output_dir, "pipeline", pipeline_name)


def load(output_dir: str, pipeline_name: str = DEFAULT_PIPELINE_NAME) -> PipelineConfig:
    """The config the last `tokenlearner run` used with this output folder."""
    path = os.path.join(pipeline_root_dir(output_dir, pipeline_name), CONFIG_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: missing; expected an output folder of `tokenlearner run`")
    with open(path) as f:
        return PipelineConfig.from_dict(json.load(f))


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out
