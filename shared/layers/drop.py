"""Stochastic depth / DropPath (Huang et al., 2016, "Deep Networks with Stochastic Depth").

In training, each sample's residual branch is dropped (zeroed) with probability ``p``; the kept
ones are scaled by 1 / (1 - p) so the expectation is unchanged. Identity in eval.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["drop_path", "DropPath"]


def drop_path(x: Tensor, p: float = 0.0, training: bool = False, scale_by_keep: bool = True) -> Tensor:
    """Zero whole samples (dimension 0) of ``x`` with probability ``p`` when ``training``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"drop_path: p must be in [0, 1], got {p}")
    if p == 0.0 or not training:
        return x
    keep_prob = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    mask = x.new_empty(shape).bernoulli_(keep_prob)
    if scale_by_keep and keep_prob > 0.0:
        mask.div_(keep_prob)
    return x * mask


class DropPath(nn.Module):
    """Module form of :func:`drop_path`; drops each sample's path with probability ``p``."""

    def __init__(self, p: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"DropPath: p must be in [0, 1], got {p}")
        self.p = p
        self.scale_by_keep = scale_by_keep

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.p, self.training, self.scale_by_keep)
