"""Building models from the registry, with or without pretrained weights.

``zoo.create`` / ``zoo.from_pretrained`` are these functions after ``zoo`` has imported the
domain packages; recipes inside a domain call them directly (a domain never imports ``zoo``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, InvalidConfigError, PretrainedNotFoundError
from .features import FeatureExtractor
from .registry import ModelEntry, build, build_config, get_entry, split_name
from .weights import (
    find_weight_file,
    load_weights,
    read_state_dict,
    read_zoo_config,
    resolve_hf_hub,
    resolve_source,
)


def _locate(entry: ModelEntry, tag: str | None, pretrained: Any) -> tuple[Path, str | None]:
    """Turn the ``pretrained=`` argument into a weights file and its declared layout (if known)."""
    if pretrained is True:
        tag = tag or entry.default_tag
        if tag is None:
            raise PretrainedNotFoundError(
                f"{entry.name} has no registered pretrained weights; pass pretrained='/path/to/weights'."
            )
        source = entry.weights[tag]
        return resolve_source(entry.name, source), source.layout
    if isinstance(pretrained, (str, os.PathLike)):
        spec = str(pretrained)
        if spec.startswith("hf-hub:"):
            return resolve_hf_hub(spec), None
        path = Path(spec).expanduser()
        if path.is_dir():
            return find_weight_file(path), None
        if path.is_file():
            return path, None
        raise PretrainedNotFoundError(
            f"pretrained={spec!r} is neither a file, a directory nor 'hf-hub:org/name'. "
            "Pass the path of a .safetensors/.pth file or of a directory made by zoo.save_pretrained."
        )
    raise TypeError(f"pretrained must be False, True, a path or 'hf-hub:org/name', got {type(pretrained).__name__}")


def _saved_config(entry: ModelEntry, pretrained: Any) -> dict[str, Any]:
    """The config of a ``save_pretrained`` directory passed as ``pretrained=``: the model is built
    like the saved one (the user's keyword arguments still win)."""
    if not isinstance(pretrained, (str, os.PathLike)) or str(pretrained).startswith("hf-hub:"):
        return {}
    directory = Path(pretrained).expanduser()
    saved = read_zoo_config(directory) if directory.is_dir() else None
    if saved is None:
        return {}
    if saved["architecture"] != entry.name:
        raise CheckpointError(
            f"{directory} holds a {saved['architecture']!r} model, not {entry.name!r}; "
            f"use zoo.create({saved['architecture']!r}, ...) or zoo.from_pretrained({str(directory)!r})."
        )
    return dict(saved.get("config", {}))


def create(name: str, pretrained: Any = False, **kwargs: Any) -> torch.nn.Module:
    """Build a registered model; see the registry contract in docs/DESIGN.md.

    ``pretrained``: False, True (the tag's source), a file, a directory or ``hf-hub:org/name``; a
    ``save_pretrained`` directory also supplies the config the model is built with.
    ``num_classes`` / ``in_chans`` given together with pretrained weights re-initialise the
    classifier / adapt the first layer; ``model.load_report`` says what was done.
    ``features_only=True`` (with optional ``out_indices``) wraps the model in a
    :class:`shared.features.FeatureExtractor` that returns the maps of those feature stages.
    """
    # feature extraction options wrap the model; they are not part of its config
    features_only = kwargs.pop("features_only", False)
    out_indices = kwargs.pop("out_indices", None)
    _, tag = split_name(name)
    entry = get_entry(name)
    if out_indices is not None and not features_only:
        raise InvalidConfigError(f"out_indices={out_indices!r} only applies with features_only=True ({entry.name}).")
    builder = entry.builder
    if features_only and isinstance(builder, type) and not callable(getattr(builder, "forward_intermediates", None)):
        # a class builder is checked before building (and downloading); FeatureExtractor checks any model
        raise InvalidConfigError(
            f"{entry.name} does not support features_only (it has no forward_intermediates / feature_info); "
            "build it without features_only and use forward_features."
        )
    saved = _saved_config(entry, pretrained)
    config = build_config(entry, {**saved, **kwargs})
    model = build(entry, config)
    if tag is not None or pretrained is True:
        # the tag's data config (input size, mean/std, crop) travels with the model
        source = entry.weights.get(tag or entry.default_tag)
        if source is not None:
            model.pretrained_cfg = source.describe()
    if pretrained is not False and pretrained is not None:
        path, layout = _locate(entry, tag, pretrained)
        state = read_state_dict(path)
        model.load_report = load_weights(model, entry, state, requested=kwargs, layout=layout, source=str(path))
    if features_only:
        model = FeatureExtractor(model, out_indices)
    return model


def from_pretrained(path: str | os.PathLike, **overrides: Any) -> torch.nn.Module:
    """Rebuild a model saved by ``save_pretrained`` (a directory or ``hf-hub:org/name``)."""
    spec = str(path)
    if spec.startswith("hf-hub:"):
        directory = resolve_hf_hub(spec).parent  # the hub snapshot holds config.json beside the weights
    else:
        directory = Path(spec).expanduser()
        if not directory.is_dir():
            raise PretrainedNotFoundError(
                f"from_pretrained expects a directory with config.json + model.safetensors; {directory} is not one. "
                "For a bare weights file use zoo.create(name, pretrained=file)."
            )
        find_weight_file(directory)  # names a directory without weights before anything else
    config = read_zoo_config(directory)
    if config is None:
        raise PretrainedNotFoundError(
            f"{directory / 'config.json'} is missing or is not a zoo config (no 'architecture'); "
            "use zoo.create(name, pretrained=directory) to load foreign weights into a named architecture."
        )
    # a save_pretrained directory passed to create() supplies its config: the same path rebuilds it
    return create(config["architecture"], pretrained=directory, **overrides)
