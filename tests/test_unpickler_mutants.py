"""The restricted unpickler of CIFAR-10 python batches (components/cifar10_batches.py) on hand-built pickles: what it
builds, each global it refuses and the line it refuses with. Written against the mutants bench/mutation.py found
alive."""
from __future__ import annotations

import codecs
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from components import cifar10_batches
from components.sources import DataError
from tests.hostile_data import Reducer

PATH = Path("cifar-10-batches-py/data_batch_1")


def _refusal(data: bytes) -> str:
    with pytest.raises(DataError) as raised:
        cifar10_batches.unpickle(PATH, data)
    return str(raised.value)


def test_a_python_3_protocol_2_batch_comes_back_with_str_keys_bytes_and_arrays():
    data = np.arange(6, dtype=np.uint8).reshape(2, 3)
    batch = cifar10_batches.unpickle(PATH, pickle.dumps(
        {b"data": data, b"labels": [1, 2], b"batch_label": b"\xff\x00batch", "text key": 7}, protocol=2))
    assert sorted(batch) == ["batch_label", "data", "labels", "text key"]
    assert batch["data"].dtype == np.uint8 and batch["data"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert batch["labels"] == [1, 2] and batch["batch_label"] == b"\xff\x00batch" and batch["text key"] == 7


def test_python_2_strings_stay_bytes_and_a_latin1_key_is_decoded():
    # {'k\xe9': '\xff\x00'} as Python 2 pickles it (protocol 2, SHORT_BINSTRING): no global at all
    data = b"\x80\x02}q\x00U\x02k\xe9q\x01U\x02\xff\x00q\x02s."
    assert cifar10_batches.unpickle(PATH, data) == {"k\u00e9": b"\xff\x00"}


def test_numpy_2_s_module_name_for_reconstruct_is_accepted():
    data = pickle.dumps({b"data": np.array([7, 8], dtype=np.uint8)}, protocol=2)
    renamed = data.replace(b"numpy.core.multiarray\n", b"numpy._core.multiarray\n")
    assert renamed != data
    assert cifar10_batches.unpickle(PATH, renamed)["data"].tolist() == [7, 8]


@pytest.mark.parametrize("module, name", [
    ("os", "system"), ("builtins", "eval"), ("numpy", "ones"), ("numpy.core.multiarray", "scalar"),
    ("numpy.lib", "_reconstruct"), ("_codecs", "decode"), ("numpy", "frombuffer"),
])
def test_any_other_global_is_refused_by_its_name(module, name):
    data = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n)R."
    assert _refusal(data) == (f"{PATH}: refused to unpickle global {module}.{name} (a CIFAR-10 batch holds only "
                              "dicts, lists, bytes, ints and numpy arrays); the file is not CIFAR-10 and may be "
                              "hostile, nothing of it was run")


def test_os_system_in_a_real_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    message = _refusal(pickle.dumps({b"data": Reducer(os.system, f"touch {marker}")}, protocol=2))
    assert "refused to unpickle global posix.system" in message
    assert not marker.exists()


def test_codecs_encode_only_turns_latin1_text_into_bytes():
    assert cifar10_batches._latin1("\xff", "latin1") == b"\xff"
    assert cifar10_batches._latin1("\xe9", "latin-1") == b"\xe9"
    for text, encoding in (("x", "utf-8"), ("x", "rot13"), (b"x", "latin1")):
        with pytest.raises(pickle.UnpicklingError) as raised:
            cifar10_batches._latin1(text, encoding)
        assert str(raised.value) == f"refused _codecs.encode with encoding {encoding!r}"
    assert _refusal(pickle.dumps({b"k": Reducer(codecs.encode, "x", "utf-16")}, protocol=2)) == (
        f"{PATH}: not a CIFAR-10 python batch (UnpicklingError: refused _codecs.encode with encoding 'utf-16')")


def test_reconstruct_builds_only_the_empty_array_a_pickled_array_starts_as():
    empty = cifar10_batches._reconstruct(cifar10_batches._ArrayType(), (0,), b"b")
    assert isinstance(empty, np.ndarray) and empty.shape == (0,) and empty.dtype == np.int8
    token = cifar10_batches._ArrayType()
    for args in ((np.ndarray, (0,), b"b"), (token, (10**12,), b"b"), (token, (0,), "b"), (token, [0], b"b")):
        with pytest.raises(pickle.UnpicklingError) as raised:
            cifar10_batches._reconstruct(*args)
        assert str(raised.value) == f"unexpected array reconstruction _reconstruct{args!r}"


def test_ndarray_is_a_token_not_the_class():
    unpickler = cifar10_batches._BatchUnpickler(b"")
    assert isinstance(unpickler.find_class("numpy", "ndarray"), cifar10_batches._ArrayType)
    assert unpickler.find_class("numpy", "dtype") is np.dtype
    assert unpickler.find_class("numpy.core.multiarray", "_reconstruct") is cifar10_batches._reconstruct
    assert unpickler.find_class("_codecs", "encode") is cifar10_batches._latin1
    assert "not callable" in _refusal(pickle.dumps({b"data": Reducer(np.ndarray, (10**12,))}, protocol=2))


def test_a_persistent_id_is_refused():
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)
    pickler.persistent_id = lambda obj: "outside" if obj == "ref" else None
    pickler.dump({b"k": "ref"})
    assert _refusal(buffer.getvalue()) == (f"{PATH}: not a CIFAR-10 python batch (UnpicklingError: persistent ids "
                                           "are not part of a CIFAR-10 batch)")


def test_a_pickle_of_something_else_than_a_dict_or_no_pickle_at_all_is_one_line():
    assert _refusal(pickle.dumps([1, 2], protocol=2)) == (
        f"{PATH}: not a CIFAR-10 python batch (a pickled list, expected a dict)")
    assert _refusal(b"").startswith(f"{PATH}: not a CIFAR-10 python batch (EOFError: ")
