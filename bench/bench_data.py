"""Shared set-up of the benchmarks: the TFRecord dataset and a Transform graph, built the way the pipeline does.

- `dataset(...)`: `components.ingest.prepare`, the code `tokenlearner data` / `run` use (reused when present).
- `transform_output(...)`: `tft_beam.AnalyzeDataset` of `trainer.preprocessing.preprocessing_fn` over the train
  split, with the pipeline's curated schema (pipeline/config/schema/schema.pbtxt): the graph the Transform component
  writes. Or pass `--transform` with a pipeline run's `Transform/transform_graph/<id>` folder.
- `run_fn()`, `fn_args(...)`: the Trainer's entry point (`trainer.run.run_fn`) and the FnArgs TFX hands it.
"""
from __future__ import annotations

import glob
import logging
import os
import tempfile
import warnings
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", category=FutureWarning)  # google-api-core's Python 3.10 notices

from components import ingest  # noqa: E402
from components import schema as schema_lib  # noqa: E402
from trainer import contract  # noqa: E402  (no TensorFlow)

REPO = Path(__file__).resolve().parents[1]
SCHEMA = Path(schema_lib.resolve(schema_lib.PACKAGED_SCHEMA))  # the pipeline's default, curated schema
log = logging.getLogger("bench")


def machine() -> str:
    """One line: CPU model, family/model, cores, memory, load (benchmarks share this machine)."""
    info: dict[str, str] = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model {info.get('model', '?')}, "
            f"{info.get('cpu MHz', '?')} MHz), {os.cpu_count()} CPUs, {mem_gib:.0f} GiB RAM; load average {load}")


def dataset(source: str, work: Path, limit: int | None = None) -> Path:
    return ingest.prepare(source, work / "data", limit=limit)


def split_files(dataset_dir: Path, split: str) -> list[str]:
    files = sorted(glob.glob(str(dataset_dir / split / contract.SHARD_GLOB)))
    if not files:
        raise FileNotFoundError(f"{dataset_dir / split}: no {contract.SHARD_GLOB} files")
    return files


def transform_output(dataset_dir: Path, work: Path) -> str:
    """Analyzes the train split once (Beam DirectRunner in process); reused by later calls."""
    out = work / "transform" / dataset_dir.name
    if (out / "transform_fn").is_dir():
        return str(out)
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
    from tfx_bsl.public import tfxio

    from trainer.preprocessing import preprocessing_fn

    schema = text_format.Parse(SCHEMA.read_text(), schema_pb2.Schema())
    source = tfxio.TFExampleRecord(file_pattern=split_files(dataset_dir, "train"), schema=schema)
    staging = work / "transform" / f".staging-{os.getpid()}"
    with tempfile.TemporaryDirectory(dir=work) as tmp, beam.Pipeline() as p, tft_beam.Context(temp_dir=tmp):
        raw = p | "Read" >> source.BeamSource()
        transform_fn = (raw, source.TensorAdapterConfig()) | tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(str(staging))
    # The raw schema beside the graph, as the Transform component writes it (TFTransformOutput.raw_feature_spec).
    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schema), str(staging / "metadata"))
    staging.rename(out)
    log.info("wrote the Transform graph %s", out)
    return str(out)


def run_fn():
    """The Trainer's entry point, loaded by its module path (trainer.contract.RUN_FN) as the TFX Trainer does."""
    import importlib

    module, _, name = contract.RUN_FN.rpartition(".")
    return getattr(importlib.import_module(module), name)


def fn_args(dataset_dir: Path, transform_dir: str, run_dir: Path, trainer_config: dict, class_names: list[str]):
    """What the TFX Trainer executor passes to run_fn (train = `train` split, eval = `eval` split)."""
    from tfx import v1 as tfx

    from trainer.serving_api import DEFAULT_MODEL_NAME

    custom = {contract.TRAINER_CONFIG_KEY: trainer_config, contract.CLASS_NAMES_KEY: class_names,
              contract.BACKUP_DIR_KEY: str(run_dir / "backup"), contract.MODEL_NAME_KEY: DEFAULT_MODEL_NAME}
    return tfx.components.FnArgs(
        train_files=split_files(dataset_dir, contract.TRAIN), eval_files=split_files(dataset_dir, contract.EVAL),
        transform_output=transform_dir, transform_graph_path=transform_dir,
        serving_model_dir=str(run_dir / "serving"), model_run_dir=str(run_dir / "model_run"),
        custom_config=custom)
