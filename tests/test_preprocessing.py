"""Transform: decoding and per-channel normalization with statistics of the analyzed data."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from pipeline.pipeline import create_pipeline  # noqa: F401  (module strings below must resolve)
from tests.helpers import png_bytes, random_images
from trainer import preprocessing, run
from trainer.preprocessing import decode_images


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
