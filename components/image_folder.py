"""An image folder as an ingestion source, as a folder or a ``.tar.gz``, either possibly inside one enclosing folder,
in one of two layouts:

- ``train/<class>/...`` and optionally ``test/<class>/...``;
- ``<class>/...`` (what keras.utils.image_dataset_from_directory and torchvision's ImageFolder read): the class
  folders are the training images, and the test split is held out from them as for a train/ without test/.

A source with a train/ folder (at the top, or one folder down) has the first layout, even when it holds other
folders too: they are not read, and one warning names them. Without train/, the non-hidden folders at the top are
the classes; a top that holds exactly one folder, with folders and no image file in it, is an enclosing folder (a
``.tar.gz`` of ``photos/``), and the classes are the folders in it. A test/ without train/ is an error, and so is a
top with image files and no class folder (the message says what was found). Symbolic links are followed
(components/sources.py walk_files guards against loops); inside a ``.tar.gz`` they are not, and one warning names
them.

The classes are the class folder names, sorted; a label is its class's index in that list. Every file under a
class folder, in sub-folders too, is one of that class's images when its name has an image extension
(images.IMAGE_EXTENSIONS); hidden files and other files (README, .txt, .heic) are skipped, counted and named in one
warning. When test/ is there, its class folders must be train/'s and every class needs test images. A class's images
are taken in path order, which the split rules (components/ingest.py) count positions in.
"""
from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

from components.images import IMAGE_EXTENSIONS
from components.sources import DataError, Item
from trainer.contract import TEST, TRAIN

MAX_NAMED_SKIPPED = 5  # files named in the warning about skipped files

log = logging.getLogger(__name__)


def index(entries: list[str], source: str, sep: str,
          base: Path | None = None) -> tuple[dict[str, list[Item]], list[str], str]:
    """({'train': items[, 'test': items]}, class names, where the class folders are: 'train/' or '' for the
    top) of the layout, from its relative paths (folders end in '/', so that a class folder without files is
    seen). Messages name a path as source + sep + path ('/' for a folder, ':' for an archive); refs are base/path
    (archive member names when base is None)."""
    top, splits = _layout(entries)
    where = source + sep + "".join(f"{p}/" for p in top)
    found: dict[str, dict[str, list[str]]] = {TRAIN: {}, TEST: {}}
    skipped: list[str] = []
    loose: list[str] = []  # files at the top of a class-folder layout, outside any class folder
    ignored: set[str] = set()  # folders beside train/ and test/
    has_test = False
    for entry in entries:
        parts = PurePosixPath(entry).parts
        if parts[:len(top)] != top or len(parts) <= len(top):
            continue
        if splits:
            if parts[len(top)] not in found:
                if not parts[len(top)].startswith(".") and (len(parts) > len(top) + 1 or entry.endswith("/")):
                    ignored.add(parts[len(top)])
                continue
            split, rest = parts[len(top)], parts[len(top) + 1:]
            has_test |= split == TEST
        else:
            split, rest = TRAIN, parts[len(top):]
            if rest[0].startswith("."):
                continue  # .git, .DS_Store: not part of the layout, as anything beside train/ is not
            if len(rest) == 1 and not entry.endswith("/"):
                loose.append(entry)
                continue
        if rest and not rest[0].startswith(".") and (len(rest) > 1 or entry.endswith("/")):
            files = found[split].setdefault(rest[0], [])  # a class folder, seen even when it holds no file
            if len(rest) > 1 and not entry.endswith("/"):
                (files if _is_image(rest) else skipped).append(entry)
        elif not entry.endswith("/"):
            skipped.append(entry)  # outside any class folder (train/README), or in a hidden one
    if ignored:
        log.warning("%s: read train/ and test/ only (a source with a train/ folder has the train/<class>/ layout); "
                    "not read: the folder(s) %s beside them", where.rstrip(":"), first_names(sorted(ignored)))
    if not splits:
        _check_class_folders(found[TRAIN], loose, where)
    _warn_skipped(skipped, source)
    class_names = _class_names(found, has_test, where, TRAIN + "/" if splits else "")
    ref = (lambda f: str(base / f)) if base is not None else (lambda f: f)
    return {split: [Item(label, i, ref(f)) for label, name in enumerate(class_names)
                    for i, f in enumerate(sorted(found[split][name]))]
            for split in ((TRAIN, TEST) if has_test else (TRAIN,))}, class_names, TRAIN + "/" if splits else ""


def holds_images(name: str) -> bool:
    """Whether a file (relative path, or archive member name) has an image's name and is not hidden: detection
    takes a source with one for an image folder, and index() says what is wrong with its layout, if anything (a
    folder of loose images included)."""
    parts = PurePosixPath(name).parts
    return bool(parts) and _is_image(parts)


def _layout(entries: list[str]) -> tuple[tuple[str, ...], bool]:
    """(the enclosing folder: () or (name,), whether it is the train/ layout), as the module docstring says."""
    tops = set()
    folders: dict[str, bool] = {}  # top-level folder -> whether it has image files directly in it
    nested: set[str] = set()  # top-level folders with folders in them
    for entry in entries:
        parts = PurePosixPath(entry).parts
        folder = len(parts) > 1 or entry.endswith("/")
        if parts and parts[0] == TRAIN and folder:
            return (), True
        if len(parts) > 1 and parts[1] == TRAIN and (len(parts) > 2 or entry.endswith("/")):
            tops.add(parts[0])
        if not parts or parts[0].startswith(".") or not folder:
            continue
        folders.setdefault(parts[0], False)
        if len(parts) == 2 and not entry.endswith("/"):
            folders[parts[0]] |= _is_image(parts)
        elif len(parts) > 1 and not parts[1].startswith("."):
            nested.add(parts[0])  # a folder in it ("photos/cat/", or "photos/cat/x.png" without folder entries)
    if tops:
        return (min(tops),), True
    loose_images = any(len(PurePosixPath(e).parts) == 1 and not e.endswith("/") and _is_image((e,))
                       for e in entries)
    if len(folders) == 1 and not loose_images:
        (only,) = folders
        if only in nested and not folders[only] and only != TEST:
            return (only,), False
    return (), False


def _check_class_folders(classes: dict[str, list[str]], loose: list[str], where: str) -> None:
    """A class-folder layout has class folders; image files beside them are not silently left out."""
    if TEST in classes:
        raise DataError(f"{where}{TEST}/: a test/ folder but no train/; expected train/<class>/ beside "
                        f"test/<class>/, or class folders only ({where}<class>/<image>)")
    images = sorted(f for f in loose if _is_image(PurePosixPath(f).parts))
    if not classes:
        others = len(loose) - len(images)
        found = f"{len(images):,} image file(s)" + (f" and {others:,} other file(s)" if others else "")
        raise DataError(f"{where.rstrip(':')}: {found} at the top level and no class folders; expected "
                        f"{where}<class>/<image> or {where}train/<class>/<image>")
    if images:
        log.warning("%s: skipped %d image file(s) at the top level, outside any class folder (the classes are the "
                    "folders %s): %s", where.rstrip(":"), len(images), first_names(sorted(classes)),
                    first_names(images))


def _is_image(rest: tuple[str, ...]) -> bool:
    return not any(p.startswith(".") for p in rest) and rest[-1].lower().endswith(IMAGE_EXTENSIONS)


def first_names(names: list[str]) -> str:
    """The first MAX_NAMED_SKIPPED of `names` (sorted), comma-separated, with ", ..." when there are more: how a
    warning about left-out files names them in one line."""
    return ", ".join(names[:MAX_NAMED_SKIPPED]) + (", ..." if len(names) > MAX_NAMED_SKIPPED else "")


def _warn_skipped(skipped: list[str], source: str) -> None:
    if skipped:  # never silently left out
        log.warning("%s: skipped %d file(s) in class folders that are not images by their name (hidden, or "
                    "not %s): %s", source, len(skipped), "/".join(IMAGE_EXTENSIONS), first_names(sorted(skipped)))


def _class_names(found: dict[str, dict[str, list[str]]], has_test: bool, where: str, prefix: str) -> list[str]:
    """The training class folder names, sorted, after checking that each holds images and that test/ matches.
    `prefix`: where the training class folders are under `where` ('train/' or '')."""
    class_names = sorted(found[TRAIN])
    for split, classes in found.items():
        empty = sorted(name for name, files in classes.items() if not files)
        if empty:
            raise DataError(f"{where}{prefix if split == TRAIN else split + '/'}{empty[0]}: no image files in this "
                            f"class folder; expected images ({'/'.join(IMAGE_EXTENSIONS)})")
    if has_test:
        unknown = sorted(set(found[TEST]) - set(class_names))
        if unknown:
            raise DataError(f"{where}test/: class folder(s) {unknown} not in train/; every test class needs "
                            f"training images in train/<class>/")
        missing = [name for name in class_names if name not in found[TEST]]
        if missing:
            raise DataError(f"{where}test/: no folder for class(es) {missing}; when test/ is given, every class of "
                            f"train/ needs test images")
    return class_names
