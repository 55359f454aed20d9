"""Any image file Pillow reads -> an 8-bit RGB image, decoded within stated bounds (ingestion stores it as PNG).

- Formats: PNG, JPEG (MPO too, the JPEG variant phones write), BMP, GIF (its first frame), WebP, TIFF and
  PPM/PGM/PBM, recognised by their bytes; no other decoder is tried (Pillow's EPS decoder, for one, runs
  Ghostscript).
- Size: the header's declared size is checked before any pixel is decoded. Above `max_pixels` the image is
  downscaled (aspect kept, Lanczos) to at most `max_pixels` (a JPEG is decoded straight at 1/2, 1/4 or 1/8 scale
  first), or refused under `strict`; above BOMB_FACTOR x `max_pixels` it is refused as an image bomb, never decoded.
- Orientation: the EXIF orientation is applied (ImageOps.exif_transpose): a phone photo is stored upright.
- Modes: transparency (RGBA, LA, PA, a palette's or a colour key's) is composited on BACKGROUND, white; 16-bit and
  32-bit integer images have their 0..65535 range scaled to 0..255 (rounded; above 65535 clips); gray, palette,
  CMYK, float and the rest go through Pillow's own conversion to RGB. An RGB image is left as it is: CIFAR-10's
  pixels pass untouched.
"""
from __future__ import annotations

import math
import warnings
from io import BytesIO

import numpy as np
from PIL import Image, ImageOps

from components.sources import DataError
# The file names ingestion takes as images in class folders (other files there are skipped with a warning): one
# definition in trainer/, since `predict FOLDER` and `infer` search folders for the same names.
from trainer.model_files import IMAGE_EXTENSIONS as IMAGE_EXTENSIONS

FORMATS = ("PNG", "JPEG", "BMP", "DIB", "GIF", "WEBP", "TIFF", "PPM")  # Pillow's decoders (JPEG opens MPO too)
BACKGROUND = (255, 255, 255)  # what transparent pixels become: white
BOMB_FACTOR = 8  # declared pixels above BOMB_FACTOR x max_pixels: refused (the default: 134 MP, e.g. 11585x11585)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")


class UnreadableImage(DataError):
    """A file with an image's name that Pillow cannot decode (ingestion may skip these when told to)."""


def decode(data: bytes, where: str, max_pixels: int, strict: bool) -> tuple[Image.Image, bool]:
    """(8-bit RGB image, whether it was downscaled). `where` names the file in errors: a DataError for an image
    bomb or (under `strict`) an image above `max_pixels`, UnreadableImage for what Pillow cannot decode."""
    try:
        with warnings.catch_warnings():  # Pillow warns above 89 MP; the bounds here are stated and checked below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(BytesIO(data), formats=FORMATS)
            target = _checked_target(image, where, max_pixels, strict)
            if target:
                image.draft(None, target)  # JPEG: decoded at the smallest 1/2^k scale not below target; others: no-op
            image.load()
        ImageOps.exif_transpose(image, in_place=True)
        rgb = _to_rgb(image)
    except DataError:
        raise
    except Image.DecompressionBombError as e:  # Pillow's own limit, above ours unless max_pixels was raised
        raise DataError(f"{where}: image bomb: {e}") from None
    except Exception as e:  # noqa: BLE001 - Pillow's decoders raise many types (OSError, SyntaxError, ValueError)
        raise UnreadableImage(f"{where}: not a readable image ({type(e).__name__}: {e})") from None
    if rgb.width * rgb.height > max_pixels:
        rgb = rgb.resize(fit(rgb.width, rgb.height, max_pixels), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return rgb, target is not None


def _checked_target(image: Image.Image, where: str, max_pixels: int, strict: bool) -> tuple[int, int] | None:
    """None when the declared size is within `max_pixels`; else the size to downscale to, or a DataError."""
    width, height = image.size
    declared = width * height
    if declared > BOMB_FACTOR * max_pixels:
        raise DataError(f"{where}: image bomb: the header declares {width}x{height} = {declared:,} pixels, more "
                        f"than {BOMB_FACTOR} x max_decode_pixels ({BOMB_FACTOR * max_pixels:,}); not decoded")
    if declared <= max_pixels:
        return None
    if strict:
        raise DataError(f"{where}: {width}x{height} = {declared:,} pixels, more than max_decode_pixels "
                        f"({max_pixels:,}); --strict refuses it (without --strict it is downscaled)")
    return fit(width, height, max_pixels)


def fit(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest size of the same aspect (rounded down) with at most `max_pixels` pixels."""
    scale = math.sqrt(max_pixels / (width * height))
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    while w * h > max_pixels:  # float rounding at the boundary
        w, h = (w - 1, h) if w >= h else (w, h - 1)
    return w, h


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in _SIXTEEN_BIT:
        wide = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
        return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8)).convert("RGB")
    if image.mode in _ALPHA or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, BACKGROUND + (255,)), rgba).convert("RGB")
    if image.mode == "F":  # Pillow converts float to 8 bits only through gray (values clipped to 0..255)
        image = image.convert("L")
    return image.convert("RGB")
