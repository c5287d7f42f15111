import argparse
import re

import pytest

from zoo.shared.cli_types import fraction, non_negative_int, positive_float, positive_int


@pytest.mark.parametrize("parse, good, bad", [
    (positive_int, [("1", 1), ("12", 12)], [("0", "must be a positive integer, got 0"), ("1.5", "got '1.5'")]),
    (non_negative_int, [("0", 0), ("3", 3)], [("-1", "must be 0 or more, got -1"), ("x", "got 'x'")]),
    (fraction, [("0", 0.0), ("0.5", 0.5)], [("1", "must be in [0, 1), got 1"), ("-0.1", "got -0.1")]),
    (positive_float, [("1e-3", 1e-3)], [("0", "must be positive, got 0"), ("nan", "must be positive")]),
])
def test_argument_types_accept_and_refuse(parse, good, bad):
    for text, value in good:
        assert parse(text) == value
    for text, message in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
            parse(text)
