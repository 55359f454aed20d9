"""An image folder as an ingestion source: ``train/<class>/...`` and optionally ``test/<class>/...``, as a folder or
a ``.tar.gz``, either possibly inside one enclosing folder.

The classes are the folder names under train/, sorted; a label is its class's index in that list. Every file under
a class folder, in sub-folders too, is one of that class's images when its name has an image extension
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


def index(entries: list[str], source: str, sep: str, base: Path | None = None) -> tuple[dict[str, list[Item]],
                                                                                   list[str]]:
    """({'train': items[, 'test': items]}, class names) of the layout, from its relative paths (folders end in
    '/', so that a class folder without files is seen). Messages name a path as source + sep + path ('/' for a
    folder, ':' for an archive); refs are base/path (archive member names when base is None)."""
    top = _top(entries, source)
    where = source + sep + "".join(f"{p}/" for p in top)
    found: dict[str, dict[str, list[str]]] = {TRAIN: {}, TEST: {}}
    skipped: list[str] = []
    has_test = False
    for entry in entries:
        parts = PurePosixPath(entry).parts
        if parts[:len(top)] != top or len(parts) <= len(top) or parts[len(top)] not in found:
            continue
        split, rest = parts[len(top)], parts[len(top) + 1:]
        has_test |= split == TEST
        if rest and not rest[0].startswith(".") and (len(rest) > 1 or entry.endswith("/")):
            files = found[split].setdefault(rest[0], [])  # a class folder, seen even when it holds no file
            if len(rest) > 1 and not entry.endswith("/"):
                (files if _is_image(rest) else skipped).append(entry)
        elif not entry.endswith("/"):
            skipped.append(entry)  # outside any class folder (train/README), or in a hidden one
    _warn_skipped(skipped, source)
    class_names = _class_names(found, has_test, where)
    ref = (lambda f: str(base / f)) if base is not None else (lambda f: f)
    return {split: [Item(label, i, ref(f)) for label, name in enumerate(class_names)
                    for i, f in enumerate(sorted(found[split][name]))]
            for split in ((TRAIN, TEST) if has_test else (TRAIN,))}, class_names


def holds_images(member_name: str) -> bool:
    """Whether an archive member looks like a training image of this layout (detection reads no further)."""
    parts = PurePosixPath(member_name).parts
    return TRAIN in parts[:2] and member_name.lower().endswith(IMAGE_EXTENSIONS)


def _top(entries: list[str], source: str) -> tuple[str, ...]:
    """() when train/ is at the top of the source, (folder,) when it is one folder down (the first such, sorted)."""
    tops = set()
    for entry in entries:
        parts = PurePosixPath(entry).parts
        if parts and parts[0] == TRAIN and (len(parts) > 1 or entry.endswith("/")):
            return ()
        if len(parts) > 1 and parts[1] == TRAIN and (len(parts) > 2 or entry.endswith("/")):
            tops.add(parts[0])
    if not tops:
        raise DataError(f"{source}: expected a train/ folder of class folders in it or in one folder below it")
    return (min(tops),)


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


def _class_names(found: dict[str, dict[str, list[str]]], has_test: bool, where: str) -> list[str]:
    """train/'s class folder names, sorted, after checking that each holds images and that test/ matches."""
    class_names = sorted(found[TRAIN])
    for split, classes in found.items():
        empty = sorted(name for name, files in classes.items() if not files)
        if empty:
            raise DataError(f"{where}{split}/{empty[0]}: no image files in this class folder; expected images "
                            f"({'/'.join(IMAGE_EXTENSIONS)})")
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
