"""Position information for sequence and patch models.

* Sinusoidal encoding (Vaswani et al., 2017):
      PE(pos, 2i)   = sin(pos / 10000^(2i / d))
      PE(pos, 2i+1) = cos(pos / 10000^(2i / d))
  added to the Transformer's token embeddings; a diffusion model's timestep embedding uses the
  same frequencies at position t.
* ``resample_abs_pos_embed``: interpolate a ViT's patch-grid position embeddings to a new grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "sinusoidal_position_encoding",
    "SinusoidalPositionalEncoding",
    "resample_abs_pos_embed",
]


def sinusoidal_position_encoding(length: int, dim: int, base: float = 10000.0) -> Tensor:
    """The (length, dim) float32 table of Vaswani et al.: sin on even, cos on odd features."""
    if dim <= 0 or dim % 2 != 0:
        raise ValueError(f"sinusoidal_position_encoding: dim must be a positive even number, got {dim}")
    position = torch.arange(length, dtype=torch.float64)[:, None]
    inv_freq = torch.exp(-math.log(base) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angle = position * inv_freq  # (length, dim / 2)
    pe = torch.empty(length, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe.float()


def _positions(x: Tensor, positions: Tensor | None, limit: int, name: str) -> Tensor:
    """Default ``arange(L)`` positions, or validate user-given (L,) / (B, L) integer positions."""
    seq_len = x.shape[-2]
    if positions is None:
        if seq_len > limit:
            raise ValueError(f"{name}: sequence length {seq_len} exceeds the {limit} supported positions")
        return torch.arange(seq_len, device=x.device)
    if positions.dtype.is_floating_point or positions.dtype == torch.bool:
        raise ValueError(f"{name}: positions must be an integer tensor, got {positions.dtype}")
    if positions.dim() not in (1, 2) or positions.shape[-1] != seq_len:
        raise ValueError(f"{name}: positions must have shape ({seq_len},) or (B, {seq_len}), got {tuple(positions.shape)}")
    if positions.dim() == 2 and x.dim() >= 3 and positions.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"{name}: positions batch size {positions.shape[0]} does not match x batch size {x.shape[0]}")
    if positions.numel() > 0:
        lo, hi = int(positions.min()), int(positions.max())
        if lo < 0 or hi >= limit:
            raise ValueError(f"{name}: positions must lie in [0, {limit}), got values in [{lo}, {hi}]")
    return positions


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal encoding to x (B, L, dim), then dropout.

    The table is a non-persistent buffer: it is not part of the state dict.

    Args:
        dim: model width (even).
        max_len: longest supported sequence.
        dropout: dropout probability on the sum (0.1 in the paper).
    """

    def __init__(self, dim: int, max_len: int = 5000, dropout: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.max_len = max_len
        self.register_buffer("pe", sinusoidal_position_encoding(max_len, dim), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """x: (B, L, dim); positions: optional (L,) or (B, L) integer positions (default 0..L-1)."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"SinusoidalPositionalEncoding: expected x of shape (B, L, {self.dim}), got {tuple(x.shape)}")
        positions = _positions(x, positions, self.max_len, "SinusoidalPositionalEncoding")
        return self.dropout(x + self.pe[positions].to(x.dtype))


def _grid(size: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(size)
    if len(size) != 2:
        raise ValueError(f"resample_abs_pos_embed: {name} must be an int or (height, width), got {size}")
    return int(size[0]), int(size[1])


def resample_abs_pos_embed(
    pos_embed: Tensor,
    new_grid: int | tuple[int, int],
    old_grid: int | tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    interpolation: str = "bicubic",
    antialias: bool = True,
) -> Tensor:
    """Resize ViT position embeddings (1, prefix + old_h * old_w, C) to a new patch grid.

    The ``num_prefix_tokens`` leading embeddings (class / distillation tokens) are kept as they
    are; the patch-grid part is interpolated in 2-D (computed in float32, returned in the input
    dtype). ``old_grid`` defaults to the square grid implied by the length.
    """
    if pos_embed.dim() != 3:
        raise ValueError(f"resample_abs_pos_embed: expected pos_embed of shape (1, N, C), got {tuple(pos_embed.shape)}")
    num_grid = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = math.isqrt(max(num_grid, 0))
        if side * side != num_grid:
            raise ValueError(
                f"resample_abs_pos_embed: {num_grid} grid tokens (after {num_prefix_tokens} prefix tokens) "
                "is not a square; pass old_grid=(h, w)"
            )
        old_grid = side
    old_h, old_w = _grid(old_grid, "old_grid")
    new_h, new_w = _grid(new_grid, "new_grid")
    if old_h * old_w != num_grid:
        raise ValueError(
            f"resample_abs_pos_embed: old_grid {old_h}x{old_w} needs {old_h * old_w} grid tokens, "
            f"got {num_grid} (= {pos_embed.shape[1]} - {num_prefix_tokens} prefix tokens)"
        )
    if (old_h, old_w) == (new_h, new_w):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    grid = grid.float().reshape(grid.shape[0], old_h, old_w, -1).permute(0, 3, 1, 2)
    use_aa = antialias and interpolation in ("bilinear", "bicubic")
    grid = F.interpolate(grid, size=(new_h, new_w), mode=interpolation, antialias=use_aa)
    grid = grid.permute(0, 2, 3, 1).flatten(1, 2).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)
