"""Position information for sequence and patch models.

* Sinusoidal encoding (Vaswani et al., 2017):
      PE(pos, 2i)   = sin(pos / 10000^(2i / d))
      PE(pos, 2i+1) = cos(pos / 10000^(2i / d))
* Learned absolute embeddings (BERT, GPT-2, ViT): one trained vector per position.
* Rotary embeddings, RoPE (Su et al., 2021, "RoFormer"): rotate each (x_j, x_{j+d/2}) pair of a query
  or key at position m by the angle m * theta_j, theta_j = base^(-2j / d) ("rotate-half" layout of
  GPT-NeoX / LLaMA), so that <R_m q, R_n k> depends on m - n only.
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
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
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


def _positions(x: Tensor, positions: Tensor | None, limit: int | None, name: str) -> Tensor:
    """Default ``arange(L)`` positions, or validate user-given (L,) / (B, L) integer positions."""
    seq_len = x.shape[-2]
    if positions is None:
        if limit is not None and seq_len > limit:
            raise ValueError(f"{name}: sequence length {seq_len} exceeds the {limit} supported positions")
        return torch.arange(seq_len, device=x.device)
    if positions.dtype.is_floating_point or positions.dtype == torch.bool:
        raise ValueError(f"{name}: positions must be an integer tensor, got {positions.dtype}")
    if positions.dim() not in (1, 2) or positions.shape[-1] != seq_len:
        raise ValueError(f"{name}: positions must have shape ({seq_len},) or (B, {seq_len}), got {tuple(positions.shape)}")
    if positions.dim() == 2 and x.dim() >= 3 and positions.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"{name}: positions batch size {positions.shape[0]} does not match x batch size {x.shape[0]}")
    if limit is not None and positions.numel() > 0:
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


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned vector per position to x (B, L, dim).

    The parameter is named ``weight`` with shape (num_positions, dim), as an ``nn.Embedding``, so a
    model that names this module ``wpe`` or ``position_embeddings`` gets GPT-2 / BERT keys.
    """

    def __init__(self, num_positions: int, dim: int) -> None:
        super().__init__()
        self.num_positions = num_positions
        self.dim = dim
        self.weight = nn.Parameter(torch.empty(num_positions, dim))
        nn.init.trunc_normal_(self.weight, std=0.02, a=-0.04, b=0.04)

    def extra_repr(self) -> str:
        return f"{self.num_positions}, {self.dim}"

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """x: (B, L, dim); positions: optional (L,) or (B, L) integer positions (default 0..L-1)."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"LearnedPositionalEmbedding: expected x of shape (B, L, {self.dim}), got {tuple(x.shape)}")
        positions = _positions(x, positions, self.num_positions, "LearnedPositionalEmbedding")
        return x + F.embedding(positions, self.weight)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE), rotate-half convention.

    Args:
        dim: number of rotated features per head (even). Inputs may have more features per head;
            only the first ``dim`` are rotated (partial rotary, as in GPT-NeoX).
        base: the 10000 in theta_j = base^(-2j / dim).
    """

    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if dim <= 0 or dim % 2 != 0:
            raise ValueError(f"RotaryEmbedding: dim must be a positive even number, got {dim}")
        self.dim = dim
        self.base = base
        inv_freq = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base}"

    def cos_sin(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """cos and sin of the rotation angles, shape ``positions.shape + (dim,)``, float32."""
        angle = positions.float()[..., None] * self.inv_freq  # (..., dim / 2)
        angle = torch.cat([angle, angle], dim=-1)
        return angle.cos(), angle.sin()

    def rotate(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """Rotate x (..., L, D) with D >= dim, e.g. (B, H, L, D); positions (L,) or (B, L)."""
        if x.dim() < 2 or x.shape[-1] < self.dim:
            raise ValueError(f"RotaryEmbedding: expected x of shape (..., L, D) with D >= {self.dim}, got {tuple(x.shape)}")
        positions = _positions(x, positions, None, "RotaryEmbedding")
        cos, sin = self.cos_sin(positions)
        if positions.dim() == 2 and x.dim() == 4:  # (B, L, dim) -> (B, 1, L, dim) to broadcast over heads
            cos, sin = cos[:, None], sin[:, None]
        x_rot, x_pass = x[..., : self.dim], x[..., self.dim :]
        x1, x2 = x_rot.float().chunk(2, dim=-1)
        rotated = torch.cat([-x2, x1], dim=-1)
        x_rot = (x_rot.float() * cos + rotated * sin).to(x.dtype)
        return torch.cat([x_rot, x_pass], dim=-1) if x_pass.shape[-1] else x_rot

    def apply_rotary(self, q: Tensor, k: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Rotate queries and keys that share the same positions; returns (q, k)."""
        return self.rotate(q, positions), self.rotate(k, positions)

    def forward(self, q: Tensor, k: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.apply_rotary(q, k, positions)


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
