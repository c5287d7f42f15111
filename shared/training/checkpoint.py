"""Atomic checkpoint files.

``save_checkpoint`` never leaves a half-written file under the final name: it
writes a temporary file in the same directory, flushes and fsyncs it, then
renames it over the target with ``os.replace`` (atomic on POSIX and Windows).
A crash at any point leaves either the previous checkpoint or the new one.

``load_checkpoint`` uses ``torch.load(weights_only=True)``: a checkpoint can
hold tensors and plain containers of numbers/strings, never pickled code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..atomic import atomic_open


def save_checkpoint(path: str | os.PathLike, obj: dict) -> Path:
    """Write ``obj`` to ``path`` atomically (temp file + fsync + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        torch.save(obj, f)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location=map_location, weights_only=True)

