"""Image folder layouts (components/image_folder.py): ``<root>/<class>/...`` as keras' image_dataset_from_directory and
torchvision's ImageFolder read it, symbolic links followed with a guard against loops, and the error for a folder
that has images but no class folder. Small synthetic PNGs (2-3 classes of 20), a few seconds each."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import cli
from components import ingest
from tests.helpers import make_tar, png_bytes, random_images, write_image_folder

CLASSES3 = ("cow", "ant", "bee")  # written unsorted: the class list is the sorted folder names
PER_CLASS = 20


def write_class_folders(root: Path, classes=CLASSES3, per_class: int = PER_CLASS) -> Path:
    """root/<class>/NNNN.png, no train/ or test/; image i of class c is random_images(per_class, seed=10 + c)[i]."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i, image in enumerate(random_images(per_class, seed=10 + c, size=8)):
            (root / name / f"{i:04d}.png").write_bytes(png_bytes(image))
    return root


def pixels(dataset: Path, split: str) -> set[tuple[bytes, int]]:
    files = sorted(str(p) for p in (dataset / split).glob("*.tfrecord.gz"))
    out = set()
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        image = np.asarray(Image.open(io.BytesIO(feature["image"].bytes_list.value[0])))
        out.add((image.tobytes(), feature["label"].int64_list.value[0]))
    return out


def one_error_line(argv: list[str], capsys) -> str:
    """`tokenlearner ARGV` fails with exit 2 (bad input) and exactly one line on stderr: that line."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ------------------------------------------------------------------------------------------- <root>/<class>/

def test_class_folders_at_the_top_are_the_classes_with_a_held_out_test_split(tmp_path):
    folder = write_class_folders(tmp_path / "photos")
    dataset = ingest.prepare(str(folder), tmp_path / "out")
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["format"] == "folder" and manifest["class_names"] == ["ant", "bee", "cow"]
    assert manifest["test_split"] == "held_out" and manifest["test_fraction"] == 0.1
    # Of 20 a class, images 0 and 10 are held out for test (ceil(20 * 0.1) = 2); of the 18 left, every 10th (the
    # one at position 9) is eval.
    assert {s: v["per_class"] for s, v in manifest["splits"].items()} == \
        {"train": [17, 17, 17], "eval": [1, 1, 1], "test": [2, 2, 2]}
    # Labels by sorted name: cow (written first, seed 10) is label 2; ant (seed 11) 0; bee (seed 12) 1.
    written = {name: random_images(PER_CLASS, seed=10 + c, size=8) for c, name in enumerate(CLASSES3)}
    label = {"ant": 0, "bee": 1, "cow": 2}
    assert pixels(dataset, "test") == {(written[name][i].tobytes(), label[name]) for name in CLASSES3 for i in (0, 10)}

    # The same as a .tar.gz of the folder (one enclosing folder, photos/): the same classes and splits.
    archive = make_tar(folder, tmp_path / "photos.tar.gz", arcname="photos")
    from_tar = ingest.prepare(str(archive), tmp_path / "out")
    assert json.loads((from_tar / "manifest.json").read_text())["class_names"] == ["ant", "bee", "cow"]
    assert pixels(from_tar, "test") == pixels(dataset, "test")


def test_a_root_with_train_and_class_folders_is_read_as_train_and_names_the_others(tmp_path, caplog):
    folder = write_image_folder(tmp_path / "src", per_class=10, classes=("ant", "bee"))
    write_class_folders(folder, classes=("cow", "elk"), per_class=10)  # beside train/ and test/
    caplog.set_level(logging.WARNING, logger="components")
    dataset = ingest.prepare(str(folder), tmp_path / "out")
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["class_names"] == ["ant", "bee"] and manifest["test_split"] == "source"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{folder}/: read train/ and test/ only (a source with a train/ folder has the train/<class>/ "
                        f"layout); not read: the folder(s) cow, elk beside them"]


def _loose_photos(folder: Path) -> None:
    for i in range(12):
        (folder / f"IMG_{i:04d}.JPG").write_bytes(png_bytes(random_images(1, seed=i)[0], "JPEG"))
    (folder / "notes.txt").write_text("x")


@pytest.mark.parametrize("damage, match", [
    # A folder of loose images: what was found, and both layouts that would have been read.
    (_loose_photos,
     r"^tokenlearner: error: {f}/: 12 image file\(s\) and 1 other file\(s\) at the top level and no class "
     r"folders; expected {f}/<class>/<image> or {f}/train/<class>/<image>$"),
    # One class folder is one class, not an enclosing folder.
    (lambda f: write_class_folders(f, classes=("cat",)),
     r"^tokenlearner: error: {f}: 1 class\(es\) \['cat'\]; expected 2 to 1,000"),
    # test/ alone is neither layout (nor an enclosing folder of classes).
    (lambda f: write_class_folders(f / "test", classes=("ant", "bee")),
     r"^tokenlearner: error: {f}/test/: a test/ folder but no train/; expected train/<class>/ beside test/<class>/"),
    (lambda f: (f / "notes.txt").write_text("x"),
     r"^tokenlearner: error: {f}: no image files in it \(1 other file\(s\)\); expected <class>/<image> or "
     r"train/<class>/<image> image folders"),
])
def test_a_folder_without_class_folders_is_one_line_saying_what_it_found(damage, match, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    damage(folder)
    line = one_error_line(["data", "--data", str(folder), "--out", str(tmp_path / "out")], capsys)
    assert re.search(match.format(f=re.escape(str(folder))), line), line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_loose_images_in_an_archive_name_the_archive(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(png_bytes(random_images(1, seed=i)[0]))
    archive = make_tar(folder, tmp_path / "loose.tar.gz")  # 0.png, 1.png, 2.png at the top of the archive
    assert one_error_line(["data", "--data", str(archive), "--out", str(tmp_path / "out")], capsys) == \
        f"tokenlearner: error: {archive}: 3 image file(s) at the top level and no class folders; expected " \
        f"{archive}:<class>/<image> or {archive}:train/<class>/<image>"
    # In one folder, photos/, they are the images of one class, photos: a class folder holding images directly is
    # never taken for an enclosing folder.
    archive = make_tar(folder, tmp_path / "photos.tar.gz", arcname="photos")
    assert one_error_line(["data", "--data", str(archive), "--out", str(tmp_path / "out")], capsys) == \
        f"tokenlearner: error: {archive}: 1 class(es) ['photos']; expected 2 to 1,000 classes (an image folder: " \
        f"one folder per class, in train/ or at the top)"


# ------------------------------------------------------------------------------------------- symbolic links

def test_a_symlinked_train_folder_and_symlinked_images_are_followed(tmp_path):
    real = write_image_folder(tmp_path / "real", per_class=10, classes=("ant", "bee"))
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "train").symlink_to(real / "train", target_is_directory=True)  # the whole train/ elsewhere
    (linked / "test").mkdir()
    (linked / "test" / "ant").symlink_to(real / "test" / "ant", target_is_directory=True)
    (linked / "test" / "bee").mkdir()
    for image in sorted((real / "test" / "bee").iterdir()):
        (linked / "test" / "bee" / image.name).symlink_to(image)  # each file a link
    dataset = ingest.prepare(str(linked), tmp_path / "out")
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["class_names"] == ["ant", "bee"]
    assert {s: v["examples"] for s, v in manifest["splits"].items()} == {"train": 18, "eval": 2, "test": 20}
    # The fingerprint is of the bytes the links lead to: a plain copy of the same images finds the same dataset.
    copy = shutil.copytree(real, tmp_path / "copy")
    assert ingest.prepare(str(copy), tmp_path / "out") == dataset


def test_class_folders_that_are_links_are_followed(tmp_path):
    store = write_class_folders(tmp_path / "store", classes=("ant", "bee"))
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("ant", "bee"):
        (photos / name).symlink_to(os.path.relpath(store / name, photos), target_is_directory=True)
    manifest = json.loads((ingest.prepare(str(photos), tmp_path / "out") / "manifest.json").read_text())
    assert manifest["class_names"] == ["ant", "bee"] and manifest["splits"]["test"]["per_class"] == [2, 2]


@pytest.mark.parametrize("layout", ["train", "classes"])
def test_a_symlink_loop_is_one_line_naming_the_link(layout, tmp_path, capsys):
    folder = (write_image_folder(tmp_path / "src", per_class=10, classes=("ant", "bee")) if layout == "train"
              else write_class_folders(tmp_path / "src", classes=("ant", "bee")))
    ant = folder / "train" / "ant" if layout == "train" else folder / "ant"
    (ant / "again").symlink_to("..", target_is_directory=True)  # ant/again/ant/again/... without end
    line = one_error_line(["data", "--data", str(folder), "--out", str(tmp_path / "out")], capsys)
    assert line == f"tokenlearner: error: {ant}/again: a symbolic link to {ant.parent}, a folder that contains it " \
                   f"(a loop); remove the link or point it outside its own tree"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_link_to_nothing_is_one_line_naming_it(tmp_path, capsys):
    folder = write_class_folders(tmp_path / "src", classes=("ant", "bee"))
    (folder / "ant" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    line = one_error_line(["data", "--data", str(folder), "--out", str(tmp_path / "out")], capsys)
    assert line == f"tokenlearner: error: {folder}/ant/gone.png: a symbolic link to {tmp_path}/nowhere.png, which " \
                   f"does not exist (or is a link back to itself); remove the link or restore its target"
