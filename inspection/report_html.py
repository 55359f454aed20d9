"""The report page: what it shows (`Report` and its parts, filled by report.py) and its HTML: one file with inline
CSS, no scripts, figures as PNG files beside it (relative links), so it opens offline, from a copied folder too."""
from __future__ import annotations

import dataclasses
import datetime
import html
import os
from typing import Iterable, Sequence

import numpy as np

from pipeline.config import PipelineConfig
from inspection import history
from inspection.summary import RunSummary
from trainer.config import TrainerConfig


@dataclasses.dataclass(frozen=True)
class Figure:
    file: str
    title: str
    caption: str
    size: tuple[int, int]  # pixels, as drawn


@dataclasses.dataclass(frozen=True)
class LineageRow:
    artifact_id: int
    artifact_type: str
    uri: str
    producer: str  # component that produced it, with its execution id; "" for external artifacts
    inputs: tuple[int, ...]  # artifact ids the producing execution read


@dataclasses.dataclass(frozen=True)
class ClassMetrics:
    accuracy: np.ndarray  # per class, from TFMA's per-label slices
    counts: np.ndarray


@dataclasses.dataclass(frozen=True)
class Report:
    """What the HTML page shows (figures are files in the output folder)."""

    config: PipelineConfig
    run: RunSummary
    trainer: TrainerConfig
    trainer_name: str  # the Keras model's name, e.g. vit_token_learner_4
    facts: list[tuple[str, list[tuple[str, str]]]]  # section -> (fact, value)
    figures: list[Figure]
    notes: list[str]
    confusion: np.ndarray
    per_class: ClassMetrics
    lineage: list[LineageRow]
    history: list[history.LoopRow] = dataclasses.field(default_factory=list)  # every run, oldest first


_CSS = """
body { font: 15px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; color: #1d2430;
       margin: 0; background: #f4f6f9; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
header { background: #1f3a5f; color: #fff; padding: 20px 28px; }
header h1 { margin: 0 0 4px; font-size: 24px; font-weight: 600; }
header p { margin: 0; opacity: .85; }
h2 { font-size: 19px; margin: 32px 0 12px; border-bottom: 2px solid #d5dbe4; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 0 0 6px; color: #1f3a5f; }
.badges span { display: inline-block; padding: 3px 10px; border-radius: 12px; margin: 10px 8px 0 0;
               font-weight: 600; font-size: 13px; background: #e3e8ef; color: #1d2430; }
.badges .good { background: #d6f0dd; color: #145c2c; }
.badges .bad { background: #f8d7da; color: #7a1620; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 16px; }
.card { background: #fff; border: 1px solid #dfe4ea; border-radius: 6px; padding: 14px 16px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
td, th { text-align: left; padding: 4px 8px; border-bottom: 1px solid #edf0f4; vertical-align: top; }
th { background: #f0f3f7; font-weight: 600; white-space: nowrap; }
.card td { overflow-wrap: anywhere; }
.card td:first-child { color: #5a6575; width: 42%; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { background: #fff; border: 1px solid #dfe4ea; border-radius: 6px; margin: 0 0 20px; padding: 12px; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { color: #4a5563; font-size: 13.5px; margin-top: 8px; }
.split { display: grid; grid-template-columns: minmax(0, 3fr) minmax(360px, 2fr); gap: 16px; align-items: start; }
.split p { color: #4a5563; font-size: 13.5px; margin: 8px 10px; }
.note { background: #fff8e1; border-left: 4px solid #e0a800; padding: 8px 12px; margin: 10px 0; }
code { font: 12.5px/1.3 "DejaVu Sans Mono", Menlo, Consolas, monospace; word-break: break-all; }
.wide { background: #fff; border: 1px solid #dfe4ea; border-radius: 6px; overflow-x: auto; }
footer { color: #6b7685; font-size: 13px; margin-top: 32px; }
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f'<th class="num">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(figure) -> str:
    width, height = figure.size
    return (f'<figure id="{_e(os.path.splitext(figure.file)[0])}"><h3>{_e(figure.title)}</h3>'
            f'<img src="{_e(figure.file)}" width="{width}" height="{height}" alt="{_e(figure.title)}">'
            f"<figcaption>{_e(figure.caption)}</figcaption></figure>")


def _relative(path: str, root: str) -> str:
    try:
        relative = os.path.relpath(path, root)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def render(report: Report) -> str:
    run, config = report.run, report.config
    by_file = {f.file: f for f in report.figures}
    blessed = {True: ("good", "blessed"), False: ("bad", "not blessed"), None: ("", "no blessing")}[run.blessed]
    pushed = ("good", f"pushed version {os.path.basename(run.pushed_to)}") if run.pushed_to else ("bad", "not pushed")
    accuracy = f"test accuracy {run.accuracy:.2%}" if run.accuracy is not None else "test accuracy n/a"
    badges = "".join(f'<span class="{c}">{_e(t)}</span>' for c, t in [("", accuracy), blessed, pushed])

    cards = "".join(
        f'<div class="card"><h3>{_e(section)}</h3>'
        + "<table>" + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows) + "</table></div>"
        for section, rows in report.facts)

    names = config.class_names
    per_class_rows = [(_e(names[k]), _e(int(report.per_class.counts[k])), _e(int(report.confusion[k].sum())),
                       _e(int(report.confusion[k, k])), _e(f"{report.per_class.accuracy[k]:.1%}"))
                      for k in range(len(names))]
    per_class = _table(("class", "examples", "matrix row", "correct", "accuracy"), per_class_rows,
                       numeric=(1, 2, 3, 4)) + (
        "<p>examples and accuracy: TFMA's per-label slice; matrix row and correct: the confusion matrix's row "
        "total and diagonal. They agree when TFMA counted every example once.</p>")

    steps = _table(("component", "status", "time", "outputs"), [
        (_e(s.component), _e(s.status), _e(f"{s.seconds:.1f} s"),
         "<br>".join(f"{_e(t)} #{a.id}" for t, arts in s.outputs.items() for a in arts) or "–")
        for s in run.steps], numeric=(2,))
    lineage = _table(("artifact", "type", "produced by", "from artifacts", "uri"), [
        (_e(f"#{r.artifact_id}"), _e(r.artifact_type), _e(r.producer or "external"),
         _e(", ".join(f"#{i}" for i in r.inputs) or "–"), f"<code>{_e(_relative(r.uri, config.output_dir))}</code>")
        for r in report.lineage])

    sections = [
        f"<h2>Model card</h2><div class=\"cards\">{cards}</div>",
        "".join(f'<div class="note">{_e(n)}</div>' for n in report.notes),
        "<h2>Training</h2>" + _figure(by_file["learning_curves.png"]),
        "<h2>Test split (Evaluator)</h2>" + _figure(by_file["confusion_matrix.png"])
        + f'<div class="split">{_figure(by_file["per_class_accuracy.png"])}'
          f'<div class="wide">{per_class}</div></div>',
        "<h2>Where the model fails</h2>" + _figure(by_file["test_predictions.png"]),
    ]
    if "token_attention.png" in by_file:
        sections.append("<h2>What the TokenLearner looks at</h2>" + _figure(by_file["token_attention.png"]))
    sections += [
        f"<h2>Lineage</h2><p>Upstream of the run's last outputs, from ML Metadata "
        f"(<code>{_e(config.metadata_path)}</code>). Paths are relative to <code>{_e(config.output_dir)}</code>."
        f'</p><div class="wide">{lineage}</div>',
        f'<h2>Components of run {_e(run.run_id)}</h2><div class="wide">{steps}</div>',
    ]
    if report.history:
        rows = [[_e(c) for c in history.cells(r)] for r in report.history]
        table = _table(history.HEADER, rows, numeric=(history.ACCURACY_COLUMN,))
        sections.insert(-2, "<h2>History</h2><p>Every run of this pipeline, oldest first: the spans it trained on, "
                            "the drift check between its newest two spans, how the Trainer started, the test "
                            "accuracy, the blessing and the version pushed (ML Metadata; the spans are the "
                            "ExampleGen's, in every pushed model's lineage).</p>"
                            f'<div class="wide">{table}</div>')
    generated = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(config.pipeline_name)} · run {_e(run.run_id)}</title>
<style>{_CSS}</style>
</head>
<body>
<header><h1>{_e(config.pipeline_name)}: {_e(report.trainer_name)}</h1>
<p>pipeline run <code>{_e(run.run_id)}</code> · output <code>{_e(config.output_dir)}</code></p>
<div class="badges">{badges}</div></header>
<main>
{"".join(sections)}
<footer>Generated by <code>tokenlearner report</code> on {_e(generated)}. Self-contained: this page and the PNG files
beside it; nothing is loaded from the network.</footer>
</main>
</body>
</html>
"""
