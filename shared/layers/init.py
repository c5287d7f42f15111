"""Weight initialisation of Transformer encoders (ViT; BERT and GPT-2 use the same N(0, 0.02)).

* ``trunc_normal_``: N(mean, std) truncated at +-2 std (std = 0.02).
* ``init_weights_vit_style``: Linear ~ trunc_normal(0.02), bias 0; LayerNorm weight 1, bias 0
  (Dosovitskiy et al., 2021, as in timm / big_vision).

``init_weights_vit_style`` walks every submodule of the module it is given: call it once on the
model (not through ``model.apply``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["trunc_normal_", "init_weights_vit_style"]


def trunc_normal_(tensor: Tensor, std: float = 0.02, mean: float = 0.0) -> Tensor:
    """Fill ``tensor`` in place from N(mean, std^2) truncated to [mean - 2 std, mean + 2 std]."""
    return nn.init.trunc_normal_(tensor, mean=mean, std=std, a=mean - 2 * std, b=mean + 2 * std)


@torch.no_grad()
def init_weights_vit_style(module: nn.Module) -> nn.Module:
    """ViT initialisation of every Linear and LayerNorm in ``module``; returns ``module``."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module
