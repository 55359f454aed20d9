"""The exit-code matrix (issue 41): each documented exit code of each command, produced here wherever no trained
model or pipeline run is needed. Every test asserts the code as a literal (not the constant of trainer/exit_codes.py:
a constant changed there must fail here) and the first line of the message. docs/reliability.md's "Exit codes" table
lists command x code x trigger x test, naming the tests in other modules for the codes that need a model or a run.

"The message" is what the command prints for the user: stdout for a success, stderr for a failure, without the
timestamped log lines (`03:02:45 I cli.remote: ...`) that may come before it. argparse's own usage errors print the
usage and then the error: the first line is `usage: tokenlearner COMMAND ...`, and the error line is checked too.
"""
from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

import cli
from tests.helpers import REPO, write_image_folder
from trainer import exit_codes

# Name -> value, from the documentation (trainer/exit_codes.py's docstring, README's CLI section), written out here.
DOCUMENTED = {"EXIT_OK": 0, "EXIT_USAGE": 2, "EXIT_INTERRUPTED": 130, "EXIT_PIPELINE_FAILED": 1, "EXIT_NOT_PUSHED": 3,
              "EXIT_DRIFT": 4, "EXIT_SOME_FAILED": 1, "EXIT_UNREACHABLE": 3, "EXIT_JOB_FAILED": 3,
              "EXIT_SUBMIT_FAILED": 3, "EXIT_TRAINING_FAILED": 1, "EXIT_PEER_TIMEOUT": 5, "EXIT_TERMINATED": 143}
_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d [DIWEC] [\w.]+: ")


def message(text: str) -> list[str]:
    """The lines of `text` that are the command's message: its log lines left out."""
    return [line for line in text.splitlines() if not _LOG_LINE.match(line)]


def main(argv: list[str], capsys) -> tuple[int, list[str], list[str]]:
    """`tokenlearner ARGV` in this process: (exit code, stdout message lines, stderr message lines); argparse's
    SystemExit is its exit code."""
    try:
        code = cli.main(argv)
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, message(out), message(err)


# Command -> its documented exit codes (trainer/exit_codes.py's docstring, README's CLI section), written out:
# docs/reliability.md's exit-code table has one row for each, naming the test that produces it.
MATRIX = {
    "data": {0, 2, 130}, "run": {0, 1, 2, 3, 4, 130}, "predict": {0, 1, 2, 3, 130}, "infer": {0, 1, 2, 3, 130},
    "compile": {0, 2, 130}, "submit": {0, 2, 3, 130}, "report": {0, 2, 130}, "history": {0, 2, 130},
    "spans": {0, 2, 130}, "tensorboard": {0, 2, 130}, "flops": {0, 2, 130},
    "train-worker": {0, 1, 2, 5, 130, 143}, "python -m trainer.worker": {0, 1, 2, 5, 130, 143},
}


def _table_rows() -> list[tuple[str, int, str]]:
    """(command, code, test column) of each row of docs/reliability.md's exit-code table."""
    text = (REPO / "docs" / "reliability.md").read_text()
    table = text[text.index("\n## Exit codes"):].split("\n## ")[1]
    return [(m.group(1), int(m.group(2)), m.group(3))
            for m in re.finditer(r"^\| `([^`]+)` \| (\d+) \| .* \| ([^|]*) \|$", table, flags=re.M)]


def test_the_docs_table_has_a_row_for_each_code_of_each_command():
    rows = _table_rows()
    table: dict[str, set[int]] = {}
    for command, code, _ in rows:
        table.setdefault(command, set()).add(code)
    assert table == MATRIX
    assert len(rows) == sum(map(len, MATRIX.values())), "a command x code twice"


def test_every_test_the_docs_table_names_exists():
    missing = []
    for command, code, tests in _table_rows():
        where = None
        names = re.findall(r"`(?:([\w/]+\.py|E)::)?(test_\w+)\b(?!\.)", tests)
        assert names, (command, code, tests)
        for module, name in names:
            where = module or where  # `a.py::test_x`, `test_y`: test_y is in a.py too
            path = Path(__file__) if where == "E" else REPO / "tests" / Path(where).name
            if not re.search(rf"^def {name}\(", path.read_text(), flags=re.M):
                missing.append(f"{command} {code}: {where}::{name}")
    assert missing == []


def test_every_subcommand_has_its_rows():
    from cli import app

    (subcommands,) = [action.choices for action in app.build_parser()._subparsers._group_actions]
    assert sorted(subcommands) == sorted(set(MATRIX) - {"python -m trainer.worker"})
    assert sorted(ARGUMENT_ERRORS) == sorted(INTERRUPTED) == sorted(subcommands)


def test_each_name_has_its_documented_value():
    names = {name: getattr(exit_codes, name) for name in dir(exit_codes) if name.startswith("EXIT_")}
    assert names == DOCUMENTED
    # The docstring's table: "  <code>  <NAME>  <meaning>", one row a name.
    rows = dict((name, int(code)) for code, name in re.findall(r"^\s+(\d+)\s+(EXIT_\w+)\s", exit_codes.__doc__, re.M))
    assert rows == DOCUMENTED


# ------------------------------------------------------------------------------------------- 0: done, cheap cases

@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """An image folder of 2 classes, 10 PNGs each in train/ and test/: the least `data` accepts by default."""
    return write_image_folder(tmp_path_factory.mktemp("source") / "images", per_class=10, classes=("cat", "dog"))


@pytest.fixture(scope="module")
def dataset(source, tmp_path_factory) -> Path:
    from components import ingest

    return ingest.prepare(str(source), tmp_path_factory.mktemp("data"))


def test_data_exits_0_printing_the_dataset_folder(source, tmp_path, capsys):
    code, out, err = main(["data", "--data", str(source), "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert len(out) == 1 and Path(out[0]).parent == tmp_path and (Path(out[0]) / "manifest.json").is_file(), out


def _fake_run(monkeypatch, dataset: Path, pushed_to: str | None, reason: str = "") -> None:
    """`run` for real up to the pipeline (settings, metadata store, the dataset's manifest, config.json); the
    pipeline itself a no-op and the run summary MLMD would give replaced by one that did or did not push."""
    from cli import app
    from inspection import summary
    from pipeline import local_runner

    result = summary.RunSummary(run_id="tokenlearner-cifar10-20261208-030000", steps=[], examples={}, anomalies=[],
                                accuracy=None, top5_accuracy=None, blessed=pushed_to is not None,
                                pushed_to=pushed_to, not_pushed_reason=reason)
    monkeypatch.setattr(app, "_prepare", lambda args, out_root: dataset)
    monkeypatch.setattr(local_runner, "run", lambda config: None)
    monkeypatch.setattr(summary, "collect", lambda config, *args, **kwargs: result)


def test_run_exits_0_when_the_model_was_pushed(dataset, tmp_path, monkeypatch, capsys):
    _fake_run(monkeypatch, dataset, pushed_to=str(tmp_path / "serving" / "tokenlearner" / "1"))
    code, out, err = main(["run", "--preset", "tiny", "--output", str(tmp_path / "out")], capsys)
    assert code == 0 and err == [], err
    assert out[0] == "run tokenlearner-cifar10-20261208-030000"


def test_run_exits_3_when_the_model_was_not_blessed(dataset, tmp_path, monkeypatch, capsys):
    reason = "sparse_categorical_accuracy: candidate 0.1000 vs baseline 0.5000, change -0.4000 is below the allowed " \
             "-0.0100"
    _fake_run(monkeypatch, dataset, pushed_to=None, reason=reason)
    code, out, err = main(["run", "--preset", "tiny", "--output", str(tmp_path / "out")], capsys)
    assert code == 3
    assert err == [f"tokenlearner: model not pushed: {reason}"]
    assert out[0] == "run tokenlearner-cifar10-20261208-030000"


def _output_with_an_empty_store(tmp_path: Path) -> Path:
    """An output folder with a run's config.json and an empty ML Metadata store (SQLite): nothing ran yet."""
    import ml_metadata as mlmd

    from pipeline import config as config_lib
    from pipeline.config import metadata

    output = tmp_path / "out"
    config = config_lib.from_preset("tiny", data_root=str(tmp_path / "data"), output_dir=str(output))
    config.save()
    mlmd.MetadataStore(metadata.connection_config(config.metadata, config.metadata_path))
    return output


def test_history_exits_0_with_the_table_header_for_a_store_without_runs(tmp_path, capsys):
    code, out, err = main(["history", "--output", str(_output_with_an_empty_store(tmp_path))], capsys)
    assert code == 0, err
    assert out == ["run  started (UTC)  spans  span check  start  test acc.  blessed  pushed"]


def test_spans_exits_0_with_one_line_a_span(dataset, capsys):
    code, out, err = main(["spans", str(dataset)], capsys)
    assert code == 0, err
    assert out[0] == f"{dataset}: 1 span(s), 2 classes; thresholds span_label_drift 0.1, span_image_drift 0.1"


def test_flops_exits_0_with_the_models_parameters(capsys):
    code, out, err = main(["flops", "--preset", "tiny"], capsys)
    assert code == 0, err
    assert out[0] == "model               vit_token_learner_4, input [1, 48, 48, 3]"
    assert out[1] == "parameters          33,050 (33,050 trainable)"  # README: tiny is a 33k-parameter model


def test_compile_exits_0_printing_each_tasks_limits_then_the_spec(tmp_path, capsys):
    spec = tmp_path / "pipeline.json"
    code, out, err = main(["compile", "--target", "kubeflow", "--preset", "tiny", "--image", "img", "--data-root",
                           "gs://bucket/data", "--output", "gs://bucket/out", "--set", "class_names=cifar10", "--out", str(spec)],
                          capsys)
    assert code == 0, err
    assert re.match(r"^Trainer\s+cpu \d+, memory [\d.]+ GiB", next(line for line in out if line.startswith("Trainer")))
    assert re.match(r"^\w+\s+(cpu \d+, memory|no limits)", out[0]), out
    assert out[-1] == str(spec) and spec.is_file()


# ------------------------------------------------------------------------------ 2: bad arguments, input or settings

# What every command that reads a finished run says of an --output folder without one.
NO_RUN = ("tokenlearner: error: {tmp}/pipeline/tokenlearner-cifar10/config.json: missing; expected an output folder of "
          "`tokenlearner run`")

# (command line, first line of the error); {tmp} is the test's tmp_path. Nothing is run.
USAGE_ERRORS = {
    "data: missing source": (
        ["data", "--data", "{tmp}/missing.tar.gz", "--out", "{tmp}/out"],
        "tokenlearner: error: data source {tmp}/missing.tar.gz does not exist; expected an image folder"),
    "run: unreadable setting": (
        ["run", "--set", "epochs=zero", "--output", "{tmp}/out"],
        "tokenlearner: error: epochs: cannot read 'zero' as int"),
    "predict: no model folder": (
        ["predict", "{tmp}/cat.png", "--model", "{tmp}/no-model"],
        "tokenlearner: error: --model {tmp}/no-model: no such folder"),
    "infer: no model folder": (
        ["infer", "--model", "{tmp}/no-model", "--data", "{tmp}", "--out", "{tmp}/out"],
        "tokenlearner: error: --model {tmp}/no-model: no such folder"),
    "compile: unreadable setting": (
        ["compile", "--target", "kubeflow", "--image", "img", "--data-root", "{tmp}/data", "--output", "{tmp}/out",
         "--set", "epochs=zero"],
        "tokenlearner: error: epochs: cannot read 'zero' as int"),
    "submit: kubeflow without --host": (
        ["submit", "--target", "kubeflow", "--image", "img", "--data-root", "{tmp}/data", "--output", "{tmp}/out"],
        "tokenlearner: error: --host: required for --target kubeflow (the Kubeflow Pipelines API endpoint, e.g. "
        "http://localhost:8080), or set $KF_PIPELINES_ENDPOINT"),
    "report: no run in --output": (
        ["report", "--output", "{tmp}"],
        NO_RUN),
    "history: no run in --output": (
        ["history", "--output", "{tmp}"],
        NO_RUN),
    "tensorboard: no run in --output": (
        ["tensorboard", "--output", "{tmp}"],
        NO_RUN),
    "spans: no dataset": (
        ["spans", "{tmp}/missing"],
        "tokenlearner: error: {tmp}/missing/manifest.json: missing; expected a dataset written by `tokenlearner data`"),
    "spans: threshold out of range": (
        ["spans", "{tmp}", "--span-label-drift", "2"],
        "tokenlearner: error: span_label_drift: expected 0..1"),
    "train-worker: no run in --output": (
        ["train-worker", "--output", "{tmp}"],
        NO_RUN),
    "flops: unreadable setting": (
        ["flops", "--set", "num_tokens=x"],
        "tokenlearner: error: num_tokens: cannot read 'x' as int"),
}


@pytest.mark.parametrize("case", USAGE_ERRORS)
def test_bad_input_or_settings_exit_2_with_one_line(case, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)  # submit's --host default
    argv, first_line = USAGE_ERRORS[case]
    (tmp_path / "cat.png").write_bytes(b"never read: the command stops before")
    code, out, err = main([a.format(tmp=tmp_path) for a in argv], capsys)
    assert code == 2
    assert len(err) == 1 and err[0].startswith(first_line.format(tmp=tmp_path)), err
    assert out == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["history", "report", "tensorboard"])
def test_a_run_folder_without_its_metadata_store_exits_2(command, tmp_path, capsys):
    from pipeline import config as config_lib

    config = config_lib.from_preset("tiny", data_root=str(tmp_path / "data"), output_dir=str(tmp_path))
    config.save()
    code, out, err = main([command, "--output", str(tmp_path)], capsys)
    assert code == 2
    assert err == [f"tokenlearner: error: {tmp_path}/pipeline/tokenlearner-cifar10/metadata.sqlite: missing; expected "
                   "the metadata of a `tokenlearner run`"]


def test_tensorboard_on_a_store_without_trainer_logs_exits_2(tmp_path, capsys):
    output = _output_with_an_empty_store(tmp_path)
    code, out, err = main(["tensorboard", "--output", str(output), "--all"], capsys)
    assert code == 2
    assert err == [f"tokenlearner: error: {output}/pipeline/tokenlearner-cifar10/metadata.sqlite: no Trainer logs "
                   "(ModelRun artifact) recorded"]


# (command line, argparse's error line): argparse refuses it before the command's code runs.
ARGUMENT_ERRORS = {
    "data": (["data", "--limit", "x"], "tokenlearner data: error: argument --limit: invalid int value: 'x'"),
    "run": (["run", "--preset", "nope"], "tokenlearner run: error: argument --preset: invalid choice: 'nope'"),
    "predict": (["predict", "img.png"], "tokenlearner predict: error: one of the arguments --model --rest --grpc is "
                                        "required"),
    "infer": (["infer", "--model", "m"], "tokenlearner infer: error: the following arguments are required: --data, "
                                         "--out"),
    "compile": (["compile"], "tokenlearner compile: error: the following arguments are required: --target, --image, "
                             "--data-root, --output"),
    "submit": (["submit"], "tokenlearner submit: error: the following arguments are required: --image, --data-root, "
                           "--output"),
    "report": (["report", "--max-test-examples", "all"],
               "tokenlearner report: error: argument --max-test-examples: invalid int value: 'all'"),
    "history": (["history", "--output"], "tokenlearner history: error: argument --output: expected one argument"),
    "tensorboard": (["tensorboard", "--port", "http"],
                    "tokenlearner tensorboard: error: argument --port: invalid int value: 'http'"),
    "flops": (["flops", "--preset", "huge"], "tokenlearner flops: error: argument --preset: invalid choice: 'huge'"),
    "spans": (["spans"], "tokenlearner spans: error: the following arguments are required: DATASET"),
    "train-worker": (["train-worker", "--peer-timeout", "0"],
                     "tokenlearner train-worker: error: argument --peer-timeout: expected seconds > 0, got '0'"),
}


@pytest.mark.parametrize("command", ARGUMENT_ERRORS)
def test_bad_arguments_exit_2_with_the_usage(command, capsys):
    argv, error = ARGUMENT_ERRORS[command]
    code, out, err = main(argv, capsys)
    assert code == 2
    assert err[0].startswith(f"usage: tokenlearner {command} ") and err[-1].startswith(error), err


# ------------------------------------------------------------------------------------------------ 130: Ctrl-C

# (command line, module and function that Ctrl-C interrupts): the user's Ctrl-C arrives there.
INTERRUPTED = {
    "data": (["data", "--data", "{tmp}", "--out", "{tmp}/out"], "components.ingest", "prepare"),
    "run": (["run", "--output", "{tmp}/out"], "cli.app", "_prepare"),
    "predict": (["predict", "{tmp}", "--rest", "http://127.0.0.1:1"], "serving_client.predict", "run"),
    "infer": (["infer", "--model", "{tmp}", "--data", "{tmp}", "--out", "{tmp}/out"], "inference.job", "run"),
    "compile": (["compile", "--target", "kubeflow", "--image", "i", "--data-root", "{tmp}", "--output", "{tmp}/out"],
                "cli.remote", "build_config"),
    "submit": (["submit", "--dry-run", "--image", "i", "--data-root", "{tmp}", "--output", "{tmp}/out"],
               "cli.remote", "build_config"),
    "report": (["report", "--output", "{tmp}"], "pipeline.config", "load"),
    "history": (["history", "--output", "{tmp}"], "pipeline.config", "load"),
    "tensorboard": (["tensorboard", "--output", "{tmp}"], "pipeline.config", "load"),
    "flops": (["flops"], "pipeline.config", "from_preset"),
    "spans": (["spans", "{tmp}"], "inspection.spans", "overview"),
    "train-worker": (["train-worker", "--output", "{tmp}"], "pipeline.config", "load"),
}


@pytest.mark.parametrize("command", INTERRUPTED)
def test_ctrl_c_exits_130(command, tmp_path, monkeypatch, capsys):
    import importlib

    monkeypatch.delenv("TF_CONFIG", raising=False)  # train-worker reads it first
    argv, module, function = INTERRUPTED[command]
    interrupted = []

    def ctrl_c(*args, **kwargs):
        interrupted.append(function)
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), function, ctrl_c)
    code, out, err = main([a.format(tmp=tmp_path) for a in argv], capsys)
    assert interrupted == [function]  # the command got there: the 130 is the Ctrl-C's
    assert code == 130
    assert err == ["tokenlearner: interrupted"]


# ------------------------------------------------------------------------------------- predict: 1 and 3, cheap cases

def test_predict_exits_1_when_a_file_fails(tmp_path, capsys):
    """No file to send, so no model is needed: the missing file is the one that failed."""
    code, out, err = main(["predict", str(tmp_path / "missing.jpg"), "--rest", "http://127.0.0.1:1"], capsys)
    assert code == 1
    assert err == [f"tokenlearner: {tmp_path}/missing.jpg: no such file or folder"] and out == []


def test_predict_exits_3_when_the_server_refuses_the_connection(tmp_path, capsys):
    (tmp_path / "cat.png").write_bytes(b"not sent: the connection fails first")
    with socket.socket() as bound:  # a port that is taken but never listened on: every connection is refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        code, out, err = main(["predict", str(tmp_path), "--rest", f"http://127.0.0.1:{port}", "--retries", "0"],
                              capsys)
    assert code == 3
    assert err == [f"tokenlearner: error: http://127.0.0.1:{port}/v1/models/tokenlearner:predict: unreachable or "
                   "failing after 1 attempt(s) (10 s timeout each): [Errno 111] Connection refused"]


# ------------------------------------------------------------------------------- python -m trainer.worker: exit 2

def test_worker_exits_2_on_a_missing_fn_args_file(tmp_path, capsys):
    from trainer import worker

    code = worker.main(["--fn-args", str(tmp_path / "missing.json")])
    assert code == 2
    assert capsys.readouterr().err.splitlines()[0] == (f"trainer.worker: --fn-args {tmp_path}/missing.json: expected "
                                                       f"a readable JSON file ([Errno 2] No such file or directory: "
                                                       f"'{tmp_path}/missing.json')")


def test_worker_exits_2_on_a_malformed_tf_config(tmp_path, monkeypatch, capsys):
    from trainer import worker

    fn_args = tmp_path / "fn_args.json"
    fn_args.write_text(json.dumps({}))
    monkeypatch.setenv("TF_CONFIG", "chief:0")
    code = worker.main(["--fn-args", str(fn_args)])
    assert code == 2
    assert capsys.readouterr().err.splitlines()[0].startswith("trainer.worker: TF_CONFIG: expected JSON, got 'chief:0'")


def test_worker_exits_2_without_fn_args(capsys):
    from trainer import worker

    with pytest.raises(SystemExit) as stop:
        worker.main([])
    assert stop.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("usage: trainer.worker ")
    assert err[-1] == "trainer.worker: error: the following arguments are required: --fn-args"


def test_worker_exits_130_on_ctrl_c(tmp_path, monkeypatch, capsys):
    """SIGINT while the worker waits for its training process (started for real, then ended by the worker)."""
    import signal
    import types

    from trainer import worker

    def ctrl_c(*args):
        signal.raise_signal(signal.SIGINT)
        raise AssertionError("SIGINT did not stop the worker")

    monkeypatch.setattr(worker, "select", types.SimpleNamespace(select=ctrl_c))
    monkeypatch.delenv("TF_CONFIG", raising=False)
    fn_args = tmp_path / "fn_args.json"
    fn_args.write_text("{}")
    code = worker.main(["--fn-args", str(fn_args)])
    assert code == 130
    assert capsys.readouterr().err.splitlines()[-1] == "trainer.worker: stopped by SIGINT"
