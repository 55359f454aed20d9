"""ImportSchemaGen that also takes `package:` names (components/schema.py), resolved where the executor runs.

The stock ImportSchemaGen copies `schema_file` from a path every worker can read. With the default schema, a data
file of the installed project, that path differs between this checkout and the container image, so the compiled
spec carries the package name and this executor finds the file in the package it runs with.
"""
from __future__ import annotations

from typing import Any

from absl import logging
from tfx import types
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.components.schema_gen.import_schema_gen import executor as import_schema_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs

from components import schema


class PackagedSchemaExecutor(import_schema_executor.Executor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        key = standard_component_specs.SCHEMA_FILE_KEY
        source = exec_properties.get(key, "")
        resolved = schema.resolve(source)
        if resolved != source:
            logging.info("Schema %s resolved to %s", source, resolved)
        super().Do(input_dict, output_dict, {**exec_properties, key: resolved})


class PackagedImportSchemaGen(ImportSchemaGen):
    """`ImportSchemaGen(schema_file=...)` with `package:` names allowed; use `.with_id("ImportSchemaGen")`."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(PackagedSchemaExecutor)
