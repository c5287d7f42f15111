"""The zoo's public face: ``create``, ``list_models``, ``model_info``, ``save_pretrained``, ``from_pretrained``.

``import zoo`` is light: the domain packages (which register their models) are imported the
first time the registry is asked something, and they import only torch-level dependencies.
"""

from __future__ import annotations

import importlib
from typing import Any

from shared import factory as _factory
from shared import registry as _registry
from shared.errors import (
    CheckpointError,
    CheckpointMismatchError,
    InputError,
    InvalidConfigError,
    PretrainedNotFoundError,
    UnknownModelError,
    UnsafeCheckpointError,
    ZooError,
)
from shared.registry import ModelInfo, TestSpec, WeightSource, register_model
from shared.weights import LoadReport, save_pretrained

__version__ = "0.1.0"

DOMAINS = ("vision", "nlp", "audio", "rl", "graph", "generative")
_loaded = False


def _load_domains() -> None:
    global _loaded
    if not _loaded:
        for domain in DOMAINS:
            importlib.import_module(domain)
        _loaded = True


def create(name: str, pretrained: Any = False, **kwargs: Any):
    """Build a registered model, e.g. ``zoo.create("resnet50", pretrained="tv.pth", num_classes=10)``."""
    _load_domains()
    return _factory.create(name, pretrained=pretrained, **kwargs)


def from_pretrained(path, **overrides: Any):
    """Rebuild a model written by :func:`save_pretrained` (directory or ``hf-hub:org/name``)."""
    _load_domains()
    return _factory.from_pretrained(path, **overrides)


def list_models(pattern: str | None = None, domain: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered model names matching a shell wildcard, e.g. ``list_models("resnet*")``."""
    _load_domains()
    return _registry.list_models(pattern, domain=domain, pretrained=pretrained)


def model_info(name: str) -> ModelInfo:
    """Domain, task, paper, default config, parameter count, inputs and weight sources of a model."""
    _load_domains()
    return _registry.model_info(name)


__all__ = [
    "create", "from_pretrained", "list_models", "model_info", "register_model", "save_pretrained",
    "ModelInfo", "WeightSource", "TestSpec", "LoadReport", "ZooError", "UnknownModelError",
    "InvalidConfigError", "InputError", "CheckpointError", "CheckpointMismatchError",
    "UnsafeCheckpointError", "PretrainedNotFoundError",
]
