"""Client of the TF Serving deployment in deploy/serving/ (and of a local SavedModel): `tokenlearner predict`.

- predict.py: send image files to the exported model's `serving_default` signature through TF Serving's REST or
  gRPC API, or a SavedModel loaded in-process; batching, retries with backoff, one line per file.

The request shapes and signature names it relies on are trainer/serving_api.py's, the same the Trainer's warmup
requests are built with. It imports neither the pipeline's settings nor ML Metadata.
"""
