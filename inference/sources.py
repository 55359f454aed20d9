"""What `tokenlearner infer --data` holds, and reading it inside the Beam job.

Listing and reading go through Beam's filesystems (``apache_beam.io.filesystems``, under ``apache_beam.io.fileio``),
so a local path and a ``gs://`` one are read the same way. Each file is one of three kinds, by its name: an image
(components.images.IMAGE_EXTENSIONS, what ingestion accepts; the model decides whether it can decode it), an
archive (.tar.gz, .tgz, .tar: its image members), or TFRecords (components.tfrecord_source.TFRECORD_SUFFIXES:
tf.Example records with an ``image`` bytes feature). Other files are skipped and counted.

Reads are bounded as ingestion's are (components/sources.py): an image or record above MAX_IMAGE_BYTES, or an
archive member count above MAX_MEMBERS, is an error record, never a crash. Inside the job every input becomes
either ``(key, encoded bytes)`` or ``(key, reason)`` on the errors output; the key names the file (ARCHIVE:MEMBER,
TFRECORDS:INDEX for the inside of a container).
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import itertools
import tarfile
from typing import BinaryIO, Iterator

from components.images import IMAGE_EXTENSIONS
from components.sources import MAX_IMAGE_BYTES, MAX_MEMBERS, READ_ERRORS, DataError
from components.tfrecord_source import TFRECORD_SUFFIXES, next_record
from trainer.features import IMAGE_KEY

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
IMAGE, ARCHIVE, TFRECORDS = "image", "archive", "tfrecords"
_GZIP_MAGIC = b"\x1f\x8b"


def kind_of(path: str) -> str | None:
    """IMAGE, ARCHIVE or TFRECORDS by the file's name; None for any other file (and hidden files)."""
    name = path.rstrip("/").rsplit("/", 1)[-1].lower()
    if name.startswith("."):
        return None
    if name.endswith(IMAGE_EXTENSIONS):
        return IMAGE
    if name.endswith(ARCHIVE_SUFFIXES):
        return ARCHIVE
    if name.endswith(TFRECORD_SUFFIXES):
        return TFRECORDS
    return None


def pattern_of(data: str) -> str:
    """The Beam file pattern of --data: a folder's files, recursively (``**``), or the file or glob as given."""
    from apache_beam.io.filesystems import FileSystems

    if any(c in data for c in "*?["):
        return data
    if FileSystems.exists(data) and _is_folder(data):
        return FileSystems.join(data.rstrip("/"), "**")
    return data


def _is_folder(path: str) -> bool:
    if "://" not in path:
        import os

        return os.path.isdir(path)
    # An object store has no folders: a path is one when it is not a file and objects lie below it.
    from apache_beam.io.filesystems import FileSystems

    return not FileSystems.match([path])[0].metadata_list or path.endswith("/")


@dataclasses.dataclass(frozen=True)
class Inventory:
    """What --data holds, listed before the job runs: its files by kind, the images counted."""

    data: str
    pattern: str
    files: dict[str, tuple[str, ...]]  # kind -> paths, sorted
    skipped: tuple[str, ...]  # files of no known kind
    images: int  # image files + archive members with an image name + TFRecord records
    counted: bool  # False when containers on a remote filesystem were not read to count their images

    def describe(self) -> str:
        """"2,000 images under DATA" (with the containers they are in, and what was skipped)."""
        parts = []
        if self.files[ARCHIVE]:
            parts.append(_plural(len(self.files[ARCHIVE]), "archive"))
        if self.files[TFRECORDS]:
            parts.append(_plural(len(self.files[TFRECORDS]), "TFRecord file"))
        where = f" (in {', '.join(parts)})" if parts else ""
        count = f"{self.images:,} images" if self.counted else f"{len(self.files[IMAGE]):,} image files and " \
                                                               f"containers not read yet"
        skipped = f"; skipped {_plural(len(self.skipped), 'file')} of no image, archive or TFRecord kind " \
                  f"(e.g. {self.skipped[0]})" if self.skipped else ""
        return f"{count}{where} under {self.data}{skipped}"


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def inventory(data: str, count_containers: bool = True) -> Inventory:
    """The files of --data by kind, and the number of images (archive members and records counted by reading the
    containers' headers, where `count_containers` and they are local). DataError when nothing is there to classify."""
    from apache_beam.io.filesystems import FileSystems

    pattern = pattern_of(data)
    try:
        matched = FileSystems.match([pattern])[0].metadata_list
    except Exception as e:  # noqa: BLE001 - Beam wraps every filesystem error in BeamIOError
        raise DataError(f"--data {data}: cannot list it ({str(e).splitlines()[0]})") from None
    files: dict[str, list[str]] = {IMAGE: [], ARCHIVE: [], TFRECORDS: []}
    skipped: list[str] = []
    for meta in sorted(matched, key=lambda m: m.path):
        kind = kind_of(meta.path)
        (files[kind] if kind else skipped).append(meta.path)
    if not any(files.values()):
        found = f"only {_plural(len(skipped), 'file')} of other kinds, e.g. {skipped[0]}" if skipped else "nothing"
        raise DataError(f"--data {data}: expected image files, .tar.gz archives or TFRecord files; found {found}")
    local = "://" not in pattern
    counted = count_containers and (local or not (files[ARCHIVE] or files[TFRECORDS]))
    images = len(files[IMAGE])
    if counted:
        images += sum(sum(1 for _ in _archive_members(path, headers_only=True)) for path in files[ARCHIVE])
        images += sum(sum(1 for _ in _records(path)) for path in files[TFRECORDS])
    return Inventory(data=data, pattern=pattern, files={k: tuple(v) for k, v in files.items()},
                     skipped=tuple(skipped), images=images, counted=counted)


# --------------------------------------------------------------------------------------- reading, inside the job

def _open(path: str) -> BinaryIO:
    from apache_beam.io.filesystems import CompressionTypes, FileSystems

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _archive_members(path: str, headers_only: bool = False) -> Iterator[tuple[str, bytes | str | None]]:
    """(key, bytes) of each image member of an archive, read as a stream (an object store has no seek); (key, reason)
    for a member too large; (path, reason) once if the archive itself cannot be read on. `headers_only`: bytes None."""
    try:
        with _open(path) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for count, member in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    yield path, f"stopped reading after {MAX_MEMBERS:,} members"
                    return
                if not member.isfile() or kind_of(member.name) != IMAGE:
                    continue
                key = f"{path}:{member.name}"
                if headers_only:
                    yield key, None
                elif member.size > MAX_IMAGE_BYTES:
                    yield key, f"{member.size:,} bytes, more than the {MAX_IMAGE_BYTES:,} allowed for an image"
                elif (stream := tar.extractfile(member)) is None:  # isfile() above: a member with bytes
                    yield key, "not a regular file in the archive"
                else:
                    yield key, stream.read()
                # streaming: TarFile would otherwise keep every member's TarInfo (TarFile.members is real but
                # undeclared in typeshed's tarfile stub)
                tar.members = []  # type: ignore[attr-defined]
    except READ_ERRORS as e:
        yield path, f"not a readable tar archive, or truncated ({_first_line(e)})"


def _records(path: str) -> Iterator[tuple[str, bytes | str]]:
    """(key, record) of each record of a TFRecord file, GZIP or not (read from its first bytes), framing and CRCs
    checked as components/tfrecord_source.py does; (key, reason) for the first that is broken, then nothing."""
    i = 0
    try:
        with _open(path) as raw:
            head = raw.read(2)
            stream = io.BufferedReader(_Prepend(head, raw))
            f = gzip.GzipFile(fileobj=stream) if head == _GZIP_MAGIC else stream
            for i in itertools.count():
                record = next_record(f, f"record {i}")
                if record is None:
                    return
                yield f"{path}:{i}", record
    except DataError as e:
        yield f"{path}:{i}", str(e)
    except READ_ERRORS as e:
        yield f"{path}:{i}", f"cannot read on, truncated or corrupt ({_first_line(e)})"


class _Prepend(io.RawIOBase):
    """A stream that first gives back the bytes already read from it (the magic-number peek)."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def image_of_record(record: bytes) -> bytes | str:
    """The encoded image of a serialized tf.Example (its ``image`` bytes feature), or the reason there is none."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    try:
        example.ParseFromString(record)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError
        return f"not a tf.Example ({_first_line(e)})"
    feature = example.features.feature.get(IMAGE_KEY)
    if feature is None or feature.WhichOneof("kind") != "bytes_list" or len(feature.bytes_list.value) != 1:
        return f"expected a tf.Example with one {IMAGE_KEY!r} bytes value; has features " \
               f"{sorted(example.features.feature)}"
    return feature.bytes_list.value[0]


def read(path: str) -> Iterator[tuple[str, bytes | str]]:
    """Every image of one input file: (key, encoded bytes), or (key, reason) when it cannot be read."""
    kind = kind_of(path)
    if kind == IMAGE:
        try:
            with _open(path) as f:
                data = f.read(MAX_IMAGE_BYTES + 1)
        except Exception as e:  # noqa: BLE001 - OSError locally, BeamIOError / HTTP errors on object stores
            yield path, f"cannot read: {_first_line(e)}"
            return
        if len(data) > MAX_IMAGE_BYTES:
            yield path, f"more than the {MAX_IMAGE_BYTES:,} bytes allowed for an image"
        elif not data:
            yield path, "empty file (expected image bytes)"
        else:
            yield path, data
    elif kind == ARCHIVE:
        for key, outcome in _archive_members(path):
            if outcome is not None:  # None only with headers_only
                yield key, outcome
    elif kind == TFRECORDS:
        for key, record in _records(path):
            yield key, (image_of_record(record) if isinstance(record, bytes) else record)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
