"""The graph's own building blocks, beside TFX's standard components.

- cifar10.py: data ingestion, CIFAR-10 (official archive or image folders) into the TFRecords ImportExampleGen reads;
- schema.py, schema_gen.py: `package:` schema paths, and the ImportSchemaGen that resolves them where it runs;
- validator.py: `GatedExampleValidator`, an ExampleValidator that fails the run on anomalies and label drift;
- pusher.py: `AtomicPusherExecutor`, a Pusher executor that publishes a version atomically, never twice;
- trainer_component.py: the Trainer component, in the pipeline or as a Vertex AI custom training job.

TF_USE_LEGACY_KERAS must be set before TensorFlow is first imported: TFT and TFMA only work with Keras 2.
"""
import os as _os

_os.environ["TF_USE_LEGACY_KERAS"] = "1"
