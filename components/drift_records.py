"""What the drift check between two spans decided (components/validator.py), as a record kept with the run and, for
an acceptance, with the dataset.

- `SpanCheck`: the two spans compared, each feature's distance and threshold (`FeatureDrift`), and the verdict:
  `alike`, `stopped` (the run stopped with EXIT_DRIFT), `accepted` (this run trained on it with accept_drift=true)
  or `accepted earlier` (a run before this one accepted it: not checked again).
- In ML Metadata: a run that got past the check has it as the JSON custom property `span_check` of its
  ExampleAnomalies artifact; a stopped run as the ExecutionResult TFX records on the failed ExampleValidator
  execution (custom property `__execution_result__`: the drift line, and the record as a Struct in its
  metadata_details).
- In the dataset: `<dataset>/spans/span-N.accepted.json`, written when a run with accept_drift=true gets past the
  validator on span N. Later runs do not stop on span N again (the same pair of spans); removing the file
  withdraws the acceptance. Read and written through tf.io.gfile: the dataset may be in a bucket.

This module is plain Python but for the file functions (TensorFlow, imported when called): the run summary and
`tokenlearner history` read the records without TFDV.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Optional, Sequence

from trainer.contract import SPANS_DIR, UTC_STAMP
from trainer.features import LABEL_KEY

SPAN_LABEL_DRIFT_KEY = "span_label_drift"  # PipelineConfig's fields: the thresholds a drift is held to
SPAN_IMAGE_DRIFT_KEY = "span_image_drift"
ACCEPT_DRIFT_KEY = "accept_drift"
ACCEPT_SETTING = f"{ACCEPT_DRIFT_KEY}=true"  # the setting that accepts a drift, as `--set` takes it
DEFAULT_SPAN_DRIFT = 0.1  # PipelineConfig's default for both thresholds

SPAN_CHECK_PROPERTY = "span_check"  # ExampleAnomalies custom property: SpanCheck.to_json()
EXECUTION_RESULT_PROPERTY = "__execution_result__"  # TFX's: a failed execution's ExecutionResult as JSON

ALIKE, STOPPED, ACCEPTED, ACCEPTED_EARLIER = "alike", "stopped", "accepted", "accepted earlier"
VERDICTS = (ALIKE, STOPPED, ACCEPTED, ACCEPTED_EARLIER)


class RecordError(ValueError):
    """A record that cannot be read back; the message names the file or property and what was expected."""


@dataclasses.dataclass(frozen=True)
class FeatureDrift:
    """One feature's distance between two spans, as TFDV's drift comparator measured it, and the setting it is
    held to."""

    feature: str
    distance: float
    threshold: float

    @property
    def measure(self) -> str:
        return "L-infinity distance" if self.feature == LABEL_KEY else "Jensen-Shannon divergence"

    @property
    def setting(self) -> str:
        return SPAN_LABEL_DRIFT_KEY if self.feature == LABEL_KEY else SPAN_IMAGE_DRIFT_KEY

    @property
    def exceeded(self) -> bool:
        return self.distance > self.threshold

    def describe(self) -> str:
        return (f"feature '{self.feature}': {self.measure} {distance_text(self.distance, self.threshold)} > "
                f"{self.setting} {self.threshold:g}")

    def short(self) -> str:
        """"label 0.4 > span_label_drift 0.1": a table cell's worth."""
        return f"{self.feature} {distance_text(self.distance, self.threshold)} > {self.setting} {self.threshold:g}"


def distance_text(distance: float, threshold: float) -> str:
    """Two significant digits, more when that would round a distance above the threshold down to it (0.1 > 0.1)."""
    for digits in range(2, 10):
        text = f"{distance:.{digits}g}"
        if float(text) > threshold or distance <= threshold:
            return text
    return repr(distance)


def drift_message(previous_span: int, current_span: int, drifts: Sequence[FeatureDrift]) -> Optional[str]:
    """The one line naming both spans and every feature beyond its threshold; None when none is."""
    beyond = [d.describe() for d in drifts if d.exceeded]
    if not beyond:
        return None
    return (f"drift between span {previous_span} and span {current_span}: {'; '.join(beyond)} "
            f"(set {ACCEPT_SETTING} to train on it)")


@dataclasses.dataclass(frozen=True)
class SpanCheck:
    """The drift check of one run: `previous_span` against `span` (the window's newest two)."""

    previous_span: int
    span: int
    drifts: tuple[FeatureDrift, ...]
    verdict: str  # one of VERDICTS
    run_id: str = ""  # the pipeline run that decided (for `accepted earlier`: the run that accepted)
    accepted_by: str = ""  # ACCEPT_SETTING for `accepted` and `accepted earlier`
    decided_utc: str = ""

    @property
    def beyond(self) -> list[FeatureDrift]:
        return [d for d in self.drifts if d.exceeded]

    @property
    def message(self) -> Optional[str]:
        """The validator's drift line (None when the spans are alike)."""
        return drift_message(self.previous_span, self.span, self.drifts)

    def summary(self) -> str:
        """One cell: "stopped on drift: span 2 vs 1: label 0.4 > span_label_drift 0.1", "drift accepted
        (accept_drift=true): ...", "drift accepted earlier (accept_drift=true in run R): ...", "no drift: span 1
        vs 0"."""
        pair = f"span {self.span} vs {self.previous_span}"
        beyond = "; ".join(d.short() for d in self.beyond)
        if self.verdict == ALIKE:
            return f"no drift: {pair}"
        if self.verdict == STOPPED:
            return f"stopped on drift: {pair}: {beyond}"
        by = self.accepted_by + (f" in run {self.run_id}" if self.verdict == ACCEPTED_EARLIER and self.run_id else "")
        return f"drift {self.verdict} ({by}): {pair}: {beyond}"

    def to_dict(self) -> dict[str, Any]:
        return {"previous_span": self.previous_span, "span": self.span, "verdict": self.verdict,
                "drifts": [dataclasses.asdict(d) for d in self.drifts], "run_id": self.run_id,
                "accepted_by": self.accepted_by, "decided_utc": self.decided_utc}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "SpanCheck":
        """The record `data` (JSON numbers may come back as floats: a protobuf Struct has no integers); RecordError
        naming `where` and the field when it is not one."""
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected a JSON object of a span drift check, got {type(data).__name__}")
        try:
            check = cls(previous_span=int(data["previous_span"]), span=int(data["span"]),
                        drifts=tuple(FeatureDrift(str(d["feature"]), float(d["distance"]), float(d["threshold"]))
                                     for d in data["drifts"]),
                        verdict=str(data["verdict"]), run_id=str(data.get("run_id") or ""),
                        accepted_by=str(data.get("accepted_by") or ""),
                        decided_utc=str(data.get("decided_utc") or ""))
        except KeyError as e:
            raise RecordError(f"{where}: no field {e}; expected previous_span, span, verdict and drifts") from None
        except (TypeError, ValueError) as e:
            raise RecordError(f"{where}: not a span drift check ({e})") from None
        if check.verdict not in VERDICTS:
            raise RecordError(f"{where}: verdict {check.verdict!r}; expected one of {', '.join(VERDICTS)}")
        return check

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> "SpanCheck":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise RecordError(f"{where}: not JSON ({e})") from None
        return cls.from_dict(data, where)


def now_utc() -> str:
    return time.strftime(UTC_STAMP, time.gmtime())


# ---- the acceptance record in the dataset ----------------------------------------------------------------------

def accepted_path(span: int) -> str:
    """The acceptance record of span `span`, relative to the dataset folder (beside its statistics)."""
    return f"{SPANS_DIR}/span-{span}.accepted.json"


def _join(dataset_dir: str | os.PathLike, relative: str) -> str:
    return f"{str(dataset_dir).rstrip('/')}/{relative}"


def read_acceptance(dataset_dir: str | os.PathLike, span: int) -> Optional[SpanCheck]:
    """The acceptance record of span `span` (verdict `accepted`), None when there is none; RecordError naming the
    file when it cannot be read as one."""
    import tensorflow as tf

    path = _join(dataset_dir, accepted_path(span))
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as f:
        check = SpanCheck.from_json(f.read(), path)
    if check.span != span or check.verdict != ACCEPTED:
        raise RecordError(f"{path}: records span {check.span} {check.verdict}; expected span {span} accepted "
                          f"(remove the file to check span {span} again)")
    return check


def write_acceptance(dataset_dir: str | os.PathLike, check: SpanCheck) -> str:
    """Writes the acceptance record of `check.span` (whole or not at all where the filesystem renames: a run
    reading it beside never sees half of it); returns its path."""
    import tensorflow as tf

    path = _join(dataset_dir, accepted_path(check.span))
    tf.io.gfile.makedirs(os.path.dirname(path))
    partial = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{os.getpid()}.part"
    with tf.io.gfile.GFile(partial, "wb") as f:
        f.write(check.to_json().encode())
    tf.io.gfile.rename(partial, path, overwrite=True)
    return path


# ---- the records in ML Metadata --------------------------------------------------------------------------------

def from_execution_result(value: str) -> tuple[str, Optional[SpanCheck]]:
    """(the result message, the span check in it or None) of a failed execution's `__execution_result__` (the
    ExecutionResult JSON TFX writes; camelCase names, the Struct under "value" of its Any)."""
    try:
        result = json.loads(value)
    except ValueError:
        return "", None
    if not isinstance(result, dict):
        return "", None
    message = str(result.get("resultMessage") or result.get("result_message") or "")
    for detail in result.get("metadataDetails") or result.get("metadata_details") or []:
        if isinstance(detail, dict) and isinstance(detail.get("value"), dict) and "verdict" in detail["value"]:
            try:
                return message, SpanCheck.from_dict(detail["value"], EXECUTION_RESULT_PROPERTY)
            except RecordError:
                return message, None
    return message, None
