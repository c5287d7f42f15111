"""ResNet, ResNeXt and Wide ResNet.

Papers:
  He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv:1512.03385).
  Xie et al., "Aggregated Residual Transformations for Deep Neural Networks", CVPR 2017 (ResNeXt).
  Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016.

Checkpoint layout: torchvision's ``torchvision.models.resnet*`` — ``conv1``, ``bn1``,
``layer1..layer4`` of blocks (``conv1/bn1/conv2/bn2[/conv3/bn3]``, ``downsample.0/.1``), ``fc``.
The bottleneck puts its stride on the 3x3 convolution ("ResNet v1.5"), as torchvision does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from zoo.shared.errors import InvalidConfigError
from zoo.shared.features import take_indices
from zoo.shared.layers import checkpoint_seq
from zoo.shared.registry import AT_LEAST_ONE, Variant, register_model

from .common import (IMAGENET_MEAN, IMAGENET_STD, check_images, classifier_test_spec, data_config,
                     torchvision_weights)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


# ------------------------------------------------------------------------------------------------
# Blocks
# ------------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and an identity shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, width_per_group: int = 64):
        super().__init__()
        if groups != 1 or width_per_group != 64:
            raise InvalidConfigError("BasicBlock supports only groups=1 and width_per_group=64; use block='bottleneck'")
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += shortcut  # in place: no extra activation-sized buffer (BatchNorm's backward does not need its output)
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt, strided), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, width_per_group: int = 64):
        super().__init__()
        width = int(planes * width_per_group / 64) * groups
        self.conv1 = conv1x1(in_ch, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += shortcut
        return self.relu(out)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


# ------------------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------------------


class ResNet(nn.Module):
    """Stem (7x7/2 conv, 3x3/2 max-pool), four stages of residual blocks, global pool, linear head.

    Args:
        block: ``"basic"`` or ``"bottleneck"``.
        layers: blocks per stage.
        num_classes: classifier outputs (0 leaves the head as identity).
        in_chans: input channels.
        groups, width_per_group: ResNeXt cardinality and width (Wide ResNet: width_per_group=128).
        base_channels: channels of the stem and of the first stage (64 in the paper).
        zero_init_residual: start each block's last BN at zero, so blocks begin as identities.
        drop_rate: dropout before the classifier.
    """

    def __init__(self, block: str = "basic", layers: Sequence[int] = (2, 2, 2, 2), num_classes: int = 1000,
                 in_chans: int = 3, groups: int = 1, width_per_group: int = 64, base_channels: int = 64,
                 zero_init_residual: bool = False, drop_rate: float = 0.0):
        super().__init__()
        if block not in BLOCKS:
            raise InvalidConfigError(f"block must be one of {sorted(BLOCKS)}, got {block!r}")
        if len(layers) != 4:
            raise InvalidConfigError(f"layers must give 4 stage depths, got {list(layers)}")
        block_cls = BLOCKS[block]
        self.in_chans = in_chans
        self.groups, self.width_per_group = groups, width_per_group
        self.drop_rate = drop_rate

        self.conv1 = nn.Conv2d(in_chans, base_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        self._in = base_channels
        self.grad_checkpointing = False
        # feature stages as timm's: the stem's activation (before the max-pool), then the four stages
        self.feature_info = [{"num_chs": base_channels, "reduction": 2, "module": "relu"}]
        for i, depth in enumerate(layers):
            planes = base_channels * 2**i
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", self._make_stage(block_cls, planes, depth, stride))
            self.feature_info.append({"num_chs": self._in, "reduction": 4 * 2**i, "module": f"layer{i + 1}"})
        self.num_features = self._in

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.num_classes = num_classes
        self._init_weights(zero_init_residual)

    def _make_stage(self, block_cls, planes: int, depth: int, stride: int) -> nn.Sequential:
        out = planes * block_cls.expansion
        downsample = None
        if stride != 1 or self._in != out:
            downsample = nn.Sequential(conv1x1(self._in, out, stride), nn.BatchNorm2d(out))
        blocks = [block_cls(self._in, planes, stride, downsample, self.groups, self.width_per_group)]
        self._in = out
        blocks += [block_cls(out, planes, 1, None, self.groups, self.width_per_group) for _ in range(depth - 1)]
        return nn.Sequential(*blocks)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    # -- timm-style interface -------------------------------------------------------------------

    @property
    def default_cfg(self) -> dict:
        """Data config of the model: its pretrained tag's when it was built with one, else ImageNet's."""
        return data_config(self, {"input_size": (3, 224, 224), "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                                  "interpolation": "bilinear", "crop_pct": 0.875})

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` (0: identity)."""
        self.num_classes = num_classes
        device = self.conv1.weight.device
        self.fc = nn.Linear(self.num_features, num_classes, device=device) if num_classes > 0 else nn.Identity()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each residual block's activations in backward instead of storing them."""
        self.grad_checkpointing = enable

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.in_chans, "ResNet")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = checkpoint_seq(stage, x, self.grad_checkpointing)
        return x

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, intermediates_only: bool = False):
        """Feature maps (NCHW) of the stages ``indices`` selects out of ``feature_info`` (0: stem, 1-4:
        layer1-4; an int n: the last n; negative allowed). Returns the list, or ``(final, list)``
        unless ``intermediates_only``; ``stop_early`` skips the stages after the last selected one
        (``final`` is then the last computed map). ``norm`` has no effect (no final norm in a ResNet)."""
        check_images(x, self.in_chans, "ResNet")
        take = take_indices(len(self.feature_info), indices)
        last = max(take) if stop_early else len(self.feature_info) - 1
        x = self.relu(self.bn1(self.conv1(x)))
        out = [x] if 0 in take else []
        x = self.maxpool(x) if last > 0 else x
        for i in range(1, last + 1):
            x = checkpoint_seq(getattr(self, f"layer{i}"), x, self.grad_checkpointing)
            if i in take:
                out.append(x)
        return out if intermediates_only else (x, out)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        if self.drop_rate > 0:
            x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------------------
# Registered variants
# ------------------------------------------------------------------------------------------------


_tv = torchvision_weights  # torchvision's V2 recipes are evaluated at resize 232

_RESNET = "He et al. 2016, Deep Residual Learning for Image Recognition (arXiv:1512.03385)"
_RESNEXT = "Xie et al. 2017, Aggregated Residual Transformations for Deep Neural Networks (arXiv:1611.05431)"
_WIDE = "Zagoruyko & Komodakis 2016, Wide Residual Networks (arXiv:1605.07146)"


@dataclass(frozen=True, kw_only=True)
class ResNetVariant(Variant):
    """A row of the table below: ``ResNet``'s keyword arguments, the paper and the weights."""

    block: str
    layers: tuple[int, int, int, int]
    groups: int = 1
    width_per_group: int = 64
    num_classes: int = 1000
    in_chans: int = 3
    paper: str = _RESNET


VARIANTS = {
    "resnet18": ResNetVariant(block="basic", layers=(2, 2, 2, 2), weights=[_tv("resnet18-f37072fd.pth", 69.758)]),
    "resnet34": ResNetVariant(block="basic", layers=(3, 4, 6, 3), weights=[_tv("resnet34-b627a593.pth", 73.314)]),
    "resnet50": ResNetVariant(
        block="bottleneck", layers=(3, 4, 6, 3),
        weights=[_tv("resnet50-11ad3fa6.pth", 80.858, "tv2_in1k", resize=232), _tv("resnet50-0676ba61.pth", 76.13)]),
    "resnet101": ResNetVariant(
        block="bottleneck", layers=(3, 4, 23, 3),
        weights=[_tv("resnet101-cd907fc2.pth", 81.886, "tv2_in1k", resize=232), _tv("resnet101-63fe2227.pth", 77.374)]),
    "resnet152": ResNetVariant(
        block="bottleneck", layers=(3, 8, 36, 3),
        weights=[_tv("resnet152-f82ba261.pth", 82.284, "tv2_in1k", resize=232), _tv("resnet152-394f9c45.pth", 78.312)]),
    "resnext50_32x4d": ResNetVariant(
        block="bottleneck", layers=(3, 4, 6, 3), groups=32, width_per_group=4, paper=_RESNEXT,
        weights=[_tv("resnext50_32x4d-1a0047aa.pth", 81.198, "tv2_in1k", resize=232),
                 _tv("resnext50_32x4d-7cdf4587.pth", 77.618)]),
    "resnext101_32x8d": ResNetVariant(
        block="bottleneck", layers=(3, 4, 23, 3), groups=32, width_per_group=8, paper=_RESNEXT,
        weights=[_tv("resnext101_32x8d-110c445d.pth", 82.834, "tv2_in1k", resize=232),
                 _tv("resnext101_32x8d-8ba56ff5.pth", 79.312)]),
    "wide_resnet50_2": ResNetVariant(
        block="bottleneck", layers=(3, 4, 6, 3), width_per_group=128, paper=_WIDE,
        weights=[_tv("wide_resnet50_2-9ba9bcbe.pth", 81.602, "tv2_in1k", resize=232),
                 _tv("wide_resnet50_2-95faca4d.pth", 78.468)]),
    "wide_resnet101_2": ResNetVariant(
        block="bottleneck", layers=(3, 4, 23, 3), width_per_group=128, paper=_WIDE,
        weights=[_tv("wide_resnet101_2-d733dc28.pth", 82.51, "tv2_in1k", resize=232),
                 _tv("wide_resnet101_2-32ee1156.pth", 78.848)]),
}

# What every variant shares; tiny enough for the registry-wide suite, but with each variant's block,
# groups and width.
FAMILY = dict(
    domain="vision",
    task="image-classification",
    inputs="float images (batch, in_chans, H, W), ImageNet-normalised; 224x224 for the pretrained tags",
    classifier="fc",
    first_conv="conv1.weight",
    test=classifier_test_spec(dict(layers=[1, 1, 1, 1], base_channels=16, num_classes=7)),
    # layers, base_channels and in_chans are counts by the registry's common rules
    ranges={"groups": AT_LEAST_ONE, "width_per_group": AT_LEAST_ONE},
)

for _name, _v in VARIANTS.items():
    register_model(_name, ResNet, _v.config(), paper=_v.paper, weights=_v.weights, **FAMILY)
