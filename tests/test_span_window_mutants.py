"""The training window of spans, as the example gen reads it (components/span_example_gen.py `window`) and as the
validator compares it (components/validator.py `window_spans`): the same newest spans, oldest first. Written against
the mutants bench/mutation.py found alive."""
from __future__ import annotations

import pytest

from components.span_example_gen import window
from components.validator import window_spans


@pytest.mark.parametrize("train_spans, expected", [
    (0, [1, 2, 5, 9]), (None, [1, 2, 5, 9]), (1, [9]), (2, [5, 9]), (3, [2, 5, 9]), (4, [1, 2, 5, 9]),
    (10, [1, 2, 5, 9]),
])
def test_the_example_gen_reads_the_newest_spans_oldest_first(train_spans, expected):
    assert window({9, 1, 5, 2}, train_spans) == expected


@pytest.mark.parametrize("train_spans, expected", [
    (0, [1, 2, 5, 9]), (1, [9]), (2, [5, 9]), (3, [2, 5, 9]), (10, [1, 2, 5, 9]),
])
def test_the_validator_compares_the_same_window_of_spans_listed_with_repeats(train_spans, expected):
    assert window_spans([9, 1, 5, 2, 9, 5], train_spans) == expected
    assert window(set([9, 1, 5, 2]), train_spans) == expected


def test_one_span_or_none_is_a_window_of_that_many():
    assert window(set(), 2) == [] and window_spans([], 2) == []
    assert window({4}, 0) == [4] and window_spans([4, 4], 1) == [4]
