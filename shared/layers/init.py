"""Weight initialisation schemes.

* ``trunc_normal_``: N(mean, std) truncated at +-2 std (ViT / BERT, std = 0.02).
* ``init_weights_vit_style``: Linear ~ trunc_normal(0.02), bias 0; LayerNorm / RMSNorm weight 1,
  bias 0 (Dosovitskiy et al., 2021, as in timm / big_vision).
* ``init_weights_kaiming``: Conv2d ~ kaiming_normal(fan_out, relu) (He et al., 2015), BatchNorm /
  GroupNorm weight 1, bias 0; Linear keeps PyTorch's default (torchvision's ResNet).

Both ``init_weights_*`` walk every submodule of the module they are given: call them once on the
model (not through ``model.apply``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .norm import RMSNorm

__all__ = ["trunc_normal_", "init_weights_vit_style", "init_weights_kaiming"]

_CNN_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm)
_TRANSFORMER_NORMS = (nn.LayerNorm, nn.RMSNorm, RMSNorm)


def trunc_normal_(tensor: Tensor, std: float = 0.02, mean: float = 0.0) -> Tensor:
    """Fill ``tensor`` in place from N(mean, std^2) truncated to [mean - 2 std, mean + 2 std]."""
    return nn.init.trunc_normal_(tensor, mean=mean, std=std, a=mean - 2 * std, b=mean + 2 * std)


@torch.no_grad()
def init_weights_vit_style(module: nn.Module) -> nn.Module:
    """ViT initialisation of every Linear, LayerNorm and RMSNorm in ``module``; returns ``module``."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _TRANSFORMER_NORMS):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:  # RMSNorm has no bias
                nn.init.zeros_(m.bias)
    return module


@torch.no_grad()
def init_weights_kaiming(module: nn.Module) -> nn.Module:
    """CNN initialisation of every Conv2d and BatchNorm / GroupNorm in ``module``; returns ``module``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _CNN_NORMS):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module
