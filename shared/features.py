"""Feature extraction (``zoo.create(name, features_only=True)``) and the helpers models use for it.

A model supports feature extraction when it has

* ``feature_info``: one dict per feature stage, ``{"num_chs", "reduction", "module"}``, in forward order;
* ``forward_intermediates(x, indices=None, norm=False, stop_early=False, intermediates_only=False)``:
  the maps of the selected stages as NCHW tensors (a list, in stage order), and unless
  ``intermediates_only`` also the final features, returned as ``(final, intermediates)`` like timm.

:class:`FeatureExtractor` wraps such a model; its forward returns the maps of ``out_indices`` and its
``feature_info`` describes exactly those. Its ``state_dict`` uses the wrapped model's own keys (no
``model.`` prefix), so ``zoo.save_pretrained(extractor, dir)`` writes the full underlying model (head
included) and ``zoo.from_pretrained(dir)`` gives the plain model back; ``zoo.create(name,
pretrained=dir, features_only=True)`` rebuilds the extractor.
"""

from __future__ import annotations

import operator
from typing import Any, Sequence

import torch
from torch import nn

from .errors import InvalidConfigError


def take_indices(num_stages: int, indices: int | Sequence[int] | None) -> list[int]:
    """Normalise ``indices`` to sorted non-negative stage indices out of ``num_stages``.

    ``None``: every stage; an int ``n``: the last ``n`` stages; a sequence: those stages, negative
    ones counted from the end. Anything else, an index out of range or a repeated stage is an
    InvalidConfigError that names the valid range.
    """
    valid = f"valid stage indices are 0..{num_stages - 1} (or -{num_stages}..-1)"
    if indices is None:
        return list(range(num_stages))
    if isinstance(indices, bool) or isinstance(indices, str) or not isinstance(indices, (int, Sequence)):
        raise InvalidConfigError(f"indices / out_indices must be an int n (the last n stages) or a sequence of ints, "
                         f"got {indices!r}; there are {num_stages} stages: {valid}.")
    if isinstance(indices, int):
        if not 1 <= indices <= num_stages:
            raise InvalidConfigError(f"indices / out_indices={indices} asks for the last {indices} stages, but there are "
                             f"{num_stages}: pass an int in 1..{num_stages} or a sequence ({valid}).")
        return list(range(num_stages - indices, num_stages))
    out = []
    for i in indices:
        try:
            if isinstance(i, bool):
                raise TypeError
            i = operator.index(i)
        except TypeError:
            raise InvalidConfigError(f"indices / out_indices must hold ints, got {i!r} in {indices!r}; {valid}.") from None
        if not -num_stages <= i < num_stages:
            raise InvalidConfigError(f"index {i} in indices / out_indices={list(indices)} is out of range: {valid}.")
        out.append(i % num_stages)
    if not out:
        raise InvalidConfigError(f"indices / out_indices is empty; {valid}.")
    if len(set(out)) != len(out):
        raise InvalidConfigError(f"indices / out_indices={list(indices)} names a stage more than once; {valid}.")
    return sorted(out)


class FeatureInfo(list):
    """A list of feature-stage dicts with timm-like helpers."""

    def channels(self, idx: int | None = None):
        return [f["num_chs"] for f in self] if idx is None else self[idx]["num_chs"]

    def reduction(self, idx: int | None = None):
        return [f["reduction"] for f in self] if idx is None else self[idx]["reduction"]

    def module_name(self, idx: int | None = None):
        return [f["module"] for f in self] if idx is None else self[idx]["module"]


class FeatureExtractor(nn.Module):
    """Wraps a model with ``forward_intermediates``; ``forward(x)`` returns the maps of ``out_indices``.

    ``out_indices``: None (every stage), an int n (the last n) or a sequence of stage indices
    (negative allowed); they index ``model.feature_info``. The whole model stays inside (the stages
    after the last selected one and the head are unused), so that its weights save and load as the
    model's.
    """

    def __init__(self, model: nn.Module, out_indices: int | Sequence[int] | None = None):
        super().__init__()
        name = getattr(model, "zoo_name", type(model).__name__)
        if not callable(getattr(model, "forward_intermediates", None)) or not getattr(model, "feature_info", None):
            raise InvalidConfigError(
                f"{name} does not support features_only (it has no forward_intermediates / feature_info); "
                "build it without features_only and use forward_features."
            )
        self.out_indices = tuple(take_indices(len(model.feature_info), out_indices))
        self.model = model
        self.feature_info = FeatureInfo(dict(model.feature_info[i], index=i) for i in self.out_indices)
        # state-dict keys are the model's own (see the module docstring)
        self.register_state_dict_post_hook(_drop_model_prefix)
        self.register_load_state_dict_pre_hook(_add_model_prefix)

    # what zoo.save_pretrained reads: the underlying model's registry name and config
    @property
    def zoo_name(self) -> str | None:
        return getattr(self.model, "zoo_name", None)

    @property
    def zoo_config(self) -> dict[str, Any]:
        return self.model.zoo_config

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.model.set_grad_checkpointing(enable)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(x, indices=list(self.out_indices), stop_early=True,
                                                intermediates_only=True)


def _drop_model_prefix(module, state_dict, prefix, local_metadata) -> None:
    old = prefix + "model."
    for key in list(state_dict):  # pop and re-insert every key to keep the order
        value = state_dict.pop(key)
        state_dict[prefix + key[len(old):] if key.startswith(old) else key] = value
    meta = getattr(state_dict, "_metadata", None)
    if meta is not None:
        for key in list(meta):
            if key == old[:-1] or key.startswith(old):
                meta[prefix + key[len(old):]] = meta.pop(key)


def _add_model_prefix(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors) -> None:
    for key in list(state_dict):
        if key.startswith(prefix) and not key.startswith(prefix + "model."):
            state_dict[prefix + "model." + key[len(prefix):]] = state_dict.pop(key)
