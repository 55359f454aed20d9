"""The time `serving_default` takes on hostile bytes: the payloads of tests/test_serving_fuzz.py (random bytes, and
mutated real images and header bombs: the same Hypothesis strategies, settings and derandomized order) through an
exported model, each call timed. The test checks that every payload is answered (predictions or a clean
InvalidArgumentError) and that a valid request still works after a bad one; how long the slowest call took is
measured here, where a loaded machine makes a number slower instead of a test red.

    nice .venv/bin/python bench/serving_fuzz.py --model outputs/serving/tokenlearner/<version>

Prints one markdown table: per strategy the number of calls, how many were answered with predictions and how many
refused, the median and the slowest call in milliseconds, and the payload size of the slowest.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an exported SavedModel folder (a pushed version)")
    args = parser.parse_args(argv)

    import tensorflow as tf
    from hypothesis import given
    from hypothesis import strategies as st

    from tests.test_serving_fuzz import SEEDS, SETTINGS, mutated

    serve = tf.saved_model.load(args.model).signatures["serving_default"]
    valid = tf.constant([SEEDS[0]])
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.2f} at the start, "
          f"model {args.model}\n")
    print("| payloads | calls | predictions | refused | median (ms) | slowest (ms) | slowest payload (bytes) |")
    print("|---|---|---|---|---|---|---|")
    for name, strategy in (("random bytes (<= 4096)", st.binary(max_size=4096)),
                           ("mutated real images and header bombs", mutated())):
        times: list[tuple[float, int]] = []
        counts = {"ok": 0, "invalid": 0}

        @SETTINGS
        @given(strategy)
        def run(payload: bytes) -> None:
            start = time.perf_counter()
            try:
                serve(images=tf.constant([payload]))["probabilities"].numpy()
                counts["ok"] += 1
            except tf.errors.InvalidArgumentError:
                counts["invalid"] += 1
                serve(images=valid)  # as the test: a good request after a bad one, inside the timed call
            times.append((1000 * (time.perf_counter() - start), len(payload)))

        run()
        slowest = max(times)
        print(f"| {name} | {len(times)} | {counts['ok']} | {counts['invalid']} | "
              f"{statistics.median(t for t, _ in times):.1f} | {slowest[0]:.1f} | {slowest[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
