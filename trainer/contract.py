"""The contract between the pipeline graph and the code its components run, in one place and without TensorFlow.

The graph (pipeline/pipeline.py), ingestion (components/ingest.py), the ExampleValidator, the Trainer
(trainer/run.py), the Pusher, the serving client and the run inspection (inspection/) import these names
instead of spelling the strings, so the two sides cannot drift apart. Nothing here imports TensorFlow: the CLI,
ingestion workers and the report's MLMD reading import it cheaply.
"""
from __future__ import annotations

# Module paths TFX loads inside the Transform and Trainer executors (also inside the container image).
PREPROCESSING_FN = "trainer.preprocessing.preprocessing_fn"
RUN_FN = "trainer.run.run_fn"

# Keys of the Trainer's custom_config (the graph writes them, run_fn reads them).
TRAINER_CONFIG_KEY = "trainer_config"
CLASS_NAMES_KEY = "class_names"
BACKUP_DIR_KEY = "backup_dir"  # where epoch checkpoints outlive a killed run (trainer/checkpoints.py)
MODEL_NAME_KEY = "model_name"  # TF Serving model name, written into the warmup requests
# Key of the Transform's custom_config: the side preprocessing_fn resizes every image to (TrainerConfig.input_size).
INPUT_SIZE_KEY = "input_size"

# Files of a dataset folder that ingestion writes and the pipeline's settings read (pipeline.config.for_dataset):
# the class list and split sizes, and, for a class list other than CIFAR-10's, the schema with label domain 0..N-1.
DATASET_MANIFEST = "manifest.json"
DATASET_SCHEMA = "schema.pbtxt"

# Split names, as ingestion writes them (<dataset>/<split>/*.tfrecord.gz) and ImportExampleGen reads them.
TRAIN, EVAL, TEST = "train", "eval", "test"
SPLITS = (TRAIN, EVAL, TEST)
SHARD_SUFFIX = ".tfrecord.gz"  # ingestion's GZIP TFRecord shards; ImportExampleGen's pattern is <split>/*<suffix>
SHARD_GLOB = f"*{SHARD_SUFFIX}"

# Spans (`tokenlearner data --append`): span 0 is the dataset as first written (<split>/data-*<suffix>); span N >= 1
# adds <split>/span-NNNN-*<suffix> beside it, so <split>/SHARD_GLOB reads every span and old datasets are span 0.
SPAN_SHARD_PREFIX = "span-"
SPANS_DIR = "spans"  # <dataset>/spans/span-N.stats.pb: TFDV statistics of span N's images (drift between spans)
SPAN_IMAGE_FEATURES = ("height", "width", "brightness")  # with the label: what the drift check compares
SPANS_PROPERTY = "spans"  # custom property of an Examples artifact: the spans it holds, e.g. "0,1,2"
SPANS_FILE = "spans.json"  # in the same Examples artifact's folder, {"spans": [0, 1, 2]}: what the Trainer reads


def shard_name(span: int, shard: int, num_shards: int) -> str:
    """The file name of one TFRecord shard of `span` (span 0 keeps the names datasets always had)."""
    prefix = "data" if span == 0 else f"{SPAN_SHARD_PREFIX}{span:04d}"
    return f"{prefix}-{shard:05d}-of-{num_shards:05d}{SHARD_SUFFIX}"


def span_of_shard(file_name: str) -> int:
    """The span of a shard file written by `shard_name` (any other name is span 0: datasets before spans)."""
    base = file_name.rsplit("/", 1)[-1]
    if base.startswith(SPAN_SHARD_PREFIX):
        return int(base[len(SPAN_SHARD_PREFIX):].split("-", 1)[0])
    return 0


def span_stats_path(span: int) -> str:
    """Where span `span`'s statistics live, relative to the dataset folder."""
    return f"{SPANS_DIR}/span-{span}.stats.pb"


# Node ids of the graph, as ML Metadata records them (the run summary and the report look components up by them).
EXAMPLE_GEN = "ImportExampleGen"
STATISTICS_GEN = "StatisticsGen"
IMPORT_SCHEMA_GEN = "ImportSchemaGen"  # the curated schema; SCHEMA_GEN when schema_path=infer
SCHEMA_GEN = "SchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
TRANSFORM = "Transform"
TRAINER = "Trainer"
EVALUATOR = "Evaluator"
PUSHER = "Pusher"
RESOLVER = "latest_blessed_model_resolver"  # the latest blessed model: the Evaluator's baseline

# Sub-paths inside artifacts.
SERVING_MODEL_DIR = "Format-Serving"  # TFX: the SavedModel inside the Trainer's Model artifact
ASSETS_EXTRA = "assets.extra"  # SavedModel folder TF Serving reads extras from (warmup requests); ours too
CLASS_NAMES_FILE = "class_names.txt"  # under ASSETS_EXTRA: one class name a line, in class-id order
CLASS_NAMES_ASSET = f"{ASSETS_EXTRA}/{CLASS_NAMES_FILE}"
MODEL_STATS_FILE = "model_stats.json"  # trainer/flops.py: parameters, FLOPs, training precision (model_run dir)
HISTORY_FILE = "history.csv"  # model_run dir: the per-epoch metrics of the fit (trainer/checkpoints.py)
# model_run dir: how the Trainer started (trainer/warm_start.py writes, the summary and report read): {"spans": [0, 1],
# "epochs": n, "warm_start_from": the base model's path or null, "base_spans": [0], "scratch_reason": "..." when not
# warm, "examples": the Examples artifact, "unchanged_from"/"trained_in": set when no new data (a re-export)}.
TRAINING_FACTS_FILE = "training.json"
EPOCH_TIMES_FILE = "epoch_times.csv"  # model_run dir: each epoch's wall seconds, across resumes (same)
# Its columns; files written before the last two have rows without them, which read as trained_with "?".
EPOCH_TIMES_COLUMNS = ("epoch", "seconds", "ended_utc", "fit_started_utc", "precision", "jit_compile")

# time.strftime format of the UTC stamps in the files we write ("2026-12-07T05:19:14Z"): the dataset manifest's
# created_utc, epoch_times.csv's ended_utc and fit_started_utc, the Trainer's export marker.
UTC_STAMP = "%Y-%m-%dT%H:%M:%SZ"


SPLIT_PREFIX = "Split-"  # TFX: the folder of split <name> in an Examples or statistics artifact is Split-<name>


def split_dir(split: str) -> str:
    """The folder of one split inside an Examples (or statistics) artifact."""
    return f"{SPLIT_PREFIX}{split}"


def trained_with(row: dict) -> str:
    """How one epoch_times.csv row trained, "float32/on" (precision/XLA); "?" for a row older than those columns.
    The Trainer's resume warning and the run summary both spell it so."""
    return "/".join(filter(None, (row.get("precision"), row.get("jit_compile")))) or "?"
