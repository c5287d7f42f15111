"""Gradient reversal (Ganin & Lempitsky, 2015, "Unsupervised Domain Adaptation by Backpropagation").

Identity in the forward pass; in the backward pass the gradient is multiplied by -lambda, so the
layers before it learn to *increase* the loss of what comes after (the domain classifier of
domain-adversarial training). Its backward is deliberately *not* the derivative of its forward.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["GradientReversalFunction", "grad_reverse", "GradientReversal"]


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
