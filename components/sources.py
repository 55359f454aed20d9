"""Reading a data source without trusting it: what ingestion's source readers share.

Every read is bounded (files or archive members, bytes per file, bytes unpacked in all), each bound checked before
the data is read or decompressed: a hostile or broken source (a tar or gzip bomb, a link to /dev/zero, a huge file)
is refused with one `DataError` line saying where and why reading stopped. `Item` is one image of a source: its
label, its position within its class, and where its bytes are.
"""
from __future__ import annotations

import dataclasses
import lzma
import os
import tarfile
import zlib
from pathlib import Path
from typing import Iterator

# Generous multiples of real image datasets (ImageNet's training set: 1.28 million files, 140 GB), far below what
# would hurt: they stop a hostile source, not a large one.
MAX_MEMBERS = 2_000_000  # archive members, folder files, or records
MAX_IMAGE_BYTES = 64 * 2**20  # one image file or record (a phone's JPEG is 2-10 MB, a 50 MP PNG ~100 MB: downscale)
MAX_TOTAL_BYTES = 256 * 2**30  # an archive's unpacked stream, or a TFRecord source's records

# What reading a damaged archive raises: tar, gzip/zlib, bz2 (OSError), xz.
READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)


class DataError(Exception):
    """Bad or missing input data; the message names the file and what was expected."""


@dataclasses.dataclass(frozen=True, slots=True)  # slots: 60,000 of them make up most of ingestion's heap
class Item:
    label: int
    position: int  # index within its class in the source's order (split rules use it)
    ref: str  # image file path, staged .npy pixel array, or staged file of encoded images
    row: int = -1  # row of the pixel array, or byte offset in the staged file; -1: ref is the image file
    size: int = 0  # byte size in the staged file of encoded images; 0: not staged there
    display: str = ""  # where the image came from, for error messages, when ref is a staged copy


def tar_members(path: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """(archive, member) in archive order, streaming: TarFile would otherwise keep every member's TarInfo.
    Stops with a DataError past MAX_MEMBERS members or MAX_TOTAL_BYTES of unpacked stream (checked on each header,
    before its data is decompressed): a tar or gzip bomb costs a bounded read."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for count, member in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    raise DataError(f"{path}: stopped reading after {MAX_MEMBERS:,} members, more than ingestion "
                                    f"takes from one source")
                if member.offset_data + member.size > MAX_TOTAL_BYTES:
                    raise DataError(f"{path}: stopped reading at member {member.name}: the archive unpacks to more "
                                    f"than {MAX_TOTAL_BYTES / 2**30:g} GiB, more than ingestion takes from one "
                                    f"source")
                yield tar, member
                # TarFile.members is real but undeclared in typeshed's tarfile stub
                tar.members = []  # type: ignore[attr-defined]
    except READ_ERRORS as e:
        raise DataError(f"{path}: not a readable tar archive, or truncated ({_one_line(e)})") from e


def read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, where: str, limit: int) -> bytes:
    """A member's bytes, refused above `limit` before anything is read; a truncated archive is a DataError."""
    if member.size > limit:
        raise DataError(f"{where}: {member.size:,} bytes, more than the {limit:,} allowed for this file")
    try:
        stream = tar.extractfile(member)
        if stream is None:  # a folder, link or device: no bytes of its own
            raise DataError(f"{where}: not a regular file in the archive")
        return stream.read()
    except READ_ERRORS as e:
        raise DataError(f"{where}: cannot read it from the archive, truncated or corrupt ({_one_line(e)})") from None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())  # tarfile lists each compression it tried on a line of its own


def read_file(path: Path, limit: int) -> bytes:
    """A file's bytes, at most `limit` (a link to /dev/zero or a huge file is refused, not read to the end)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > limit:
        raise DataError(f"{path}: more than the {limit:,} bytes allowed for this file")
    return data


def walk_files(path: Path, folders: bool = False) -> list[str]:
    """Relative paths of the files under `path`, at most MAX_MEMBERS; with `folders`, its folders too, each
    ending in '/' (a class folder without files must still be seen). Symbolic links are followed, to files and
    to folders (a class folder or train/ that is a link to the images elsewhere), with two guards: a link to a
    folder that contains it (a loop, which would list forever) and a link to nothing are each one DataError
    naming the link; and every folder entered counts against MAX_MEMBERS, so links that reach the same folders
    many times over cannot list without end either."""
    return list(walk_files_lazily(path, folders))


def walk_files_lazily(path: Path, folders: bool = False) -> Iterator[str]:
    """walk_files, lazily: detection stops at the first image file. Each folder's entries in name order."""
    count = 0
    # (relative prefix, folder, ids of it and of the folders above it)
    pending: list[tuple[str, str, tuple[tuple[int, int], ...]]] = [("", str(path), (_folder_id(str(path)),))]
    while pending:
        prefix, folder, parents = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as e:
            raise DataError(f"{folder}: cannot list this folder ({e.strerror or e})") from None
        subfolders: list[tuple[str, str, tuple[tuple[int, int], ...]]] = []
        for entry in entries:
            count += 1
            if count > MAX_MEMBERS:
                raise DataError(f"{path}: stopped listing after {MAX_MEMBERS:,} files and folders, more than "
                                f"ingestion takes from one source")
            relative = prefix + entry.name
            if _is_folder(entry):
                ident = _folder_id(entry.path)
                if ident in parents:
                    raise DataError(f"{entry.path}: a symbolic link to {os.path.realpath(entry.path)}, a folder "
                                    f"that contains it (a loop); remove the link or point it outside its own tree")
                subfolders.append((relative + "/", entry.path, (*parents, ident)))
                if folders:
                    yield relative + "/"
            elif entry.is_symlink() and not os.path.exists(entry.path):
                raise DataError(f"{entry.path}: a symbolic link to {os.readlink(entry.path)}, which does not exist "
                                f"(or is a link back to itself); remove the link or restore its target")
            else:
                yield relative
        pending.extend(reversed(subfolders))  # depth first, in name order


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:  # a link whose target cannot be reached (a loop of links to links): listed, then reported
        return False


def _folder_id(folder: str) -> tuple[int, int]:
    """What identifies a folder whatever path (or link) reaches it."""
    try:
        info = os.stat(folder)
    except OSError as e:
        raise DataError(f"{folder}: cannot read this folder ({e.strerror or e})") from None
    return info.st_dev, info.st_ino


def root_with(path: Path, child: str) -> Path:
    """The folder under `path` (itself or one level down) that holds `child`."""
    if (path / child).exists():
        return path
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        if (sub / child).exists():
            return sub
    raise DataError(f"{path}: expected {child} in it or in one folder below it")
