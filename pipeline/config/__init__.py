"""The pipeline's settings: one typed, frozen `PipelineConfig` and its sections, each in its own module.

- pipeline_config.py: `PipelineConfig` (paths, blessing thresholds, the trainer settings), named presets,
  `--set key=value` overrides, the config.json a run saves, and `for_dataset` (class list, head size and schema
  from the dataset's manifest);
- beam.py: `BeamConfig`, the Beam profiles (direct, Dataflow, Flink, Spark) of the data-heavy components;
- metadata.py: `MetadataConfig`, where ML Metadata lives (SQLite or MySQL) and its connection;
- vertex.py: `VertexConfig`, Vertex AI Pipelines and custom-training settings;
- resources.py: `ResourcesConfig`, each component's container cpu/memory (and the Trainer's GPUs) on Kubeflow/Vertex;
- schedule.py: `CronSchedule`, the `submit --schedule` cron, checked and converted per backend (Vertex, Kubeflow);
- errors.py: `ConfigError`, raised by every section with the field's name;
- schema/schema.pbtxt: the curated schema every split is validated against (the default `schema_path`).

The names below are the package's API (`from pipeline import config as config_lib`); they are defined in the
modules above.
"""
from pipeline.config.errors import ConfigError
from pipeline.config.pipeline_config import (DEFAULT_PRESET, DEFAULT_SCHEMA, PRESETS, PipelineConfig,
                                             apply_overrides, for_dataset, from_preset, load, parse_overrides)

__all__ = ["ConfigError", "DEFAULT_PRESET", "DEFAULT_SCHEMA", "PRESETS", "PipelineConfig", "apply_overrides",
           "for_dataset", "from_preset", "load", "parse_overrides"]
