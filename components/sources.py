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
                tar.members = []
    except READ_ERRORS as e:
        raise DataError(f"{path}: not a readable tar archive, or truncated ({_one_line(e)})") from e


def read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, where: str, limit: int) -> bytes:
    """A member's bytes, refused above `limit` before anything is read; a truncated archive is a DataError."""
    if member.size > limit:
        raise DataError(f"{where}: {member.size:,} bytes, more than the {limit:,} allowed for this file")
    try:
        return tar.extractfile(member).read()
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
    ending in '/' (a class folder without files must still be seen)."""
    found = []
    for d, subdirs, names in os.walk(path):
        for name in names + ([f"{s}/" for s in subdirs] if folders else []):
            found.append(os.path.relpath(os.path.join(d, name), path) + ("/" if name.endswith("/") else ""))
            if len(found) > MAX_MEMBERS:
                raise DataError(f"{path}: stopped listing after {MAX_MEMBERS:,} files, more than ingestion takes "
                                f"from one source")
    return found


def root_with(path: Path, child: str) -> Path:
    """The folder under `path` (itself or one level down) that holds `child`."""
    if (path / child).exists():
        return path
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        if (sub / child).exists():
            return sub
    raise DataError(f"{path}: expected {child} in it or in one folder below it")
