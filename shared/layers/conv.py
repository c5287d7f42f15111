"""Conv2d -> norm -> activation, the basic block of CNNs since batch norm (Ioffe & Szegedy, 2015).

An ``nn.Sequential`` whose children are named ``0`` (conv), ``1`` (norm), ``2`` (activation), the
key layout of torchvision's ``Conv2dNormActivation`` (e.g. MobileNetV3 ``features.0.0.weight``).
A skipped norm or activation is left out, so the following child takes its index.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

__all__ = ["ConvNormAct"]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class ConvNormAct(nn.Sequential):
    """Conv2d + optional norm + optional activation.

    Args:
        in_ch, out_ch: channels.
        kernel_size, stride, groups, dilation: as in ``nn.Conv2d``.
        padding: default ``dilation * (kernel_size - 1) // 2`` ("same" for odd kernels at stride 1,
            i.e. ``kernel_size // 2``; torchvision's rule).
        bias: bias on the conv (usually off before a norm).
        norm_layer: called with ``out_ch``; ``None`` to skip.
        act_layer: called with no arguments; ``None`` to skip.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        groups: int = 1,
        dilation: int | tuple[int, int] = 1,
        bias: bool = False,
        norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d,
        act_layer: Callable[[], nn.Module] | None = nn.ReLU,
    ) -> None:
        if padding is None:
            k, d = _pair(kernel_size), _pair(dilation)
            padding = tuple((k_i - 1) // 2 * d_i for k_i, d_i in zip(k, d))
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, dilation=dilation, groups=groups, bias=bias)
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_ch))
        if act_layer is not None:
            layers.append(act_layer())
        super().__init__(*layers)
        self.out_channels = out_ch
