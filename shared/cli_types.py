"""Argument types for the recipes' command lines: ``p.add_argument("--epochs", type=positive_int)``.

A bad value becomes argparse's one-line error naming the option: ``--epochs: must be a positive
integer, got 0`` (a value that is not a number says so too).
"""

from __future__ import annotations

import argparse


def _number(value: str, kind: type, what: str):
    try:
        return kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value!r}") from None


def positive_int(value: str) -> int:
    n = _number(value, int, "a positive integer")
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return n


def non_negative_int(value: str) -> int:
    n = _number(value, int, "0 or more")
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return n


def fraction(value: str) -> float:
    """A probability below one: dropout, a validation share."""
    x = _number(value, float, "in [0, 1)")
    if not 0.0 <= x < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return x


def positive_float(value: str) -> float:
    x = _number(value, float, "a positive number")
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return x


def floats(value: str) -> list[float]:
    """``"0.5,0.5,0.5"`` -> ``[0.5, 0.5, 0.5]`` (one number, or one per channel)."""
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas (0.5,0.5,0.5), got {value!r}") from None
