"""Your own images, end to end: the whole pipeline, Pusher included, through the CLI as a user runs it, on two datasets
that are not CIFAR-10. Every step takes the class list and the input size from the data, none from a constant.

- digits: scikit-learn's 1,797 handwritten 8x8 digits as an image folder with train/ and test/ (10 classes named
  "zero" .. "nine", 8-bit grayscale PNGs), the `small_images` preset (input_size 16) with `--limit 300 --epochs 2`;
- a 3-class folder of mixed formats (JPEG, PNG, WebP, BMP, GIF, TIFF), modes (RGB, RGBA, P, L, CMYK, 16-bit) and sizes
  (20x20 to 1600x1200), imbalanced (120, 90 and 60 images), with no test/ folder: ingestion holds out a test split.

Both train 2 epochs (blessing floor 0) on a few hundred images, once per test run (tests/conftest.py):
what is checked is the plumbing, never the accuracy (the digits' accuracy at a documented budget is measured in
bench/, docs/benchmarks.md).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import cli
from tests.helpers import (CLASSES, DIGIT_NAMES, DIGITS_RUN_LIMIT, MIXED_CLASSES, MIXED_NESTED, MIXED_PER_CLASS,
                           MIXED_PHOTO, MIXED_PHOTO_SIZE, PipelineRun)

DIGITS = sorted(DIGIT_NAMES)  # the class list: folder names, sorted (eight, five, four, nine, one, ...)
MIXED = sorted(MIXED_CLASSES)  # ember, moss, sky
MIXED_TEST = [MIXED_PER_CLASS[name] // 10 for name in MIXED]  # the held-out 10% of each class: 12, 9, 6


def _records(dataset: Path, split: str, n: int) -> list[bytes]:
    files = [str(p) for p in sorted((dataset / split).glob("*.tfrecord.gz"))]
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(n)]


def _ran_cleanly_and_pushed_one_version(run: PipelineRun, class_names: list[str]) -> Path:
    assert f"run {run.run_id}" in run.console and "pushed " in run.console, run.console[-5000:]
    assert "Traceback" not in run.console, run.console[-5000:]
    (version,) = run.pushed_versions()
    assert version.name.isdigit() and (version / "saved_model.pb").is_file()
    assert (version / "assets.extra" / "class_names.txt").read_text().split("\n")[:-1] == class_names
    return version


def _mode(path: Path) -> str:
    with Image.open(path) as image:
        return image.mode


def _evaluator_slices(run: PipelineRun) -> dict[str, dict[str, float]]:
    from inspection import evaluation

    return evaluation.metric_values(run.artifact_uri("Evaluator", "ModelEvaluation"))


# ---------------------------------------------------------------------------------------------------- digits

@pytest.mark.slow
def test_digits_run_pushes_a_model_named_by_the_digit_folders(digits_run):
    _ran_cleanly_and_pushed_one_version(digits_run, DIGITS)
    manifest = digits_run.manifest
    assert manifest["format"] == "folder" and manifest["class_names"] == DIGITS and manifest["num_classes"] == 10
    assert manifest["test_split"] == "source"  # the folder's own test/
    assert manifest["splits"]["test"]["examples"] == DIGITS_RUN_LIMIT
    assert manifest["splits"]["train"]["examples"] + manifest["splits"]["eval"]["examples"] == DIGITS_RUN_LIMIT
    assert not digits_run.dataset.name.startswith("cifar10-")
    config = digits_run.config()
    assert list(config.class_names) == DIGITS and config.trainer.num_classes == 10
    assert config.trainer.input_size == 16


@pytest.mark.slow
def test_digits_serving_default_answers_with_the_digit_names(digits_run, digits_folder):
    (version,) = digits_run.pushed_versions()
    model = tf.saved_model.load(str(version))
    # Two 8x8 grayscale PNGs of each digit from the folder's test/, as a client sends them.
    files = [path for name in DIGIT_NAMES for path in sorted((digits_folder / "test" / name).glob("*.png"))[:2]]
    with Image.open(files[0]) as image:
        assert (image.size, image.mode) == ((8, 8), "L")
    out = model.signatures["serving_default"](images=tf.constant([p.read_bytes() for p in files]))
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape == (20, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out["class_ids"].numpy(), probabilities.argmax(axis=1))
    names = [n.decode() for n in out["class_names"].numpy()]
    assert names == [DIGITS[i] for i in probabilities.argmax(axis=1)] and set(names) <= set(DIGIT_NAMES)

    # The Transform graph in the model resizes every image to input_size=16 (the 8x8 digits are upscaled).
    records = _records(digits_run.dataset, "test", 8)
    assert model.signatures["transform_features"](examples=tf.constant(records))["image_xf"].shape == (8, 16, 16, 3)
    by_example = model.signatures["serving_tf_example"](examples=tf.constant(records))["probabilities"].numpy()
    pngs = [tf.train.Example.FromString(r).features.feature["image"].bytes_list.value[0] for r in records]
    by_bytes = model.signatures["serving_default"](images=tf.constant(pngs))["probabilities"].numpy()
    np.testing.assert_allclose(by_bytes, by_example, atol=1e-5)


@pytest.mark.slow
def test_digits_evaluator_slices_are_the_ten_digit_labels(digits_run):
    slices = _evaluator_slices(digits_run)
    assert set(slices) == {"overall", *(f"label={k}" for k in range(10))}
    per_class = digits_run.manifest["splits"]["test"]["per_class"]
    assert [slices[f"label={k}"]["candidate/example_count"] for k in range(10)] == per_class
    assert slices["overall"]["candidate/example_count"] == DIGITS_RUN_LIMIT


# ------------------------------------------------------------------------------------------- the mixed folder

def test_the_mixed_folder_has_every_format_mode_and_size_and_no_test_folder(mixed_folder):
    """What the fixture builds (tests/helpers.py write_mixed_folder) is what the issue asks to be accepted."""
    formats, modes, sizes, per_class = set(), set(), set(), {}
    for path in sorted(mixed_folder.rglob("*")):
        if path.is_file():
            with Image.open(path) as image:
                formats.add(image.format)
                modes.add(image.mode)
                sizes.add(image.size)
            name = path.relative_to(mixed_folder / "train").parts[0]
            per_class[name] = per_class.get(name, 0) + 1
    assert formats == {"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"}
    assert modes == {"RGB", "RGBA", "P", "L", "CMYK", "I;16"}
    assert min(sizes) == (20, 20) and max(sizes) == MIXED_PHOTO_SIZE and len(sizes) >= 8
    assert per_class == MIXED_PER_CLASS
    assert sorted(p.name for p in mixed_folder.iterdir()) == ["train"]
    assert all((mixed_folder / "train" / name / MIXED_NESTED).is_dir() for name in MIXED)


@pytest.mark.slow
def test_mixed_run_ingests_every_image_holds_out_a_stratified_test_split_and_pushes(mixed_run):
    _ran_cleanly_and_pushed_one_version(mixed_run, MIXED)
    manifest = mixed_run.manifest
    assert manifest["format"] == "folder" and manifest["class_names"] == MIXED and manifest["num_classes"] == 3
    assert manifest["test_split"] == "held_out" and manifest["test_fraction"] == 0.1
    splits = manifest["splits"]
    assert splits["test"]["per_class"] == MIXED_TEST
    # Every image of every format, mode and size became an example: nothing was skipped.
    assert [sum(splits[s]["per_class"][c] for s in ("train", "eval", "test")) for c in range(3)] == \
        [MIXED_PER_CLASS[name] for name in MIXED]
    # Ingestion stored every image as 8-bit RGB bytes the Transform decodes; it resizes them to input_size=32.
    (version,) = mixed_run.pushed_versions()
    model = tf.saved_model.load(str(version))
    records = _records(mixed_run.dataset, "train", 64)
    assert model.signatures["transform_features"](examples=tf.constant(records))["image_xf"].shape == (64, 32, 32, 3)
    config = mixed_run.config()
    assert list(config.class_names) == MIXED and config.trainer.num_classes == 3


@pytest.mark.slow
def test_predict_prints_the_folder_class_names_with_three_probabilities(mixed_run, mixed_folder, capsys):
    # A 1600x1200 phone-style JPEG and a small RGBA PNG of the folder: the serving signature takes any size.
    photo = mixed_folder / "train" / "moss" / MIXED_PHOTO
    small = next(p for p in sorted((mixed_folder / "train" / "sky").glob("*.png")) if _mode(p) == "RGBA")
    rc = cli.main(["predict", str(photo), str(small), "--model", str(mixed_run.output / "serving" / "tokenlearner")])
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(photo), str(small)], out
    for line in lines:
        top = re.findall(r"(\S+) (\d\.\d{3})", line.split("\t")[1])
        assert sorted(name for name, _ in top) == MIXED, line  # --top-k 3 (default): all three classes
        assert sum(float(p) for _, p in top) == pytest.approx(1.0, abs=0.003), line
    assert not [name for line in lines for name in CLASSES if name in line.split("\t")[1]]


@pytest.mark.slow
def test_mixed_evaluator_metrics_are_exactly_the_three_classes(mixed_run):
    from inspection import report

    slices = _evaluator_slices(mixed_run)
    assert set(slices) == {"overall", "label=0", "label=1", "label=2"}
    uri = mixed_run.artifact_uri("Evaluator", "ModelEvaluation")
    overall, per_class = report.class_metrics(uri, 3)
    assert list(per_class.counts) == MIXED_TEST
    matrix = report.confusion_matrix(uri, 3)
    assert matrix.shape == (3, 3) and list(matrix.sum(axis=1)) == MIXED_TEST
    assert np.trace(matrix) / matrix.sum() == pytest.approx(overall["sparse_categorical_accuracy"], abs=1e-6)


@pytest.mark.slow
def test_mixed_report_shows_the_three_class_names(mixed_report):
    page = (mixed_report / "report.html").read_text()
    for name, total in zip(MIXED, MIXED_TEST):  # the per-class table: name, correct, total
        assert re.search(rf"<td>{name}</td><td class=\"num\">\d+</td><td class=\"num\">{total}</td>", page), name
    assert not [name for name in CLASSES if f"<td>{name}</td>" in page]
    for figure in ("confusion_matrix.png", "per_class_accuracy.png", "test_predictions.png"):
        assert (mixed_report / figure).is_file(), figure
