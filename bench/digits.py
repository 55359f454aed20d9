"""Digits: a second real dataset through the whole product, as a user with their own images runs it.

scikit-learn's handwritten digits (1,797 8x8 grayscale images, 10 classes, shipped inside its wheel) are written as
an image folder (`train/<digit name>/*.png`, every 5th image of each digit in `test/`; the builder the tests use,
tests/helpers.py `write_digits`), then `tokenlearner run --data <folder> --preset small_images` trains, evaluates
(TFMA on the test split) and pushes. Prints the machine line and the run summary, whose Evaluator line is the
test top-1 and whose Trainer line is the training time.

    nice .venv/bin/python bench/digits.py --work /var/tmp/runs/digits                    # the documented row
    nice .venv/bin/python bench/digits.py --work /var/tmp/runs/digits --set epochs=10    # another budget
"""
from __future__ import annotations

import argparse
import sys

import bench_data  # noqa: E402  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(bench_data.REPO))
from tests.helpers import write_digits  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="the digits folder and the run's output go under it")
    parser.add_argument("--preset", default="small_images")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to `run`")
    args = parser.parse_args()
    work = Path(args.work)
    folder = work / "digits"
    if not (folder / "train").is_dir():
        write_digits(folder)
    print(bench_data.machine(), flush=True)
    import cli

    return cli.main(["run", "--data", str(folder), "--preset", args.preset, "--output", str(work / "run"),
                     *[x for pair in args.set for x in ("--set", pair)]])


if __name__ == "__main__":
    sys.exit(main())
