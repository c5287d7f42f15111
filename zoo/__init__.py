"""The zoo's public face: ``create``, ``list_models``, ``model_info``, ``save_pretrained``, ``from_pretrained``.

``import zoo`` is light: the domain packages (which register their models) are imported the
first time the registry is asked something, and they import only torch-level dependencies.
``dir(zoo)`` lists the API alone (``__all__``); helpers are private or imported where used.
"""

from zoo.shared import factory as _factory
from zoo.shared import registry as _registry
from zoo.shared.errors import (
    CheckpointError,
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointValuesError,
    CorruptCheckpointError,
    DatasetError,
    ForeignCheckpointError,
    InputError,
    InvalidConfigError,
    InvalidConfigFileError,
    PretrainedNotFoundError,
    UnknownModelError,
    UnsafeCheckpointError,
    WeightsIntegrityError,
    WriteError,
    ZooError,
)
from zoo.shared.registry import ModelInfo, TestSpec, WeightSource, register_model
from zoo.shared.weights import LoadReport, save_pretrained

__version__ = "0.1.0"

DOMAINS = ("vision", "nlp", "audio", "rl", "graph", "generative")
_loaded = False


def _load_domains() -> None:
    global _loaded
    if not _loaded:
        import importlib

        for domain in DOMAINS:
            importlib.import_module(f"zoo.{domain}")
        _loaded = True


def _natural_key(name: str) -> list:
    """``resnet18`` before ``resnet101``: digit runs compare as numbers."""
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def create(name: str, pretrained=False, **kwargs):
    """Build a registered model, e.g. ``zoo.create("resnet50", pretrained="tv.pth", num_classes=10)``."""
    _load_domains()
    return _factory.create(name, pretrained=pretrained, **kwargs)


def from_pretrained(path, **overrides):
    """Rebuild a model written by :func:`save_pretrained` (directory or ``hf-hub:org/name``), or the
    int8 model written by ``zoo quantize`` (its ``config.json`` records the quantization)."""
    _load_domains()
    import os

    if isinstance(path, (str, os.PathLike)) and not str(path).startswith("hf-hub:"):
        from zoo.deploy.quantize import is_quantized_dir, load_quantized

        if is_quantized_dir(path):
            if overrides:
                raise InvalidConfigError(f"{path} holds a quantized model, rebuilt as it was quantized; "
                                         f"options ({', '.join(overrides)}) cannot change it")
            return load_quantized(path)
    return _factory.from_pretrained(path, **overrides)


def list_models(pattern: str | None = None, domain: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered model names matching a shell wildcard, e.g. ``list_models("resnet*")``, in natural
    order (``resnet18`` before ``resnet101``). ``domain`` is one of :data:`DOMAINS`, any case."""
    _load_domains()
    if domain is not None:
        domain = str(domain).lower()
        if domain not in DOMAINS:
            raise ZooError(f"Unknown domain {domain!r}; the domains are: {', '.join(DOMAINS)}.")
    return sorted(_registry.list_models(pattern, domain=domain, pretrained=pretrained), key=_natural_key)


def model_info(name: str) -> ModelInfo:
    """Domain, task, paper, default config, parameter count, inputs and weight sources of a model;
    ``print(zoo.model_info("resnet18"))`` shows them as a card."""
    from ._card import ModelCard

    _load_domains()
    return ModelCard.of(_registry.model_info(name))


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])


__all__ = [
    "create", "from_pretrained", "list_models", "model_info", "register_model", "save_pretrained", "DOMAINS",
    "ModelInfo", "WeightSource", "TestSpec", "LoadReport",
    # every error the zoo raises on purpose is a ZooError; these name the kind
    "ZooError", "UnknownModelError", "InvalidConfigError", "InvalidConfigFileError", "InputError", "DatasetError",
    "PretrainedNotFoundError", "CheckpointError", "CheckpointMismatchError", "UnsafeCheckpointError",
    "WeightsIntegrityError", "CheckpointValuesError", "CorruptCheckpointError", "ForeignCheckpointError",
    "CheckpointFormatError", "WriteError",
]
