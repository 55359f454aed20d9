"""Training/serving skew check: the pushed model's accuracy on the raw test JPEGs through `serving_default`
against the Evaluator's accuracy on the test split (the same images, as ingested TFRecords).

    .venv/bin/python bench/serving_skew.py --output outputs --images ../shared/data/cifar10/cifar10-jpg.tar.gz

Prints a table; exits 1 when the two differ by more than --tolerance points.
"""
from __future__ import annotations

import argparse
import os
import sys
import tarfile
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from components import datasets  # noqa: E402
from pipeline import config as config_lib  # noqa: E402
from inspection import summary  # noqa: E402
from trainer import serving_api  # noqa: E402


def test_images(archive: str, class_names: list[str], per_class: list[int]):
    """(bytes, label) of the test images the dataset took: the first per_class[c] files of test/<class>/ by name,
    as ingestion selects them."""
    labels = {name: i for i, name in enumerate(class_names)}
    with tarfile.open(archive) as tar:
        items = sorted((m.name, f.read()) for m in tar
                       if m.isfile() and m.name.split("/")[-3:-2] == ["test"] and m.name.split("/")[-2] in labels
                       and (f := tar.extractfile(m)) is not None)
    taken = {c: 0 for c in range(len(class_names))}
    images, targets = [], []
    for name, data in items:
        label = labels[name.split("/")[-2]]
        if taken[label] < per_class[label]:
            taken[label] += 1
            images.append(data)
            targets.append(label)
    return images, np.array(targets)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="outputs", help="output folder of `tokenlearner run`")
    parser.add_argument("--images", required=True, help="image-folder .tar.gz with test/<class>/*.jpg")
    parser.add_argument("--tolerance", type=float, default=0.5, help="allowed difference, accuracy points")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)

    config = config_lib.load(args.output)
    run = summary.collect(config)
    if run.pushed_to is None or run.accuracy is None:
        print(f"the latest run ({run.run_id}) pushed no model or has no evaluation", file=sys.stderr)
        return 2
    manifest = datasets.load_manifest(config.data_root)
    images, labels = test_images(args.images, list(config.class_names), manifest["splits"]["test"]["per_class"])
    serve = tf.saved_model.load(run.pushed_to).signatures[serving_api.SIGNATURE_NAME]
    start, predicted = time.time(), []
    for i in range(0, len(images), args.batch_size):
        predicted.append(serve(images=tf.constant(images[i:i + args.batch_size]))["class_ids"].numpy())
    seconds = time.time() - start
    served = float(np.mean(np.concatenate(predicted) == labels))
    gap = 100 * (served - run.accuracy)
    print(f"| model | {run.pushed_to} |\n|---|---|")
    print(f"| Evaluator accuracy, test split TFRecords ({run.examples.get('test')} examples) "
          f"| {100 * run.accuracy:.2f}% |")
    print(f"| serving_default accuracy, raw test JPEGs ({len(images)} images, {len(images) / seconds:.0f} img/s) "
          f"| {100 * served:.2f}% |")
    print(f"| difference | {gap:+.2f} points (tolerance ±{args.tolerance}) |")
    return 0 if abs(gap) <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
