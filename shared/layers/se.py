"""Squeeze-and-Excitation (Hu et al., 2018): x * gate(fc2(act(fc1(avgpool(x))))).

Key layout of ``torchvision.ops.SqueezeExcitation``: ``fc1`` and ``fc2`` are 1x1 ``Conv2d`` with bias.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

__all__ = ["SqueezeExcitation"]


class SqueezeExcitation(nn.Module):
    """Channel attention: squeeze (global average pool), excite (bottleneck MLP), rescale.

    Args:
        channels: input / output channels.
        squeeze_channels: bottleneck width.
        act_layer: activation between ``fc1`` and ``fc2``.
        gate_layer: gating non-linearity (``nn.Sigmoid``; ``nn.Hardsigmoid`` in MobileNetV3).
    """

    def __init__(
        self,
        channels: int,
        squeeze_channels: int,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        gate_layer: Callable[[], nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = gate_layer()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.gate(self.fc2(self.act(self.fc1(self.avgpool(x)))))
        return x * scale
