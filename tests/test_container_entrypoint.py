"""The compiled Kubeflow V2 spec's own container commands run here: ImportSchemaGen, Transform, Trainer and Pusher
start exactly as the spec tells the KFP launcher to start them (`python -m
tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor --executor_class_path ... {{$}} <beam args>`),
with the ExecutorInput the launcher would pass, and write what the next step reads. The project comes from a
plain install (`pip install --no-deps .` into a folder of its own, as deploy/Dockerfile does), first on the path,
with the image's environment, in an empty working folder: the module paths, the custom executors and the packaged
schema all resolve as they would inside the container.

What differs from a cluster, and why: local folders stand in for gs:// (the spec's paths are rewritten, nothing
else); the inputs that come from steps not run here are made directly: ImportExampleGen's Examples are the tiny
dataset's shards in the Split-* layout the component writes, and the Evaluator's blessing is the artifact its entry
point reports for a blessed model (`blessed: 1.0`). StatisticsGen, ExampleValidator and Evaluator are plain Beam /
TFDV / TFMA runs of the same entry point, left out to keep CI short.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from components import ingest
from components.schema import PACKAGE_SCHEME, PACKAGED_SCHEMA
import cli
from tests import kfp_launcher
from tests.helpers import REPO, write_image_folder
from trainer.contract import SPLITS

pytestmark = pytest.mark.slow

BUCKET = "gs://tokenlearner-ci"
IMAGE = "europe-west4-docker.pkg.dev/proj/tokenlearner/tokenlearner:ci"


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    """The Kubeflow V2 spec as a user compiles it: nothing but image, data root and output (tiny preset, 1 epoch)."""
    out = tmp_path_factory.mktemp("spec") / "pipeline.json"
    assert cli.main(["compile", "--target", "kubeflow", "--image", IMAGE, "--data-root", f"{BUCKET}/data",
                     "--output", f"{BUCKET}/out", "--preset", "tiny", "--set", "epochs=1", "--out", str(out),
                     "--set", "class_names=cifar10"]) == 0  # CIFAR-10's classes (write_image_folder's)
    return json.loads(out.read_text())["pipelineSpec"]


@pytest.fixture(scope="module")
def installed(installed_project) -> Path:
    """`pip install --no-deps .` into a folder of its own: the session's one install (tests/conftest.py), shared
    with test_compile.py."""
    return installed_project


@pytest.fixture(scope="module")
def runs(spec, installed, tmp_path_factory) -> dict[str, kfp_launcher.TaskRun]:
    root = tmp_path_factory.mktemp("run")
    # 100 synthetic 32x32 PNGs per split (ingestion carves every 10th training image per class into eval).
    dataset = ingest.prepare(str(write_image_folder(root / "images", per_class=10)), root / "data")
    bucket = root / "bucket"

    def rewrite(value: str) -> str:
        return value.replace(BUCKET, str(bucket))

    # The image's environment (deploy/Dockerfile ENV): its venv first on PATH, Keras 2; plus the installed project.
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(installed),
           "TF_USE_LEGACY_KERAS": "1", "PYTHONUNBUFFERED": "1", "HOME": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}

    def run(task: str, **inputs: dict) -> kfp_launcher.TaskRun:
        return kfp_launcher.run_task(spec, task, inputs, root / "tasks", env, rewrite)

    examples_dir = root / "ImportExampleGen" / "examples"
    for split in SPLITS:
        shutil.copytree(dataset / split, examples_dir / f"Split-{split}")
    examples = {"split_names": json.dumps(list(SPLITS)), "span": 0.0, "version": 0.0}
    schema = run("ImportSchemaGen")
    schema_in = {"uri": schema.outputs["schema"]["uri"], "metadata": schema.outputs["schema"].get("metadata")}
    transform = run("Transform", examples=kfp_launcher.artifact(spec, "Transform", "examples", examples_dir, examples),
                    schema=kfp_launcher.artifact(spec, "Transform", "schema", **schema_in))
    trainer = run("Trainer", examples=kfp_launcher.artifact(spec, "Trainer", "examples", examples_dir, examples),
                  transform_graph=kfp_launcher.artifact(spec, "Trainer", "transform_graph",
                                                        transform.outputs["transform_graph"]["uri"]),
                  schema=kfp_launcher.artifact(spec, "Trainer", "schema", **schema_in),
                  # The latest-blessed-model resolver on a first run: nothing blessed yet, no warm start.
                  base_model=[])
    blessing_dir = root / "Evaluator" / "blessing"
    blessing_dir.mkdir(parents=True)
    (blessing_dir / "BLESSED").touch()
    pusher = run("Pusher", model=kfp_launcher.artifact(spec, "Pusher", "model", trainer.outputs["model"]["uri"]),
                 model_blessing=kfp_launcher.artifact(spec, "Pusher", "model_blessing", blessing_dir,
                                                      {"blessed": 1.0}))
    print({name: round(r.seconds, 1) for name, r in
           (("ImportSchemaGen", schema), ("Transform", transform), ("Trainer", trainer), ("Pusher", pusher))})
    return {"ImportSchemaGen": schema, "Transform": transform, "Trainer": trainer, "Pusher": pusher,
            "bucket": bucket}


def test_import_schema_gen_copies_the_schema_of_the_installed_package(runs, installed):
    run = runs["ImportSchemaGen"]
    assert "--executor_class_path" in run.command
    assert run.command[run.command.index("--executor_class_path") + 1] == \
        "components.schema_gen.PackagedSchemaExecutor"
    in_package = PACKAGED_SCHEMA.removeprefix(PACKAGE_SCHEME)  # e.g. pipeline/config/schema/schema.pbtxt
    assert f"Schema {PACKAGED_SCHEMA} resolved to {installed / in_package}" in run.log
    copied = run.uri("schema") / "schema.pbtxt"
    assert copied.read_text() == (REPO / in_package).read_text()


def test_transform_writes_the_graph_of_the_installed_preprocessing_fn(runs):
    graph = runs["Transform"].uri("transform_graph")
    assert (graph / "transform_fn" / "saved_model.pb").is_file()
    assert (graph / "transformed_metadata" / "schema.pbtxt").is_file()
    assert "trainer.preprocessing.preprocessing_fn" in " ".join(runs["Transform"].command)


def test_trainer_exports_a_serving_model(runs):
    model = runs["Trainer"].uri("model")
    assert (model / "Format-Serving" / "saved_model.pb").is_file()
    assert (model / "Format-Serving" / "variables").is_dir()
    assert "trainer.run.run_fn" in " ".join(runs["Trainer"].command)


def test_pusher_publishes_a_numbered_version_where_the_spec_says(runs):
    pushed = runs["Pusher"].outputs["pushed_model"]
    assert pushed["metadata"]["pushed"] == 1.0
    base = runs["bucket"] / "out" / "serving" / "tokenlearner"
    (version,) = [p for p in base.iterdir() if not p.name.startswith(".")]
    assert version.name.isdigit() and (version / "saved_model.pb").is_file()
    assert pushed["metadata"]["pushed_destination"] == str(version)
