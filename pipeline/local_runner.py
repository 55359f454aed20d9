"""Local runner: LocalDagRunner, Beam per `config.beam` (DirectRunner multi-processing by default), ML Metadata per
`config.metadata` (SQLite under the pipeline root by default, or a MySQL-compatible server)."""
from __future__ import annotations

import os

from tfx import v1 as tfx

from pipeline.config import metadata
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline


def run(config: PipelineConfig) -> None:
    os.makedirs(config.pipeline_root, exist_ok=True)
    connection = metadata.connection_config(config.metadata, config.metadata_path)
    metadata.check_connection(config.metadata, connection)  # a clear error naming the field, before any work
    config.beam.check_job_server()  # likewise for a Flink or Spark job server
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, metadata_connection_config=connection))
