"""Activations with hand-written backward passes.

* Swish / SiLU (Ramachandran et al., 2017; Elfwing et al., 2018): y = x * sigmoid(x).
  ``SwishFunction`` saves only x for backward and recomputes s = sigmoid(x) there:
      dy/dx = s + x * s * (1 - s) = s * (1 + x * (1 - s)).
  The autograd graph of ``x * torch.sigmoid(x)`` keeps both x and sigmoid(x) alive instead.
  (``F.silu`` also saves only x; this is the explicit, inspectable version of that trick.)
* Gradient reversal (Ganin & Lempitsky, 2015, "Unsupervised Domain Adaptation by
  Backpropagation"): identity forward, gradient multiplied by -lambda backward. Its backward is
  deliberately *not* the derivative of its forward.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "SwishFunction",
    "swish",
    "MemoryEfficientSwish",
    "GradientReversalFunction",
    "grad_reverse",
    "GradientReversal",
]


class SwishFunction(torch.autograd.Function):
    """y = x * sigmoid(x), saving only x for backward."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad_output * (s * (1 + x * (1 - s)))


def swish(x: Tensor) -> Tensor:
    """Memory-efficient Swish / SiLU: x * sigmoid(x)."""
    return SwishFunction.apply(x)


class MemoryEfficientSwish(nn.Module):
    """Module form of :func:`swish` (no parameters)."""

    def forward(self, x: Tensor) -> Tensor:
        return SwishFunction.apply(x)


class GradientReversalFunction(torch.autograd.Function):
    """Identity forward; backward returns -lambd * grad_output."""

    @staticmethod
    def forward(ctx, x: Tensor, lambd: float) -> Tensor:
        ctx.lambd = float(lambd)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:
        return grad_output * -ctx.lambd, None


def grad_reverse(x: Tensor, lambd: float = 1.0) -> Tensor:
    """Gradient reversal layer: returns x, and multiplies the gradient flowing back by -lambd."""
    return GradientReversalFunction.apply(x, lambd)


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`; ``lambd`` may be changed during training (DANN schedule)."""

    def __init__(self, lambd: float = 1.0) -> None:
        super().__init__()
        self.lambd = lambd

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}"

    def forward(self, x: Tensor) -> Tensor:
        return GradientReversalFunction.apply(x, self.lambd)
