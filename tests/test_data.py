"""Ingestion: every source format into TFRecords, deterministic splits, and clear errors on bad input."""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components import cifar10
from tests.helpers import CLASSES, make_tar, png_bytes, random_images, write_image_folder, write_official
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
    dataset = cifar10.prepare(str(archive), tmp_path / "out")
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
    official = cifar10.prepare(str(write_official(tmp_path / "a", per_batch=20).parent), tmp_path / "out")
    folder = write_image_folder(tmp_path / "b", per_class=10)
    # Files of kinds ingestion does not take are skipped, counted and named in one warning line.
    stray = ["train/cat/scan.bmp", "train/dog/anim.gif", "test/ship/photo.webp", "test/frog/README"]
    for name in stray:
        (folder / name).write_bytes(b"not taken")
    caplog.set_level("WARNING", logger=cifar10.__name__)
    caplog.clear()  # the official folder's own warning (an extracted folder cannot be MD5-checked) is not counted
    from_dir = cifar10.prepare(str(folder), tmp_path / "out")
    from_tar = cifar10.prepare(str(make_tar(folder, tmp_path / "images.tar.gz")), tmp_path / "out")
    for dataset in (official, from_dir, from_tar):
        assert sorted(p.name for p in dataset.iterdir()) == ["classes.txt", "eval", "manifest.json", "test", "train"]
    assert read_split(from_dir, "train")[0][0].tobytes() == read_split(from_tar, "train")[0][0].tobytes()
    assert json.loads((from_dir / "manifest.json").read_text())["splits"]["test"]["examples"] == 100
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2, warnings  # one per ingestion: the folder, then the archive
    for warning in warnings:
        assert "\n" not in warning and "skipped 4 file(s) in class folders that are not .png/.jpg/.jpeg" in warning
        assert all(name in warning for name in stray)


def test_output_is_deterministic_and_reused(tmp_path):
    folder = write_image_folder(tmp_path / "src", per_class=10, fmt="JPEG")
    first = cifar10.prepare(str(folder), tmp_path / "out1")
    second = cifar10.prepare(str(folder), tmp_path / "out2")
    digest = lambda d: [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("*/*.tfrecord.gz"))]
    assert digest(first) == digest(second)
    stamp = (first / "manifest.json").stat().st_mtime_ns
    assert cifar10.prepare(str(folder), tmp_path / "out1") == first  # reused, not rebuilt
    assert (first / "manifest.json").stat().st_mtime_ns == stamp


def test_a_copied_or_touched_source_finds_its_dataset_and_changed_bytes_do_not(tmp_path):
    # A new machine or a re-synced share gives the same archive a new path and modification time: the dataset
    # (and with it the pipeline's cache and the Trainer's epoch checkpoints) must be found again.
    folder = write_image_folder(tmp_path / "src", per_class=10, fmt="JPEG")
    (tmp_path / "a").mkdir()
    archive = make_tar(folder, tmp_path / "a" / "cifar.tar.gz")
    first = cifar10.prepare(str(archive), tmp_path / "out")
    copy = tmp_path / "b" / "cifar.tar.gz"
    copy.parent.mkdir()
    shutil.copyfile(archive, copy)
    os.utime(copy, ns=(1, 1))
    assert cifar10.prepare(str(copy), tmp_path / "out") == first
    copied_folder = shutil.copytree(folder, tmp_path / "src2")
    from_folder = cifar10.prepare(str(folder), tmp_path / "out")
    assert cifar10.prepare(str(copied_folder), tmp_path / "out") == from_folder
    with open(next(copied_folder.rglob("*.jpg")), "ab") as f:
        f.write(b"\0")
    assert cifar10.prepare(str(copied_folder), tmp_path / "out") != from_folder


def test_limit_is_class_balanced(tmp_path):
    folder = write_image_folder(tmp_path / "src", per_class=12)
    dataset = cifar10.prepare(str(folder), tmp_path / "out", limit=100)
    splits = json.loads((dataset / "manifest.json").read_text())["splits"]
    assert splits["train"]["per_class"] == [9] * 10 and splits["eval"]["per_class"] == [1] * 10
    assert splits["test"]["per_class"] == [10] * 10
    labels = [label for _, label in read_split(dataset, "train")]
    assert labels[:10] == list(range(10))  # classes interleaved, not grouped


def test_real_cifar_subset(shared_cifar, tmp_path):
    dataset = cifar10.prepare(str(shared_cifar), tmp_path / "out", limit=200)
    train = read_split(dataset, "train")
    assert len(train) == 180 and all(image.shape == (32, 32, 3) for image, _ in train)
    assert sorted({label for _, label in train}) == list(range(10))


# ------------------------------------------------------------------------------------------------ bad input

def expect_error(match, *args, **kwargs):
    with pytest.raises(cifar10.DataError, match=match):
        cifar10.prepare(*args, **kwargs)


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
    monkeypatch.setattr(cifar10, "OFFICIAL_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    dataset = cifar10.prepare(archive.as_uri(), tmp_path / "out")
    assert (cache / "cifar-10-python.tar.gz").is_file() and (dataset / "manifest.json").is_file()


def test_image_of_wrong_size_names_the_file(tmp_path):
    folder = write_image_folder(tmp_path / "src", per_class=10)
    Image.fromarray(random_images(1, size=40)[0]).save(folder / "train/cat/0001.png")
    expect_error(r"train/cat/0001.png: expected a 32x32 RGB image, got 40x40 RGB", str(folder), tmp_path / "out")


def test_grayscale_image_names_the_file(tmp_path):
    folder = write_image_folder(tmp_path / "src", per_class=10)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "test/dog/0000.png")
    archive = make_tar(folder, tmp_path / "imgs.tar.gz")
    expect_error(r"imgs.tar.gz:test/dog/0000.png: expected a 32x32 RGB image, got 32x32 L", str(archive),
                 tmp_path / "out")


def test_undecodable_image_names_the_file(tmp_path):
    folder = write_image_folder(tmp_path / "src", per_class=10)
    (folder / "train/ship/0000.png").write_bytes(b"\x89PNG truncated")
    expect_error(r"train/ship/0000.png: not a readable image", str(folder), tmp_path / "out")


def test_unknown_class_folder(tmp_path):
    folder = write_image_folder(tmp_path / "src", per_class=10)
    (folder / "train/unicorn").mkdir()
    (folder / "train/unicorn/0000.png").write_bytes(png_bytes(random_images(1)[0]))
    expect_error(r"unknown class folder\(s\) train/\['unicorn'\]", str(folder), tmp_path / "out")


def test_empty_split(tmp_path):
    folder = write_image_folder(tmp_path / "src", per_class=2)
    expect_error("split 'eval' is empty", str(folder), tmp_path / "out", limit=20)


def test_label_out_of_range_names_the_batch(tmp_path):
    folder = write_official(tmp_path / "src", per_batch=10, labels=[0, 1, 2, 3, 4, 5, 6, 7, 8, 12])
    expect_error(r"data_batch_1: labels\[9\] = 12 is out of range", str(folder.parent), tmp_path / "out")


def test_failed_run_leaves_existing_outputs_untouched(tmp_path):
    good = write_image_folder(tmp_path / "good", per_class=10)
    dataset = cifar10.prepare(str(good), tmp_path / "out")
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
    dataset = cifar10.prepare(str(shared_cifar), tmp_path / "out")
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
    ("batches.meta", {b"label_names": 5}, r"batches.meta: 'label_names' must be a list of class names"),
])
def test_batches_of_the_wrong_shape_name_the_member(member, batch, match, tmp_path):
    expect_error(match, str(_official_with(tmp_path, member, pickle.dumps(batch, protocol=2))), tmp_path / "out")


def test_a_file_that_is_not_a_pickle_names_the_member(tmp_path):
    source = _official_with(tmp_path, "data_batch_4", b"\x80\x02garbage")
    expect_error(r"data_batch_4: not a CIFAR-10 python batch \(UnpicklingError", str(source), tmp_path / "out")


def test_a_truncated_archive_is_one_error(tmp_path, capsys):
    from pipeline import cli

    folder = write_official(tmp_path / "src", per_batch=200)
    archive = make_tar(folder, tmp_path / "cifar-10-python.tar.gz", arcname=folder.name)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    assert cli.main(["data", "--data", str(cut), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cut.tar.gz" in err[0] and "truncated" in err[0], err


def test_an_archive_with_too_many_members_stops_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10, "MAX_MEMBERS", 50)
    archive = write_tar(tmp_path / "bomb.tar.gz", {f"train/cat/{i:04d}.png": b"x" for i in range(60)})
    expect_error(r"bomb.tar.gz: stopped reading after 50 members", str(archive), tmp_path / "out")
    folder = tmp_path / "many"
    (folder / "train").mkdir(parents=True)
    for i in range(60):
        (folder / "train" / f"{i}.png").write_bytes(b"x")
    expect_error(r"many: stopped listing after 50 files", str(folder), tmp_path / "out")


def test_an_archive_that_unpacks_to_too_much_stops_before_decompressing_it(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10, "MAX_TOTAL_BYTES", 10_000)
    archive = write_tar(tmp_path / "bomb.tar.gz", {"a/readme.txt": b"0" * 20_000, "a/data_batch_1": b""})
    expect_error(r"stopped reading at member a/readme.txt: the archive unpacks to more than", str(archive),
                 tmp_path / "out")


def test_an_oversized_batch_is_refused_before_it_is_read(tmp_path, monkeypatch):
    folder = write_official(tmp_path / "src", per_batch=10)
    archive = make_tar(folder, tmp_path / "cifar-10-python.tar.gz", arcname=folder.name)
    monkeypatch.setattr(cifar10, "MAX_BATCH_BYTES", 1000)
    expect_error(r"cifar-10-batches-py/\w+: [\d,]+ bytes, more than the 1,000 allowed", str(archive),
                 tmp_path / "out")
    expect_error(r"cifar-10-batches-py/\w+: more than the 1,000 bytes allowed", str(folder.parent),
                 tmp_path / "out")


def test_a_decompression_bomb_image_is_refused_from_its_header(tmp_path):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # 100,000 x 100,000 RGB claimed by a 100-byte file: decoding it would need 30 GB.
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    folder = write_image_folder(tmp_path / "src", per_class=10)
    (folder / "train/cat/0002.png").write_bytes(bomb)
    expect_error(r"train/cat/0002.png: (expected a 32x32 RGB image, got 100000x100000|not a readable image)",
                 str(folder), tmp_path / "out")
