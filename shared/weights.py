"""Weights I/O: read checkpoints safely, find pretrained sources, load strictly with a report.

Reading: ``.safetensors`` first; ``.pt/.pth/.bin/.ckpt`` only through
``torch.load(weights_only=True)``, so a pickle that needs code to load is refused and runs nothing.

Loading: a foreign layout goes through the architecture's key map, then the state dict must
match the model exactly. The only tolerated differences are the ones the user asked for —
``num_classes=`` (classifier dropped and re-initialised), ``in_chans=`` (first conv adapted) and
any option an architecture registers an adapter for (ViT's ``img_size``: position embedding
resampled) — and each is recorded in the returned :class:`LoadReport`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from .atomic import atomic_open
from .errors import (
    CheckpointError,
    CheckpointMismatchError,
    PretrainedNotFoundError,
    UnsafeCheckpointError,
)
from .registry import ModelEntry, WeightSource

logger = logging.getLogger("zoo")

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WEIGHT_FILENAMES = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt")
CONFIG_FILENAME = "config.json"
# Containers people wrap a state dict in: {"state_dict": ...}, {"model": ...}, ...
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "ema_state_dict")


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to tensors); got {type(obj).__name__}.")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{path} is not a plain state dict: entries {bad[:5]} are not tensors. "
            "Save `model.state_dict()` (or use zoo.save_pretrained)."
        )
    state = dict(obj)
    if all(k.startswith("module.") for k in state):  # saved from a DDP-wrapped model
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a ``{name: tensor}`` dict on the CPU, refusing unsafe pickles."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedNotFoundError(f"Checkpoint file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own SafetensorError / OSError
            raise CheckpointError(
                f"Could not read {path} as safetensors ({exc}). The file is truncated or corrupted: "
                "download or save it again."
            ) from None
    if suffix in PICKLE_SUFFIXES:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "weights only" in str(exc).lower() or "weights_only" in str(exc).lower():
                raise UnsafeCheckpointError(
                    f"Refused to load {path}: it contains pickled Python objects that would run code "
                    "when loaded, and the zoo only loads tensors (torch.load(weights_only=True)). "
                    "Nothing in the file was executed. If you trust it, re-save just its state dict "
                    "(torch.save(model.state_dict(), ...)) or convert it to .safetensors."
                ) from None
            raise CheckpointError(f"Could not unpickle {path} ({exc}); the file is corrupted.") from None
        except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
            raise CheckpointError(
                f"Could not read {path} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
                "The file is truncated or corrupted: download or save it again."
            ) from None
        return _unwrap(obj, path)
    raise CheckpointError(
        f"Unsupported checkpoint extension {suffix!r} for {path}; use .safetensors, or .pt/.pth/.bin."
    )


def find_weight_file(directory: Path) -> Path:
    for name in WEIGHT_FILENAMES:
        if (directory / name).is_file():
            return directory / name
    candidates = sorted(
        p for p in directory.iterdir() if p.suffix.lower() in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
    )
    if len(candidates) == 1:
        return candidates[0]
    raise PretrainedNotFoundError(
        f"No weights in {directory}: expected one of {', '.join(WEIGHT_FILENAMES)}"
        + (f" (found several candidates: {[p.name for p in candidates]}; pass the file itself)" if candidates else "")
        + "."
    )


# ---------------------------------------------------------------------------------------------
# Finding pretrained sources
# ---------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where the zoo keeps downloaded weights: ``$ZOO_CACHE`` or ``~/.cache/zoo``."""
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo"))


def is_offline() -> bool:
    truthy = {"1", "true", "yes", "on"}
    return any(os.environ.get(v, "").lower() in truthy for v in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"))


def _hf_download(repo_id: str, filenames: tuple[str, ...], local_only: bool) -> tuple[Path | None, list[str]]:
    """Try each filename in a hub repo; return the first that resolves and what was tried."""
    from huggingface_hub import constants, hf_hub_download

    tried = []
    for filename in filenames:
        try:
            return Path(hf_hub_download(repo_id, filename, local_files_only=local_only)), tried
        except Exception as exc:  # offline, missing entry, missing repo, HTTP error
            where = "hub cache " + str(constants.HF_HUB_CACHE) if local_only else "hub"
            tried.append(f"{where}: {repo_id}/{filename} ({type(exc).__name__})")
    return None, tried


def resolve_hf_hub(spec: str) -> Path:
    """``hf-hub:org/name`` -> a local weights file, through huggingface_hub and its cache."""
    repo_id = spec[len("hf-hub:"):].strip("/")
    if repo_id.count("/") < 1:
        raise PretrainedNotFoundError(f"Malformed hub id {spec!r}; expected 'hf-hub:org/name'.")
    path, tried = _hf_download(repo_id, ("model.safetensors", "pytorch_model.bin"), local_only=is_offline())
    if path is None:
        raise PretrainedNotFoundError(
            f"Could not get weights for {spec!r}" + (" (offline: HF_HUB_OFFLINE/ZOO_OFFLINE set)" if is_offline() else "")
            + ". Looked in:\n  " + "\n  ".join(tried)
            + "\nDownload model.safetensors on a machine with access and pass pretrained='/path/to/model.safetensors'."
        )
    return path


def resolve_source(arch: str, source: WeightSource) -> Path:
    """``pretrained=True``: our cache, then the hub cache, then the torch hub cache, then the URL."""
    tried: list[str] = []
    filename = source.cache_filename
    if filename:
        ours = cache_dir() / arch / filename
        if ours.is_file():
            return ours
        tried.append(f"zoo cache: {ours} (absent)")
    if source.hf_hub_id:
        names = (source.hf_filename,) if source.hf_filename else ("model.safetensors", "pytorch_model.bin")
        path, hub_tried = _hf_download(source.hf_hub_id, names, local_only=True)
        if path is not None:
            return path
        tried += hub_tried
    if filename:
        hub = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if hub.is_file():
            return hub
        tried.append(f"torch hub cache: {hub} (absent)")
    if source.hf_hub_id and not is_offline():
        path, hub_tried = _hf_download(source.hf_hub_id, names, local_only=False)
        if path is not None:
            return path
        tried += hub_tried
    if source.url:
        if is_offline():
            tried.append(f"url: {source.url} (not tried: offline, ZOO_OFFLINE/HF_HUB_OFFLINE set)")
        else:
            target = cache_dir() / arch / filename
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                # downloads to a temporary file and renames it, so a failed download leaves nothing
                torch.hub.download_url_to_file(source.url, str(target), progress=True)
                return target
            except Exception as exc:
                tried.append(f"url: {source.url} ({type(exc).__name__}: {exc})")
    local_hint = filename or "the checkpoint"
    raise PretrainedNotFoundError(
        f"No weights found for {arch}.{source.tag}. Looked in:\n  " + "\n  ".join(tried)
        + f"\nDownload {source.url or source.hf_hub_id} elsewhere and either put it at "
        f"{cache_dir() / arch / (filename or '')} or pass pretrained='/path/to/{local_hint}'."
    )


# ---------------------------------------------------------------------------------------------
# Strict loading with the asked-for adaptations
# ---------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    source: str
    layout: str
    reinitialized: list[str] = field(default_factory=list)  # keys left at their fresh init
    adapted: list[str] = field(default_factory=list)  # keys transformed to fit (in_chans)
    notes: list[str] = field(default_factory=list)


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Fit a first-layer weight ``(out, c, ...)`` to ``in_chans`` inputs.

    One channel: sum over the pretrained channels (a grey image is the sum of equal RGB planes).
    Otherwise: repeat the channels cyclically and scale by ``c / in_chans`` so activations keep
    their magnitude.
    """
    c = weight.shape[1]
    if in_chans == c:
        return weight
    dtype = weight.dtype
    w = weight.float()
    if in_chans == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        reps = math.ceil(in_chans / c)
        w = w.repeat(1, reps, *([1] * (w.dim() - 2)))[:, :in_chans] * (c / in_chans)
    return w.to(dtype)


def _is_classifier_key(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _map_layout(entry: ModelEntry, state: dict, model_keys: set[str], layout: str | None) -> tuple[dict, str]:
    """Apply the key map for ``layout``; with no declared layout, pick the map that fits best."""
    if layout and layout in entry.key_maps:
        return entry.key_maps[layout](state), layout
    if layout is not None or set(state) == model_keys or not entry.key_maps:
        return state, layout or "zoo"
    best, best_layout = state, "zoo"
    best_hits = len(set(state) & model_keys)
    for name, fn in entry.key_maps.items():
        try:
            mapped = fn(state)
        except Exception:
            continue
        hits = len(set(mapped) & model_keys)
        if hits > best_hits:
            best, best_layout, best_hits = mapped, name, hits
    return best, best_layout


def load_weights(
    model: torch.nn.Module,
    entry: ModelEntry,
    state: dict[str, torch.Tensor],
    *,
    requested: Mapping[str, Any],
    layout: str | None = None,
    source: str = "<state dict>",
) -> LoadReport:
    """Load ``state`` into ``model`` strictly, after key mapping and the asked-for adaptations."""
    own = model.state_dict()
    state, layout = _map_layout(entry, dict(state), set(own), layout)
    report = LoadReport(source=source, layout=layout)

    if "num_classes" in requested and entry.classifier:
        head = [k for k in own if _is_classifier_key(k, entry.classifier)]
        if any(k in state and state[k].shape != own[k].shape for k in head):
            for k in head:
                state.pop(k, None)
            report.reinitialized += head
            report.notes.append(
                f"classifier {'/'.join(entry.classifier)} re-initialised for num_classes={requested['num_classes']}"
            )
    if "in_chans" in requested and entry.first_conv and entry.first_conv in state:
        key = entry.first_conv
        if key in own and state[key].dim() == own[key].dim() and state[key].shape[1] != own[key].shape[1]:
            old = state[key].shape[1]
            state[key] = adapt_input_conv(state[key], own[key].shape[1])
            report.adapted.append(key)
            report.notes.append(f"{key} adapted from {old} to {own[key].shape[1]} input channels")

    for option, adapt in entry.adapters.items():
        if option in requested:
            before = {k: tuple(v.shape) for k, v in state.items()}
            state, note = adapt(state, model)
            report.adapted += [k for k, v in state.items() if k in before and tuple(v.shape) != before[k]]
            if note:
                report.notes.append(note)

    missing = sorted(k for k in own if k not in state and k not in report.reinitialized)
    unexpected = sorted(k for k in state if k not in own)
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    mismatched = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong)
    if missing or unexpected or mismatched:
        lines = [f"Checkpoint {source} (layout {layout!r}) does not match {entry.name}:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if items:
                shown = items[:20] + ([f"... and {len(items) - 20} more"] if len(items) > 20 else [])
                lines.append(f"  {title} ({len(items)}): " + ", ".join(shown))
        conv = entry.first_conv
        head = [k for k in wrong if _is_classifier_key(k, entry.classifier)]
        body = [k for k in wrong if k not in head and k != conv]
        hints = []
        if not (missing or unexpected or body):  # only the ends differ: the asked-for adaptations fit
            if head:
                hints.append("pass num_classes=<N> to re-initialise the classifier")
            if conv in wrong and (state[conv].shape[:1] + state[conv].shape[2:]
                                  == own[conv].shape[:1] + own[conv].shape[2:]):
                hints.append("pass in_chans=<C> to adapt the first layer")
        if not hints:
            hints.append("check that the checkpoint belongs to this architecture and config")
        lines.append("Fix: " + "; ".join(hints) + ".")
        raise CheckpointMismatchError("\n".join(lines), missing, unexpected, mismatched)

    for k in report.reinitialized:
        state[k] = own[k]
    model.load_state_dict(state, strict=True)
    for note in report.notes:
        logger.warning("%s: %s", entry.name, note)
    return report


# ---------------------------------------------------------------------------------------------
# Our own format: config.json + model.safetensors
# ---------------------------------------------------------------------------------------------


def save_pretrained(model: torch.nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``config.json`` + ``model.safetensors`` for a model built by ``zoo.create``."""
    from safetensors.torch import save as safetensors_bytes

    name = getattr(model, "zoo_name", None)
    if name is None:
        raise ValueError(
            "save_pretrained needs a model built by zoo.create / zoo.from_pretrained "
            "(it records the registry name and config); this one has no `zoo_name`."
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors, seen = {}, set()
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        ptr = (value.untyped_storage().data_ptr(), value.storage_offset()) if value.numel() else None
        if ptr in seen:  # tied weights: safetensors refuses shared storage
            value = value.clone()
        seen.add(ptr)
        tensors[key] = value.contiguous()
    config = {"architecture": name, "config": model.zoo_config, "format": "zoo", "version": 1}
    with atomic_open(directory / "model.safetensors") as fh:
        fh.write(safetensors_bytes(tensors, metadata={"format": "pt"}))
    with atomic_open(directory / CONFIG_FILENAME) as fh:
        fh.write((json.dumps(config, indent=2) + "\n").encode())
    return directory


def read_zoo_config(directory: Path) -> dict[str, Any] | None:
    path = directory / CONFIG_FILENAME
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(config, dict) or "architecture" not in config:
        return None  # a foreign (e.g. Hugging Face) config: weights only
    if not isinstance(config.get("config", {}), dict):
        raise CheckpointError(f"{path}: 'config' must be an object of keyword arguments.")
    return config
