"""The statistics of one span of a dataset, what the drift check between two spans compares
(components/validator.py): TFDV statistics of the label (categorical) and of image-level features computed here,
height, width and brightness (trainer/contract.SPAN_IMAGE_FEATURES), over all the span's splits.

`compute` reads a span's shards back as the pipeline will; `load` returns the statistics kept in
``<dataset>/spans/span-N.stats.pb`` (written by `tokenlearner data` and `--append`), computing and keeping them
first for a dataset written before spans had them. The dataset may be local or a URI (datasets.py: tf.io.gfile).
"""
from __future__ import annotations

import io
import logging
from typing import Sequence

import numpy as np

from components import datasets
from components.sources import DataError
from trainer.contract import DATASET_MANIFEST, SPAN_IMAGE_FEATURES, span_stats_path
from trainer.features import IMAGE_KEY, LABEL_KEY

log = logging.getLogger(__name__)


def schema():
    """The features of a span's statistics; the label categorical, so that they hold its class shares (top values,
    rank histogram) for the L-infinity drift comparator instead of a numeric histogram."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    out = schema_pb2.Schema()
    out.feature.add(name=LABEL_KEY, type=schema_pb2.INT).int_domain.is_categorical = True
    height, width, brightness = SPAN_IMAGE_FEATURES
    for name in (height, width):
        out.feature.add(name=name, type=schema_pb2.INT)
    out.feature.add(name=brightness, type=schema_pb2.FLOAT)
    return out


def _image_facts(shards: Sequence[datasets.Location]) -> dict[str, list]:
    """label, height, width and brightness (the mean of the decoded pixels, 0..255) of every image in `shards`."""
    import tensorflow as tf
    from PIL import Image

    facts: dict[str, list] = {LABEL_KEY: [], **{name: [] for name in SPAN_IMAGE_FEATURES}}
    height, width, brightness = SPAN_IMAGE_FEATURES
    for shard in shards:
        with datasets.reading_shard(shard):  # a PNG Pillow cannot open is a corrupt shard too (OSError)
            for record in tf.data.TFRecordDataset(str(shard), compression_type="GZIP").as_numpy_iterator():
                feature = tf.train.Example.FromString(record).features.feature
                with Image.open(io.BytesIO(feature[IMAGE_KEY].bytes_list.value[0])) as opened:
                    image = opened if opened.mode in ("L", "RGB") else opened.convert("RGB")
                    pixels = np.asarray(image)
                facts[LABEL_KEY].append(int(feature[LABEL_KEY].int64_list.value[0]))
                facts[height].append(pixels.shape[0])
                facts[width].append(pixels.shape[1])
                facts[brightness].append(float(pixels.mean()))
    return facts


def compute(shards: Sequence[datasets.Location], span: int):
    """TFDV statistics (DatasetFeatureStatisticsList, one dataset named span-N) of the images in `shards`, read back
    as the pipeline will read them: what the drift check between two spans compares."""
    import pandas as pd
    import tensorflow_data_validation as tfdv

    facts = _image_facts(shards)
    if not facts[LABEL_KEY]:
        raise DataError(f"span {span}: no examples in {len(shards)} shard(s); expected the span's images")
    frame = pd.DataFrame({LABEL_KEY: np.asarray(facts[LABEL_KEY], np.int64),
                          **{name: np.asarray(facts[name], np.int64) for name in SPAN_IMAGE_FEATURES[:2]},
                          SPAN_IMAGE_FEATURES[2]: np.asarray(facts[SPAN_IMAGE_FEATURES[2]], np.float32)})
    stats = tfdv.generate_statistics_from_dataframe(frame, tfdv.StatsOptions(schema=schema()))
    stats.datasets[0].name = f"span-{span}"
    return stats


def write_atomically(path: datasets.Location, data: bytes) -> None:
    """Readers (a pipeline run beside an append) never see a half-written file (datasets.write_atomically)."""
    datasets.write_atomically(path, data)


def load(dataset_dir: datasets.Location, span: int):
    """The TFDV statistics of span `span` (a DatasetFeatureStatisticsList): features label (categorical), height,
    width, brightness over all its splits. Loaded from <dataset>/spans/span-N.stats.pb, or computed from the span's
    shards and written there first (datasets written before spans, or by `data` before its statistics), here or in a
    bucket; a dataset that cannot be written to gets them computed with a warning."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    path, data = datasets.read_file(dataset_dir, span_stats_path(span))
    if data is not None:
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        try:
            stats.ParseFromString(data)
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError, a read error: one line naming the file
            raise DataError(f"{path}: not a DatasetFeatureStatisticsList ({type(e).__name__}); remove it to compute "
                            f"it again") from None
        return stats
    listed = [entry["span"] for entry in datasets.load_spans(dataset_dir)]
    if span not in listed:
        raise DataError(f"{datasets.join(dataset_dir, DATASET_MANIFEST)}: no span {span}; the dataset has span(s) "
                        f"{listed}")
    shards = [p for files in datasets.span_shards(dataset_dir, span).values() for p in files]
    stats = compute(shards, span)
    try:
        write_atomically(path, stats.SerializeToString(deterministic=True))
    except Exception as e:  # noqa: BLE001 - OSError here, TensorFlow's OpError in a bucket (read-only, no rights)
        log.warning("%s: could not write span %d's statistics (%s); computed them without keeping them", path, span,
                    datasets.storage_reason(e))
    return stats
