"""Sample grids as PNG files, written atomically (a viewer never sees half a file)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch

from zoo.shared.atomic import atomic_open, make_dirs


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, padding: int = 2) -> Path:
    """``images`` (N, C, H, W) with pixels in [0, 1] as one PNG grid, ``nrow`` images per row
    (default: a square)."""
    from torchvision.utils import save_image

    path = Path(path)
    make_dirs(path.parent)
    nrow = nrow or max(1, math.ceil(math.sqrt(len(images))))
    buffer = io.BytesIO()
    save_image(images.detach().float().cpu().clamp(0, 1), buffer, nrow=nrow, padding=padding, format="png")
    with atomic_open(path) as f:
        f.write(buffer.getvalue())
    return path
