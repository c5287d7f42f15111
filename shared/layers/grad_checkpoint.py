"""Gradient checkpointing over a sequence of blocks (Chen et al., 2016, "Training Deep Nets with
Sublinear Memory Cost"): each block's activations are dropped after its forward and recomputed in
backward, trading one extra forward for activation memory.

Every model that offers ``set_grad_checkpointing`` runs its blocks through :func:`checkpoint_seq`.
The checkpoint is non-reentrant and preserves the RNG state (dropout and stochastic depth draw the
same masks when recomputed); BatchNorm running statistics are updated once, not a second time when
backward recomputes the block.
"""

from __future__ import annotations

import contextlib
from typing import Iterable

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = ["checkpoint_seq"]


def checkpoint_seq(blocks: Iterable[nn.Module], x: Tensor, enabled: bool = True) -> Tensor:
    """Run ``blocks`` in order on ``x``; with ``enabled`` and autograd recording, each block is
    checkpointed on its own. Otherwise this is exactly ``for b in blocks: x = b(x)``."""
    if not (enabled and torch.is_grad_enabled()):
        for block in blocks:
            x = block(x)
        return x
    for block in blocks:
        x = checkpoint(block, x, use_reentrant=False,
                       context_fn=lambda b=block: (contextlib.nullcontext(), _keep_bn_stats(b)))
    return x


@contextlib.contextmanager
def _keep_bn_stats(module: nn.Module):
    """Restore BatchNorm running statistics after the block runs again in backward (recomputation):
    in train mode it would otherwise count the same batch twice."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    saved = [[b.clone() if b is not None else None for b in (m.running_mean, m.running_var, m.num_batches_tracked)]
             for m in bns]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, count) in zip(bns, saved):
                for buf, old in ((m.running_mean, mean), (m.running_var, var), (m.num_batches_tracked, count)):
                    if buf is not None:
                        buf.copy_(old)
