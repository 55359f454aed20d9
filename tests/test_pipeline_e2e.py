"""End to end: the CLI runs the real pipeline (LocalDagRunner, Beam) on a few hundred real CIFAR-10 images, pushes a
model, and the pushed SavedModel answers through its serving signatures."""
from __future__ import annotations

import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import cli
from tests.helpers import CLASSES

pytestmark = pytest.mark.slow


def _test_jpegs(archive: Path, per_class: int = 2) -> list[tuple[bytes, int]]:
    wanted = {f"test/{c}/{i:04d}.jpg": label for label, c in enumerate(CLASSES) for i in range(per_class)}
    out = []
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.name in wanted:
                out.append((tar.extractfile(member).read(), wanted[member.name]))
    return out


@pytest.fixture(scope="module")
def pipeline_run(tiny_run) -> Path:
    """The shared tiny run (tests/conftest.py): `tokenlearner run --preset tiny --limit 300`, default settings."""
    return tiny_run.output


def test_a_clean_run_prints_no_traceback(tiny_run):
    # What the user saw: the whole console of the run, Beam worker processes and interpreter exit included.
    assert f"run {tiny_run.run_id}" in tiny_run.console and "pushed " in tiny_run.console  # it did run
    assert "Traceback" not in tiny_run.console, tiny_run.console
    assert "Exception ignored" not in tiny_run.console, tiny_run.console


def test_run_pushes_a_versioned_model(pipeline_run, capsys):
    versions = list((pipeline_run / "serving" / "tokenlearner").iterdir())
    assert len(versions) == 1 and versions[0].name.isdigit()
    assert (versions[0] / "saved_model.pb").is_file() and (versions[0] / "variables").is_dir()
    assert (versions[0] / "assets.extra" / "class_names.txt").read_text().split() == list(CLASSES)
    assert (pipeline_run / "pipeline" / "tokenlearner-cifar10" / "metadata.sqlite").is_file()


def test_pushed_model_serves_jpeg_bytes_and_tf_examples(pipeline_run, shared_cifar):
    version = next((pipeline_run / "serving" / "tokenlearner").iterdir())
    model = tf.saved_model.load(str(version))
    assert set(model.signatures) == {"serving_default", "serving_tf_example", "transform_features"}
    jpegs = _test_jpegs(shared_cifar)
    out = model.signatures["serving_default"](images=tf.constant([j for j, _ in jpegs]))
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape == (20, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out["class_ids"].numpy(), probabilities.argmax(axis=1))
    assert [n.decode() for n in out["class_names"].numpy()] == [CLASSES[i] for i in probabilities.argmax(axis=1)]

    # The same images as the Evaluator sees them: tf.Examples from the test split.
    dataset = next((pipeline_run / "data").iterdir())
    records = [r.numpy() for r in tf.data.TFRecordDataset(
        [str(p) for p in sorted((dataset / "test").glob("*.gz"))], compression_type="GZIP").take(16)]
    by_example = model.signatures["serving_tf_example"](examples=tf.constant(records))
    assert by_example["probabilities"].shape == (16, 10)
    # serving_default on the PNG inside each example gives the same answer as serving_tf_example.
    pngs = [tf.train.Example.FromString(r).features.feature["image"].bytes_list.value[0] for r in records]
    by_bytes = model.signatures["serving_default"](images=tf.constant(pngs))
    np.testing.assert_allclose(by_bytes["probabilities"].numpy(), by_example["probabilities"].numpy(), atol=1e-5)
    features = model.signatures["transform_features"](examples=tf.constant(records))
    assert features["image_xf"].shape == (16, 32, 32, 3)


def test_rerun_without_new_data_trains_nothing_and_pushes_nothing_new(pipeline_run, shared_cifar, capsys):
    first = [p.name for p in (pipeline_run / "serving" / "tokenlearner").iterdir()]
    rc = cli.main(["run", "--data", str(shared_cifar), "--limit", "300", "--preset", "tiny",
                   "--output", str(pipeline_run)])
    assert rc == 0
    table = capsys.readouterr().out
    for component in ("ImportExampleGen", "StatisticsGen", "ExampleValidator", "Transform"):
        assert any(line.startswith(component) and " cached " in line for line in table.splitlines()), table
    # The Trainer runs again (the resolver now gives it a base model: the first run's) but has no new data: it
    # re-exports that model unchanged instead of training. The Evaluator blesses the copy against its original,
    # and the Pusher recognises the original as already published instead of writing a duplicate version.
    (trainer,) = [line for line in table.splitlines() if line.startswith("Trainer")]
    assert "unchanged: no new data since" in trainer, table
    assert f"pushed {pipeline_run / 'serving' / 'tokenlearner' / first[0]}" in table
    assert [p.name for p in (pipeline_run / "serving" / "tokenlearner").iterdir()] == first
    # TensorBoard (and the report) show this run's model where it was trained: in the first run's Trainer logs.
    assert cli.main(["tensorboard", "--output", str(pipeline_run)]) == 0
    command = capsys.readouterr().out.split()
    logdir = Path(command[command.index("--logdir") + 1])
    assert list((logdir / "train").glob("events.out.tfevents.*")) and (logdir / "history.csv").is_file()


def test_faster_evaluator_keeps_every_metric_slice_plot_and_the_blessing(pipeline_run, tmp_path):
    """The Evaluator as the pipeline now runs it (fixed inference batch, one in-process Beam worker, the model as a
    plain SavedModel without Keras' compiled metrics) against the settings before (adaptive batches, DirectRunner
    multi_processing, Keras model): the same slices, metrics (candidate, baseline and their differences),
    confusion matrices and blessing, on the run's model scored against itself as the baseline. Only the compiled
    metrics may be gone (they repeat the listed accuracy and top-5, and the label-smoothed training loss: compared
    by bench/evaluator.py on 10,000 images, since TFMA reports none of them on this tiny run)."""
    from pipeline import config as config_lib
    from inspection import evaluation, run_store, summary

    config = config_lib.load(str(pipeline_run))
    store = run_store.open_store(config)
    examples, model = evaluation.latest_artifact(store, "Examples"), evaluation.latest_artifact(store, "Model")
    runs = {variant: evaluation.run_evaluator(*evaluation.variant_settings(config, variant), examples, model,
                                              str(tmp_path / variant), baseline=model)
            for variant in ("before", "after")}
    before, after = runs["before"], runs["after"]
    assert set(before["metrics"]) == set(after["metrics"]) == {"overall", *(f"label={i}" for i in range(10))}
    # model.compile's metrics, which TFMA adds only when it revives the model as Keras (the 10,000-image bench shows
    # them in every slice; on this tiny run TFMA reported none): the only metrics that may be gone.
    compiled = {"loss", "accuracy", "top5_accuracy"}
    for slice_name, metrics in before["metrics"].items():
        dropped = {name.split("/")[1] for name in set(metrics) - set(after["metrics"][slice_name])}
        assert dropped <= compiled, (slice_name, dropped)
        assert set(after["metrics"][slice_name]) <= set(metrics)
        assert {"candidate/sparse_categorical_accuracy", "baseline/sparse_categorical_accuracy",
                "candidate/sparse_categorical_accuracy/diff", "candidate/example_count",
                "candidate/sparse_top_k_categorical_accuracy",
                "candidate/sparse_categorical_crossentropy"} <= set(after["metrics"][slice_name])
        for name, value in after["metrics"][slice_name].items():
            assert metrics[name] == pytest.approx(value, abs=1e-6), (slice_name, name)
    # On this tiny run TFMA reports none of the compiled metrics even for the Keras model, so whether what was
    # dropped repeated what is kept is compared where they appear: bench/evaluator.py on the 10,000 test images
    # prints it (docs/benchmarks.md). Here, that they are absent: were they to appear, this says so.
    reported = sorted({name for metrics in before["metrics"].values() for name in metrics
                       if name.split("/")[1] in compiled})
    assert reported == [], reported
    assert after["plots"] == before["plots"] and "multiClassConfusionMatrixAtThresholds" in str(after["plots"])
    assert before["blessed"] is after["blessed"] is True

    # The run summary's Trainer row says which precision the Trainer chose, whether XLA compiled it (tiny:
    # float32 without XLA on every machine) and how long the fit's epochs took (epoch_times.csv).
    first_run = min(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.create_time_since_epoch)
    table = summary.render_summary(summary.collect(config, run_id=first_run.name, store=store))
    assert any(line.startswith("Trainer") and re.search(
        r"precision float32 \(precision=float32\), XLA off \(jit_compile=off\), trained \d:\d\d:\d\d for 2 epoch\(s\), "
        r"\d+\.\d (min|s) an epoch$", line) for line in table.splitlines()), table
