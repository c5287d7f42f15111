"""Exponential moving average of model weights.

``ema = decay * ema + (1 - decay) * weights`` after every optimizer step, as one
fused ``lerp`` over all parameters (what ``torch.optim.swa_utils.get_ema_multi_avg_fn`` does,
written out because the decay may change from step to step). Buffers (e.g. BatchNorm running statistics) are
copied from the model, so the EMA model always evaluates with current statistics.

This is a small class rather than ``AveragedModel`` because ``AveragedModel``
reads its ``n_averaged`` counter on the host at every update, which costs a
device sync per step on GPU; the EMA here starts as an exact copy instead.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA(nn.Module):
    """``ModelEMA(model, decay, warmup=False)``; ``module`` is the averaged model (evaluate it or
    save it with ``zoo.save_pretrained(ema.module, ...)``).

    ``warmup=True`` ramps the decay up as diffusion training does: at update ``t`` (from 0) the
    decay is ``min(decay, (1 + t) / (10 + t))``, so the average forgets the random
    initialisation quickly instead of dragging it along for ~1/(1 - decay) steps.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = False):
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay, self.warmup = decay, warmup
        self.updates = 0  # updates applied so far (saved with the state dict)
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next update uses."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the EMA one step towards ``model`` (an unwrapped module with the same structure)."""
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        if len(ema_params) != len(params):
            raise ValueError("ModelEMA.update: model structure differs from the EMA copy")
        if ema_params:
            # ema += (1 - decay) * (param - ema): one fused lerp over all parameters.
            torch._foreach_lerp_(ema_params, params, 1.0 - self.current_decay())
        for ema_buf, buf in zip(self.module.buffers(), model.buffers()):
            ema_buf.copy_(buf)
        self.updates += 1

    def get_extra_state(self) -> dict:
        return {"updates": self.updates}

    def set_extra_state(self, state: dict) -> None:
        self.updates = int(state["updates"])

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def train(self, mode: bool = True) -> "ModelEMA":
        # The EMA copy is only ever used for inference.
        return super().train(False)
