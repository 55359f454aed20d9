"""Pusher executor that publishes a model version atomically and never pushes the same model twice.

TFX's stock Pusher copies files straight into `<base>/<version>/`, so a model server polling the folder can see a
half-written version, and a re-run whose Evaluator re-blesses the same model (now with itself as the baseline)
pushes a duplicate version. Here the version is written under a hidden name (`.tmp-<version>`, which TF Serving
ignores: versions must be numbers) and renamed into place in one step; a model already published is recorded
as pushed at its existing version. "Already published" is by the Trainer model a version holds: the model itself, or
the one a Trainer without new data re-exported unchanged (trainer/warm_start.py `source_model`), so a scheduled
re-run on the same spans pushes nothing new either.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from trainer import warm_start
from trainer.contract import ASSETS_EXTRA

SOURCE_FILE = f"{ASSETS_EXTRA}/tokenlearner_source.json"  # which Trainer model a version holds


def published_versions(base: str) -> list[int]:
    if not fileio.exists(base):
        return []
    names = [os.fsdecode(name).rstrip("/") for name in fileio.listdir(base)]  # listdir is typed str | bytes
    return sorted(int(name) for name in names if name.isdigit())


def _source_of(version_dir: str) -> str | None:
    path = os.path.join(version_dir, SOURCE_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path) as f:
        return json.loads(f.read()).get("model_uri")


def publish(model_path: str, base: str, model_uri: str) -> tuple[str, bool]:
    """Copies `model_path` to a new version under `base` unless a version holds the Trainer model `model_uri` (the
    model whose training produced the weights: warm_start.source_model); returns (version, newly written)."""
    for version in reversed(published_versions(base)):
        if _source_of(os.path.join(base, str(version))) == model_uri:
            return str(version), False
    existing = published_versions(base)
    version = max(int(time.time()), existing[-1] + 1 if existing else 0)
    staging = os.path.join(base, f".tmp-{version}")
    if fileio.exists(staging):
        fileio.rmtree(staging)
    io_utils.copy_dir(model_path, staging)
    fileio.makedirs(os.path.dirname(os.path.join(staging, SOURCE_FILE)))
    with fileio.open(os.path.join(staging, SOURCE_FILE), "w") as f:
        f.write(json.dumps({"model_uri": model_uri, "pushed_at": time.time()}))
    final = os.path.join(base, str(version))
    if "://" in base:  # object stores (gs://) cannot rename folders: copy, saved_model.pb last, as TFX does
        io_utils.copy_dir(staging, final, deny_regex_patterns=[r"saved_model\.pb"])
        io_utils.copy_file(os.path.join(staging, "saved_model.pb"), os.path.join(final, "saved_model.pb"))
        fileio.rmtree(staging)
    else:
        fileio.rename(staging, final)
    return str(version), True


class AtomicPusherExecutor(pusher_executor.Executor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base = destination.filesystem.base_directory
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        version, written = publish(self.GetModelPath(input_dict), base, warm_start.source_model(model.uri))
        logging.info("Model %s %s %s.", model.uri, "published as" if written else "already published as",
                     os.path.join(base, version))
        self._MarkPushed(model_push, pushed_destination=os.path.join(base, version), pushed_version=version)
