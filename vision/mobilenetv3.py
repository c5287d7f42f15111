"""MobileNetV3 (Large and Small).

Paper:
  Howard et al., "Searching for MobileNetV3", ICCV 2019 (arXiv:1905.02244).

A 3x3/2 stem with hard-swish, then inverted residual blocks (Sandler et al., MobileNetV2):
1x1 expansion -> depthwise k x k (strided) -> optional squeeze-and-excitation (hard-sigmoid
gate) -> linear 1x1 projection, with a residual when the shape is kept. The tail is a 1x1 conv
to 6x the last block's width, global pooling, and a two-layer classifier with hard-swish.
Tables 1 and 2 of the paper give the block settings below.

Checkpoint layout: torchvision's ``torchvision.models.mobilenet_v3_*`` — ``features.0`` (stem,
children ``0/1`` conv/BN), ``features.N.block.M`` (conv-BN-act units as ``M.0/M.1``, squeeze-excitation
as ``M.fc1/M.fc2``), ``features.-1`` (last conv), ``classifier.0`` / ``classifier.3``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Sequence

import torch
from torch import nn

from zoo.shared.errors import InvalidConfigError
from zoo.shared.features import take_indices
from zoo.shared.layers import ConvNormAct, SqueezeExcitation, checkpoint_seq
from zoo.shared.registry import POSITIVE, Variant, register_model

from .common import (IMAGENET_MEAN, IMAGENET_STD, check_images, classifier_test_spec, data_config,
                     torchvision_weights)


# BatchNorm as in the TensorFlow reference: eps 1e-3, momentum 0.01 (PyTorch's convention).
_norm = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (at least ``divisor``), never more than 10% down."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


# Per block: (kernel, expanded channels, out channels, squeeze-excitation, activation, stride)
# on the paper's widths; "RE" is ReLU, "HS" hard-swish. Input channels chain from the stem (16).
_LARGE = [
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),  # the "tail": halved by reduced_tail, dilated by dilated
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
]
_SMALL = [
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),  # tail
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
]
# variant: (blocks, number of tail blocks, width of the classifier's hidden layer)
_ARCHS = {"large": (_LARGE, 3, 1280), "small": (_SMALL, 3, 1024)}
# in place, as torchvision's: each activation overwrites the BatchNorm output it follows
_ACTS = {"RE": partial(nn.ReLU, inplace=True), "HS": partial(nn.Hardswish, inplace=True)}


# ------------------------------------------------------------------------------------------------
# Blocks
# ------------------------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (k x k) -> [squeeze-excitation] -> project (1x1, linear), + residual."""

    def __init__(self, in_ch: int, kernel: int, exp_ch: int, out_ch: int, use_se: bool, act: str,
                 stride: int, dilation: int = 1):
        super().__init__()
        act_layer = _ACTS[act]
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if exp_ch != in_ch:
            layers.append(ConvNormAct(in_ch, exp_ch, 1, norm_layer=_norm, act_layer=act_layer))
        layers.append(ConvNormAct(exp_ch, exp_ch, kernel, stride=1 if dilation > 1 else stride, dilation=dilation,
                                  groups=exp_ch, norm_layer=_norm, act_layer=act_layer))
        if use_se:
            layers.append(SqueezeExcitation(exp_ch, make_divisible(exp_ch // 4), nn.ReLU, nn.Hardsigmoid))
        layers.append(ConvNormAct(exp_ch, out_ch, 1, norm_layer=_norm, act_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out += x  # in place on the block's fresh output, as torchvision does
        return out


# ------------------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------------------


class MobileNetV3(nn.Module):
    """Stem, inverted residual blocks, last 1x1 conv, global pool, Linear-hardswish-dropout-Linear.

    Args:
        variant: ``"large"`` or ``"small"``.
        width_mult: multiplier of every channel count (rounded to multiples of 8).
        reduced_tail: halve the channels of the last stage (for detection / segmentation backbones).
        dilated: dilate the last stage instead of striding it (output stride 16).
        num_classes: classifier outputs (0 leaves the last Linear as identity).
        in_chans: input channels.
        drop_rate: dropout before the last Linear (0.2 in torchvision).
    """

    def __init__(self, variant: str = "large", width_mult: float = 1.0, reduced_tail: bool = False,
                 dilated: bool = False, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2):
        super().__init__()
        if variant not in _ARCHS:
            raise InvalidConfigError(f"variant must be one of {sorted(_ARCHS)}, got {variant!r}")
        if width_mult <= 0:
            raise InvalidConfigError(f"width_mult must be positive, got {width_mult}")
        blocks, n_tail, hidden = _ARCHS[variant]
        divider = 2 if reduced_tail else 1
        ch = lambda c: make_divisible(c * width_mult)  # noqa: E731
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.drop_rate = drop_rate

        in_ch = ch(16)
        layers: list[nn.Module] = [ConvNormAct(in_chans, in_ch, 3, stride=2, norm_layer=_norm, act_layer=_ACTS["HS"])]
        self.feature_info = []
        reduction = 2
        first_tail = len(blocks) - n_tail
        for i, (k, exp, out, se, act, stride) in enumerate(blocks):
            # reduced_tail halves the tail's widths (its first block still expands from full width)
            if i > first_tail:
                exp //= divider
            if i >= first_tail:
                out //= divider
            dilation = 2 if dilated and i >= first_tail else 1
            if stride > 1 and dilation == 1:
                # the previous block closes a stage
                self.feature_info.append(
                    {"num_chs": in_ch, "reduction": reduction, "module": f"features.{len(layers) - 1}"})
                reduction *= stride
            layers.append(InvertedResidual(in_ch, k, ch(exp), ch(out), se, act, stride, dilation))
            in_ch = ch(out)
        last_conv = 6 * in_ch
        layers.append(ConvNormAct(in_ch, last_conv, 1, norm_layer=_norm, act_layer=_ACTS["HS"]))
        self.feature_info.append(
            {"num_chs": last_conv, "reduction": reduction, "module": f"features.{len(layers) - 1}"})
        self.features = nn.Sequential(*layers)
        self.num_features = last_conv
        self.grad_checkpointing = False
        self.head_hidden_size = ch(hidden // divider)

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, self.head_hidden_size),
            nn.Hardswish(inplace=True),
            nn.Dropout(drop_rate),
            self._new_head(num_classes),
        )
        self._init_weights()

    def _new_head(self, num_classes: int, device=None) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        head = nn.Linear(self.head_hidden_size, num_classes, device=device)
        nn.init.normal_(head.weight, 0, 0.01)
        nn.init.zeros_(head.bias)
        return head

    def _init_weights(self) -> None:
        # torchvision's scheme: conv kaiming (fan_out), BN 1 / 0, Linear N(0, 0.01) / 0
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    # -- timm-style interface -------------------------------------------------------------------

    @property
    def default_cfg(self) -> dict:
        """Data config of the model: its pretrained tag's when it was built with one, else ImageNet's."""
        return data_config(self, {"input_size": (3, 224, 224), "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                                  "interpolation": "bilinear", "crop_pct": 0.875})

    def get_classifier(self) -> nn.Module:
        return self.classifier[3]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last Linear with a fresh one for ``num_classes`` (0: identity); keeps ``classifier.0``."""
        self.num_classes = num_classes
        self.classifier[3] = self._new_head(num_classes, device=self.classifier[0].weight.device)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations (stem, inverted residuals, last conv) in backward."""
        self.grad_checkpointing = enable

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.in_chans, "MobileNetV3")
        return checkpoint_seq(self.features, x, self.grad_checkpointing)

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, intermediates_only: bool = False):
        """Feature maps (NCHW) of the stages ``indices`` selects out of ``feature_info`` (the output of
        the last block at each resolution, and of the last 1x1 conv; an int n: the last n; negative
        allowed). Returns the list, or ``(final, list)`` unless ``intermediates_only``; ``stop_early``
        skips the layers after the last selected stage (``final`` is then the last computed map).
        ``norm`` has no effect (no final norm here)."""
        check_images(x, self.in_chans, "MobileNetV3")
        take = take_indices(len(self.feature_info), indices)
        ends = {int(f["module"].rsplit(".", 1)[1]): i for i, f in enumerate(self.feature_info)}
        stop = int(self.feature_info[max(take)]["module"].rsplit(".", 1)[1]) if stop_early else len(self.features) - 1
        out = []
        for j in range(stop + 1):
            x = checkpoint_seq([self.features[j]], x, self.grad_checkpointing)
            if ends.get(j) in take:
                out.append(x)
        return out if intermediates_only else (x, out)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``pre_logits``: the hidden layer of the classifier (``head_hidden_size`` wide), as timm."""
        x = torch.flatten(self.avgpool(x), 1)
        x = self.classifier[1](self.classifier[0](x))
        if pre_logits:
            return x
        return self.classifier[3](self.classifier[2](x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------------------
# Registered variants
# ------------------------------------------------------------------------------------------------


_tv = torchvision_weights  # torchvision's V2 recipes are evaluated at resize 232


@dataclass(frozen=True, kw_only=True)
class MobileNetV3Variant(Variant):
    """A row of the table below: ``MobileNetV3``'s keyword arguments, the paper and the weights."""

    variant: str
    width_mult: float = 1.0
    num_classes: int = 1000
    in_chans: int = 3
    paper: str = "Howard et al. 2019, Searching for MobileNetV3 (arXiv:1905.02244)"


VARIANTS = {
    "mobilenet_v3_large": MobileNetV3Variant(
        variant="large",
        weights=[_tv("mobilenet_v3_large-5c1a4163.pth", 75.274, "tv2_in1k", resize=232),
                 _tv("mobilenet_v3_large-8738ca79.pth", 74.042)]),
    "mobilenet_v3_small": MobileNetV3Variant(variant="small", weights=[_tv("mobilenet_v3_small-047dcff4.pth", 67.668)]),
}

# What every variant shares; the test config has every block type of the layout (expansion or not,
# SE or not, ReLU / hard-swish, residual), thin and small.
FAMILY = dict(
    domain="vision",
    task="image-classification",
    inputs="float images (batch, in_chans, H, W), ImageNet-normalised; 224x224 for the pretrained tags",
    classifier="classifier.3",
    first_conv="features.0.0.weight",
    test=classifier_test_spec(dict(width_mult=0.25, num_classes=5)),
    ranges={"width_mult": POSITIVE},
)

for _name, _v in VARIANTS.items():
    register_model(_name, MobileNetV3, _v.config(), paper=_v.paper, weights=_v.weights, **FAMILY)
