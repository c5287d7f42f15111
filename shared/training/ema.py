"""Exponential moving average of model weights.

``ema = decay * ema + (1 - decay) * weights`` after every optimizer step, using
torch's own EMA update (``torch.optim.swa_utils.get_ema_multi_avg_fn``, a fused
``lerp`` over all parameters). Buffers (e.g. BatchNorm running statistics) are
copied from the model, so the EMA model always evaluates with current statistics.

This is a small class rather than ``AveragedModel`` because ``AveragedModel``
reads its ``n_averaged`` counter on the host at every update, which costs a
device sync per step on GPU; the EMA here starts as an exact copy instead.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


class ModelEMA(nn.Module):
    def __init__(self, model: nn.Module, decay: float = 0.999):
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._update = get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the EMA one step towards ``model`` (an unwrapped module with the same structure)."""
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        if len(ema_params) != len(params):
            raise ValueError("ModelEMA.update: model structure differs from the EMA copy")
        if ema_params:
            self._update(ema_params, params, None)
        for ema_buf, buf in zip(self.module.buffers(), model.buffers()):
            ema_buf.copy_(buf)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def train(self, mode: bool = True) -> "ModelEMA":
        # The EMA copy is only ever used for inference.
        return super().train(False)
