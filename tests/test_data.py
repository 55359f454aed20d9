"""Ingestion: every source format into TFRecords, deterministic splits, and clear errors on bad input."""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components import cifar10_batches, datasets, encoding, ingest, sources
from tests.helpers import (CLASSES, encode_or_die, make_tar, png_bytes, random_images, write_image_folder,
                           write_official)
from tests.hostile_data import write_tar


def read_split(dataset, split):
    files = sorted((dataset / split).glob("*.tfrecord.gz"))
    out = []
    for record in tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        png = example.features.feature["image"].bytes_list.value[0]
        label = example.features.feature["label"].int64_list.value[0]
        out.append((np.asarray(Image.open(io.BytesIO(png))), label))
    return out


def test_official_archive_round_trips_pixels_and_labels(tmp_path):
    folder = write_official(tmp_path / "src", per_batch=20)
    archive = make_tar(folder, tmp_path / "cifar-10-python.tar.gz", arcname="cifar-10-batches-py")
    dataset = ingest.prepare(str(archive), tmp_path / "out")
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["format"] == "official"
    # 100 training images, 10 per class: positions 9 of each class go to eval.
    assert {s: v["examples"] for s, v in manifest["splits"].items()} == {"train": 90, "eval": 10, "test": 20}
    assert (dataset / "classes.txt").read_text().split() == list(CLASSES)
    test = read_split(dataset, "test")
    batch = pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")
    expected = {(bytes(row), label) for row, label in zip(
        batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(len(batch[b"labels"]), -1),
        batch[b"labels"])}
    assert {(image.tobytes(), label) for image, label in test} == expected  # PNG is lossless


def test_extracted_official_folder_and_image_folders_give_same_layout(tmp_path, caplog):
    official = ingest.prepare(str(write_official(tmp_path / "a", per_batch=20).parent), tmp_path / "out")
    folder = write_image_folder(tmp_path / "b", per_class=10)
    # Files that are not images by their name are skipped, counted and named in one warning line.
    stray = ["train/cat/notes.txt", "train/dog/.DS_Store", "test/ship/photo.heic", "test/frog/README"]
    for name in stray:
        (folder / name).write_bytes(b"not taken")
    caplog.set_level("WARNING", logger="components")
    caplog.clear()  # the official folder's own warning (an extracted folder cannot be MD5-checked) is not counted
    from_dir = ingest.prepare(str(folder), tmp_path / "out")
    from_tar = ingest.prepare(str(make_tar(folder, tmp_path / "images.tar.gz")), tmp_path / "out")
    for dataset in (official, from_dir, from_tar):
        assert sorted(p.name for p in dataset.iterdir()) == ["classes.txt", "eval", "manifest.json", "test", "train"]
    assert read_split(from_dir, "train")[0][0].tobytes() == read_split(from_tar, "train")[0][0].tobytes()
    assert json.loads((from_dir / "manifest.json").read_text())["splits"]["test"]["examples"] == 100
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2, warnings  # one per ingestion: the folder, then the archive
    for warning in warnings:
        assert "\n" not in warning and "skipped 4 file(s) in class folders that are not images by their name" in warning
        assert all(name in warning for name in stray)


def test_output_is_deterministic_and_reused(tmp_path):
    folder = write_image_folder(tmp_path / "src", per_class=10, fmt="JPEG")
    first = ingest.prepare(str(folder), tmp_path / "out1")
    second = ingest.prepare(str(folder), tmp_path / "out2")
    digest = lambda d: [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("*/*.tfrecord.gz"))]
    assert digest(first) == digest(second)
    stamp = (first / "manifest.json").stat().st_mtime_ns
    assert ingest.prepare(str(folder), tmp_path / "out1") == first  # reused, not rebuilt
    assert (first / "manifest.json").stat().st_mtime_ns == stamp


def test_a_copied_or_touched_source_finds_its_dataset_and_changed_bytes_do_not(tmp_path):
    # A new machine or a re-synced share gives the same archive a new path and modification time: the dataset
    # (and with it the pipeline's cache and the Trainer's epoch checkpoints) must be found again.
    folder = write_image_folder(tmp_path / "src", per_class=10, fmt="JPEG")
    (tmp_path / "a").mkdir()
    archive = make_tar(folder, tmp_path / "a" / "cifar.tar.gz")
    first = ingest.prepare(str(archive), tmp_path / "out")
    copy = tmp_path / "b" / "cifar.tar.gz"
    copy.parent.mkdir()
    shutil.copyfile(archive, copy)
    os.utime(copy, ns=(1, 1))
    assert ingest.prepare(str(copy), tmp_path / "out") == first
    copied_folder = shutil.copytree(folder, tmp_path / "src2")
    from_folder = ingest.prepare(str(folder), tmp_path / "out")
    assert ingest.prepare(str(copied_folder), tmp_path / "out") == from_folder
    with open(next(copied_folder.rglob("*.jpg")), "ab") as f:
        f.write(b"\0")
    assert ingest.prepare(str(copied_folder), tmp_path / "out") != from_folder


def test_limit_is_class_balanced(tmp_path):
    folder = write_image_folder(tmp_path / "src", per_class=12)
    dataset = ingest.prepare(str(folder), tmp_path / "out", limit=100)
    splits = json.loads((dataset / "manifest.json").read_text())["splits"]
    assert splits["train"]["per_class"] == [9] * 10 and splits["eval"]["per_class"] == [1] * 10
    assert splits["test"]["per_class"] == [10] * 10
    labels = [label for _, label in read_split(dataset, "train")]
    assert labels[:10] == list(range(10))  # classes interleaved, not grouped


def test_real_cifar_subset(shared_cifar, tmp_path):
    dataset = ingest.prepare(str(shared_cifar), tmp_path / "out", limit=200)
    train = read_split(dataset, "train")
    assert len(train) == 180 and all(image.shape == (32, 32, 3) for image, _ in train)
    assert sorted({label for _, label in train}) == list(range(10))


# ------------------------------------------------------------------------------------------------ bad input

def expect_error(match, *args, **kwargs):
    """prepare(*args, **kwargs) fails with one DataError line matching `match`, and leaves the output folder
    (args[1]) as it was: no dataset, no staging folder."""
    out = Path(args[1])
    before = sorted(out.iterdir()) if out.is_dir() else []
    with pytest.raises(ingest.DataError, match=match) as error:
        ingest.prepare(*args, **kwargs)
    assert "\n" not in str(error.value)
    assert (sorted(out.iterdir()) if out.is_dir() else []) == before


def test_missing_source(tmp_path):
    expect_error("does not exist", str(tmp_path / "nope.tar.gz"), tmp_path / "out")


def test_unreadable_archive(tmp_path):
    bad = tmp_path / "cifar.tar.gz"
    bad.write_bytes(b"not a tar file")
    expect_error("cifar.tar.gz: not a readable tar archive", str(bad), tmp_path / "out")


def test_download_checksum_mismatch_keeps_nothing(tmp_path, monkeypatch):
    folder = write_official(tmp_path / "src")
    archive = make_tar(folder, tmp_path / "cifar-10-python.tar.gz", arcname="cifar-10-batches-py")
    cache = tmp_path / "cache"
    monkeypatch.setenv("TOKENLEARNER_CACHE", str(cache))
    expect_error("MD5 .* expected c58f30108f718f92721af3b95e74349a", archive.as_uri(), tmp_path / "out")
    assert not list(cache.iterdir())  # the bad download is not cached
    # With the right checksum the same URL is downloaded once, cached and used.
    monkeypatch.setattr(ingest, "OFFICIAL_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    dataset = ingest.prepare(archive.as_uri(), tmp_path / "out")
    assert (cache / "cifar-10-python.tar.gz").is_file() and (dataset / "manifest.json").is_file()


def test_undecodable_image_names_the_file(tmp_path):
    folder = write_image_folder(tmp_path / "src", per_class=10)
    (folder / "train/ship/0000.png").write_bytes(b"\x89PNG truncated")
    expect_error(r"train/ship/0000.png: not a readable image", str(folder), tmp_path / "out")


def test_empty_split(tmp_path):
    folder = write_image_folder(tmp_path / "src", per_class=2)
    expect_error("split 'eval' is empty", str(folder), tmp_path / "out", limit=20, min_images_per_class=1)


def test_label_out_of_range_names_the_batch(tmp_path):
    folder = write_official(tmp_path / "src", per_batch=10, labels=[0, 1, 2, 3, 4, 5, 6, 7, 8, 12])
    expect_error(r"data_batch_1: labels\[9\] = 12 is out of range", str(folder.parent), tmp_path / "out")


def test_failed_run_leaves_existing_outputs_untouched(tmp_path):
    good = write_image_folder(tmp_path / "good", per_class=10)
    dataset = ingest.prepare(str(good), tmp_path / "out")
    before = {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    bad = write_image_folder(tmp_path / "bad", per_class=10)
    (bad / "test/cat/0003.png").write_bytes(b"garbage")
    expect_error("not a readable image", str(bad), tmp_path / "out")
    assert {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [dataset.name]  # no staging left behind


@pytest.mark.slow
def test_full_ingestion_streams_instead_of_holding_all_images(shared_cifar, tmp_path):
    """All 60,000 images: the Python heap never holds the dataset (132 MB of PNGs, 184 MB of pixels). What it
    does hold is the index (60,000 names and positions, ~37 MB), well under half of the images' size."""
    import tracemalloc

    tracemalloc.start()
    dataset = ingest.prepare(str(shared_cifar), tmp_path / "out")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    splits = json.loads((dataset / "manifest.json").read_text())["splits"]
    assert {s: v["examples"] for s, v in splits.items()} == {"train": 45000, "eval": 5000, "test": 10000}
    written = sum(p.stat().st_size for p in dataset.glob("*/*.tfrecord.gz"))
    assert written > 100 * 2**20
    assert peak < written / 2, f"peak Python allocations {peak / 2**20:.0f} MiB for {written / 2**20:.0f} MiB written"


# ------------------------------------------------------------------------------------------------ bad data, bounded

def _official_with(tmp_path, member: str, data: bytes):
    folder = write_official(tmp_path / "src", per_batch=10)
    (folder / member).write_bytes(data)
    return folder.parent


@pytest.mark.parametrize("member, batch, match", [
    ("data_batch_2", [1, 2, 3], r"data_batch_2: not a CIFAR-10 python batch \(a pickled list, expected a dict\)"),
    ("data_batch_2", {b"data": np.zeros((2, 3072), np.uint8)}, r"data_batch_2: missing key\(s\) \['labels'\]"),
    ("test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]},
     r"test_batch: field 'data' must be a uint8 array of shape \(N, 3072\).*got uint8 \(2, 100\)"),
    ("test_batch", {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, r"got float32 \(2, 3072\)"),
    ("data_batch_3", {b"data": np.zeros((2, 3072), np.uint8), b"labels": 7}, r"'labels' must be a list .*got int"),
    ("data_batch_3", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, b"cat"]},
     r"labels\[1\] = b'cat' is out of range"),
    ("batches.meta", {b"label_names": 5}, r"batches.meta: 'label_names' must be a list of 10 class names"),
])
def test_batches_of_the_wrong_shape_name_the_member(member, batch, match, tmp_path):
    expect_error(match, str(_official_with(tmp_path, member, pickle.dumps(batch, protocol=2))), tmp_path / "out")


def test_a_file_that_is_not_a_pickle_names_the_member(tmp_path):
    source = _official_with(tmp_path, "data_batch_4", b"\x80\x02garbage")
    expect_error(r"data_batch_4: not a CIFAR-10 python batch \(UnpicklingError", str(source), tmp_path / "out")


def test_a_truncated_archive_is_one_error(tmp_path, capsys):
    import cli

    folder = write_official(tmp_path / "src", per_batch=200)
    archive = make_tar(folder, tmp_path / "cifar-10-python.tar.gz", arcname=folder.name)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    assert cli.main(["data", "--data", str(cut), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cut.tar.gz" in err[0] and "truncated" in err[0], err


def test_an_archive_with_too_many_members_stops_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_MEMBERS", 50)
    archive = write_tar(tmp_path / "bomb.tar.gz", {f"train/cat/{i:04d}.png": b"x" for i in range(60)})
    expect_error(r"bomb.tar.gz: stopped reading after 50 members", str(archive), tmp_path / "out")
    folder = tmp_path / "many"
    (folder / "train").mkdir(parents=True)
    for i in range(60):
        (folder / "train" / f"{i}.png").write_bytes(b"x")
    expect_error(r"many: stopped listing after 50 files", str(folder), tmp_path / "out")


def test_an_archive_that_unpacks_to_too_much_stops_before_decompressing_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_TOTAL_BYTES", 10_000)
    archive = write_tar(tmp_path / "bomb.tar.gz", {"a/readme.txt": b"0" * 20_000, "a/data_batch_1": b""})
    expect_error(r"stopped reading at member a/readme.txt: the archive unpacks to more than", str(archive),
                 tmp_path / "out")


def test_an_oversized_batch_is_refused_before_it_is_read(tmp_path, monkeypatch):
    folder = write_official(tmp_path / "src", per_batch=10)
    archive = make_tar(folder, tmp_path / "cifar-10-python.tar.gz", arcname=folder.name)
    monkeypatch.setattr(cifar10_batches, "MAX_BATCH_BYTES", 1000)
    expect_error(r"cifar-10-batches-py/\w+: [\d,]+ bytes, more than the 1,000 allowed", str(archive),
                 tmp_path / "out")
    expect_error(r"cifar-10-batches-py/\w+: more than the 1,000 bytes allowed", str(folder.parent),
                 tmp_path / "out")


# ------------------------------------------------------------------------------------------------ your own images

# (Pillow format, mode, suffix, (width, height)) of the mixed folder's images, one of each per class, in path order.
MIXED_KINDS = (
    ("JPEG", "RGB", ".jpg", (1600, 1200)), ("PNG", "RGBA", ".png", (20, 20)), ("WEBP", "RGB", ".webp", (64, 48)),
    ("BMP", "P", ".bmp", (41, 27)), ("GIF", "P", ".gif", (32, 32)), ("JPEG", "CMYK", ".jpeg", (100, 100)),
    ("PNG", "L", ".png", (20, 30)), ("PNG", "LA", ".png", (25, 25)), ("TIFF", "RGB", ".tif", (50, 40)),
    ("PNG", "I;16", ".png", (30, 20)), ("WEBP", "RGBA", ".webp", (33, 33)), ("TIFF", "CMYK", ".tiff", (40, 40)),
)
MIXED_FOLDERS = ("kiwi", "apple", "fig")  # the classes are their sorted names: apple, fig, kiwi


def encoded(fmt: str, mode: str, size: tuple[int, int], seed: int = 0, **params) -> bytes:
    """Random pixels of `size` in `mode`, encoded as `fmt`."""
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (size[1], size[0]), dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def special_images() -> dict[str, bytes]:
    """Images whose stored pixels are known: a JPEG whose EXIF says "rotate 90 degrees clockwise to view" (red on
    the left, blue on the right: upright, red on top), a fully transparent PNG (white), and a 16-bit PNG of value
    4112 = 16 x 257 (8-bit 16; clipping, as Pillow's own conversion does, would give 255)."""
    sideways = np.zeros((20, 40, 3), np.uint8)
    sideways[:, :20, 0] = sideways[:, 20:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    rotated, clear, deep = io.BytesIO(), io.BytesIO(), io.BytesIO()
    Image.fromarray(sideways).save(rotated, format="JPEG", quality=95, exif=exif.tobytes())
    Image.new("RGBA", (23, 17), (0, 0, 0, 0)).save(clear, format="PNG")
    Image.fromarray(np.full((13, 19), 4112, np.uint16)).save(deep, format="PNG")
    return {"rotated.jpg": rotated.getvalue(), "clear.png": clear.getvalue(), "deep.png": deep.getvalue()}


@pytest.fixture(scope="module")
def every_kind_folder(tmp_path_factory) -> Path:
    """train/<class>/ for 3 classes, no test/: every kind of MIXED_KINDS in each, apple's special images in a
    sub-folder, and a README among kiwi's images. Not conftest's `mixed_folder` (the shared mixed run's data, built
    by helpers.write_mixed_folder): this one holds the images whose stored pixels the tests here know."""
    root = tmp_path_factory.mktemp("mixed")
    for c, name in enumerate(MIXED_FOLDERS):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i, (fmt, mode, suffix, size) in enumerate(MIXED_KINDS):
            (folder / f"{i:04d}{suffix}").write_bytes(encoded(fmt, mode, size, seed=100 * c + i))
    (root / "train/apple/special").mkdir()
    for name, data in special_images().items():
        (root / "train/apple/special" / name).write_bytes(data)
    (root / "train/kiwi/README.txt").write_text("photos from the market\n")
    return root


def stored(dataset: Path) -> dict[str, list[tuple[Image.Image, int]]]:
    """The (image, label) records of each split, images as Pillow opens the stored bytes."""
    out = {}
    for split in ("train", "eval", "test"):
        files = sorted(str(f) for f in (dataset / split).glob("*.tfrecord.gz"))
        out[split] = []
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            image = Image.open(io.BytesIO(feature["image"].bytes_list.value[0]))
            image.load()
            out[split].append((image, feature["label"].int64_list.value[0]))
    return out


def test_a_mixed_folder_becomes_rgb_pngs_with_a_held_out_test_split(every_kind_folder, tmp_path, caplog):
    caplog.set_level("WARNING", logger="components")
    dataset = ingest.prepare(str(every_kind_folder), tmp_path / "out")
    manifest = datasets.load_manifest(dataset)
    assert dataset.name.startswith("images-folder-") and dataset.name.endswith("-all")
    assert manifest["class_names"] == ["apple", "fig", "kiwi"] and manifest["num_classes"] == 3
    assert manifest["test_split"] == "held_out" and manifest["test_fraction"] == 0.1
    # apple: 15 images, fig and kiwi 12; images 0 and 10 of each class (path order) held out for test, then every
    # 10th of the rest to eval.
    assert {s: v["per_class"] for s, v in manifest["splits"].items()} == \
        {"train": [12, 9, 9], "eval": [1, 1, 1], "test": [2, 2, 2]}
    assert (dataset / "classes.txt").read_text().split() == ["apple", "fig", "kiwi"]
    assert "max: 2\n" in (dataset / "schema.pbtxt").read_text()
    records = stored(dataset)
    assert all(image.format == "PNG" and image.mode == "RGB" for split in records.values() for image, _ in split)
    for label in range(3):
        assert sorted(image.size for image, lab in records["test"] if lab == label) == [(33, 33), (1600, 1200)]
    pixels = {image.size: np.asarray(image).astype(int) for split in records.values() for image, _ in split}
    upright = pixels[(20, 40)]  # stored as viewed: 20 wide, 40 high
    assert (upright[:18, :, 0] > 200).all() and (upright[:18, :, 2] < 60).all()  # red on top
    assert (upright[22:, :, 2] > 200).all() and (upright[22:, :, 0] < 60).all()  # blue below
    assert (pixels[(23, 17)] == 255).all()  # transparent -> white
    assert (pixels[(19, 13)] == 16).all()  # 16-bit 4112 -> 8-bit 16
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "skipped 1 file(s)" in warnings[0] and "kiwi/README.txt" in warnings[0]


def test_held_out_test_images_are_evenly_spread_in_exact_arithmetic():
    items = [sources.Item(label, i, f"{label}/{i}") for label in range(2) for i in range(31)]
    train, test = ingest.hold_out(items, 0.1)
    assert [it.ref for it in test if it.label == 0] == ["0/0", "0/10", "0/20", "0/30"]  # 30 * 0.1 is not 3.0
    assert [it.position for it in train if it.label == 1] == list(range(27))  # renumbered for the eval carve
    _, test = ingest.hold_out(items, 0.25)
    assert [it.position for it in test if it.label == 1] == list(range(8))
    assert [it.ref for it in test if it.label == 1] == [f"1/{i}" for i in range(0, 31, 4)]


def test_images_above_max_decode_pixels_are_downscaled_or_refused_under_strict(every_kind_folder, tmp_path):
    dataset = ingest.prepare(str(every_kind_folder), tmp_path / "out", max_decode_pixels=600 * 450)
    assert dataset.name.endswith("-all-px270000")
    assert datasets.load_manifest(dataset)["downscaled_images"] == 3  # each class's 1600x1200 JPEG
    sizes = {image.size for split in stored(dataset).values() for image, _ in split}
    assert (600, 450) in sizes and max(w * h for w, h in sizes) <= 600 * 450
    expect_error(r"/(apple|fig|kiwi)/0000.jpg: 1600x1200 = 1,920,000 pixels, more than max_decode_pixels "
                 r"\(270,000\); --strict refuses it", str(every_kind_folder), tmp_path / "strict",
                 max_decode_pixels=600 * 450, strict=True)
    # Nor is the downscaled dataset reused under --strict.
    expect_error("downscaled to max_decode_pixels, which --strict refuses", str(every_kind_folder), tmp_path / "out",
                 max_decode_pixels=600 * 450, strict=True)


def small_folder(root: Path, per_class: int = 10) -> Path:
    return write_image_folder(root, per_class=per_class, classes=("ant", "bee"))


@pytest.mark.timeout(120)  # multiprocessing.Pool, used before, waited forever for the dead process's result
def test_an_encoding_process_that_dies_is_one_named_error_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setattr(encoding, "_encode", encode_or_die)
    expect_error(r"^encoding the (train|eval|test) split: a worker process died \(.*\); out of memory\? Lower "
                 r"--max-decode-pixels or free memory, then run again$", str(small_folder(tmp_path / "src")),
                 tmp_path / "out")


def _single_class(folder):
    shutil.rmtree(folder / "train/bee")
    shutil.rmtree(folder / "test/bee")


def _few_images(folder):
    for i in range(3):
        (folder / f"train/bee/{i:04d}.png").unlink()


@pytest.mark.parametrize("damage, match", [
    (_single_class, r"src: 1 class\(es\) \['ant'\]; expected 2 to 1,000 classes"),
    (lambda f: (f / "train/cow").mkdir() or (f / "train/cow/notes.txt").write_text("x"),
     r"src/train/cow: no image files in this class folder"),
    (lambda f: (f / "train/cow").mkdir(), r"src/train/cow: no image files in this class folder"),
    (lambda f: (f / "test/cow").mkdir() or (f / "test/cow/0000.png").write_bytes(png_bytes(random_images(1)[0])),
     r"src/test/: class folder\(s\) \['cow'\] not in train/"),
    (lambda f: shutil.rmtree(f / "test/bee"), r"src/test/: no folder for class\(es\) \['bee'\]"),
    (_few_images, r"src: class folder train/bee has 7 image\(s\) for training and eval; each class needs at least "
                  r"10 \(--min-images-per-class\)"),
    (lambda f: (f / "train/ant/0003.jpg").write_bytes(b"\xff\xd8 not a JPEG"),
     r"src/train/ant/0003.jpg: not a readable image"),
])
def test_bad_image_folders_are_one_line_naming_the_folder_or_file(damage, match, tmp_path):
    folder = small_folder(tmp_path / "src")
    damage(folder)
    expect_error(match, str(folder), tmp_path / "out")


def test_a_bad_archive_names_its_member(tmp_path):
    folder = small_folder(tmp_path / "src")
    (folder / "test/cow").mkdir()
    (folder / "test/cow/0000.png").write_bytes(png_bytes(random_images(1)[0]))
    expect_error(r"imgs.tar.gz:test/: class folder\(s\) \['cow'\] not in train/",
                 str(make_tar(folder, tmp_path / "imgs.tar.gz")), tmp_path / "out")
    shutil.rmtree(folder / "test/cow")
    (folder / "train/ant/0002.png").write_bytes(b"\x89PNG truncated")
    expect_error(r"imgs2.tar.gz:train/ant/0002.png: not a readable image",
                 str(make_tar(folder, tmp_path / "imgs2.tar.gz")), tmp_path / "out")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".gif", ".bmp"])
def test_an_image_bomb_is_refused_from_its_header(suffix, tmp_path):
    from tests import image_bombs

    bomb = {".png": lambda w, h: image_bombs.png_bomb(w, h, complete=False), ".jpg": image_bombs.jpeg_bomb,
            ".gif": lambda w, h: image_bombs.gif_bomb(w, h, where="frame"), ".bmp": image_bombs.bmp_bomb}[suffix]
    folder = small_folder(tmp_path / "src")
    (folder / f"train/bee/bomb{suffix}").write_bytes(bomb(12000, 12000))  # 144 MP declared in a few bytes
    expect_error(rf"train/bee/bomb{suffix}: image bomb: the header declares 12000x12000 = 144,000,000 pixels",
                 str(folder), tmp_path / "out")


def test_an_image_bomb_above_pillows_own_limit_is_refused_too(tmp_path):
    from tests import image_bombs

    folder = small_folder(tmp_path / "src")
    (folder / "train/bee/bomb.bmp").write_bytes(image_bombs.bmp_bomb(100_000, 100_000))
    expect_error(r"train/bee/bomb.bmp: image bomb: Image size \(10000000000 pixels\) exceeds limit", str(folder),
                 tmp_path / "out")


def test_unreadable_images_are_skipped_only_when_asked_and_named_in_one_warning(tmp_path, caplog):
    folder = small_folder(tmp_path / "src")
    for name in ("train/ant/0003.png", "test/bee/0001.png"):
        (folder / name).write_bytes(b"garbage")
    out = tmp_path / "out"
    expect_error(r"src/(train/ant/0003.png|test/bee/0001.png): not a readable image", str(folder), out)
    # Skipped, ant keeps 10 - 1 training images: fewer than the minimum, then enough for a lower one.
    expect_error(r"src: class folder train/ant has 9 image\(s\) for training and eval, 1 unreadable skipped; each "
                 r"class needs at least 10", str(folder), out, skip_unreadable=True)
    caplog.set_level("WARNING", logger="components")
    caplog.clear()
    dataset = ingest.prepare(str(folder), out, skip_unreadable=True, min_images_per_class=9)
    manifest = datasets.load_manifest(dataset)
    assert manifest["skipped_unreadable"] == 2 and manifest["splits"]["test"]["per_class"] == [10, 9]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "skipped 2 unreadable image(s) (--skip-unreadable)" in warning
    assert "train/ant/0003.png" in warning and "test/bee/0001.png" in warning
    # Without --skip-unreadable, the dataset that left them out is not reused.
    with pytest.raises(ingest.DataError, match="built leaving out 2 unreadable image"):
        ingest.prepare(str(folder), out, min_images_per_class=9)


def test_a_class_of_unreadable_images_only_is_named(tmp_path):
    folder = small_folder(tmp_path / "src")
    for path in (folder / "train/bee").iterdir():
        path.write_bytes(b"garbage")
    expect_error(r"src: class folder train/bee has no readable image \(10 unreadable skipped\)", str(folder),
                 tmp_path / "out", skip_unreadable=True)


# ------------------------------------------------------------------------------------------------ TFRecord sources

def write_records(path: Path, examples, gzip: bool = True) -> Path:
    """A TFRecord file of tf.Example{image, label} from (image bytes or None, label or None) pairs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path), "GZIP" if gzip else None) as writer:
        for image, label in examples:
            feature = {}
            if image is not None:
                feature["image"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
            if label is not None:
                feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return path


def tfrecord_source(root: Path, labels=None) -> Path:
    """classes.txt (cat, dog, bird: not sorted), train/ as a GZIP and a plain file (45 records, 15 a class; images
    of several formats and modes), eval/ (6 records); no test/."""
    root.mkdir(parents=True)
    (root / "classes.txt").write_text("cat\ndog\nbird\n")
    kinds = MIXED_KINDS[1:]
    labels = labels or [i % 3 for i in range(45)]
    examples = [(encoded(*kinds[i % len(kinds)][:2], kinds[i % len(kinds)][3], seed=i), label)
                for i, label in enumerate(labels)]
    write_records(root / "train/part-0.tfrecord.gz", examples[:24])
    write_records(root / "train/part-1.tfrecord", examples[24:], gzip=False)
    write_records(root / "eval/eval.tfrecords", [(png_bytes(random_images(1, seed=i)[0]), i % 3) for i in range(6)])
    return root


def test_a_tfrecord_source_is_checked_and_converted(tmp_path):
    dataset = ingest.prepare(str(tfrecord_source(tmp_path / "records")), tmp_path / "out")
    manifest = datasets.load_manifest(dataset)
    assert dataset.name.startswith("images-tfrecord-") and manifest["format"] == "tfrecord"
    assert manifest["class_names"] == ["cat", "dog", "bird"] and manifest["test_split"] == "held_out"
    assert {s: v["per_class"] for s, v in manifest["splits"].items()} == \
        {"train": [13, 13, 13], "eval": [2, 2, 2], "test": [2, 2, 2]}
    records = stored(dataset)
    assert all(image.format == "PNG" and image.mode == "RGB" for split in records.values() for image, _ in split)
    assert (dataset / "classes.txt").read_text() == "cat\ndog\nbird\n"


@pytest.mark.parametrize("labels, match", [
    ([i % 3 for i in range(28)] + [3] + [i % 3 for i in range(16)],
     r"train/part-1.tfrecord: record 4: label 3 is outside the class list; expected one int64 label in 0\.\.2 "
     r"\(3 classes in classes.txt\)"),
    ([-1] + [i % 3 for i in range(44)], r"train/part-0.tfrecord.gz: record 0: label -1 is outside the class list"),
])
def test_tfrecords_with_labels_outside_the_class_list_are_refused(labels, match, tmp_path):
    expect_error(match, str(tfrecord_source(tmp_path / "records", labels)), tmp_path / "out")


def test_broken_tfrecords_name_the_file_and_record(tmp_path):
    source = tfrecord_source(tmp_path / "records")
    write_records(source / "train/part-2.tfrecord", [(b"x", 0), (None, 1)])
    expect_error(r"part-2.tfrecord: record 1: feature 'image' must hold one non-empty bytes value",
                 str(source), tmp_path / "out")
    plain = source / "train/part-1.tfrecord"
    data = bytearray(plain.read_bytes())
    data[40] ^= 0xFF  # a byte of the first record's data
    plain.write_bytes(bytes(data))
    (source / "train/part-2.tfrecord").unlink()
    expect_error(r"part-1.tfrecord: record 0: truncated, or its CRC does not match", str(source), tmp_path / "out")
    plain.write_bytes(b"\xff" * 8 + b"\0" * 4)  # a length header of 2**64 - 1 bytes, its CRC wrong
    expect_error(r"part-1.tfrecord: record 0: not TFRecord framing", str(source), tmp_path / "out")


# ------------------------------------------------------------------------------------------------ settings

def test_the_data_command_passes_its_settings(every_kind_folder, tmp_path, capsys):
    import cli

    assert cli.main(["data", "--data", str(every_kind_folder), "--out", str(tmp_path / "out"), "--test-fraction",
                     "0.25", "--min-images-per-class", "5", "--skip-unreadable"]) == 0
    dataset = Path(capsys.readouterr().out.strip())
    assert dataset.name.endswith("-all-tf0.25")
    manifest = datasets.load_manifest(dataset)
    assert manifest["test_fraction"] == 0.25 and manifest["splits"]["test"]["per_class"] == [4, 3, 3]
    for flag, value, match in [("--test-fraction", "1", "--test-fraction must be between 0 and 1"),
                               ("--max-decode-pixels", "0", "--max-decode-pixels must be a positive number"),
                               ("--min-images-per-class", "0", "--min-images-per-class must be at least 1")]:
        assert cli.main(["data", "--data", str(every_kind_folder), "--out", str(tmp_path / "bad"), flag, value]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err
    assert not (tmp_path / "bad").exists()
