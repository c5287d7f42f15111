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
    LoadReport,
    check_pretrained_arg,
    find_weight_file,
    load_weights,
    read_state_dict,
    read_zoo_config,
    hub_folder,
    resolve_hf_hub,
    resolve_source,
)

# What a save_pretrained directory records beside the config, for using the model (zoo predict):
# class names and the data config (input size, mean/std, the dataset). The recipes set them.
USAGE_FIELDS = ("id2label", "pretrained_cfg")


def _tag_in_pretrained(entry: ModelEntry, tag: str | None, pretrained: Any) -> tuple[str | None, Any]:
    """``pretrained="tv_in1k"``, a tag of the model, means ``create("resnet18.tv_in1k", pretrained=True)``.
    A bare word that is a registered tag is the tag, even if a file of that name exists in the
    current directory (write ``./tv_in1k`` for the file): the meaning does not depend on where one runs."""
    if not isinstance(pretrained, str):
        return tag, pretrained
    word = pretrained.strip().lower()
    if word not in entry.weights:
        return tag, pretrained
    if tag is not None and tag != word:
        raise InvalidConfigError(
            f"{entry.name}.{tag} with pretrained={pretrained!r} names two tags; pass one: "
            f"create({entry.name + '.' + word!r}, pretrained=True) or create({entry.name + '.' + tag!r}, pretrained=True)."
        )
    return word, True


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
        tags = ", ".join(entry.weights) or "none registered"
        raise PretrainedNotFoundError(
            f"pretrained={spec!r} is neither a file, a directory, 'hf-hub:org/name' nor a tag of {entry.name} "
            f"(its tags: {tags}). Pass the path of a .safetensors/.pth file or of a directory made by "
            "zoo.save_pretrained, or a tag."
        )
    raise InvalidConfigError(
        f"pretrained must be False, True, a tag, a path or 'hf-hub:org/name', got {type(pretrained).__name__}")


def _saved_config(entry: ModelEntry, pretrained: Any) -> dict[str, Any]:
    """The ``config.json`` of a ``save_pretrained`` directory passed as ``pretrained=`` (or what the
    entry's ``foreign_config`` reads from another library's folder or hub repo; {} for anything
    else): the model is built like the saved one (the user's keyword arguments still win)."""
    if not isinstance(pretrained, (str, os.PathLike)):
        return {}
    if str(pretrained).startswith("hf-hub:"):
        foreign = entry.foreign_config(str(pretrained)) if entry.foreign_config else None
        return {"config": foreign} if foreign else {}
    directory = Path(pretrained).expanduser()
    saved = read_zoo_config(directory) if directory.is_dir() else None
    if saved is None:  # another library's folder or file (an SB3 zip) may describe the model
        foreign = entry.foreign_config(directory) if entry.foreign_config and directory.exists() else None
        return {"config": foreign} if foreign else {}
    if isinstance(saved.get("quantization"), dict):  # packed int8 weights: zoo.from_pretrained rebuilds them
        raise CheckpointError(
            f"{directory} holds an int8-quantized {saved['architecture']!r} (written by zoo quantize); "
            f"load it with zoo.from_pretrained({str(directory)!r}).")
    if saved["architecture"] != entry.name:
        raise CheckpointError(
            f"{directory} holds a {saved['architecture']!r} model, not {entry.name!r}; "
            f"use zoo.create({saved['architecture']!r}, ...) or zoo.from_pretrained({str(directory)!r})."
        )
    return saved


def _usage_fields(saved: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The saved class names and data config that still describe the model built with ``config``:
    not the class names once ``num_classes`` changed, not the data config once the input did."""
    kept = {k: saved[k] for k in USAGE_FIELDS if isinstance(saved.get(k), dict)}
    before = saved.get("config", {})
    if config.get("num_classes") != before.get("num_classes"):
        kept.pop("id2label", None)
    if any(config.get(k) != before.get(k) for k in ("in_chans", "img_size")):
        kept.pop("pretrained_cfg", None)
    return kept


def create(name: str, pretrained: Any = False, **kwargs: Any) -> torch.nn.Module:
    """Build a registered model; see the registry contract in docs/DESIGN.md.

    ``pretrained``: False, True (the tag's source), a tag (``"tv_in1k"``: that tag's source), a
    file, a directory or ``hf-hub:org/name``; a ``save_pretrained`` directory also supplies the
    config the model is built with, its class names (``model.id2label``) and data config
    (``model.pretrained_cfg``). ``allow_nonfinite=True`` loads weights holding NaN/Inf.
    ``num_classes`` / ``in_chans`` given together with pretrained weights re-initialise the
    classifier / adapt the first layer; ``model.load_report`` says what was done.
    ``features_only=True`` (with optional ``out_indices``) wraps the model in a
    :class:`zoo.shared.features.FeatureExtractor` that returns the maps of those feature stages.
    """
    # feature extraction and loading options; they are not part of the model's config
    features_only = kwargs.pop("features_only", False)
    out_indices = kwargs.pop("out_indices", None)
    allow_nonfinite = kwargs.pop("allow_nonfinite", False)
    _, tag = split_name(name)
    entry = get_entry(name)
    for option, value in (("features_only", features_only), ("allow_nonfinite", allow_nonfinite)):
        if not isinstance(value, bool):
            raise InvalidConfigError(f"{option} must be True or False, got {value!r} ({type(value).__name__}).")
    check_pretrained_arg(pretrained)
    tag, pretrained = _tag_in_pretrained(entry, tag, pretrained)
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
    config = build_config(entry, {**saved.get("config", {}), **kwargs})
    model = build(entry, config)
    if tag is not None or pretrained is True:
        # the tag's data config (input size, mean/std, crop) travels with the model
        source = entry.weights.get(tag or entry.default_tag)
        if source is not None:
            model.pretrained_cfg = source.describe()
    for key, value in _usage_fields(saved, config).items():  # a saved model keeps its class names
        setattr(model, key, value)
    # every created model has a report; empty (no source, nothing loaded) for a random init
    model.load_report = LoadReport(source="", layout="")
    if pretrained is not False and pretrained is not None:
        path, layout = _locate(entry, tag, pretrained)
        state = read_state_dict(path)
        model.load_report = load_weights(model, entry, state, requested=kwargs, layout=layout, source=str(path),
                                         allow_nonfinite=allow_nonfinite)
    if features_only:
        inner = model
        model = FeatureExtractor(inner, out_indices)
        for key in ("load_report", *USAGE_FIELDS):
            if hasattr(inner, key):
                setattr(model, key, getattr(inner, key))
    return model


def from_pretrained(path: str | os.PathLike, **overrides: Any) -> torch.nn.Module:
    """Rebuild a model saved by ``save_pretrained`` (a directory or ``hf-hub:org/name``)."""
    spec = str(path)
    if spec.startswith("hf-hub:"):
        directory = hub_folder(spec)  # the hub snapshot: config.json beside the weights
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
