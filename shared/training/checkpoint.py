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
import tempfile
from pathlib import Path

import torch


def save_checkpoint(path: str | os.PathLike, obj: dict) -> Path:
    """Write ``obj`` to ``path`` atomically (temp file + fsync + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # Anything went wrong (including KeyboardInterrupt): drop the partial file,
        # the previous checkpoint under `path` is untouched.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)  # make the rename itself durable
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
