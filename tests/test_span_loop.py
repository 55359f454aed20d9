"""The production loop of docs/operations.md, end to end on a few hundred real CIFAR-10 images: span 0 -> version 1;
span 1 appended -> the same command warm-starts from version 1 and pushes version 2; a span 2 with skewed labels
-> the run stops at the drift check naming spans 1 and 2 and the label, exit 4, nothing trained or pushed; the same
with accept_drift=true -> it trains, and the dataset keeps the acceptance; the same command again without it and
without a new span -> exit 0, nothing trained, nothing new pushed. The spans behind every pushed model, the stop
(feature, distance, threshold) and the acceptance are read back from ML Metadata by `tokenlearner history`.

One module-scoped loop (five pipeline runs, ~5 min here) that the tests read in order; `retrain_epochs=1` keeps the
warm-started runs short (the first run trains the tiny preset's 2 epochs from scratch). The runs and appends call the
CLI in the test's interpreter (Beam in-process, `beam_workers=1`): the same commands, without a fresh interpreter's
imports each time; `tokenlearner history` runs as a user runs it, in a fresh one.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import pytest

from trainer.exit_codes import EXIT_DRIFT, EXIT_OK
from tests.helpers import CLASSES, TINY_RUN_LIMIT, run_cli, run_cli_in_process, write_cifar_spans

pytestmark = pytest.mark.slow

# Span 1: like span 0 (balanced); span 2: half of its images are airplanes, in training and test alike (a new
# source that sees mostly airplanes), so once its drift is accepted the window's splits still match each other.
BALANCED = {"train": {c: 12 for c in CLASSES}, "test": {c: 4 for c in CLASSES}}
SKEWED = {split: {c: (90 if c == "airplane" else 10) for c in CLASSES} for split in ("train", "test")}


@dataclasses.dataclass
class Loop:
    output: Path
    dataset: Path
    consoles: list[str] = dataclasses.field(default_factory=list)  # run 1..5, what each printed
    codes: list[int] = dataclasses.field(default_factory=list)
    versions: list[list[str]] = dataclasses.field(default_factory=list)  # pushed versions after each run

    def pushed(self) -> list[str]:
        base = self.output / "serving" / "tokenlearner"
        return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


@pytest.fixture(scope="module")
def loop(shared_cifar, tmp_path_factory) -> Loop:
    root = tmp_path_factory.mktemp("loop")
    output = root / "out"
    # Beam in the CLI's process (beam_workers=1, as the digits and mixed runs): four runs without worker start-ups.
    command = ["run", "--data", str(shared_cifar), "--preset", "tiny", "--limit", str(TINY_RUN_LIMIT),
               "--output", str(output), "--set", "retrain_epochs=1", "--set", "beam_workers=1"]
    folders = write_cifar_spans(shared_cifar, root / "spans", {"span1": BALANCED, "span2": SKEWED})

    def run(*extra: str) -> None:
        proc = run_cli_in_process([*command, *extra])
        state.consoles.append(proc.stdout)
        state.codes.append(proc.returncode)
        state.versions.append(state.pushed())

    def append(folder: Path) -> None:
        proc = run_cli_in_process(["data", "--data", str(folder), "--append", str(state.dataset)])
        assert proc.returncode == EXIT_OK, proc.stdout[-3000:]

    state = Loop(output=output, dataset=Path())
    run()
    assert state.codes[0] == EXIT_OK, state.consoles[0][-5000:]
    (manifest,) = (output / "data").glob("*/manifest.json")
    state.dataset = manifest.parent
    append(folders["span1"])
    run()
    append(folders["span2"])
    run()
    run("--set", "accept_drift=true")
    run()  # no new span, accept_drift back to its default
    return state


def _model_run(loop: Loop, run_index: int) -> Path:
    """The ModelRun folder of the Trainer execution of run `run_index` (0-based), from its console's summary."""
    from pipeline import config as config_lib
    from inspection import summary

    run_id = re.search(r"^run (\S+)$", loop.consoles[run_index], flags=re.M).group(1)
    run = summary.collect(config_lib.load(str(loop.output)), run_id)
    step = next(s for s in run.steps if s.component == "Trainer")
    return Path(step.outputs["ModelRun"][0].uri)


def _run_id(loop: Loop, run_index: int) -> str:
    return re.search(r"^run (\S+)$", loop.consoles[run_index], flags=re.M).group(1)


def _history(model_run: Path) -> list[dict]:
    with open(model_run / "history.csv") as f:
        return list(csv.DictReader(f))


def test_span_0_trains_from_scratch_and_pushes_version_1(loop):
    assert len(loop.versions[0]) == 1
    assert "training from scratch: no blessed model yet" in loop.consoles[0]


def test_span_1_warm_starts_from_version_1_and_pushes_version_2(loop):
    assert loop.codes[1] == EXIT_OK, loop.consoles[1][-5000:]
    assert len(loop.versions[1]) == 2 and loop.versions[1][0] == loop.versions[0][0]
    # The base it started from is version 1: the SavedModel of the first run's Trainer (what TFX hands it as
    # base_model), which trained on span 0. That the weights loaded equal that base's is tests/test_warm_start.py's
    # exact check; one epoch of a near-chance model's accuracy cannot tell loaded weights from fresh ones.
    version_1 = f"{_trainer_output(loop, 0, 'Model').rstrip('/')}/Format-Serving"
    assert f"warm start from {version_1} (span 0)" in loop.consoles[1], loop.consoles[1][-5000:]
    facts = json.loads((_model_run(loop, 1) / "training.json").read_text())
    assert (facts["spans"], facts["epochs"], facts["warm_start_from"], facts["base_spans"], facts["scratch_reason"]) \
        == ([0, 1], 1, version_1, [0], None), facts
    assert len(_history(_model_run(loop, 1))) == 1  # retrain_epochs=1, not the preset's 2


def _trainer_output(loop: Loop, run_index: int, type_name: str) -> str:
    """The URI of the Trainer's `type_name` output of run `run_index` (0-based), from its console's run id."""
    from pipeline import config as config_lib
    from inspection import summary

    run_id = re.search(r"^run (\S+)$", loop.consoles[run_index], flags=re.M).group(1)
    run = summary.collect(config_lib.load(str(loop.output)), run_id)
    return next(s for s in run.steps if s.component == "Trainer").outputs[type_name][0].uri


def test_the_evaluator_compares_version_2_with_version_1(loop):
    assert re.search(r"^Evaluator .*blessed", loop.consoles[1], flags=re.M)
    from pipeline import config as config_lib
    from inspection import run_store, summary

    run_id = re.search(r"^run (\S+)$", loop.consoles[1], flags=re.M).group(1)
    config = config_lib.load(str(loop.output))
    run = summary.collect(config, run_id)
    evaluation = next(s for s in run.steps if s.component == "Evaluator").outputs["ModelEvaluation"][0]
    assert set(run_store.overall_metrics(evaluation.uri)) == {run_store.CANDIDATE, run_store.BASELINE}


def test_a_skewed_span_stops_at_the_drift_check_naming_both_spans_and_the_label(loop):
    assert loop.codes[2] == EXIT_DRIFT, loop.consoles[2][-5000:]
    lines = [line for line in loop.consoles[2].splitlines() if "drift between span 1 and span 2" in line]
    assert lines and "'label'" in lines[-1], loop.consoles[2][-5000:]
    assert re.search(r"distance \d\.\d+", lines[-1]), lines[-1]
    # Nothing trained: whenever the Trainer fits, it logs how it starts and Keras logs each epoch's metrics; run 2's
    # console has both, run 3's neither. (Keras prints no "Epoch 1/1" header for a one-epoch fit.)
    started, fitted = re.compile(r"warm start from |training from scratch: "), re.compile(r"val_accuracy: \d")
    assert started.search(loop.consoles[1]) and fitted.search(loop.consoles[1]), loop.consoles[1][-5000:]
    assert not started.search(loop.consoles[2]) and not fitted.search(loop.consoles[2]), loop.consoles[2][-5000:]
    assert loop.versions[2] == loop.versions[1]  # nothing pushed; versions 1 and 2 untouched
    # The run summary names the stop: the validator's line and the reason nothing was pushed.
    assert re.search(r"^ExampleValidator +FAILED .* stopped on drift: span 2 vs 1: label \d\.\d+ > "
                     r"span_label_drift 0\.1$", loop.consoles[2], re.M), loop.consoles[2][-5000:]
    assert "not pushed: stopped on drift between span 1 and span 2" in loop.consoles[2]


def test_accept_drift_trains_on_the_skewed_span(loop):
    assert loop.codes[3] == EXIT_OK, loop.consoles[3][-5000:]
    assert re.search(r"warm start from \S+ \(span 1\)", loop.consoles[3]), loop.consoles[3][-5000:]
    assert len(loop.versions[3]) == 3
    record = json.loads((loop.dataset / "spans" / "span-2.accepted.json").read_text())
    assert (record["previous_span"], record["span"], record["verdict"]) == (1, 2, "accepted")
    assert record["accepted_by"] == "accept_drift=true" and record["run_id"] == _run_id(loop, 3)
    assert re.search(r"^ExampleValidator +ran .*drift accepted \(accept_drift=true\): span 2 vs 1: label",
                     loop.consoles[3], re.M), loop.consoles[3][-5000:]


def test_an_accepted_span_stays_accepted_the_next_run_trains_and_pushes_nothing(loop):
    assert loop.codes[4] == EXIT_OK, loop.consoles[4][-5000:]
    assert "drift between span" not in loop.consoles[4], loop.consoles[4][-5000:]  # neither a stop nor a warning
    assert re.search(r"no new data since \S+ \(spans 0,1,2, same settings\): re-exporting it unchanged",
                     loop.consoles[4]), loop.consoles[4][-5000:]
    assert not re.search(r"val_accuracy: \d", loop.consoles[4])  # Keras fitted nothing
    assert loop.versions[4] == loop.versions[3]  # nothing new pushed


def test_the_report_names_the_evaluators_baseline(loop):
    """Run 2's Evaluator compared with version 1's model: the report's baseline is that Model artifact."""
    from pipeline import config as config_lib
    from inspection import report, run_store, summary

    config = config_lib.load(str(loop.output))
    store = run_store.open_store(config)
    run = summary.collect(config, _run_id(loop, 1), store=store)
    first = summary.collect(config, _run_id(loop, 0), store=store)
    baseline = report.evaluator_baseline(store, run)
    assert baseline is not None and baseline.id == report.artifact(first, "Trainer", "Model").id
    assert run_store.pushed_version(store, baseline.id) == loop.versions[0][0]
    assert run.baseline_accuracy is not None and run.accuracy is not None
    assert report.evaluator_baseline(store, first) is None  # the first run had no blessed model to compare with


def test_history_reads_the_spans_of_every_pushed_model_from_ml_metadata(loop):
    proc = run_cli(["history", "--output", str(loop.output)])
    assert proc.returncode == EXIT_OK, proc.stdout
    # The table's rows start with the run id (a timestamp); TensorFlow's start-up lines may come before them.
    lines = [line for line in proc.stdout.splitlines() if re.match(r"\d{4}-\d\d-\d\dT", line)]
    rows = [line.split() for line in lines]
    assert [r[3] for r in rows] == ["0", "0,1", "0,1,2", "0,1,2", "0,1,2"]  # run id, date, time, spans, ...
    pushed = [r[-1] for r in rows if r[-2] == "version"]
    # Run 5 re-exported run 4's model unchanged: the Pusher found it already published as that version.
    assert pushed == [*loop.versions[3], loop.versions[3][-1]]
    # The drift check, run by run: none with one span; alike; the stop with its feature, distance and threshold
    # and why nothing was pushed; the acceptance and the setting that gave it; then accepted earlier, by that run.
    assert " – " in lines[0] and "no drift: span 1 vs 0" in lines[1], lines
    assert re.search(r" stopped on drift: span 2 vs 1: label 0\.\d+ > span_label_drift 0\.1 .* no: stopped on "
                     r"drift between span 1 and span 2 \(set accept_drift=true to train on it\)$", lines[2]), lines[2]
    assert re.search(r" drift accepted \(accept_drift=true\): span 2 vs 1: label 0\.\d+ > span_label_drift 0\.1 ",
                     lines[3]), lines[3]
    assert f" drift accepted earlier (accept_drift=true in run {_run_id(loop, 3)}): span 2 vs 1: label" in lines[4], \
        lines[4]
