"""Sample grids as PNG files, written atomically (a viewer never sees half a file)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch

from zoo.shared.atomic import atomic_open, make_dirs


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, padding: int = 2,
              min_size: int = 32) -> Path:
    """``images`` (N, C, H, W) with pixels in [0, 1] as one PNG grid, ``nrow`` images per row
    (default: a square). Images smaller than ``min_size`` are enlarged by a whole factor, each
    pixel a square block (nearest neighbour), so an 8x8 model's grid shows its real pixels at a
    readable size."""
    import torch.nn.functional as F
    from torchvision.utils import save_image

    path = Path(path)
    make_dirs(path.parent)
    nrow = nrow or max(1, math.ceil(math.sqrt(len(images))))
    images = images.detach().float().cpu().clamp(0, 1)
    factor = math.ceil(min_size / min(images.shape[-2:]))
    if factor > 1:
        images = F.interpolate(images, scale_factor=factor, mode="nearest")
    buffer = io.BytesIO()
    save_image(images, buffer, nrow=nrow, padding=padding, format="png")
    with atomic_open(path) as f:
        f.write(buffer.getvalue())
    return path
