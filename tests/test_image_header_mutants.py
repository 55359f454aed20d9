"""The size an image's header declares (trainer/image_header.py), on headers written byte by byte here, and the
refusal of an oversized one, before anything is decoded. Written against the mutants bench/mutation.py found
alive."""
from __future__ import annotations

import io
import struct

import pytest
import tensorflow as tf
from PIL import Image

from trainer import image_header

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _size(data: bytes) -> list[int]:
    return image_header.declared_size(tf.constant(data)).numpy().tolist()


def _png(width: int, height: int) -> bytes:
    return PNG_MAGIC + struct.pack(">I4sII", 13, b"IHDR", width, height) + b"\x08\x02\x00\x00\x00" + b"\0" * 8


def _gif(width, height, *, table_bits=None, blocks=b"", frame=None) -> bytes:
    flags = 0 if table_bits is None else 0x80 | table_bits
    data = b"GIF89a" + struct.pack("<HHBBB", width, height, flags, 0, 0)
    if table_bits is not None:
        data += b"\x11" * (3 * 2 ** (table_bits + 1))
    data += blocks
    if frame is not None:
        data += b"\x2c" + struct.pack("<HHHHB", 0, 0, *frame, 0)
    return data + b"\x3b"


def _bmp(width: int, height: int) -> bytes:
    return b"BM" + b"\0" * 16 + struct.pack("<ii", width, height) + b"\0" * 30


def _jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(out, format="JPEG")
    return out.getvalue()


def test_png_width_and_height_are_big_endian_words_of_the_ihdr_chunk():
    assert _size(_png(0x01020304, 0x0A0B0C0D)) == [0x01020304, 0x0A0B0C0D]
    assert _size(_png(3, 70000)) == [3, 70000]


def test_bmp_sizes_are_little_endian_signed_and_a_top_down_height_counts_as_its_size():
    assert _size(_bmp(0x01020304, 7)) == [0x01020304, 7]
    assert _size(_bmp(640, -480)) == [640, 480]
    assert _size(_bmp(-2, 2 ** 31 - 1)) == [2, 2 ** 31 - 1]


def test_jpeg_size_comes_from_its_frame_header():
    assert _size(_jpeg(7, 3)) == [7, 3]


def test_gif_logical_screen_alone():
    assert _size(_gif(0x0102, 0x0304)) == [0x0102, 0x0304]


def test_gif_first_frame_when_larger_than_the_screen_after_the_color_table():
    assert _size(_gif(10, 10, table_bits=1, frame=(0x0201, 0x0300))) == [0x0201, 0x0300]
    assert _size(_gif(10, 10, table_bits=7, frame=(20, 30))) == [20, 30]


def test_gif_screen_when_the_frame_is_smaller():
    assert _size(_gif(300, 200, table_bits=0, frame=(299, 200))) == [300, 200]
    assert _size(_gif(300, 200, frame=(200, 300))) == [300, 200]  # as large: the screen
    assert _size(_gif(300, 200, frame=(1, 60001))) == [1, 60001]


def test_gif_extension_blocks_before_the_frame_are_skipped():
    control = b"\x21\xf9\x04\x01\x02\x03\x04\x00"  # graphic control: one 4-byte sub-block, then 0
    comment = b"\x21\xfe\x03abc\x02de\x00"  # comment: two sub-blocks
    assert _size(_gif(4, 4, blocks=control + comment, frame=(50, 60))) == [50, 60]
    assert _size(_gif(4, 4, table_bits=2, blocks=control, frame=(8, 9))) == [8, 9]


def test_a_gif_cut_inside_its_extension_blocks_declares_its_screen():
    data = _gif(5, 6, blocks=b"\x21\xfe\xff" + b"x" * 10)[:-1]
    assert _size(data) == [5, 6]


@pytest.mark.parametrize("data", [b"", b"hello world, no image here", PNG_MAGIC, b"GIF8", b"BM", b"\xff\xd8"])
def test_unknown_or_short_bytes_declare_nothing(data):
    assert _size(data) == [0, 0]


def test_bytes_at_pads_with_zeros_past_the_end():
    got = image_header._bytes_at(tf.constant(b"\x01\x02\x03"), tf.constant(1, tf.int64), 4).numpy().tolist()
    assert got == [2, 3, 0, 0]
    assert image_header._bytes_at(tf.constant(b"\x01"), tf.constant(5, tf.int64), 2).numpy().tolist() == [0, 0]


def test_sizes_at_the_limit_pass_and_the_first_larger_one_is_refused_by_its_index():
    images = tf.constant([_png(2, 2), _png(100, 100), _gif(10, 10), _bmp(1, 1)])
    assert image_header.check_declared_sizes(images, 10_000).numpy().tolist() == images.numpy().tolist()
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        image_header.check_declared_sizes(images, 9_999)
    assert ("image 1 of the request: its header declares 100x100 = 10000 pixels, more than max_decode_pixels = 9999 "
            "(trainer config); refused before decoding") in raised.value.message


def test_the_largest_declared_image_is_the_one_named():
    images = tf.constant([[_bmp(30, 20)], [_png(5, 5)], [_gif(40, 30)], [b"junk"]])  # [N, 1]
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        image_header.check_declared_sizes(images, 100)
    assert "image 2 of the request: its header declares 40x30 = 1200 pixels, more than max_decode_pixels = 100 " \
        in raised.value.message
    assert image_header.check_declared_sizes(images, 1200).shape == (4, 1)


def test_no_images_pass():
    assert image_header.check_declared_sizes(tf.constant([], tf.string), 1).shape == (0,)


def test_a_color_table_of_two_entries_is_skipped_too():
    assert _size(_gif(10, 10, table_bits=0, frame=(20, 30))) == [20, 30]  # flags 0x80: 2 entries, 6 bytes


def test_sub_blocks_of_one_byte_are_skipped():
    assert _size(_gif(4, 4, blocks=b"\x21\xfe\x01a\x01b\x00", frame=(50, 60))) == [50, 60]


def _extension(sub_blocks: int) -> bytes:
    return b"\x21\xfe" + b"\x01a" * sub_blocks + b"\x00"  # one step for 21 fe, one per sub-block, one for the 0


def test_the_frame_is_looked_for_through_1024_steps_of_extension_blocks_and_no_further():
    assert _size(_gif(4, 4, blocks=_extension(1022), frame=(50, 60))) == [50, 60]  # 1024 steps
    assert _size(_gif(4, 4, blocks=_extension(1023), frame=(50, 60))) == [4, 4]  # 1025: the screen


def test_the_check_runs_inside_a_graph_as_the_serving_signature_builds_it():
    check = tf.function(lambda images: image_header.check_declared_sizes(images, 100))
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        check(tf.constant([_png(5, 5), _png(11, 10)]))
    assert "image 1 of the request: its header declares 11x10 = 110 pixels" in raised.value.message
    assert check(tf.constant([_png(10, 10)])).numpy().tolist() == [_png(10, 10)]
