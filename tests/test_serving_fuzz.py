"""Property-based: whatever bytes reach `serving_default`, it answers with predictions or a clean
InvalidArgumentError, never crashes or hangs, and a valid request right after a bad one still works. The mutated
seeds include header bombs (headers declaring 5000x5000 over a few hundred bytes) of every format, so mutations of
their size fields probe the bound on decoding from both sides."""
from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests import image_bombs
from tests.helpers import random_images

pytestmark = pytest.mark.slow

SETTINGS = settings(max_examples=5000, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def _encode(array, fmt):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


BOMBS = {"png": image_bombs.png_bomb(5000, 5000, complete=False), "jpeg": image_bombs.jpeg_bomb(5000, 5000),
         "gif_screen": image_bombs.gif_bomb(5000, 5000), "gif_frame": image_bombs.gif_bomb(5000, 5000, "frame"),
         "bmp": image_bombs.bmp_bomb(5000, 5000)}
SEEDS = [_encode(random_images(1, seed=1)[0], "PNG"), _encode(random_images(1, seed=2)[0], "JPEG"),
         _encode(random_images(1, seed=3, size=64)[0], "PNG"), *BOMBS.values()]


class Checker:
    """Counts a test's answers; how long the slowest one took is bench/serving_fuzz.py's to measure (the same
    payloads), not a test's."""

    def __init__(self, serve):
        self.serve = serve
        self.valid = tf.constant([SEEDS[0]])
        self.counts = {"ok": 0, "invalid": 0}

    def check(self, payload: bytes) -> None:
        try:
            out = self.serve(images=tf.constant([payload]))
            probabilities = out["probabilities"].numpy()
            assert probabilities.shape == (1, 10) and np.isfinite(probabilities).all()
            self.counts["ok"] += 1
        except tf.errors.InvalidArgumentError:
            self.counts["invalid"] += 1
            # The server must still answer a good request after a bad one.
            assert self.serve(images=self.valid)["probabilities"].shape == (1, 10)


@pytest.fixture(scope="module")
def serve(exported_model):
    return tf.saved_model.load(str(exported_model.version_dir)).signatures["serving_default"]


@pytest.fixture
def checker(serve):
    """A fresh count for each test; the loaded model is shared."""
    return Checker(serve)


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_header_bomb_seeds_are_refused_by_the_size_bound(kind, checker):
    with pytest.raises(tf.errors.InvalidArgumentError, match="5000x5000 = 25000000 pixels, more than "
                                                             "max_decode_pixels = 16777216"):
        checker.serve(images=tf.constant([BOMBS[kind]]))


def test_random_bytes(checker):
    @SETTINGS
    @given(st.binary(max_size=4096))
    def run(payload):
        checker.check(payload)

    run()
    # Every payload was answered one way or the other (an exception of another kind fails inside `run`), and
    # random bytes are almost never an image.
    assert sum(checker.counts.values()) >= 100 and checker.counts["invalid"] > checker.counts["ok"], checker.counts


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind, pos = draw(st.sampled_from(["flip", "insert", "delete", "truncate"])), draw(
            st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif len(data) > 1:
            data = data[:pos]
        if not data:
            break
    return bytes(data)


def test_mutated_real_images(checker):
    @SETTINGS
    @given(mutated())
    def run(payload):
        checker.check(payload)

    run()
    assert checker.counts["ok"] > 0 and checker.counts["invalid"] > 0, checker.counts
