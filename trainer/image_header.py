"""The pixel count an encoded image's header declares, read with TF string ops before anything is decoded.

A decoder allocates what the header declares: a 1.2 MB PNG that declares 12000x12000 decodes to 432 MB, so a few
such files in one request exhaust a serving pod. ``check_declared_sizes`` rejects them in the graph, before the
decode op runs, with an InvalidArgumentError (TF Serving: INVALID_ARGUMENT, HTTP 400) naming the limit.

Where each format keeps its size (the formats ``tf.io.decode_image`` accepts, classified by the same magic bytes
as TensorFlow's ``decode_image_op.cc``):

- JPEG (``FF D8 FF``): the SOFn marker segment, wherever it follows the APPn segments; read by
  ``tf.image.extract_jpeg_shape`` (libjpeg's header parser, no decoding).
- PNG (``89 'PNG' 0D 0A 1A 0A``): the IHDR chunk, big-endian uint32 width and height at bytes 16 and 20.
- GIF (``'GIF8'``): the logical screen, little-endian uint16 at bytes 6 and 8, and the first image descriptor
  (``0x2C``, width and height at +5 and +7) after the global color table and any extension blocks, whichever is
  larger.
- BMP (``'BM'``): the DIB header's little-endian int32 width and height at bytes 18 and 22 (negative height:
  top-down rows), as TensorFlow's ``decode_bmp_op.cc`` reads them.

Bytes of any other kind, and headers too short to hold a size, count as 0 pixels here: the decoder then rejects
them as it always did. In: encoded images, string [N]. Out: the same tensor, after the check.
"""
from __future__ import annotations

import tensorflow as tf

_HEAD = 32  # bytes of the header read for PNG, GIF and BMP
_GIF_BLOCK_STEPS = 1024  # extension sub-blocks skipped looking for the first GIF frame (typical GIFs: < 10)


def _le(head: tf.Tensor, at: int, width: int) -> tf.Tensor:
    return sum(head[at + i] * 256 ** i for i in range(width))


def _be(head: tf.Tensor, at: int, width: int) -> tf.Tensor:
    return sum(head[at + i] * 256 ** (width - 1 - i) for i in range(width))


def _bytes_at(encoded: tf.Tensor, pos: tf.Tensor, count: int) -> tf.Tensor:
    """``count`` bytes of ``encoded`` from ``pos`` as int64 [count], zero past the end (never out of range)."""
    length = tf.cast(tf.strings.length(encoded), tf.int64)
    piece = tf.strings.substr(encoded, tf.minimum(pos, length), tf.constant(count, tf.int64))
    padded = tf.strings.substr(tf.strings.join([piece, tf.constant(b"\0" * count)]), 0, count)
    return tf.cast(tf.io.decode_raw(padded, tf.uint8), tf.int64)


def _gif_size(encoded: tf.Tensor, head: tf.Tensor) -> tf.Tensor:
    screen = tf.stack([_le(head, 6, 2), _le(head, 8, 2)])
    flags = head[10]
    color_table = tf.where(flags >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), flags % 8),
                           tf.constant(0, tf.int64))
    length = tf.cast(tf.strings.length(encoded), tf.int64)

    def byte(pos):
        return tf.where(pos < length, _bytes_at(encoded, pos, 1)[0], tf.constant(-1, tf.int64))

    # Extension blocks (0x21, label, sub-blocks ended by a 0 size) may precede the first image descriptor (0x2C).
    def keep_going(pos, in_block, steps):
        return tf.logical_and(steps < _GIF_BLOCK_STEPS, tf.logical_or(in_block, tf.equal(byte(pos), 0x21)))

    def skip(pos, in_block, steps):
        b = byte(pos)
        next_pos = tf.where(in_block, tf.where(b > 0, pos + b + 1, pos + 1), pos + 2)
        return next_pos, tf.where(in_block, b > 0, True), steps + 1

    pos, _, _ = tf.while_loop(keep_going, skip, (13 + color_table, tf.constant(False), tf.constant(0)))
    descriptor = _bytes_at(encoded, pos, 9)
    frame = tf.where(tf.equal(descriptor[0], 0x2C), tf.stack([_le(descriptor, 5, 2), _le(descriptor, 7, 2)]),
                     tf.zeros([2], tf.int64))
    return tf.where(frame[0] * frame[1] > screen[0] * screen[1], frame, screen)


def _signed32(value: tf.Tensor) -> tf.Tensor:
    return tf.where(value >= 2 ** 31, value - 2 ** 32, value)


def declared_size(encoded: tf.Tensor) -> tf.Tensor:
    """One encoded image, string [] -> the (width, height) its header declares, int64 [2] (0, 0 if unknown)."""
    head = _bytes_at(encoded, tf.constant(0, tf.int64), _HEAD)
    magic = tf.strings.substr(encoded, 0, 8)
    unknown = lambda: tf.zeros([2], tf.int64)  # noqa: E731
    png = lambda: tf.stack([_be(head, 16, 4), _be(head, 20, 4)])  # noqa: E731
    bmp = lambda: tf.abs(tf.stack([_signed32(_le(head, 18, 4)), _signed32(_le(head, 22, 4))]))  # noqa: E731

    def jpeg():
        shape = tf.image.extract_jpeg_shape(encoded, output_type=tf.int64)  # [height, width, channels]
        return tf.stack([shape[1], shape[0]])

    return tf.cond(
        tf.io.is_jpeg(encoded), jpeg,
        lambda: tf.cond(tf.equal(magic, b"\x89PNG\r\n\x1a\n"), png,
                        lambda: tf.cond(tf.equal(tf.strings.substr(magic, 0, 4), b"GIF8"),
                                        lambda: _gif_size(encoded, head),
                                        lambda: tf.cond(tf.equal(tf.strings.substr(magic, 0, 2), b"BM"), bmp,
                                                        unknown))))


def check_declared_sizes(images: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """Encoded images, string [N] (or [N, 1]) -> the same tensor, once no header declares more than
    ``max_pixels`` pixels; otherwise InvalidArgumentError naming the image's index, its size and the limit."""
    flat = tf.reshape(images, [-1])
    sizes = tf.map_fn(declared_size, flat, fn_output_signature=tf.TensorSpec([2], tf.int64))  # [N, 2]
    pixels = tf.concat([sizes[:, 0] * sizes[:, 1], tf.zeros([1], tf.int64)], axis=0)  # [N + 1]: N may be 0
    worst = tf.argmax(pixels, output_type=tf.int32)
    size = tf.gather(tf.concat([sizes, tf.zeros([1, 2], tf.int64)], axis=0), worst)
    message = tf.strings.format(
        "image {} of the request: its header declares {}x{} = {} pixels, more than max_decode_pixels = {} "
        "(trainer config); refused before decoding", (worst, size[0], size[1], pixels[worst], max_pixels))
    check = tf.debugging.Assert(pixels[worst] <= max_pixels, [message])
    with tf.control_dependencies([check]):
        return tf.identity(images)
