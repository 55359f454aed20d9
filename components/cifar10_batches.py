"""CIFAR-10's official python release: its pickled batches read without running any code from them.

The batches (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``, ``batches.meta``, from the archive or its
extracted folder) are pickles, read by a restricted unpickler that builds only what the official batches hold (dicts,
lists, bytes, ints, uint8 arrays): every other global is refused before it is looked up. Each batch's pixels are
checked (uint8, N x 3072, labels 0..9) and staged on disk as a uint8 array for ingestion (components/ingest.py)
to encode.
"""
from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from components.sources import DataError, Item, read_file, read_member, root_with, tar_members
from trainer.features import CIFAR10_CLASSES, CIFAR10_IMAGE_SIZE

OFFICIAL_DIR = "cifar-10-batches-py"
OFFICIAL_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
OFFICIAL_TEST_BATCH = "test_batch"
MAX_BATCH_BYTES = 64 * 2**20  # one pickled batch (the official ones are 31 MB)

log = logging.getLogger(__name__)


def _array_reconstructor() -> Callable[..., np.ndarray]:
    """numpy.core.multiarray._reconstruct, wherever numpy keeps it: the callable an array pickles as."""
    reduced = np.empty(0).__reduce__()
    if isinstance(reduced, str):  # object.__reduce__'s other form (a global's name); an array's is a tuple
        raise ImportError(f"numpy {np.__version__}: an array pickles as the global {reduced}, not a call")
    return reduced[0]


_NUMPY_RECONSTRUCT = _array_reconstructor()


class _ArrayType:
    """What the pickle's ``numpy.ndarray`` global becomes: a token accepted only as _reconstruct's first argument.
    Handing out the real class would let a pickle call ``ndarray(shape)`` and allocate any amount of memory."""

    __slots__ = ()


def _reconstruct(subtype, shape, dtype_code):
    """numpy's ``_reconstruct(ndarray, (0,), b'b')``, the empty array a pickled array starts as (its bytes come with
    the state that follows, checked by numpy against shape and dtype); anything else is refused."""
    if not isinstance(subtype, _ArrayType) or shape != (0,) or not isinstance(dtype_code, bytes):
        raise pickle.UnpicklingError(f"unexpected array reconstruction _reconstruct({subtype!r}, {shape!r}, "
                                     f"{dtype_code!r})")
    return _NUMPY_RECONSTRUCT(np.ndarray, (0,), dtype_code)


def _latin1(text, encoding):
    """``_codecs.encode(text, 'latin1')``: how Python 3 spells bytes in a protocol-2 pickle (Python 2's official
    batches store them directly). Only that encoding: other codecs are refused."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allowlist: it would have run or built something arbitrary."""


class _BatchUnpickler(pickle.Unpickler):
    """Builds only what the official CIFAR-10 python batches hold. Their pickles (protocol 2, written by Python 2)
    reference exactly three globals: ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and
    ``numpy.dtype``; dicts, lists, str (bytes here) and ints need none. Python 3 re-pickles at protocol 2 add
    ``_codecs.encode`` for bytes, and numpy 2 names the module ``numpy._core.multiarray``. Every other global
    (``os.system``, ``builtins.eval``, ...) is refused before it is looked up, so no code from the data runs."""

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data), encoding="bytes")  # Python 2 str -> bytes, as the batches need

    def find_class(self, module: str, name: str):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return _ArrayType()
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("_codecs", "encode"):
            return _latin1
        raise RefusedGlobal(f"{module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not part of a CIFAR-10 batch")


def unpickle(path: Path, data: bytes) -> dict:
    """A batch pickle -> dict with str keys, through the restricted unpickler; any failure is one DataError."""
    try:
        batch = _BatchUnpickler(data).load()
    except RefusedGlobal as e:
        raise DataError(f"{path}: refused to unpickle global {e} (a CIFAR-10 batch holds only dicts, lists, bytes, "
                        f"ints and numpy arrays); the file is not CIFAR-10 and may be hostile, nothing of it was "
                        f"run") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing here
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR-10 python batch (a pickled {type(batch).__name__}, expected a dict)")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in batch.items()}


def _text(value) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value if isinstance(value, str) else None


def _batch_arrays(name: str, batch: dict) -> tuple[np.ndarray, list[int]]:
    """The checked 'data' (uint8, (N, 3072)) and 'labels' (N ints in 0..9) of a batch."""
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{name}: missing key(s) {[k for k in ('data', 'labels') if k not in batch]}; a CIFAR-10 "
                        f"batch has 'data' and 'labels' (found {sorted(batch)[:10]})")
    pixels, labels = batch["data"], batch["labels"]
    side = CIFAR10_IMAGE_SIZE
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 2 or pixels.shape[1] != 3 * side ** 2 \
            or pixels.dtype != np.uint8:
        raise DataError(f"{name}: field 'data' must be a uint8 array of shape (N, 3072) (32x32 RGB, "
                        f"channel-major); got {getattr(pixels, 'dtype', type(pixels).__name__)} "
                        f"{getattr(pixels, 'shape', '')}")
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        labels = labels.tolist()
    if not isinstance(labels, (list, tuple)) or len(labels) != len(pixels):
        raise DataError(f"{name}: field 'labels' must be a list with one label per row of 'data' ({len(pixels)}); "
                        f"got {type(labels).__name__}"
                        + (f" of {len(labels)}" if isinstance(labels, (list, tuple)) else ""))
    for i, label in enumerate(labels):
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(CIFAR10_CLASSES):
            raise DataError(f"{name}: labels[{i}] = {label!r} is out of range; expected 0..9")
    return pixels, list(labels)


def _official_batches(source: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of batches.meta and every batch, from the archive or the extracted folder."""
    wanted = {"batches.meta", *OFFICIAL_TRAIN_BATCHES, OFFICIAL_TEST_BATCH}
    seen = set()
    if source.is_dir():
        root = root_with(source, "data_batch_1")
        for name in sorted(wanted):
            if (root / name).is_file():
                seen.add(name)
                yield str(root / name), read_file(root / name, MAX_BATCH_BYTES)
    else:
        for tar, member in tar_members(source):
            name = Path(member.name).name
            if member.isfile() and name in wanted:
                seen.add(name)
                where = f"{source}:{member.name}"
                yield where, read_member(tar, member, where, MAX_BATCH_BYTES)
    missing = sorted(wanted - seen)
    if missing:
        raise DataError(f"{source}: missing {missing}; expected the files of {OFFICIAL_DIR}/")


def index_official(source: Path, staging: Path) -> tuple[dict[str, list[Item]], list[str]]:
    """Stages each batch's pixels as an on-disk uint8 array (one batch in memory at a time); items point at rows."""
    labels_of: dict[str, list[int]] = {}
    class_names: list[str] | None = None
    for name, data in _official_batches(source):
        batch = unpickle(Path(name), data)
        member = Path(name.split(":")[-1]).name
        if member == "batches.meta":
            names = batch.get("label_names", [])
            texts = [_text(n) for n in names] if isinstance(names, (list, tuple)) else [None]
            class_names = [t for t in texts if t is not None]
            if len(class_names) != len(texts) or len(class_names) != len(CIFAR10_CLASSES):
                raise DataError(f"{name}: 'label_names' must be a list of {len(CIFAR10_CLASSES)} class names "
                                f"(bytes or str), one per label 0..9")
            continue
        pixels, labels = _batch_arrays(name, batch)
        side = CIFAR10_IMAGE_SIZE
        np.save(staging / f"{member}.npy", pixels.reshape(-1, 3, side, side).transpose(0, 2, 3, 1))
        labels_of[member] = labels
    # Positions within each class follow the official batch order, whatever order the archive stores them in.
    rows: dict[str, list[Item]] = {"train": [], "test": []}
    for member in (*OFFICIAL_TRAIN_BATCHES, OFFICIAL_TEST_BATCH):
        split = "test" if member == OFFICIAL_TEST_BATCH else "train"
        counts = [sum(1 for it in rows[split] if it.label == c) for c in range(len(CIFAR10_CLASSES))]
        for i, label in enumerate(labels_of[member]):
            rows[split].append(Item(label, counts[label], str(staging / f"{member}.npy"), i))
            counts[label] += 1
    if class_names and class_names != list(CIFAR10_CLASSES):
        log.warning("batches.meta label_names %s differ from the CIFAR-10 names; using them", class_names)
    return rows, class_names or list(CIFAR10_CLASSES)


