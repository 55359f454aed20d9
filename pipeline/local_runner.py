"""Local runner: LocalDagRunner, Beam DirectRunner (multi-processing), ML Metadata in SQLite under the root."""
from __future__ import annotations

import os

from tfx import v1 as tfx

from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline


def run(config: PipelineConfig) -> None:
    os.makedirs(config.pipeline_root, exist_ok=True)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, metadata_connection_config=metadata))
