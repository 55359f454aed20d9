"""`tokenlearner spans DATASET`: what the drift check between spans sees, as text.

- `overview`: one line a span: when it was added, its images per split, its mean brightness and image size, and its
  drift from the span before (each feature's distance, and whether it is beyond the thresholds, accepted or alike);
- `span_statistics`: one span's statistics (`spans/span-N.stats.pb`): each class's share, height, width and
  brightness (mean, standard deviation, range);
- `compare`: the drift numbers between two spans, feature by feature, against the thresholds, and the span's
  acceptance record where it has one.

The statistics are those the validator compares (components/span_stats.py, computed and kept first for a dataset
written before spans had them); the distances are TFDV's, measured as the validator measures them.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

from components import datasets, drift_records, span_stats
from components.sources import DataError
from trainer.contract import DATASET_MANIFEST, SPAN_IMAGE_FEATURES, span_stats_path
from trainer.features import LABEL_KEY


def _spans(dataset: str) -> list[dict]:
    return datasets.load_spans(dataset)


def _check_span(dataset: str, spans: list[dict], span: int) -> None:
    listed = [entry["span"] for entry in spans]
    if span not in listed:
        raise DataError(f"{os.path.join(dataset, DATASET_MANIFEST)}: no span {span}; the dataset has span(s) "
                        f"{listed}")


def _feature(stats, name: str):
    """The statistics of feature `name` in a span's one dataset; DataError naming the file when absent."""
    found = next((f for f in stats.datasets[0].features if f.name == name or list(f.path.step) == [name]), None)
    if found is None:
        raise DataError(f"span statistics {stats.datasets[0].name}: no feature {name!r}; expected "
                        f"{', '.join((LABEL_KEY, *SPAN_IMAGE_FEATURES))}")
    return found


def _class_counts(stats) -> dict[int, int]:
    """{label id: images} from the label's top values (categorical: every class it saw is among them)."""
    label = _feature(stats, LABEL_KEY)
    values = label.string_stats.top_values or label.string_stats.rank_histogram.buckets
    out: dict[int, int] = {}
    for value in values:
        text = value.value if hasattr(value, "value") else value.label
        out[int(text)] = int(round(value.frequency if hasattr(value, "frequency") else value.sample_count))
    return dict(sorted(out.items()))


def _numbers(stats, name: str) -> str:
    num = _feature(stats, name).num_stats
    return f"mean {num.mean:.1f}, std {num.std_dev:.1f}, range {num.min:g}–{num.max:g}"


def _load(dataset: str, span: int):
    stats = span_stats.load(dataset, span)
    if len(stats.datasets) != 1:
        raise DataError(f"{os.path.join(dataset, span_stats_path(span))}: expected one dataset (all splits of the "
                        f"span), got {len(stats.datasets)}")
    return stats


def _acceptance(dataset: str, span: int) -> Optional[drift_records.SpanCheck]:
    try:
        return drift_records.read_acceptance(dataset, span)
    except drift_records.RecordError as e:
        raise DataError(str(e)) from None


def _measure(dataset: str, previous: tuple, current: tuple, span_label_drift: float,
             span_image_drift: float) -> list[drift_records.FeatureDrift]:
    """Each feature's drift from `previous` to `current` ((span, statistics) each), as the validator measures it."""
    from components.validator import span_drift  # TFDV

    try:
        return span_drift(previous[1], current[1], span_label_drift, span_image_drift)
    except ValueError as e:
        paths = " and ".join(os.path.join(dataset, span_stats_path(span)) for span in (previous[0], current[0]))
        raise DataError(f"{paths}: {e}") from None


def _drift_cell(dataset: str, previous: int, span: int, drifts: Sequence[drift_records.FeatureDrift]) -> str:
    measured = ", ".join(f"{d.feature} {drift_records.distance_text(d.distance, d.threshold)}" for d in drifts)
    beyond = [d for d in drifts if d.exceeded]
    accepted = _acceptance(dataset, span)
    if accepted is not None and accepted.previous_span == previous:
        verdict = f"accepted ({accepted.accepted_by}" + (f" in run {accepted.run_id})" if accepted.run_id else ")")
    elif beyond:
        verdict = "BEYOND " + ", ".join(d.setting for d in dict.fromkeys(beyond))
    else:
        verdict = "alike"
    return f"{verdict}: {measured}"


def overview(dataset: str, span_label_drift: float, span_image_drift: float) -> str:
    """One line a span, oldest first, with its drift from the span before at these thresholds."""
    spans = _spans(dataset)
    manifest = datasets.load_manifest(dataset)
    classes = manifest.get("class_names") or []
    rows = [("span", "added (UTC)", "images", "brightness", "height×width", "drift from the span before")]
    previous = None
    for entry in spans:
        stats = _load(dataset, entry["span"])
        counts = " · ".join(f"{split} {v['examples']:,}" for split, v in entry.get("splits", {}).items())
        height, width, brightness = (_feature(stats, name).num_stats for name in SPAN_IMAGE_FEATURES)
        drift = "–"
        if previous is not None:
            drift = _drift_cell(dataset, previous[0], entry["span"],
                                _measure(dataset, previous, (entry["span"], stats), span_label_drift,
                                         span_image_drift))
        rows.append((str(entry["span"]), entry.get("created_utc") or "–", counts, f"{brightness.mean:.1f}",
                     f"{height.mean:.0f}×{width.mean:.0f}", drift))
        previous = (entry["span"], stats)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [f"{dataset}: {len(spans)} span(s), {len(classes)} classes; thresholds span_label_drift "
             f"{span_label_drift:g}, span_image_drift {span_image_drift:g}"]
    lines += ["  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]).rstrip() for r in rows]
    return "\n".join(lines)


def span_statistics(dataset: str, span: int) -> str:
    """Span `span`'s statistics: each class's images and share, then height, width and brightness."""
    spans = _spans(dataset)
    _check_span(dataset, spans, span)
    stats = _load(dataset, span)
    classes = datasets.load_manifest(dataset).get("class_names") or []
    counts = _class_counts(stats)
    total = stats.datasets[0].num_examples or sum(counts.values())
    lines = [f"span {span} of {dataset} ({span_stats_path(span)}): {total:,} images, all splits"]
    width = max([len(c) for c in classes] + [5])
    lines.append(f"  {'class'.ljust(width)}  images   share")
    for label in sorted(set(range(len(classes))) | set(counts)):
        name = classes[label] if 0 <= label < len(classes) else f"label {label}"
        count = counts.get(label, 0)
        lines.append(f"  {name.ljust(width)}  {count:6,}  {count / total if total else 0:6.3f}")
    for name in SPAN_IMAGE_FEATURES:
        lines.append(f"{name}: {_numbers(stats, name)}")
    accepted = _acceptance(dataset, span)
    if accepted is not None:
        lines.append(f"drift from span {accepted.previous_span} {accepted.summary().split(': ', 1)[0]}"
                     f"{f' at {accepted.decided_utc}' if accepted.decided_utc else ''} "
                     f"({drift_records.accepted_path(span)})")
    return "\n".join(lines)


def compare(dataset: str, a: int, b: int, span_label_drift: float, span_image_drift: float) -> str:
    """The drift from span `a` to span `b`, feature by feature, as the validator measures it at these thresholds."""
    spans = _spans(dataset)
    for span in (a, b):
        _check_span(dataset, spans, span)
    drifts = _measure(dataset, (a, _load(dataset, a)), (b, _load(dataset, b)), span_label_drift, span_image_drift)
    rows = [("feature", "measure", "distance", "threshold", "")]
    for d in drifts:
        rows.append((d.feature, d.measure, drift_records.distance_text(d.distance, d.threshold),
                     f"{d.setting} {d.threshold:g}", "BEYOND" if d.exceeded else "within"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"drift from span {a} to span {b} of {dataset}"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    accepted = _acceptance(dataset, b)
    if accepted is not None and accepted.previous_span == a:
        lines.append(f"span {b}: {accepted.summary()} ({drift_records.accepted_path(b)})")
    message = drift_records.drift_message(a, b, drifts)
    if message is not None and b == a + 1 and (accepted is None or accepted.previous_span != a):
        lines.append(f"a run whose newest two spans are these stops: {message}")
    return "\n".join(lines)
