"""Batch predictions on Beam: `tokenlearner infer` classifies a folder, an archive, TFRecords or a bucket of images
with an exported model, through Beam's RunInference, into sharded JSON lines or CSV.

Same bytes in, same answers as the model's ``serving_default`` signature: each image's encoded bytes are sent as
they are, in batches, to that signature (decoding, the Transform graph and the network all run inside it), so a
prediction here equals what TF Serving or `tokenlearner predict` answers for the same file. Batching, model
loading and sharing, retries of failed batches and the metrics are Beam's (``RunInference``); the job runs on the
pipeline's Beam profiles (direct, flink/spark through the portable runner, dataflow: ``--beam-profile``,
``--set beam_*``, as for `run`).

--data: an image folder (searched recursively for image files), one image file, a ``.tar.gz`` / ``.tgz`` / ``.tar``
archive, TFRecord files of tf.Example{image: encoded bytes, ...} (a file, a folder of them or a glob), or a
``gs://`` folder or glob of any of these; a folder or glob may mix them. Files of other kinds (README, .csv) are
skipped and counted.

--out: ``predictions-SSSSS-of-NNNNN.jsonl`` (``--format csv``: ``.csv``), one line per image: file (archive
members as ARCHIVE:MEMBER, TFRecords as FILE:RECORD_INDEX), class_id, class_name, and the top-k classes with their
probabilities; ``errors-SSSSS-of-NNNNN.jsonl``, one line per image that could not be classified: file and reason
(unreadable, empty, not an image the model decodes, or rejected by the model's signature, e.g. over its pixel
limit). One bad file never fails the others, and no image is dropped: every input is in one of the two. --out must
be empty or absent, and writable; ``--overwrite`` replaces the predictions-*/errors-* files (and Beam's beam-temp-*
staging folders) a previous run left there, and only those.

Exit codes, for scripts:
  0  every image was classified
  1  some images are in the errors output (each with its reason); the others were classified
  2  usage, model or data error, before anything ran: bad arguments or settings, no SavedModel with the
     serving_default signature at --model, no images at --data, --out not empty or not writable
  3  the Beam job failed (a runner or worker error, not an image's fault), named in one line with the step that
     failed; the outputs are incomplete; Beam's beam-temp-* staging folders are deleted

The modules: sources.py (what --data holds, and reading it in the job), handler.py (the RunInference model
handler around ``serving_default``, and the checks of --model), job.py (settings, the Beam pipeline, the outputs).
This file imports nothing, so the CLI's --help stays fast.
"""

FORMATS = ("jsonl", "csv")  # --format: predictions-*.jsonl or predictions-*.csv
