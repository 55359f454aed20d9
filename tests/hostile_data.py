"""Data sources as an attacker or a broken disk would hand them over, and a batch pickled as Python 2 wrote the
official CIFAR-10 release, opcode by opcode (Python 3 cannot emit Python 2's str opcodes itself)."""
from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np


class Reducer:
    """Unpickles as ``func(*args)``: the classic pickle payload (``os.system``, ``builtins.exec``, ...)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def marker_command(marker: Path) -> str:
    return f"touch {marker}"


PAYLOADS = {  # what a hostile batch calls; each would create `marker` if unpickled by pickle.loads
    "os.system": lambda marker: Reducer(os.system, marker_command(marker)),
    "builtins.exec": lambda marker: Reducer(exec, f"open({str(marker)!r}, 'w').close()"),
    "subprocess.call": lambda marker: Reducer(__import__("subprocess").call, ["touch", str(marker)]),
}


def hostile_batch(payload) -> bytes:
    """A batch whose 'data' is the payload, pickled as protocol 2 (the official batches' protocol)."""
    return pickle.dumps({b"batch_label": b"x", b"labels": [0], b"data": payload, b"filenames": [b"a.png"]},
                        protocol=2)


def write_tar(dest: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


# ------------------------------------------------------------------------------ Python 2 protocol-2 pickles

def _py2(obj) -> bytes:
    """Opcodes cPickle (Python 2, protocol 2) writes for the types the official batches hold."""
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2(k) + _py2(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, list):
        return b"](" + b"".join(_py2(x) for x in obj) + b"e"
    if isinstance(obj, tuple):
        return b"(" + b"".join(_py2(x) for x in obj) + b"t"
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if obj is None:
        return b"N"
    if isinstance(obj, int):
        return b"K" + bytes([obj]) if 0 <= obj < 256 else b"J" + struct.pack("<i", obj)
    if isinstance(obj, bytes):  # a Python 2 str: SHORT_BINSTRING / BINSTRING
        return (b"U" + bytes([len(obj)]) if len(obj) < 256 else b"T" + struct.pack("<i", len(obj))) + obj
    if isinstance(obj, np.dtype):
        return b"cnumpy\ndtype\n" + _py2((obj.str[1:].encode(), False, True)) + b"R" + \
            _py2((3, b"|", None, None, None, -1, -1, 0)) + b"b"
    if isinstance(obj, np.ndarray):
        return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"(cnumpy\nndarray\n" + _py2((0,)) + _py2(b"b") + b"tR"
                + _py2((1, obj.shape, obj.dtype, False, obj.tobytes())) + b"b")
    raise TypeError(type(obj))


def py2_pickle(obj) -> bytes:
    return b"\x80\x02" + _py2(obj) + b"."


def write_official_py2(root: Path, per_batch: int = 20) -> Path:
    """cifar-10-batches-py/ as the official release stores it: Python 2 protocol-2 pickles, bytes keys."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": name.encode(), b"labels": [i % 10 for i in range(per_batch)],
                 b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]}
        (folder / name).write_bytes(py2_pickle(batch))
    (folder / "batches.meta").write_bytes(py2_pickle({
        b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship",
                         b"truck"], b"num_cases_per_batch": 10000, b"num_vis": 3072}))
    return folder
