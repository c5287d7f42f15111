"""Normalization layers.

* ``LayerNorm`` (Ba et al., 2016) over the last dimension: ``nn.LayerNorm``.
* ``LayerNorm2d``: the same statistics over the channel dimension of (B, C, H, W) tensors
  (ConvNeXt-style channels-first LayerNorm).
* ``RMSNorm`` (Zhang & Sennrich, 2019): y = x / sqrt(mean(x^2) + eps) * g, no centering, no bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LayerNorm", "LayerNorm2d", "RMSNorm"]


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last dimension (keys ``weight``, ``bias``)."""


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a channels-first (B, C, H, W) tensor.

    Args:
        num_channels: C.
        eps: added to the variance.
        elementwise_affine: learn a per-channel ``weight`` and ``bias``.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6, elementwise_affine: bool = True) -> None:
        super().__init__(num_channels, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.normalized_shape[0]:
            raise ValueError(f"LayerNorm2d: expected shape (B, {self.normalized_shape[0]}, H, W), got {tuple(x.shape)}")
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class RMSNorm(nn.Module):
    """Root-mean-square normalization over the last dimension.

    Computed in float32 for low-precision inputs, returned in the input dtype.

    Args:
        dim: size of the last dimension.
        eps: added to the mean square.
        elementwise_affine: learn a gain ``weight`` (initialised to ones).
    """

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(dim))
        else:
            self.register_parameter("weight", None)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"RMSNorm: expected last dimension {self.dim}, got shape {tuple(x.shape)}")
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        y = y.to(x.dtype)
        return y * self.weight if self.weight is not None else y
