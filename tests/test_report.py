"""`tokenlearner report` and `tokenlearner tensorboard` on a real tiny pipeline run; README's CLI section against the
CLI's own --help."""
from __future__ import annotations

import csv
import html.parser
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import cli
from inspection import report_figures as figures
from tests.helpers import REPO, TINY_RUN_LIMIT

TEST_EXAMPLES = 300  # --limit 300: 300 test images


@pytest.fixture(scope="module")
def finished_run(tiny_run) -> Path:
    """The shared tiny run (tests/conftest.py): `tokenlearner run --preset tiny --limit 300`, default settings."""
    assert TEST_EXAMPLES == TINY_RUN_LIMIT
    return tiny_run.output


@pytest.fixture(scope="module")
def report_dir(tiny_report) -> Path:
    return tiny_report


@pytest.fixture(scope="module")
def evaluation(finished_run, tiny_run):
    """(config, RunSummary) of the finished run, read back from MLMD as the report does."""
    from pipeline import config as config_lib
    from inspection import summary

    config = config_lib.load(str(finished_run))
    return config, summary.collect(config, tiny_run.run_id)


def _output(run, component: str, type_name: str):
    return next(s for s in run.steps if s.component == component).outputs[type_name][0]


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.tags: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "img":
            self.images.append(attrs)
        self.links += [attrs[k] for k in ("src", "href") if attrs.get(k)]


EXPECTED_FIGURES = {  # pixels, written out: not read back from the code that draws them
    "learning_curves.png": (1500, 450),
    "confusion_matrix.png": (900, 800),
    "per_class_accuracy.png": (900, 450),  # 10 classes: the base height (more than 15 make it taller)
    "test_predictions.png": (1200, 760),
    "token_attention.png": (890, 800),  # the tiny preset's 4 tokens: 170 x (1 image + 4 tokens) + 40, 185 x 4 + 60
}


@pytest.mark.slow
def test_report_page_shows_every_figure_as_a_valid_png_of_its_size(report_dir):
    from PIL import Image

    page = _Page()
    page.feed((report_dir / "report.html").read_text())
    shown = {img["src"]: (int(img["width"]), int(img["height"])) for img in page.images}
    assert shown == EXPECTED_FIGURES
    for name, size in EXPECTED_FIGURES.items():
        path = report_dir / name
        with Image.open(path) as image:
            image.verify()  # a complete, uncorrupted PNG
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == size, name
            pixels = np.asarray(image.convert("RGB"), dtype=float)
        # Not a blank canvas: the drawing covers a real share of the figure with varied colours.
        assert pixels.std() > 10 and (pixels.min(axis=2) < 200).mean() > 0.02, name
    # Self-contained: no scripts, no stylesheets or images from elsewhere.
    assert not {"script", "link", "iframe"} & page.tags
    assert not [link for link in page.links if re.match(r"[a-z]+:", link) and not link.startswith("#")]


@pytest.mark.slow
def test_report_in_a_real_browser_loads_every_figure_without_errors_or_overflow(report_dir, tmp_path):
    """report.html in headless Chromium at a laptop's 1280 px: every image decoded at its PNG's size, nothing in
    the console, nothing wider than the window. The screenshot stays in the test's tmp folder."""
    from PIL import Image

    from tests import browser

    chromium, chromedriver = browser.binaries()
    if not (chromium and chromedriver):
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver; .ci/run does)")
    with browser.Browser(chromium, chromedriver, width=1280) as page:
        page.open((report_dir / "report.html").as_uri())
        images = page.run("return [...document.images].map(i => ({src: i.getAttribute('src'), complete: i.complete,"
                          " natural: [i.naturalWidth, i.naturalHeight]}))")
        width, scroll_width = page.run("return [window.innerWidth, document.scrollingElement.scrollWidth]")
        errors = [entry for entry in page.console() if entry["level"] == "SEVERE"]
        shot = page.screenshot(tmp_path / "report.png")
    assert sorted(image["src"] for image in images) == sorted(EXPECTED_FIGURES)
    for image in images:
        with Image.open(report_dir / image["src"]) as png:
            assert image["complete"] and image["natural"] == list(png.size), image
    assert not errors, errors
    assert width == 1280 and scroll_width <= width, (scroll_width, width)
    with Image.open(shot) as screenshot:
        assert screenshot.size[0] == 1280


@pytest.mark.slow
def test_confusion_matrix_from_tfma_counts_every_test_example(report_dir, evaluation):
    from inspection import report

    config, run = evaluation
    uri = _output(run, "Evaluator", "ModelEvaluation").uri
    matrix = report.confusion_matrix(uri, 10)
    assert matrix.sum() == TEST_EXAMPLES
    overall, per_class = report.class_metrics(uri, 10)
    # Rows agree with TFMA's per-label slices, the diagonal with their accuracies and the overall accuracy.
    np.testing.assert_array_equal(matrix.sum(axis=1), per_class.counts)
    np.testing.assert_allclose(np.diag(matrix) / matrix.sum(axis=1), per_class.accuracy, atol=1e-6)
    assert np.trace(matrix) / TEST_EXAMPLES == pytest.approx(overall["sparse_categorical_accuracy"], abs=1e-6)
    # And with the model itself: the exported signature on the test split gives the same (true, predicted) counts.
    model = _output(run, "Trainer", "Model").uri
    records, _, labels = report.read_test_split(_output(run, "ImportExampleGen", "Examples").uri, 10_000,
                                               config.trainer.input_size)
    predicted = report.predict(f"{model}/Format-Serving", records).argmax(axis=1)
    ours = np.zeros((10, 10), dtype=np.int64)
    np.add.at(ours, (labels, predicted), 1)
    np.testing.assert_array_equal(ours, matrix)
    # The page's per-class table shows the same row totals.
    table = (report_dir / "report.html").read_text()
    for name, total in zip(config.class_names, matrix.sum(axis=1)):
        assert re.search(rf"<td>{name}</td><td class=\"num\">\d+</td><td class=\"num\">{total}</td>", table), name


@pytest.mark.slow
def test_report_card_and_lineage(report_dir, evaluation):
    from inspection import report
    from trainer.config import TrainerConfig

    config, run = evaluation
    # The trainer settings come from the Trainer execution in MLMD, not from config.json.
    recorded = report.trainer_config(report.summary.open_store(config), _output(run, "Trainer", "Model").id,
                                     fallback=TrainerConfig(epochs=99))
    assert recorded == config.trainer
    page = (report_dir / "report.html").read_text()
    assert run.run_id in page
    assert "4 learned tokens" in page and "33,050" in page  # the tiny preset's model: 33,050 parameters
    assert f"pushed version {Path(run.pushed_to).name}" in page
    # The training time adds up the Trainer's epoch_times.csv (2 epochs for the tiny preset, one fit), read here
    # with the csv module: H:MM:SS of the rounded total, and the mean epoch in seconds (minutes from 60 s).
    with open(Path(_output(run, "Trainer", "ModelRun").uri) / "epoch_times.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    seconds = [float(r["seconds"]) for r in rows]
    assert len(seconds) == 2 and len({r["fit_started_utc"] for r in rows}) == 1 and min(seconds) > 0
    total, mean = round(sum(seconds)), sum(seconds) / 2
    pace = f"{mean / 60:.1f} min" if mean >= 60 else f"{mean:.1f} s"
    assert (f"<td>training time</td><td>{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d} for 2 epoch(s), "
            f"{pace} an epoch</td>") in page, re.findall(r"<td>training time</td><td>[^<]*</td>", page)
    for producer in ("ImportExampleGen", "Transform", "Trainer", "Evaluator", "Pusher"):
        assert f"{producer} (execution" in page, producer


@pytest.mark.slow
def test_learning_curves_read_from_tensorboard_events_match_history_csv(evaluation, tmp_path):
    from inspection import report

    _, run = evaluation
    model_run = Path(_output(run, "Trainer", "ModelRun").uri)
    from_csv = report.learning_curves(str(model_run))
    events_only = tmp_path / "model_run"
    shutil.copytree(model_run, events_only, ignore=shutil.ignore_patterns("history.csv"))
    from_events = report.learning_curves(str(events_only))
    assert set(from_events) == {"loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy",
                                "val_top5_accuracy"}
    for key, values in from_events.items():
        assert len(values) == 2  # the tiny preset: 2 epochs
        np.testing.assert_allclose(values, from_csv[key], rtol=1e-5, err_msg=key)


@pytest.mark.slow
def test_accuracy_table_rows_come_from_a_finished_run(finished_run, evaluation, tiny_run, monkeypatch):
    # bench/accuracy.py --from-run: the product path's Evaluator numbers, the Trainer's curves and epoch times.
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import accuracy

    _, run = evaluation
    row = accuracy.run_row(f"tiny={finished_run}", tiny_run.run_id)
    # The Evaluator's own record, read with TFMA rather than the project's readers: the candidate's overall slice.
    top1, top5 = _tfma_overall(_output(run, "Evaluator", "ModelEvaluation").uri)
    assert (row["test_accuracy"], row["test_top5_accuracy"]) == (pytest.approx(top1), pytest.approx(top5))
    assert round(top1 * TEST_EXAMPLES, 3).is_integer() and top1 <= top5  # k of the 300 test images (float32)
    assert row["test_examples"] == TEST_EXAMPLES and row["params"] == 33_050
    assert len(row["val_accuracy_curve"]) == len(row["epoch_seconds"]) == 2  # the tiny preset's 2 epochs
    assert f"--limit {TINY_RUN_LIMIT} --preset tiny" in row["command"]
    table = accuracy.render([row, dict(row, config={**row["config"], "seed": 7})])
    assert table.count(f"| {100 * top1:.2f}% | {100 * top5:.2f}% |") == 2, table
    assert f"`tiny` over 2 runs (seeds 42, 7): top-1 {100 * top1:.2f} ± 0.00%" in table, table  # tiny's seed: 42


def _tfma_overall(evaluation_uri: str) -> tuple[float, float]:
    """(top-1, top-5) of the candidate model on the whole test split, from the Evaluator's metrics file as TFMA
    loads it."""
    import tensorflow_model_analysis as tfma

    (overall,) = [m for m in tfma.load_metrics(evaluation_uri) if not m.slice_key.single_slice_keys]
    # model_name "candidate" once a baseline is scored too; "" for the first run, the only model then.
    values = {kv.key.name: kv.value.double_value.value for kv in overall.metric_keys_and_values
              if kv.key.model_name in ("", "candidate") and not kv.key.is_diff}
    return values["sparse_categorical_accuracy"], values["sparse_top_k_categorical_accuracy"]


@pytest.mark.slow
def test_tensorboard_command_points_at_the_trainer_logs(finished_run, evaluation, capsys):
    import shlex

    _, run = evaluation
    assert cli.main(["tensorboard", "--output", str(finished_run)]) == 0
    cmd = shlex.split(capsys.readouterr().out.strip())
    assert Path(cmd[0]).name == "tensorboard" and Path(cmd[0]).is_file()
    logdir = Path(cmd[cmd.index("--logdir") + 1])
    assert logdir == Path(_output(run, "Trainer", "ModelRun").uri)
    assert list((logdir / "train").glob("events.out.tfevents.*"))
    assert list((logdir / "validation").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_report_for_an_unknown_run_is_one_clear_error(finished_run, tmp_path, capsys):
    assert cli.main(["report", "--output", str(finished_run), "--run", "no-such-run", "--out",
                     str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokenlearner: error:") and "no-such-run" in err and "\n" not in err
    assert not list(tmp_path.iterdir())


def test_report_without_a_run_names_the_missing_config(tmp_path, capsys):
    assert cli.main(["report", "--output", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokenlearner: error:") and "config.json" in err


def test_attention_maps_are_the_weights_the_token_learner_pools_with():
    import tensorflow as tf

    from inspection import report
    from trainer import vit
    from trainer.config import PRESETS
    import dataclasses

    cfg = PRESETS["tiny"]
    model = vit.build_model(cfg)
    views = tf.random.stateless_normal((3, cfg.image_size, cfg.image_size, 3), seed=(1, 2))
    maps = report.attention_maps(model, views)
    side = cfg.image_size // cfg.patch_size
    assert maps.shape == (3, cfg.num_tokens, side, side)
    assert (maps >= 0).all() and (maps <= 1).all()
    # Pooling the feature map with these maps gives the layer's own output.
    layer = model.get_layer("token_learner")
    import tf_keras as keras

    feature_map = keras.Model(model.inputs, layer.input)(views).numpy().reshape(3, side * side, -1)
    pooled = np.einsum("btn,bnc->btc", maps.reshape(3, cfg.num_tokens, -1), feature_map) / (side * side)
    np.testing.assert_allclose(pooled, layer(feature_map.reshape(3, side, side, -1)).numpy(), rtol=1e-4, atol=1e-6)

    plain = vit.build_model(dataclasses.replace(cfg, token_learner="none"))
    assert report.attention_maps(plain, views) is None


def test_figures_have_the_sizes_they_announce(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    history = {k: list(rng.random(3)) for k in ("loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy",
                                                "val_top5_accuracy")}
    names = [f"class{i}" for i in range(10)]
    figures.learning_curves(history, 2, str(tmp_path / "a.png"))
    figures.confusion_matrix(rng.integers(0, 9, (10, 10)), names, str(tmp_path / "b.png"))
    predictions = figures.Predictions(rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8),
                                      rng.integers(0, 10, 40), rng.dirichlet(np.ones(10), 40))
    figures.prediction_grid(predictions, names, str(tmp_path / "c.png"))
    figures.attention_maps(rng.integers(0, 255, (4, 48, 48, 3), dtype=np.uint8), rng.random((4, 16, 8, 8)),
                           ["x"] * 4, str(tmp_path / "d.png"))
    for name, size in [("a", figures.LEARNING_CURVES_SIZE), ("b", figures.CONFUSION_MATRIX_SIZE),
                       ("c", figures.PREDICTIONS_SIZE), ("d", figures.attention_size(16))]:
        with Image.open(tmp_path / f"{name}.png") as image:
            assert image.size == size, name
    # Worst mistakes first: ascending probability of the true class.
    order = predictions.worst_first()
    true_p = predictions.probabilities[order, predictions.labels[order]]
    assert (np.diff(true_p) >= 0).all()


# ---- README --------------------------------------------------------------------------------------------------

def _readme_commands() -> dict[str, set[str]]:
    """{subcommand: options} of every `tokenlearner <cmd> …` in README.md's CLI section."""
    text = (REPO / "README.md").read_text()
    section = re.search(r"^## CLI\b(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## CLI' section"
    commands: dict[str, set[str]] = {}
    for usage in re.findall(r"`tokenlearner ([^`]+)`", section.group(1)):
        words = usage.split()
        if words and not words[0].startswith("-"):
            commands.setdefault(words[0], set()).update(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", usage))
    return commands


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv + ["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_readme_cli_commands_and_options_exist_in_the_help(capsys):
    commands = _readme_commands()
    assert commands, "no `tokenlearner <command>` in README.md's CLI section"
    top = _help([], capsys)
    listed = set(re.search(r"\{([a-z,_-]+)\}", top).group(1).split(","))
    assert set(commands) <= listed, f"README lists commands the CLI lacks: {sorted(set(commands) - listed)}"
    for command, options in commands.items():
        text = _help([command], capsys)
        missing = sorted(o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text))
        assert not missing, f"README's `tokenlearner {command}` names options its --help lacks: {missing}"


def test_every_cli_command_is_in_the_readme(capsys):
    listed = set(re.search(r"\{([a-z,_-]+)\}", _help([], capsys)).group(1).split(","))
    assert listed <= set(_readme_commands()), f"not in README.md's CLI section: {sorted(listed - set(_readme_commands()))}"


@pytest.mark.parametrize("num_classes", [3, 100])
def test_figures_follow_the_datasets_class_count(num_classes, tmp_path):
    """3 classes (top-2 curves, long folder names) and 100 (no cell counts, no names along the axes, a taller
    per-class chart): each figure has the size it announces."""
    from PIL import Image

    rng = np.random.default_rng(num_classes)
    names = [f"a rather long folder name {i}" for i in range(num_classes)]
    history = {k: list(rng.random(3)) for k in ("loss", "accuracy", "top2_accuracy", "val_loss", "val_accuracy",
                                                "val_top2_accuracy")}
    figures.learning_curves(history, 2, str(tmp_path / "a.png"))
    figures.confusion_matrix(rng.integers(0, 9, (num_classes, num_classes)), names, str(tmp_path / "b.png"))
    figures.per_class_accuracy(rng.random(num_classes), rng.integers(1, 50, num_classes), 0.5, names,
                               str(tmp_path / "c.png"))
    predictions = figures.Predictions(rng.integers(0, 255, (40, 64, 64, 3), dtype=np.uint8),
                                      rng.integers(0, num_classes, 40), rng.dirichlet(np.ones(num_classes), 40))
    figures.prediction_grid(predictions, names, str(tmp_path / "d.png"))
    # A conv tokenizer's grid need not divide the view: 30 pixels over a 8x8 grid (rounded up from 7.5).
    figures.attention_maps(rng.integers(0, 255, (3, 30, 30, 3), dtype=np.uint8), rng.random((3, 4, 8, 8)),
                           ["x"] * 3, str(tmp_path / "e.png"))
    for name, size in [("a", figures.LEARNING_CURVES_SIZE), ("b", figures.CONFUSION_MATRIX_SIZE),
                       ("c", figures.per_class_size(num_classes)), ("d", figures.PREDICTIONS_SIZE),
                       ("e", figures.attention_size(4))]:
        with Image.open(tmp_path / f"{name}.png") as image:
            assert image.size == size, name
    assert figures.per_class_size(10) == figures.PER_CLASS_SIZE  # CIFAR-10's chart is unchanged
    assert figures.short_name(names[0]) == "a rather long f…"
