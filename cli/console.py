"""The `tokenlearner` program's console: one known TensorFlow shutdown message kept off it, nothing else touched.

TensorFlow 2.16's `AtomicFunction.__del__` (tensorflow/python/eager/polymorphic_function/atomic_function.py)
decrements the module global `RUNTIME_FUNCTION_REFS` outside its try block. A concrete function that is still
alive when its interpreter exits (here: the Transform graph that tensorflow_transform loads into each Beam
DirectRunner worker process and keeps in Beam's process-wide `shared.Shared` cache until the worker ends) is
deleted after module teardown has set that global to None, and Python prints

    Exception ignored in: <function AtomicFunction.__del__ at 0x...>
    Traceback (most recent call last):
      File ".../atomic_function.py", line 291, in __del__
    TypeError: 'NoneType' object is not subscriptable

although nothing failed. Upstream: https://github.com/tensorflow/datasets/issues/5355 (the same message from
TF 2.15/2.16 at exit). The objects belong to TFT and Beam inside their worker processes, where no code of this
project runs, so the message is filtered here, exactly: only that block, from this process (sys.unraisablehook)
and from its child processes (their stderr is this process's fd 2, which passes through a filter thread).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from typing import Iterator

_HEADER = b"Exception ignored in: <function AtomicFunction.__del__ at 0x"
# The rest of the block, line by line; the source line appears only while linecache still works.
_BLOCK = (re.compile(rb"Exception ignored in: <function AtomicFunction\.__del__ at 0x[0-9a-f]+>\n"),
          re.compile(rb"Traceback \(most recent call last\):\n"),
          re.compile(rb'  File "[^"]*/tensorflow/python/eager/polymorphic_function/atomic_function\.py", '
                     rb"line \d+, in __del__\n"))
_SOURCE_LINE = re.compile(rb"    RUNTIME_FUNCTION_REFS\[key\] -= 1\n")
_LAST = re.compile(rb"TypeError: 'NoneType' object is not subscriptable\n")


def is_tf_shutdown_message(unraisable) -> bool:
    """The unraisable exception TensorFlow's AtomicFunction.__del__ raises after module teardown, nothing else."""
    return (getattr(unraisable.object, "__qualname__", "") == "AtomicFunction.__del__"
            and unraisable.exc_type is TypeError and str(unraisable.exc_value) == "'NoneType' object is not subscriptable")


class _StderrFilter:
    """Copies lines from `read_fd` to `write_fd`, dropping each complete TF shutdown block (see module doc).
    A block that does not match to its last line is written out unchanged."""

    def __init__(self, read_fd: int, write_fd: int):
        self._read_fd, self._write_fd = read_fd, write_fd
        self._held: list[bytes] = []  # lines of a block being matched

    def run(self) -> None:
        pending = b""
        while chunk := os.read(self._read_fd, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._line(line + b"\n")
            # A partial line is written at once unless it may begin the block (prompts, progress stay live).
            if pending and not self._held and not (_HEADER.startswith(pending) or pending.startswith(_HEADER)):
                self._write(pending)
                pending = b""
        self._release()
        if pending:
            self._write(pending)
        os.close(self._read_fd)

    def _line(self, line: bytes) -> None:
        step = len(self._held)
        if step < len(_BLOCK) and _BLOCK[step].fullmatch(line):
            self._held.append(line)
        elif step == len(_BLOCK) and _SOURCE_LINE.fullmatch(line):
            self._held.append(line)
        elif step >= len(_BLOCK) and _LAST.fullmatch(line):
            self._held = []  # the whole block: dropped
        else:
            self._release()
            if _BLOCK[0].fullmatch(line):
                self._held.append(line)
            else:
                self._write(line)

    def _release(self) -> None:
        if self._held:
            self._write(b"".join(self._held))
            self._held = []

    def _write(self, data: bytes) -> None:
        while data:
            data = data[os.write(self._write_fd, data):]


@contextlib.contextmanager
def without_tf_shutdown_messages() -> Iterator[None]:
    """For the program's whole run: fd 2 (this process and every child it starts) through `_StderrFilter`, and
    this process's own unraisable-exception hook skipping the same message."""
    previous_hook = sys.unraisablehook

    def hook(unraisable):
        if not is_tf_shutdown_message(unraisable):
            previous_hook(unraisable)

    sys.unraisablehook = hook  # stays: this process's own copy of the message comes at interpreter exit
    sys.stderr.flush()
    console = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    thread = threading.Thread(target=_StderrFilter(read_fd, console).run, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(console, 2)  # our end of the pipe closes; the thread ends when the last child has let go too
        thread.join(timeout=10)
        if not thread.is_alive():  # else a child still writes through it until it exits
            os.close(console)
