"""The `tokenlearner infer` job: settings, the Beam pipeline around RunInference, its outputs and the final count.

The graph, per input file (sources.py) and per image:

    MatchFiles(--data) -> Reshuffle -> read each file -> [Reshuffle, when archives/TFRecords hold the images]
      -> header check -> RunInference(serving_default, batches of --batch-size).with_exception_handling()
      -> top-k lines -> predictions-*.jsonl|.csv
    failed batches -> their images one by one: RunInference(batches of 1).with_exception_handling()
      -> more predictions, or "rejected by the model: REASON"
    unreadable files, header-check refusals, rejected images -> errors-*.jsonl

The header check reads what each image's header declares with the serving signature's own reader
(trainer.image_header.declared_size: TensorFlow's format classification, libjpeg's header parser), which decodes
nothing: bytes of no format the signature decodes (a text file, an empty or truncated header) are refused here,
so they do not fail whole batches. What only decoding shows (a truncated JPEG body, a header over the model's pixel
limit: the signature's own check) fails the batch inside RunInference; Beam's dead-letter output then carries that
batch, whose images are sent again one by one, so only the bad ones become error records, with the signature's
own reason.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from typing import Any, Iterator, Optional, Sequence

import apache_beam as beam

from components.sources import DataError
from inference import FORMATS
from inference import handler as handler_lib
from inference import sources
from trainer import serving_api
from trainer.exit_codes import EXIT_JOB_FAILED, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE

log = logging.getLogger(__name__)

PREDICTIONS_PREFIX = "predictions"  # <out>/predictions-SSSSS-of-NNNNN.<format>
ERRORS_PREFIX = "errors"  # <out>/errors-SSSSS-of-NNNNN.jsonl
ERRORS_SUFFIX = ".jsonl"
# WriteToText's staging folders, <out>/beam-temp-<prefix>-<uuid>: Beam deletes them once the shards are in place, a
# failed job leaves them behind; run() deletes them either way, and --overwrite deletes a previous run's.
TEMP_PREFIXES = tuple(f"beam-temp-{prefix}-" for prefix in (PREDICTIONS_PREFIX, ERRORS_PREFIX))
PROGRESS_EVERY_S = 5.0  # a progress line at most this often, per worker process


class InferError(Exception):
    """Stops the command before the job runs: one message, one exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code


@dataclasses.dataclass(frozen=True)
class InferSettings:
    """What to classify with which model, where the predictions go, and the Beam arguments of the job."""

    model: str  # a SavedModel version folder or a model base folder (its highest version), local or gs://
    data: str  # image folder or file, archive, TFRecords, or a glob of them; local or gs://
    out: str  # folder of the predictions-* and errors-* shards
    version: Optional[int] = None  # with a model base folder: this version instead of the highest
    top_k: int = 3  # classes per image in the output, most probable first
    format: str = "jsonl"  # jsonl | csv
    batch_size: int = 64  # images per call of the signature
    num_shards: int = 0  # prediction shards; 0 = as the runner parallelizes
    overwrite: bool = False  # replace the predictions-*/errors-* files of a previous run in --out
    beam_args: tuple[str, ...] = ()  # the Beam profile's pipeline arguments (pipeline.config.beam)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InferError(f"--format: expected one of {list(FORMATS)}, got {self.format!r}")
        for name, low in (("top_k", 1), ("batch_size", 1), ("num_shards", 0)):
            if getattr(self, name) < low:
                raise InferError(f"--{name.replace('_', '-')}: expected >= {low}, got {getattr(self, name)}")
        if self.version is not None and self.version < 0:
            raise InferError(f"--version: expected a non-negative integer, got {self.version}")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The counts of a finished job, read back from its outputs."""

    classified: int
    errors: int
    seconds: float
    prediction_files: tuple[str, ...]
    error_files: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.errors else EXIT_OK


# -------------------------------------------------------------------------------------------- --out, before the job

def _listing(folder: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    if "://" not in folder and not os.path.isdir(folder):
        if os.path.exists(folder):
            raise InferError(f"--out {folder}: a file, expected a folder")
        return []
    return sorted(m.path for m in FileSystems.match([FileSystems.join(folder, "**")])[0].metadata_list)


def _ours(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.startswith((f"{PREDICTIONS_PREFIX}-", f"{ERRORS_PREFIX}-"))


def remove_temp_dirs(out: str) -> list[str]:
    """Deletes the beam-temp-predictions-*/beam-temp-errors-* staging folders in `out` (TEMP_PREFIXES); returns
    them. Local folders are removed whole; on an object store, the objects under them."""
    from apache_beam.io.filesystems import FileSystems

    base = out.rstrip("/")
    if "://" not in base:
        found = sorted(os.path.join(base, name) for name in (os.listdir(base) if os.path.isdir(base) else [])
                       if name.startswith(TEMP_PREFIXES))
        for path in found:
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        return found
    objects = [m.path for prefix in TEMP_PREFIXES
               for m in FileSystems.match([f"{base}/{prefix}*/**"])[0].metadata_list]
    if objects:
        FileSystems.delete(objects)
    return sorted({path[len(base) + 1:].split("/")[0] for path in objects})


def prepare_out(settings: InferSettings) -> None:
    """Refuses an --out that holds files (nothing already produced is lost), unless --overwrite: then deletes the
    predictions-*/errors-* files there (a previous run's), and only those."""
    from apache_beam.io.filesystems import FileSystems

    existing = _listing(settings.out)
    if existing and not settings.overwrite:
        raise InferError(f"--out {settings.out}: not empty ({len(existing):,} files, e.g. {existing[0]}); choose a "
                         f"new or empty folder, or give --overwrite to replace the {PREDICTIONS_PREFIX}-*/"
                         f"{ERRORS_PREFIX}-* files there")
    previous = [p for p in existing if _ours(p)]
    if previous:
        FileSystems.delete(previous)
        log.info("infer: --overwrite: deleted %d files of a previous run in %s", len(previous), settings.out)
    if existing and remove_temp_dirs(settings.out):
        log.info("infer: --overwrite: deleted the beam-temp-* folders a failed run left in %s", settings.out)
    if "://" not in settings.out:
        # A folder the job cannot write to fails the job only after every image was classified: find out now.
        probe = os.path.join(settings.out, f".tokenlearner-infer-probe-{uuid.uuid4().hex}")
        try:
            os.makedirs(settings.out, exist_ok=True)
            with open(probe, "wb"):
                pass
            os.remove(probe)
        except OSError as e:
            raise InferError(f"--out {settings.out}: cannot write there ({e.strerror or type(e).__name__})") from None


# ------------------------------------------------------------------------------------------------ the job's steps

class _Progress:
    """Counts the images this worker process has finished and logs a line at most every PROGRESS_EVERY_S (in the
    CLI's own process with the in-process runners: the whole job's count)."""

    _lock = threading.Lock()
    _done = 0
    _errors = 0
    _started: Optional[float] = None
    _last = 0.0

    @classmethod
    def reset(cls) -> None:
        """A new job in this process (tests, or a script calling run() twice) counts from zero."""
        with cls._lock:
            cls._done = cls._errors = 0
            cls._started, cls._last = None, 0.0

    @classmethod
    def add(cls, total: int, counted: bool, error: bool) -> None:
        with cls._lock:
            now = time.monotonic()
            if cls._started is None:
                cls._started = cls._last = now
            cls._done += 1
            cls._errors += error
            if now - cls._last < PROGRESS_EVERY_S:
                return
            cls._last = now
            done, errors, rate = cls._done, cls._errors, cls._done / max(now - cls._started, 1e-9)
        of = f" of {total:,}" if counted else ""
        log.info("infer: %s images done%s (%s errors), %.0f img/s%s", f"{done:,}", of, f"{errors:,}", rate,
                 "" if os.getpid() == _DRIVER_PID else f" (worker process {os.getpid()})")


_DRIVER_PID = os.getpid()


class _Read(beam.DoFn):
    """Every image of one input file: (key, bytes), or (key, reason) on the errors output."""

    def process(self, path: str) -> Iterator[Any]:
        for key, value in sources.read(path):
            yield (key, value) if isinstance(value, bytes) else beam.pvalue.TaggedOutput("errors", (key, value))


class _HeaderCheck(beam.DoFn):
    """(key, bytes) passes when the signature's header reader knows its format; else (key, reason) on errors."""

    def setup(self) -> None:
        import tensorflow as tf

        from trainer import image_header

        self._tf = tf
        self._declared_size = tf.function(image_header.declared_size,
                                          input_signature=[tf.TensorSpec([], tf.string)])

    def process(self, element: tuple[str, bytes]) -> Iterator[Any]:
        key, data = element
        try:
            width, height = self._declared_size(self._tf.constant(data)).numpy()
        except self._tf.errors.OpError as e:
            yield beam.pvalue.TaggedOutput("errors", (key, f"not an image the model decodes: "
                                                          f"{serving_api.tf_error_line(e.message)}"))
            return
        if width == 0 or height == 0:
            yield beam.pvalue.TaggedOutput("errors", (key, "not an image the model decodes: no PNG, JPEG, GIF or "
                                                           "BMP header of a non-empty image"))
            return
        yield element


def csv_header(top_k: int) -> str:
    columns = ["file", "class_id", "class_name"]
    for rank in range(1, top_k + 1):
        columns += [f"top{rank}_class", f"top{rank}_probability"]
    return _csv_row(columns)


def _csv_row(values: Sequence[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values)
    return buffer.getvalue()


def prediction_record(key: str, inference: tuple[Any, int, str], class_names: Optional[Sequence[str]],
                      top_k: int) -> dict[str, Any]:
    """One image's output, as `tokenlearner predict --json` writes it (serving_client.predict.FileResult): file,
    class_id, class_name, top_k [{class_name, probability}] most probable first (ties: the lower class id)."""
    probabilities, class_id, top_name = inference
    names = class_names if class_names is not None and len(class_names) == len(probabilities) else None

    def name(i: int) -> str:  # a model without class_names.txt: the signature names its top class only
        return names[i] if names else (top_name if i == class_id else f"class {i}")

    order = sorted(range(len(probabilities)), key=lambda i: (-probabilities[i], i))[:top_k]
    return {"file": key, "class_id": class_id, "class_name": name(class_id),
            "top_k": [{"class_name": name(i), "probability": float(probabilities[i])} for i in order]}


def _format_prediction(element, class_names, top_k: int, fmt: str, total: int, counted: bool) -> str:
    key, result = element
    record = prediction_record(key, result.inference, class_names, top_k)
    _Progress.add(total, counted, error=False)
    if fmt == "jsonl":
        return json.dumps(record)
    row = [record["file"], record["class_id"], record["class_name"]]
    for entry in record["top_k"]:
        row += [entry["class_name"], entry["probability"]]
    return _csv_row(row)


def _format_error(element: tuple[str, str], total: int, counted: bool) -> str:
    key, reason = element
    _Progress.add(total, counted, error=True)
    return json.dumps({"file": key, "error": reason})


def _rejected_images(failed) -> list[tuple[str, str]]:
    """A batch Beam's dead-letter output holds (its (key, bytes) elements, (type, repr, traceback)) -> one error
    record per image."""
    batch, (_, reason, _) = failed
    return [(key, f"rejected by the model: {reason}") for key, _ in batch]


# --------------------------------------------------------------------------------------------------- the command

def build(pipeline, settings: InferSettings, model_dir: str, inventory: sources.Inventory,
          class_names: Optional[Sequence[str]]) -> None:
    """Adds the job to `pipeline` (the graph in the module docstring)."""
    from apache_beam.io import fileio
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

    total, counted = inventory.images, inventory.counted
    files = (pipeline
             | "MatchData" >> fileio.MatchFiles(inventory.pattern)
             | "KnownKinds" >> beam.FlatMap(lambda m: [m.path] if sources.kind_of(m.path) else [])
             | "SpreadFiles" >> beam.Reshuffle())
    read = files | "Read" >> beam.ParDo(_Read()).with_outputs("errors", main="images")
    images = read.images
    if inventory.files[sources.ARCHIVE] or inventory.files[sources.TFRECORDS]:
        images = images | "SpreadImages" >> beam.Reshuffle()  # a container's images are read by one worker
    checked = images | "HeaderCheck" >> beam.ParDo(_HeaderCheck()).with_outputs("errors", main="images")

    job_id = uuid.uuid4().hex  # the two handlers share one model load per worker process
    batched = handler_lib.ServingSignatureHandler(model_dir, settings.batch_size, job_id=job_id)
    predictions, dead = (checked.images | "RunInference" >> RunInference(KeyedModelHandler(batched))
                         .with_exception_handling(exc_class=handler_lib.Rejected))
    # A failed batch's images, one by one: only the images the signature rejects alone are errors.
    one_by_one = handler_lib.ServingSignatureHandler(model_dir, batch_size=1, job_id=job_id)
    retried, still_dead = (dead.failed_inferences
                           | "FailedBatchImages" >> beam.FlatMap(lambda failed: failed[0])
                           | "RunInferenceOneByOne" >> RunInference(KeyedModelHandler(one_by_one))
                           .with_exception_handling(exc_class=handler_lib.Rejected))
    rejected = still_dead.failed_inferences | "RejectedImages" >> beam.FlatMap(_rejected_images)

    # Formatted (and counted for the progress lines) on each branch before the Flatten: a runner may end a fused
    # stage at a Flatten, and the count must move while batches are classified, not after all of them.
    suffix = f".{settings.format}"
    header = csv_header(settings.top_k) if settings.format == "csv" else None
    lines = [branch | f"Format{name}" >> beam.Map(_format_prediction, class_names, settings.top_k, settings.format,
                                                  total, counted)
             for name, branch in (("Predictions", predictions), ("RetriedPredictions", retried))]
    _ = (lines
         | "AllPredictions" >> beam.Flatten()
         | "WritePredictions" >> beam.io.WriteToText(f"{settings.out.rstrip('/')}/{PREDICTIONS_PREFIX}",
                                                     file_name_suffix=suffix, num_shards=settings.num_shards,
                                                     header=header))
    errors = [branch | f"Format{name}" >> beam.Map(_format_error, total, counted)
              for name, branch in (("ReadErrors", read.errors), ("HeaderErrors", checked.errors),
                                   ("RejectedErrors", rejected))]
    _ = (errors
         | "AllErrors" >> beam.Flatten()
         | "WriteErrors" >> beam.io.WriteToText(f"{settings.out.rstrip('/')}/{ERRORS_PREFIX}",
                                                file_name_suffix=ERRORS_SUFFIX, num_shards=1))


_WHILE_RUNNING = re.compile(r"\s*\[while running '([^']*)'\]")
_PYTHON_ERROR = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit): \S")


def failure_line(error: BaseException) -> str:
    """" in step STEP: Type: reason" from a failed Beam job's exception: the in-process runners re-raise the worker's
    exception with "[while running 'STEP']" appended; the portable runners wrap the worker's Python traceback in
    the job service's text, where the worker's own exception is the last line of Python's form that names a step."""
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    python = [line for line in lines if _PYTHON_ERROR.match(line) and not line.startswith(("java.", "org."))]
    telling = ([line for line in python if _WHILE_RUNNING.search(line)] or python or lines or [""])[-1]
    step = _WHILE_RUNNING.search(telling) or _WHILE_RUNNING.search(text)
    reason = _WHILE_RUNNING.sub("", telling).strip()
    if not _PYTHON_ERROR.match(reason):
        reason = f"{type(error).__name__}: {reason}" if reason else type(error).__name__
    if len(reason) > 300:  # some errors quote whole records
        reason = reason[:300] + " …"
    return f" in step {step.group(1)}: {reason}" if step else f": {reason}"


def _remove_temp_dirs_quietly(out: str) -> None:
    try:
        removed = remove_temp_dirs(out)
    except Exception as e:  # noqa: BLE001 - the job's own outcome is what the user must see
        log.warning("infer: could not delete the beam-temp-* folders in %s: %s", out, e)
        return
    if removed:
        log.info("infer: deleted the staging folders the job left in %s: %s", out, ", ".join(removed))


def _count_lines(pattern: str, header: bool) -> tuple[int, tuple[str, ...]]:
    from apache_beam.io.filesystems import FileSystems

    paths = tuple(sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list))
    lines = 0
    for path in paths:
        with FileSystems.open(path) as f:
            lines += sum(1 for line in io.TextIOWrapper(f, encoding="utf-8") if line.strip()) - header
    return lines, paths


def run(settings: InferSettings) -> Outcome:
    """Checks --model, --data and --out (InferError, exit 2, before anything runs), runs the job and counts its
    outputs. A failed job raises InferError with EXIT_JOB_FAILED."""
    try:
        model_dir = handler_lib.resolve(settings.model, settings.version)
        handler_lib.check_signature(model_dir)
        names = handler_lib.class_names(model_dir)
    except handler_lib.ModelError as e:
        raise InferError(str(e)) from None
    try:
        inventory = sources.inventory(settings.data)
    except DataError as e:
        raise InferError(str(e)) from None
    prepare_out(settings)
    log.info("infer: %s", inventory.describe())
    log.info("infer: model %s, batches of %d, Beam %s -> %s", model_dir, settings.batch_size,
             " ".join(settings.beam_args) or "(defaults)", settings.out)

    from apache_beam.options.pipeline_options import PipelineOptions

    started = time.monotonic()
    _Progress.reset()
    pipeline = beam.Pipeline(options=PipelineOptions(list(settings.beam_args)))
    build(pipeline, settings, model_dir, inventory, names)
    try:
        result = pipeline.run()
        state = result.wait_until_finish()
    except Exception as e:  # noqa: BLE001 - any runner or worker failure: one line, details at -v
        log.debug("infer job failure", exc_info=True)
        raise InferError(f"the Beam job failed{failure_line(e)}; the outputs in {settings.out} are incomplete "
                         f"(details: -v)", EXIT_JOB_FAILED) from None
    finally:
        _remove_temp_dirs_quietly(settings.out)
    if state not in (None, "DONE"):
        raise InferError(f"the Beam job ended in state {state}; the outputs in {settings.out} are incomplete",
                         EXIT_JOB_FAILED)
    seconds = time.monotonic() - started
    out = settings.out.rstrip("/")
    classified, prediction_files = _count_lines(f"{out}/{PREDICTIONS_PREFIX}-*", header=settings.format == "csv")
    errors, error_files = _count_lines(f"{out}/{ERRORS_PREFIX}-*", header=False)
    if inventory.counted and classified + errors != inventory.images:
        log.warning("infer: %s inputs counted before the job, %s in its outputs", f"{inventory.images:,}",
                    f"{classified + errors:,}")
    return Outcome(classified=classified, errors=errors, seconds=seconds, prediction_files=prediction_files,
                   error_files=error_files)


def summary_line(outcome: Outcome, out: str) -> str:
    """"infer: 1,997 classified, 3 errors -> OUT (x s, y img/s)"."""
    total = outcome.classified + outcome.errors
    return (f"infer: {outcome.classified:,} classified, {outcome.errors:,} errors -> {out} "
            f"({outcome.seconds:.1f} s, {total / max(outcome.seconds, 1e-9):.1f} img/s)")
