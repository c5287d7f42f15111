"""``zoo predict``: the top classes a saved image classifier gives to image files.

A directory written by ``save_pretrained`` holds what prediction needs beside the weights, in
``config.json``::

    "id2label":       {"0": "cat", "1": "dog", ...}           class names (optional: indices otherwise)
    "pretrained_cfg": {"input_size": [C, H, W], "mean": [...], "std": [...],
                       "interpolation": "bilinear", "crop_pct": 0.875, ...}

An image is read with PIL, converted to the model's channels (``L`` or ``RGB``), resized so that
the centre crop of ``crop_pct`` of it is ``H x W`` (the evaluation transform of the vision
recipes), scaled to [0, 1] and normalised with ``mean`` / ``std``. Without a saved
``pretrained_cfg`` the model's own (that of its pretrained tag) is used; without either the
caller must give the input size and mean/std.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from zoo.shared.errors import CheckpointError, InputError

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclass
class DataConfig:
    """How an image becomes the model's input."""

    in_chans: int
    input_size: tuple[int, int]  # (H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    crop_pct: float = 1.0

    def transform(self):
        from torchvision.transforms import InterpolationMode, v2

        h, w = self.input_size
        # the shorter side to size / crop_pct, then the centre crop: timm's and the recipes' eval transform
        scaled = (math.floor(h / self.crop_pct), math.floor(w / self.crop_pct))
        resize = scaled[0] if h == w else scaled
        return v2.Compose([
            v2.ToImage(),
            v2.Resize(resize, interpolation=InterpolationMode(self.interpolation), antialias=True),
            v2.CenterCrop((h, w)),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(self.mean), list(self.std)),
        ])


def data_config(where: str, cfg: dict, in_chans: int, overrides: dict) -> DataConfig:
    """The data config from ``cfg`` (a pretrained_cfg) and the caller's overrides, checked."""
    cfg = {**cfg, **{k: v for k, v in overrides.items() if v is not None}}
    size = cfg.get("input_size")
    missing = [k for k in ("input_size", "mean", "std") if cfg.get(k) in (None, [], ())]
    if missing:
        raise InputError(
            f"{where} does not record {' / '.join(missing)} (no 'pretrained_cfg' in its config.json, or an "
            "incomplete one), so the images cannot be prepared as the model was trained. Save the model from a "
            "recipe that records them, or pass --img-size, --mean and --std."
        )
    if isinstance(size, int):
        size = (size, size)
    size = tuple(size)
    if len(size) == 3:
        if size[0] != in_chans:
            raise CheckpointError(f"{where}: pretrained_cfg input_size {list(size)} has {size[0]} channels, "
                                  f"but the model takes {in_chans}.")
        size = size[1:]
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise CheckpointError(f"{where}: input_size must be [C, H, W] or [H, W] positive integers, "
                              f"got {cfg['input_size']}.")
    stats = {}
    for key in ("mean", "std"):
        value = cfg[key]
        value = (value,) if isinstance(value, (int, float)) else tuple(value)
        if len(value) == 1:
            value = value * in_chans
        if len(value) != in_chans or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value):
            raise InputError(f"{where}: {key} must be one finite number per channel ({in_chans}) or a single "
                             f"one, got {cfg[key]}.")
        stats[key] = tuple(float(v) for v in value)
    if any(s <= 0 for s in stats["std"]):
        raise InputError(f"{where}: std must be positive, got {cfg['std']}.")
    interpolation = cfg.get("interpolation") or "bilinear"
    if interpolation not in INTERPOLATIONS:
        raise CheckpointError(f"{where}: interpolation {interpolation!r} is not one of {', '.join(INTERPOLATIONS)}.")
    crop_pct = cfg.get("crop_pct") or 1.0
    if not isinstance(crop_pct, (int, float)) or not 0 < crop_pct <= 1:
        raise CheckpointError(f"{where}: crop_pct must be in (0, 1], got {crop_pct!r}.")
    return DataConfig(in_chans, size, stats["mean"], stats["std"], interpolation, float(crop_pct))


def class_labels(where: str, id2label, num_classes: int) -> list[str] | None:
    if id2label is None:
        return None
    try:
        table = {int(k): str(v) for k, v in dict(id2label).items()}
    except (TypeError, ValueError):
        raise CheckpointError(f"{where}: id2label must map class indices to names, e.g. {{\"0\": \"cat\"}}.") from None
    outside = sorted(k for k in table if not 0 <= k < num_classes)
    if outside:
        raise CheckpointError(f"{where}: id2label names classes {outside[:5]} but the model has {num_classes} outputs.")
    return [table.get(i, str(i)) for i in range(num_classes)]


@dataclass
class Predictor:
    """A saved classifier with its class names and data config."""

    model: torch.nn.Module
    data: DataConfig
    labels: list[str] | None  # None: the saved model has no id2label; indices are shown
    source: str

    def read(self, path: str | Path) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        path = Path(path)
        if path.is_dir():
            raise InputError(f"{path} is a directory; pass image files (e.g. {path}/*.png).")
        try:
            with Image.open(path) as img:
                img = img.convert("L" if self.data.in_chans == 1 else "RGB")
        except FileNotFoundError:
            raise InputError(f"{path}: no such image file.") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InputError(f"cannot read {path} as an image ({type(exc).__name__}: {exc}); "
                             "pass PNG, JPEG or another format PIL reads.") from None
        return self.data.transform()(img)

    @torch.inference_mode()
    def probabilities(self, files: list[str | Path]) -> torch.Tensor:
        """Softmax over the classes for each file, ``(len(files), num_classes)``."""
        batch = torch.stack([self.read(f) for f in files])
        self.model.eval()
        logits = self.model(batch)
        if logits.dim() != 2 or logits.shape[0] != len(files):
            raise InputError(f"{self.source} does not give one row of class scores per image "
                             f"(output shape {tuple(logits.shape)}); zoo predict is for image classifiers.")
        return logits.float().softmax(-1)

    def predict(self, files: list[str | Path], topk: int = 5, batch_size: int = 32) -> list[dict]:
        """``[{"file", "top": [{"index", "label", "prob"}, ...]}, ...]``, most probable class first."""
        for f in files:  # a typo'd name fails before any work
            if not Path(f).exists():
                raise InputError(f"{f}: no such image file.")
        results = []
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            probs = self.probabilities(chunk)
            values, indices = probs.topk(min(topk, probs.shape[1]), dim=-1)
            for f, vs, ids in zip(chunk, values.tolist(), indices.tolist()):
                top = [{"index": i, "label": self.labels[i] if self.labels else str(i), "prob": p}
                       for p, i in zip(vs, ids)]
                results.append({"file": str(f), "top": top})
        return results


def load_predictor(pretrained: str, img_size: int | None = None, mean=None, std=None) -> Predictor:
    """A :class:`Predictor` for a ``save_pretrained`` directory (or ``hf-hub:org/name``)."""
    import zoo
    from zoo.shared.registry import get_entry
    from zoo.shared.weights import hub_folder, read_zoo_config

    spec = str(pretrained)
    directory = hub_folder(spec) if spec.startswith("hf-hub:") else Path(spec).expanduser()
    model = zoo.from_pretrained(spec)  # names a missing directory, weights or config
    saved = read_zoo_config(directory) or {}
    entry = get_entry(model.zoo_name)
    if entry.task != "image-classification":
        raise InputError(f"zoo predict reads images for image classifiers; {spec} holds {entry.name}, "
                         f"a {entry.domain} {entry.task} model.")
    where = str(directory)
    in_chans = int(model.zoo_config.get("in_chans", getattr(model, "in_chans", 3)))
    cfg = saved.get("pretrained_cfg") or getattr(model, "pretrained_cfg", None) or {}
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{where}/config.json: pretrained_cfg must be an object, got {type(cfg).__name__}.")
    data = data_config(where, cfg, in_chans, {"input_size": img_size, "mean": mean, "std": std})
    num_classes = int(model.zoo_config.get("num_classes", getattr(model, "num_classes", 0)))
    return Predictor(model, data, class_labels(f"{where}/config.json", saved.get("id2label"), num_classes), spec)
