"""What every vision model file shares: normalisation constants, input checks, data configs, the
torchvision weight-source helper and the registry suite's test spec for an image classifier."""

from __future__ import annotations

import torch

from zoo.shared.errors import InputError
from zoo.shared.registry import TestSpec, WeightSource

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's checkpoints
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # timm's augreg / original JAX ViT checkpoints
INCEPTION_STD = (0.5, 0.5, 0.5)


def check_images(x, in_chans: int, name: str) -> None:
    """Raise a clear InputError unless ``x`` is a float ``(batch, in_chans, H, W)`` tensor."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != in_chans:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{name} expects images of shape (batch, {in_chans}, height, width), got {got}.")
    if not x.is_floating_point():
        raise InputError(f"{name} expects floating-point images, got {x.dtype}; convert with x.float() / 255.")


def data_config(model: torch.nn.Module, defaults: dict, input_size: tuple[int, int] | None = None) -> dict:
    """timm-style data config: ``defaults``, overridden by the pretrained tag the model was built
    with (``model.pretrained_cfg``); ``input_size`` (H, W) pins the model's own resolution."""
    cfg = dict(defaults)
    tag = getattr(model, "pretrained_cfg", {})
    cfg.update({k: tuple(v) if isinstance(v, list) else v for k, v in tag.items() if k in cfg})
    size = input_size if input_size is not None else cfg["input_size"][1:]
    cfg["input_size"] = (model.in_chans, *size)
    return {**cfg, "num_classes": model.num_classes}


def torchvision_weights(filename: str, top1: float, tag: str = "tv_in1k", size: int = 224, resize: int = 256,
                        interpolation: str = "bilinear", license: str = "BSD-3-Clause",
                        what: str = "ImageNet-1k") -> WeightSource:
    """A checkpoint published by torchvision under download.pytorch.org/models/."""
    return WeightSource(
        tag=tag, url=f"https://download.pytorch.org/models/{filename}", layout="torchvision", num_classes=1000,
        input_size=(3, size, size), mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation=interpolation,
        crop_pct=round(size / resize, 3), license=license,
        description=f"torchvision {what} weights, top-1 {top1} (torchvision's reported figure)",
    )


def classifier_test_spec(config: dict, size: int = 32) -> TestSpec:
    """The registry suite's spec for an image classifier: its tiny ``config``, random images of
    ``size`` px (the config's ``img_size`` when it has one) and logits of shape (batch, num_classes)."""

    def inputs(cfg: dict, batch: int) -> tuple:
        hw = cfg.get("img_size", size)
        h, w = (hw, hw) if isinstance(hw, int) else hw
        return (torch.randn(batch, cfg.get("in_chans", 3), h, w),)

    return TestSpec(config=config, inputs=inputs, output_shape=lambda cfg, batch: (batch, cfg["num_classes"]))
