"""Transform: decoding, the input size (aspect-preserving resize + center crop), and per-channel normalization with
statistics of the analyzed data."""
from __future__ import annotations

import functools
import io

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from pipeline.pipeline import create_pipeline  # noqa: F401  (module strings below must resolve)
from tests.helpers import png_bytes, random_images
from trainer import preprocessing, run
from trainer.contract import INPUT_SIZE_KEY
from trainer.preprocessing import decode_image, decode_images


def test_module_paths_import():
    import importlib

    for path, fn in ((preprocessing.PREPROCESSING_FN, preprocessing.preprocessing_fn), (run.RUN_FN, run.run_fn)):
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name) is fn


def test_preprocessing_fn_normalizes_each_channel(tmp_path):
    rng = np.random.default_rng(0)
    # Channels with very different statistics, so a global (not per-channel) normalization would fail the test.
    images = np.stack([rng.normal(loc, scale, size=(24, 32, 32)) for loc, scale in ((40, 10), (128, 40), (220, 5))],
                      axis=-1).clip(0, 255).astype(np.uint8)
    raw = [{"image": [png_bytes(im)], "label": [i % 10]} for i, im in enumerate(images)]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec({
        "image": tf.io.FixedLenFeature([1], tf.string), "label": tf.io.FixedLenFeature([1], tf.int64)}))
    with tft_beam.Context(temp_dir=str(tmp_path)):
        (out, _), _ = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing.preprocessing_fn)
    xf = np.stack([o["image_xf"] for o in out]).reshape(-1, 32, 32, 3)
    assert xf.dtype == np.float32
    np.testing.assert_allclose(xf.mean(axis=(0, 1, 2)), 0.0, atol=1e-3)
    np.testing.assert_allclose(xf.std(axis=(0, 1, 2)), 1.0, atol=1e-3)
    assert [int(o["label_xf"]) for o in out] == [i % 10 for i in range(24)]
    # The normalization is affine per channel with the dataset's statistics.
    pixels = images.astype(np.float64) / 255
    expected = (pixels - pixels.mean(axis=(0, 1, 2))) / pixels.std(axis=(0, 1, 2))
    np.testing.assert_allclose(xf, expected, atol=1e-3)


def test_decode_handles_formats_sizes_and_channels():
    rgb = random_images(1)[0]
    from PIL import Image
    import io

    def encode(image, fmt="PNG"):
        buf = io.BytesIO()
        image.save(buf, format=fmt)
        return buf.getvalue()

    batch = tf.constant([
        png_bytes(rgb),                                                   # 32x32 RGB PNG: pixels unchanged
        encode(Image.fromarray(rgb), "JPEG"),                             # JPEG
        encode(Image.fromarray(rgb[:, :, 0])),                            # grayscale
        encode(Image.fromarray(np.dstack([rgb, np.full((32, 32), 255, np.uint8)]))),  # RGBA
        encode(Image.fromarray(random_images(1, size=1)[0])),             # 1x1
        encode(Image.fromarray(random_images(1, size=200)[0]).resize((300, 200))),  # not square, large
    ])
    out = decode_images(batch).numpy()
    assert out.shape == (6, 32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], rgb)
    np.testing.assert_array_equal(out[3], rgb)  # alpha dropped
    assert np.all(out[2][..., 0] == out[2][..., 1])  # gray -> three equal channels


def test_jpeg_decoding_matches_ingestion_pixel_for_pixel(shared_cifar):
    """Serving decodes JPEG exactly as ingestion (Pillow) did for training: no skew from the decoder."""
    import io
    import tarfile

    from PIL import Image

    with tarfile.open(shared_cifar) as tar:
        jpegs = [tar.extractfile(m).read() for m in tar if m.isfile() and m.name.startswith("test/cat/0")][:50]
    ours = decode_images(tf.constant(jpegs)).numpy()
    pillow = np.stack([np.asarray(Image.open(io.BytesIO(j)).convert("RGB")) for j in jpegs])
    np.testing.assert_array_equal(ours, pillow)


@pytest.mark.parametrize("payload", [b"", b"not an image", png_bytes(random_images(1)[0])[:100]])
def test_decode_rejects_non_images_with_invalid_argument(payload):
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode_images(tf.constant([payload]))


def _encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    from PIL import Image

    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("height, width, size", [(48, 64, 32), (64, 48, 32), (200, 300, 32), (48, 64, 16),
                                                 (20, 20, 32), (31, 45, 16)])
def test_any_size_becomes_the_central_square_resized_with_its_aspect_kept(height, width, size):
    """The shorter side resized to `size`, the longer one cropped to the center: the central square, resized with
    antialiasing (Pillow's bilinear resize, antialiased too, of the same square agrees within one level)."""
    from PIL import Image

    image = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = decode_image(tf.constant(_encode(image)), size).numpy()
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top:top + side, left:left + side]
    expected = np.asarray(Image.fromarray(square).resize((size, size), Image.BILINEAR)).astype(int)
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_what_the_center_crop_leaves_out_never_reaches_the_model():
    """64x48: bands of 8 columns left and right outside the central 48x48 square; none of their colour is left."""
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :8] = (255, 0, 0)
    image[:, 8:56] = (0, 200, 0)
    image[:, 56:] = (0, 0, 255)
    out = decode_image(tf.constant(_encode(image))).numpy()
    assert (out == (0, 200, 0)).all()
    tall = decode_image(tf.constant(_encode(image.transpose(1, 0, 2))), 16).numpy()
    assert tall.shape == (16, 16, 3) and (tall == (0, 200, 0)).all()


@pytest.mark.parametrize("size", [32, 16])
def test_an_image_of_the_input_size_is_not_resampled(size):
    """CIFAR-10 (32x32 at the default size) reaches the model byte for byte; so does a size x size image at another
    size, and the central square of a longer image when its shorter side is the size already."""
    image = random_images(1, size=size, seed=3)[0]
    np.testing.assert_array_equal(decode_image(tf.constant(png_bytes(image)), size).numpy(), image)
    longer = random_images(1, size=2 * size, seed=4)[0][:size]  # size x 2*size
    np.testing.assert_array_equal(decode_image(tf.constant(png_bytes(longer)), size).numpy(),
                                  longer[:, size // 2:size // 2 + size])


def test_gray_palette_and_rgba_images_of_other_sizes_become_rgb():
    rgb = random_images(1, size=40, seed=6)[0][:, :30]  # 40 high, 30 wide
    gray = decode_image(tf.constant(_encode(rgb, mode="L")), 16).numpy()
    assert gray.shape == (16, 16, 3) and (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(decode_image(tf.constant(_encode(rgba)), 16).numpy(),
                                  decode_image(tf.constant(_encode(rgb)), 16).numpy())  # alpha dropped
    palette = _encode(rgb[5:35], mode="P")  # 30x30 square: not resampled at 30, the palette's colours
    from PIL import Image

    colours = np.asarray(Image.open(io.BytesIO(palette)).convert("RGB"))
    np.testing.assert_array_equal(decode_image(tf.constant(palette), 30).numpy(), colours)


def test_preprocessing_fn_takes_the_input_size_from_custom_config(tmp_path):
    """TFX's Transform binds custom_config (the pipeline's {input_size: n}); without one the size is CIFAR-10's."""
    rng = np.random.default_rng(1)
    raw = [{"image": [_encode(rng.integers(0, 256, (24 + i, 40, 3), dtype=np.uint8))], "label": [i % 3]}
           for i in range(6)]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec({
        "image": tf.io.FixedLenFeature([1], tf.string), "label": tf.io.FixedLenFeature([1], tf.int64)}))
    fn = functools.partial(preprocessing.preprocessing_fn, custom_config={INPUT_SIZE_KEY: 16})
    with tft_beam.Context(temp_dir=str(tmp_path)):
        (out, _), _ = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(fn)
    assert [np.asarray(o["image_xf"]).size for o in out] == [16 * 16 * 3] * 6
    assert preprocessing.input_size(None) == preprocessing.input_size({}) == 32
