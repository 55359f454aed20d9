"""The graph's own building blocks, beside TFX's standard components.

- ingest.py: data ingestion, any image-classification source (image folders, TFRecords; CIFAR-10 by default)
  into the TFRecords ImportExampleGen reads, encoded in worker processes by encoding.py, with its source readers:
  sources.py (bounded reading), image_folder.py, images.py (any image to 8-bit RGB), tfrecord_source.py and
  cifar10_batches.py (the official pickles, read without running code); progress.py: the download's and the
  encoding's progress (a bar on a terminal, a line every 10% on a log);
- spans.py: `tokenlearner data --append`, a source added to a dataset as its next span, all or nothing;
  span_stats.py: a span's statistics (label, height, width, brightness) that the drift check compares;
- datasets.py: a dataset folder read back (manifest and spans, also from a bucket; shards, verification, a corrupt
  shard named in one line);
- schema.py, schema_gen.py: `package:` schema paths, and the ImportSchemaGen that resolves them where it runs;
- span_example_gen.py: `SpanImportExampleGen`, ImportExampleGen over the newest `train_spans` spans of a dataset,
  recording on its Examples which spans it read;
- validator.py: `GatedExampleValidator`, an ExampleValidator that fails the run on anomalies, on label drift
  beyond the run's `label_drift_threshold`, and on drift between the two newest spans (`DriftError`);
- pusher.py: `AtomicPusherExecutor`, a Pusher executor that publishes a version atomically, never twice;
- trainer_component.py: the Trainer component, in the pipeline or as a Vertex AI custom training job.

Importing it sets TF_USE_LEGACY_KERAS first (trainer/__init__.py): TFT and TFMA only work with Keras 2.
"""
import trainer as _keras2  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)
