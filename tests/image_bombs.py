"""Image files whose headers declare far more pixels than their bytes hold ("decompression bombs"), per format.

``png_bomb`` is a complete, valid PNG (all rows present, zlib-compressed zeros: ~420 KB for 12000x12000, 432 MB
decoded). The others are small real images with the size fields of their headers rewritten: a decoder allocates
the declared size before it finds the pixel data missing.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int, complete: bool = True) -> bytes:
    """An RGB PNG of ``width`` x ``height`` black pixels; ``complete=False``: the IHDR and one short IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)  # filter byte + RGB
    data = b"".join(compressor.compress(row) for _ in range(height if complete else 1)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _encoded(fmt: str, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def jpeg_bomb(width: int, height: int) -> bytes:
    """A baseline JPEG whose SOF0 segment declares ``width`` x ``height``."""
    data = bytearray(_encoded("JPEG"))
    sof = data.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_bomb(width: int, height: int, where: str = "screen") -> bytes:
    """A GIF whose logical screen (``where="screen"``) or first image descriptor (``"frame"``) declares the size."""
    data = bytearray(_encoded("GIF"))
    if where == "screen":
        data[6:10] = struct.pack("<HH", width, height)
    else:
        descriptor = data.index(b"\x2c", 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0))
        data[descriptor + 5:descriptor + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def bmp_bomb(width: int, height: int) -> bytes:
    """A BMP whose DIB header declares ``width`` x ``height`` (height negative: top-down rows)."""
    data = bytearray(_encoded("BMP"))
    data[18:26] = struct.pack("<ii", width, -height)
    return bytes(data)


def bombs(side: int = 12000) -> dict[str, bytes]:
    """One bomb per format and header field, each declaring ``side`` x ``side`` pixels."""
    return {"png": png_bomb(side, side), "jpeg": jpeg_bomb(side, side), "gif_screen": gif_bomb(side, side),
            "gif_frame": gif_bomb(side, side, where="frame"), "bmp": bmp_bomb(side, side)}
