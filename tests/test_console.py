"""The program's console: TensorFlow's shutdown-time `AtomicFunction.__del__` message (tensorflow/datasets#5355)
is dropped, exactly that block, from the program and from the child processes it starts; everything else passes.
The whole console of a real tiny run is checked in test_pipeline_e2e.py."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

from cli import console
from tests.helpers import REPO

BLOCK = ("Exception ignored in: <function AtomicFunction.__del__ at 0x7f782e2c0790>\n"
         "Traceback (most recent call last):\n"
         '  File "/venv/lib/python3.10/site-packages/tensorflow/python/eager/polymorphic_function/atomic_function.py",'
         " line 291, in __del__\n"
         "TypeError: 'NoneType' object is not subscriptable\n")
WITH_SOURCE = BLOCK.replace(", in __del__\n", ", in __del__\n    RUNTIME_FUNCTION_REFS[key] -= 1\n")
# A child that leaves a concrete function alive until interpreter exit (sys is torn down last): TensorFlow prints
# the block itself, the way Beam's worker processes do after Transform.
TF_CHILD = ("import sys, tensorflow as tf\n"
            "sys._keep = tf.function(lambda x: x + 1).get_concrete_function(tf.constant(1))\n"
            "print('child done', file=sys.stderr)\n")


def _filtered(data: bytes, chunk: int = 7) -> bytes:
    source_r, source_w = os.pipe()
    sink_r, sink_w = os.pipe()
    thread = threading.Thread(target=console._StderrFilter(source_r, sink_w).run)
    thread.start()
    for i in range(0, len(data), chunk):  # lines arrive in pieces, as from a pipe
        os.write(source_w, data[i:i + chunk])
    os.close(source_w)
    thread.join(timeout=10)
    os.close(sink_w)
    with os.fdopen(sink_r, "rb") as f:
        return f.read()


def test_the_block_is_dropped_and_everything_else_passes_unchanged():
    other = "12:00:01 I absl: Component Transform is finished.\n"
    assert _filtered(f"{other}{BLOCK}{other}{WITH_SOURCE}{other}".encode()) == f"{other}{other}{other}".encode()
    for near_miss in (BLOCK.replace("not subscriptable", "not callable"),  # another failure: shown
                      BLOCK.replace("AtomicFunction", "ConcreteFunction"),
                      BLOCK.replace("atomic_function.py", "my_code.py"),
                      "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nValueError: x\n",
                      BLOCK[:-10]):  # cut short
        assert _filtered(f"{other}{near_miss}{other}".encode()) == f"{other}{near_miss}{other}".encode(), near_miss
    assert _filtered(b"Epoch 1/2 [====>   ] no newline yet") == b"Epoch 1/2 [====>   ] no newline yet"


def test_a_real_tensorflow_child_prints_the_block_and_the_filter_removes_it():
    raw = subprocess.run([sys.executable, "-c", TF_CHILD], capture_output=True, text=True, timeout=120)
    assert raw.returncode == 0
    assert "child done" in raw.stderr and "Exception ignored in: <function AtomicFunction.__del__" in raw.stderr
    parent = ("import subprocess, sys\n"
              "from cli import console\n"
              "with console.without_tf_shutdown_messages():\n"
              f"    subprocess.run([sys.executable, '-c', {TF_CHILD!r}])\n"
              "    print('parent done', file=sys.stderr)\n")
    filtered = subprocess.run([sys.executable, "-c", parent], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert filtered.returncode == 0
    assert "child done" in filtered.stderr and "parent done" in filtered.stderr
    assert "Exception ignored" not in filtered.stderr and "Traceback" not in filtered.stderr, filtered.stderr
