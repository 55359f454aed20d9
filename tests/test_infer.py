"""`tokenlearner infer`: batch predictions on Beam's RunInference, checked against the model's own serving signature.

The model is the session's tiny exported model (fixture `exported_model`: the pipeline's export code, one training
step), the images 200 real CIFAR-10 test JPEGs (20 per class). "The same predictions" means: for every file the
same class id and the same top-k class names, and probabilities equal within 1e-6. Not bit for bit: the signature's
float32 results depend on which images share a call (oneDNN picks its reduction order by batch shape; measured up
to 1.8e-7 between batches of 1, 7 and 64 of the same images), and each runner cuts its bundles, so its last batches,
its own way. The class ids still must match exactly: the smallest top-1/top-2 margin of these images is far above
that noise (asserted, so the comparison cannot pass by luck).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cli
from tests.helpers import CLASSES, extract_cifar_test_jpegs, make_tar, serving_default_probabilities

PORTABLE = ["--beam-profile", "flink", "--set", "beam_job_endpoint=embed", "--set", "beam_environment_type=LOOPBACK"]
PER_CLASS = 20  # CIFAR-10 test JPEGs per class: 200 images


def infer(*args: str) -> int:
    """`tokenlearner infer ARGS` in this process; its exit code."""
    return cli.main(["infer", *args])


@pytest.fixture(scope="module")
def cifar_jpegs(shared_cifar, tmp_path_factory) -> Path:
    """test/<class>/NNNN.jpg: the first PER_CLASS CIFAR-10 test JPEGs of each class, bytes as in the archive."""
    root = tmp_path_factory.mktemp("cifar_jpegs")
    extract_cifar_test_jpegs(shared_cifar, root, PER_CLASS)
    assert len(list(root.rglob("*.jpg"))) == PER_CLASS * len(CLASSES)
    return root


def read_jsonl(folder: Path, prefix: str) -> dict[str, dict]:
    """file -> record, over every shard `prefix`-*.jsonl in `folder` (each file once)."""
    records = [json.loads(line) for shard in sorted(folder.glob(f"{prefix}-*.jsonl"))
               for line in shard.read_text().splitlines()]
    by_file = {r["file"]: r for r in records}
    assert len(by_file) == len(records), "a file appears twice"
    return by_file


def assert_same_predictions(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert a.keys() == b.keys()
    for file in a:
        assert a[file]["class_id"] == b[file]["class_id"], file
        assert [c["class_name"] for c in a[file]["top_k"]] == [c["class_name"] for c in b[file]["top_k"]], file
        np.testing.assert_allclose([c["probability"] for c in a[file]["top_k"]],
                                   [c["probability"] for c in b[file]["top_k"]], atol=1e-6, err_msg=file)


@pytest.mark.slow
def test_direct_and_portable_runners_write_the_same_predictions_as_serving_default(exported_model, cifar_jpegs,
                                                                                   tmp_path, capsys):
    direct, portable = tmp_path / "direct", tmp_path / "portable"
    assert infer("--model", str(exported_model.base_dir), "--data", str(cifar_jpegs), "--out", str(direct)) == 0
    assert "infer: 200 images under" in capsys.readouterr().err
    assert infer("--model", str(exported_model.base_dir), "--data", str(cifar_jpegs), "--out", str(portable),
                 *PORTABLE) == 0
    final = capsys.readouterr().out
    assert f"infer: 200 classified, 0 errors -> {portable}" in final

    ours, theirs = read_jsonl(direct, "predictions"), read_jsonl(portable, "predictions")
    assert_same_predictions(ours, theirs)
    assert read_jsonl(direct, "errors") == read_jsonl(portable, "errors") == {}

    files = sorted(cifar_jpegs.rglob("*.jpg"))
    expected = serving_default_probabilities(exported_model.version_dir, files)
    assert ours.keys() == expected.keys()
    margins = np.sort(np.stack(list(expected.values())), axis=1)
    assert (margins[:, -1] - margins[:, -2]).min() > 1e-5  # argmax is not decided by float noise
    for file, probabilities in expected.items():
        record = ours[file]
        assert record["class_id"] == int(np.argmax(probabilities)), file
        assert record["class_name"] == exported_model.class_names[record["class_id"]]
        top = np.argsort(-probabilities, kind="stable")[:3]
        assert [c["class_name"] for c in record["top_k"]] == [exported_model.class_names[i] for i in top]
        np.testing.assert_allclose([c["probability"] for c in record["top_k"]], probabilities[top], atol=1e-6)


def _broken_folder(root: Path, good: list[Path]) -> Path:
    """`good` images and 3 broken files, each failing at a different place: not an image at all (the header check),
    a JPEG cut off after its header (the signature's decoder), a PNG whose header declares 20000x20000 pixels (the
    signature's pixel limit, refused before decoding)."""
    import struct
    import zlib

    folder = root / "mixed"
    folder.mkdir()
    for path in good:
        (folder / f"{path.parent.name}_{path.name}").write_bytes(path.read_bytes())
    (folder / "notes.jpg").write_text("not an image\n")
    jpeg = good[0].read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[:int(len(jpeg) * 0.75)])

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    (folder / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
                                      chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return folder


@pytest.mark.slow
def test_three_broken_files_are_three_error_records_with_reasons_and_exit_status_1(exported_model, cifar_jpegs,
                                                                                    tmp_path, capsys):
    good = sorted(cifar_jpegs.rglob("*.jpg"))[:13]
    folder = _broken_folder(tmp_path, good)
    out = tmp_path / "out"
    # Batches of 4: each bad image the header check lets through fails a batch with good images in it, which Beam's
    # dead-letter output hands back to be sent one by one; the good images of that batch are still classified.
    assert infer("--model", str(exported_model.base_dir), "--data", str(folder), "--out", str(out),
                 "--batch-size", "4") == 1
    console = capsys.readouterr()
    assert f"infer: 13 classified, 3 errors -> {out}" in console.out
    assert "3 images could not be classified" in console.err
    errors = read_jsonl(out, "errors")
    assert set(errors) == {str(folder / name) for name in ("notes.jpg", "truncated.jpg", "bomb.png")}
    assert "not an image the model decodes" in errors[str(folder / "notes.jpg")]["error"]
    assert "rejected by the model" in errors[str(folder / "truncated.jpg")]["error"]
    assert "Invalid JPEG data" in errors[str(folder / "truncated.jpg")]["error"]
    assert "20000x20000" in errors[str(folder / "bomb.png")]["error"]
    assert "max_decode_pixels" in errors[str(folder / "bomb.png")]["error"]
    predictions = read_jsonl(out, "predictions")
    assert len(predictions) == 13
    expected = serving_default_probabilities(exported_model.version_dir, [folder / f"{p.parent.name}_{p.name}" for p in good])
    assert {f: r["class_id"] for f, r in predictions.items()} == {f: int(np.argmax(p)) for f, p in expected.items()}


def test_an_archive_and_tfrecords_are_classified_as_the_same_images_in_a_folder(exported_model, cifar_jpegs,
                                                                              tmp_path):
    import tensorflow as tf

    images = sorted(cifar_jpegs.rglob("*.jpg"))[::10]  # 20 images
    archive = make_tar(cifar_jpegs, tmp_path / "images.tar.gz")
    records = tmp_path / "records" / "images.tfrecord.gz"
    records.parent.mkdir()
    with tf.io.TFRecordWriter(str(records), options="GZIP") as writer:
        for path in images:
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[path.read_bytes()])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[0]))})).SerializeToString())
    for data, out in ((archive, tmp_path / "from_archive"), (records.parent, tmp_path / "from_records")):
        assert infer("--model", str(exported_model.version_dir), "--data", str(data), "--out", str(out),
                     "--num-shards", "2") == 0
        assert len(list(out.glob("predictions-*-of-00002.jsonl"))) == 2
    from_archive = read_jsonl(tmp_path / "from_archive", "predictions")
    from_records = read_jsonl(tmp_path / "from_records", "predictions")
    expected = serving_default_probabilities(exported_model.version_dir, images)
    assert len(from_archive) == PER_CLASS * len(CLASSES)
    for i, path in enumerate(images):
        member = f"{archive}:{path.relative_to(cifar_jpegs).as_posix()}"
        assert from_archive[member]["class_id"] == int(np.argmax(expected[str(path)])), member
        assert from_records[f"{records}:{i}"]["class_id"] == int(np.argmax(expected[str(path)])), path


def test_csv_has_a_header_and_the_top_k_columns(exported_model, cifar_jpegs, tmp_path):
    import csv

    out = tmp_path / "out"
    assert infer("--model", str(exported_model.version_dir), "--data", str(cifar_jpegs / "test" / "cat"),
                 "--out", str(out), "--format", "csv", "--top-k", "2") == 0
    (shard,) = out.glob("predictions-*.csv")
    rows = list(csv.DictReader(shard.open()))
    assert list(rows[0]) == ["file", "class_id", "class_name", "top1_class", "top1_probability", "top2_class",
                             "top2_probability"]
    assert len(rows) == PER_CLASS
    for row in rows:
        assert row["class_name"] == row["top1_class"] == CLASSES[int(row["class_id"])]
        assert 1 >= float(row["top1_probability"]) >= float(row["top2_probability"]) >= 0


def test_an_out_folder_with_files_is_refused_before_anything_runs_unless_overwrite(exported_model, cifar_jpegs,
                                                                                   tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions-00000-of-00001.jsonl").write_text("{}\n")
    (out / "mine.txt").write_text("kept\n")
    data = str(cifar_jpegs / "test" / "ship")
    assert infer("--model", str(exported_model.base_dir), "--data", data, "--out", str(out)) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "predictions-00000-of-00001.jsonl").read_text() == "{}\n"
    assert infer("--model", str(exported_model.base_dir), "--data", data, "--out", str(out), "--overwrite") == 0
    assert len(read_jsonl(out, "predictions")) == PER_CLASS
    assert (out / "mine.txt").read_text() == "kept\n"


@pytest.mark.parametrize("problem", ["no model", "no images", "wrong signature"])
def test_a_bad_model_or_data_is_a_usage_error_naming_it(problem, exported_model, cifar_jpegs, tmp_path, capsys):
    model, data = str(exported_model.base_dir), str(cifar_jpegs)
    if problem == "no model":
        model = str(tmp_path)
    elif problem == "no images":
        (tmp_path / "README.md").write_text("no images here\n")
        data = str(tmp_path)
    else:
        import tensorflow as tf

        module = tf.Module()
        module.f = tf.function(lambda x: {"y": x * 2}, input_signature=[tf.TensorSpec([None], tf.float32)])
        tf.saved_model.save(module, str(tmp_path / "other"), signatures={"serving_default": module.f})
        model = str(tmp_path / "other")
    assert infer("--model", model, "--data", data, "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    expected = {"no model": "expected a SavedModel folder", "no images": "expected image files",
                "wrong signature": "expected a string input 'images'"}[problem]
    assert expected in err
    assert not (tmp_path / "out").exists()


def _issue_40_bad_files(folder: Path, jpeg: bytes) -> dict[str, tuple[str, ...]]:
    """Issue 40's four bad inputs, written into `folder` -> file name: the words its error record must hold. A JPEG cut
    inside its header (the first half of a real one: its scan starts at byte ~609 of ~890), an empty file, a text file
    named .png, a PNG header declaring 20000x20000 pixels (tests/image_bombs.py)."""
    from tests.image_bombs import png_bomb

    (folder / "cut_header.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("a text file, not an image\n")
    (folder / "huge.png").write_bytes(png_bomb(20000, 20000, complete=False))
    return {"cut_header.jpg": ("not an image the model decodes", "Invalid JPEG data"),
            "empty.jpg": ("empty file",),
            "notes.png": ("not an image the model decodes", "no PNG, JPEG, GIF or BMP header"),
            "huge.png": ("rejected by the model", "20000x20000", "max_decode_pixels")}


def test_four_bad_files_among_200_jpegs_are_four_error_lines_and_every_good_image_is_predicted(
        exported_model, cifar_jpegs, tmp_path, capsys):
    """Issue 40's acceptance, with 200 of its 2,000 CIFAR-10 test JPEGs (the 2,000 were run by hand: the same result).
    Before the fix the cut header failed the whole job (AttributeError, exit 1, no outputs, beam-temp-* left)."""
    folder = tmp_path / "data"
    folder.mkdir()
    good = sorted(cifar_jpegs.rglob("*.jpg"))
    for path in good:
        (folder / f"{path.parent.name}_{path.name}").write_bytes(path.read_bytes())
    expected_errors = _issue_40_bad_files(folder, good[0].read_bytes())
    out = tmp_path / "out"
    assert infer("--model", str(exported_model.base_dir), "--data", str(folder), "--out", str(out)) == 1
    console = capsys.readouterr()
    assert f"infer: 200 classified, 4 errors -> {out}" in console.out
    predictions = read_jsonl(out, "predictions")
    assert set(predictions) == {str(folder / f"{p.parent.name}_{p.name}") for p in good}
    lines = [line for shard in out.glob("errors-*.jsonl") for line in shard.read_text().splitlines()]
    assert len(lines) == 4
    errors = {json.loads(line)["file"]: json.loads(line)["error"] for line in lines}
    assert set(errors) == {str(folder / name) for name in expected_errors}
    for name, words in expected_errors.items():
        for word in words:
            assert word in errors[str(folder / name)], (name, errors[str(folder / name)])
    assert sorted(p.name for p in out.iterdir()) == ["errors-00000-of-00001.jsonl", "predictions-00000-of-00001.jsonl"]


def test_a_failed_beam_job_is_exit_3_with_one_line_and_leaves_no_beam_temp_folder(exported_model, cifar_jpegs,
                                                                                   tmp_path, capsys, monkeypatch):
    """A worker error that is no image's fault (here: the handler raises, as a model that cannot load would) fails the
    job: EXIT_JOB_FAILED, one line naming the step and the error, and WriteToText's staging folders deleted. Before,
    the failure path itself raised AttributeError (exit 1, a traceback, beam-temp-* left)."""
    from inference import handler

    def broken(self, batch, model, inference_args=None):
        raise RuntimeError("the worker's disk is gone")

    monkeypatch.setattr(handler.ServingSignatureHandler, "run_inference", broken)
    out = tmp_path / "out"
    assert infer("--model", str(exported_model.base_dir), "--data", str(cifar_jpegs / "test" / "frog"),
                 "--out", str(out)) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err  # Beam logs the worker's traceback at ERROR: shown at -v only
    ours = [line for line in err.splitlines() if line.startswith("tokenlearner:")]
    assert len(ours) == 1, ours
    assert ours[0].startswith("tokenlearner: error: the Beam job failed in step RunInference/"), ours[0]
    assert ours[0].endswith(f": RuntimeError: the worker's disk is gone; the outputs in {out} are incomplete "
                            f"(details: -v)"), ours[0]
    assert [p.name for p in out.iterdir() if p.name.startswith("beam-temp")] == []


def test_an_out_that_cannot_be_written_is_a_usage_error_before_the_job(exported_model, cifar_jpegs, tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder\n")
    out = tmp_path / "a_file" / "out"
    assert infer("--model", str(exported_model.base_dir), "--data", str(cifar_jpegs / "test" / "frog"),
                 "--out", str(out)) == 2
    assert f"tokenlearner: error: --out {out}: cannot write there (Not a directory)" in capsys.readouterr().err


def test_overwrite_deletes_the_beam_temp_folders_a_failed_run_left(exported_model, cifar_jpegs, tmp_path):
    out = tmp_path / "out"
    left = out / "beam-temp-predictions-0123abcd"
    left.mkdir(parents=True)
    (left / "shard").write_text("half a shard\n")
    (out / "mine.txt").write_text("kept\n")
    assert infer("--model", str(exported_model.base_dir), "--data", str(cifar_jpegs / "test" / "frog"),
                 "--out", str(out), "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == ["errors-00000-of-00001.jsonl", "mine.txt",
                                                     "predictions-00000-of-00001.jsonl"]


def test_predict_folder_and_infer_take_the_same_image_files(tmp_path):
    """One list of image suffixes (trainer.model_files): `predict FOLDER` used to search .png/.jpg/.jpeg only, and
    skipped the .bmp, .gif and .webp files that `infer` and ingestion take."""
    from inference import sources
    from serving_client import predict

    images = ["a.bmp", "b.webp", "c.gif", "d.JPG", "e.tiff", "f.png", "g.jpeg", "sub/h.ppm"]
    others = ["notes.txt", "photo.heic", "table.csv"]
    for name in images + others:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"bytes")
    files, failures = predict.collect_files([str(tmp_path)])
    assert failures == []
    assert sorted(f.relative_to(tmp_path).as_posix() for f in files) == sorted(images)
    assert [name for name in images + others if sources.kind_of(str(tmp_path / name)) == sources.IMAGE] == images


def test_predict_folder_classifies_a_bmp_and_names_the_webp_the_model_cannot_decode(exported_model, tmp_path,
                                                                                    capsys):
    """`tokenlearner predict --model M FOLDER`: the .bmp is classified, the .webp is sent and refused by the
    signature's decoder (JPEG, PNG, GIF, BMP), one line naming it; exit 1, as for any file that fails."""
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.bmp")
    Image.fromarray(pixels).save(tmp_path / "b.webp")
    assert cli.main(["predict", "--model", str(exported_model.base_dir), "--json", str(tmp_path)]) == 1
    results = {r["file"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert set(results) == {str(tmp_path / "a.bmp"), str(tmp_path / "b.webp")}
    assert results[str(tmp_path / "a.bmp")]["class_name"] in CLASSES
    assert "Unknown image file format" in results[str(tmp_path / "b.webp")]["error"]
