"""Weights I/O: read checkpoints safely, find pretrained sources, load strictly with a report.

Reading: ``.safetensors`` first; ``.pt/.pth/.bin/.ckpt`` only through
``torch.load(weights_only=True)``, so a pickle that needs code to load is refused and runs nothing.
A state dict is dug out of the training checkpoints people save (``{"state_dict": ...}``,
``{"model": ...}``, Lightning's, our Trainer's ``last.pt`` / ``best.pt``), and the prefix a wrapper
put on every key (DDP and EMA wrappers' ``module.``, ``torch.compile``'s ``_orig_mod.``, a
LightningModule's attribute name) is removed when that makes the keys fit the model.

Finding: ``pretrained=True`` looks in ``$ZOO_CACHE``, the Hugging Face cache and the torch hub
cache, then downloads; every file found or fetched is checked against its source's sha256.

Loading: a foreign layout goes through the architecture's key map, then the state dict must
match the model exactly. The only tolerated differences are the ones the user asked for —
``num_classes=`` (classifier dropped and re-initialised), ``in_chans=`` (first conv adapted) and
any option an architecture registers an adapter for (ViT's ``img_size``: position embedding
resampled) — and each is recorded in the returned :class:`LoadReport`, with what was unwrapped.
Weights holding NaN/Inf, or integers where the model has floats, are refused unless asked for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import re
import socket
import urllib.request
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import torch

from .atomic import atomic_open
from .errors import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointValuesError,
    InvalidConfigError,
    InvalidConfigFileError,
    PretrainedNotFoundError,
    UnsafeCheckpointError,
    WeightsIntegrityError,
)
from .registry import ModelEntry, WeightSource

logger = logging.getLogger("zoo")

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WEIGHT_FILENAMES = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt")
HUB_WEIGHT_FILENAMES = ("model.safetensors", "pytorch_model.bin")
CONFIG_FILENAME = "config.json"
# Entries a training checkpoint keeps the weights under, in the order they are tried:
# {"state_dict": ...} (plain, Lightning, timm's train script), {"model_state_dict": ...} (the
# PyTorch tutorials), {"model": ...} (our Trainer), {"module": ...} (DeepSpeed), {"ema_state_dict": ...}.
_ENTRY_KEYS = ("state_dict", "model_state_dict", "model", "module", "ema_state_dict")
# Seconds a connect or a read may take. Without a network the OS retries a TCP connect for minutes
# and huggingface_hub retries on top of that; a user waiting for an error should get it in seconds.
NETWORK_TIMEOUT_S = 10.0


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


class CheckpointState(dict):
    """The ``{name: tensor}`` dict read from a file; ``unwrapped`` says which container entry it
    came from and what was set aside, for the load report."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], unwrapped: list[str] | None = None):
        super().__init__(tensors)
        self.unwrapped = list(unwrapped or [])


def _is_extra_state(key: str) -> bool:
    # a module's get_extra_state() is saved under this name and may be any object (our ModelEMA
    # keeps its update count there); it is not a weight
    return key == "_extra_state" or key.endswith("._extra_state")


def _is_state_dict(obj: Any) -> bool:
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        return False
    tensors = [v for k, v in obj.items() if isinstance(v, torch.Tensor)]
    return bool(tensors) and all(isinstance(v, torch.Tensor) or _is_extra_state(k) for k, v in obj.items())


def _container_kind(obj: Mapping) -> str:
    """What saved this checkpoint, as far as its keys tell: named in the load report."""
    keys = set(obj)
    if "pytorch-lightning_version" in keys:
        return "Lightning checkpoint"
    if {"format", "optimizer", "rng"} <= keys:
        return "zoo Trainer checkpoint (last.pt)"
    if {"model", "monitor", "value"} <= keys:
        return "zoo best-model checkpoint (best.pt)"
    return "checkpoint"


def _find_state_dict(obj: Any, depth: int = 0) -> tuple[Mapping, list[str]] | None:
    """The state dict inside a training checkpoint and the entries followed to reach it.

    A training checkpoint also holds optimizer state, step counts and configs: the weights are
    the first entry of ``_ENTRY_KEYS`` that leads to a mapping of names to tensors."""
    if _is_state_dict(obj):
        return obj, []
    if depth == 3 or not isinstance(obj, Mapping):
        return None
    for key in _ENTRY_KEYS:
        found = _find_state_dict(obj.get(key), depth + 1)
        if found is not None:
            return found[0], [f"{_container_kind(obj)}: its {key!r} entry"] + found[1]
    return None


def _unwrap(obj: Any, path: Path) -> CheckpointState:
    found = _find_state_dict(obj)
    if found is None:
        if isinstance(obj, Mapping) and any(isinstance(v, torch.Tensor) for v in obj.values()):
            bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
            raise CheckpointError(
                f"{path} is not a plain state dict: entries {bad[:5]} are not tensors. "
                "Save `model.state_dict()` (or use zoo.save_pretrained)."
            )
        what = f"a mapping with keys {list(obj)[:8]}" if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{path} does not hold a state dict (a mapping of names to tensors), nor a training checkpoint "
            f"with one under {', '.join(map(repr, _ENTRY_KEYS))}; got {what}."
        )
    state, notes = found
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    extra = [k for k in state if k not in tensors]
    if extra:
        notes.append(f"set aside non-tensor entries {extra}")
    return CheckpointState(tensors, notes)


def read_state_dict(path: str | os.PathLike) -> CheckpointState:
    """Read a checkpoint file into a ``{name: tensor}`` dict on the CPU, refusing unsafe pickles.

    Key prefixes are left alone here: whether ``module.`` is a wrapper's or the model's own
    depends on the model, so :func:`load_weights` decides."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedNotFoundError(f"Checkpoint file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        try:
            return CheckpointState(load_file(str(path), device="cpu"))
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
    if suffix == ".zip":
        return _read_policy_zip(path)
    raise CheckpointError(
        f"Unsupported checkpoint extension {suffix!r} for {path}; use .safetensors, .pt/.pth/.bin, or a "
        "Stable-Baselines3 .zip."
    )


def _read_policy_zip(path: Path) -> CheckpointState:
    """The ``policy.pth`` tensors of a Stable-Baselines3 ``model.save()`` zip, read with
    ``weights_only=True``; the zip's other (pickled) entries are never unpickled."""
    import io

    try:
        with zipfile.ZipFile(path) as archive:
            if "policy.pth" not in archive.namelist():
                raise CheckpointError(
                    f"{path} is a zip without policy.pth: not a Stable-Baselines3 save, or one truncated or "
                    f"corrupted (it reads as {', '.join(archive.namelist()[:6]) or 'nothing'}); pass a "
                    ".safetensors/.pt file or a complete SB3 zip.")
            raw = archive.read("policy.pth")
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"Could not read {path} as a Stable-Baselines3 zip ({type(exc).__name__}); the file "
                              "is truncated or corrupted: save it again.") from None
    except pickle.UnpicklingError:
        raise UnsafeCheckpointError(f"Refused to load {path}: its policy.pth holds pickled Python objects, and the zoo "
                                    "only loads tensors (torch.load(weights_only=True)). Nothing was executed.") from None
    return _unwrap(obj, path)


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


def check_pretrained_arg(pretrained: Any) -> None:
    """Refuse a ``pretrained=`` value that is none of False/None, True, a path or ``hf-hub:org/name``.

    An empty string would otherwise become ``Path("")``, the current directory, and 0, 1.0 or []
    would fail later with a message about something else."""
    if pretrained is None or isinstance(pretrained, bool):
        return
    if isinstance(pretrained, (str, os.PathLike)):
        text = os.fsdecode(os.fspath(pretrained))
        if not text.strip():
            raise InvalidConfigError(
                f"pretrained={pretrained!r} is empty. Pass False (random init), True (the registered "
                "weights), the path of a weights file or directory, or 'hf-hub:org/name'."
            )
        return
    raise InvalidConfigError(
        f"pretrained={pretrained!r} ({type(pretrained).__name__}) is not a valid value. Pass False (random "
        "init), True (the registered weights), the path of a weights file or directory, or 'hf-hub:org/name'."
    )


def cache_dir() -> Path:
    """Where the zoo keeps downloaded weights: ``$ZOO_CACHE`` or ``~/.cache/zoo``."""
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo"))


def zoo_cache_paths(arch: str, source: WeightSource) -> list[Path]:
    """The files in ``$ZOO_CACHE`` that ``pretrained=True`` accepts for ``source``, in order.

    A URL's file name is unique (torchvision's carry a hash), so it sits under the architecture;
    hub files share names (``model.safetensors``) across tags, so those sit under the tag."""
    if source.filename or source.url:
        return [cache_dir() / arch / source.cache_filename]
    names = (source.hf_filename,) if source.hf_filename else HUB_WEIGHT_FILENAMES
    return [cache_dir() / arch / source.tag / name for name in names]


def is_offline() -> bool:
    truthy = {"1", "true", "yes", "on"}
    return any(os.environ.get(v, "").lower() in truthy for v in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _integrity_error(what: str, digest: str, expected: str, name: str, source: WeightSource,
                     downloaded: bool = False) -> WeightsIntegrityError:
    whole = "is" if len(expected) == 64 else "starts with"
    origin = source.url or (f"https://huggingface.co/{source.hf_hub_id}" if source.hf_hub_id else "its source")
    local = f"pass pretrained='/path/to/{source.cache_filename or 'file'}'"
    fix = (f"Nothing was saved. The server sent another file: try again later, or download {origin} "
           f"yourself and {local}." if downloaded else
           f"The file is corrupted, truncated or was replaced. Delete it and run again online to "
           f"download it afresh, or download {origin} yourself and {local}.")
    return WeightsIntegrityError(
        f"{what} is not the published checkpoint of {name}: its sha256 is {digest}, the registered one "
        f"{whole} {expected}. {fix}"
    )


def _verified(path: Path, name: str, source: WeightSource) -> Path:
    """``path`` if its sha256 matches the source's; a cache can hold a partial, corrupted or
    substituted file under the expected name, and loading it must not look like success.
    Hashing reads the file once more (about a second per GB), little next to deserialising it."""
    expected = source.expected_sha256
    if expected:
        digest = sha256_file(path)
        if not digest.startswith(expected):
            raise _integrity_error(str(path), digest, expected, name, source)
    return path


def _unreachable(url: str) -> str | None:
    """Why ``url``'s host (or the proxy for it) cannot be reached within the timeout; None if it can.

    huggingface_hub retries an unreachable host with back-off for minutes before it gives up; one
    short probe lets an offline machine get the "where we looked" error in seconds."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=NETWORK_TIMEOUT_S).close()
    except OSError as exc:
        return f"{parts.hostname}:{port} unreachable ({type(exc).__name__}: {exc})"
    return None


def _hf_download(repo_id: str, filenames: tuple[str, ...], local_only: bool) -> tuple[Path | None, list[str]]:
    """Try each filename in a hub repo; return the first that resolves and what was tried."""
    from huggingface_hub import constants, hf_hub_download

    tried = []
    if not local_only:
        why = _unreachable(constants.ENDPOINT)
        if why:  # no network: the hub cache is all there is
            tried.append(f"hub: {constants.ENDPOINT}/{repo_id} (not tried: {why})")
            local_only = True
    for filename in filenames:
        try:
            path = hf_hub_download(repo_id, filename, local_files_only=local_only, etag_timeout=NETWORK_TIMEOUT_S)
            return Path(path), tried
        except Exception as exc:  # offline, missing entry, missing repo, HTTP error
            where = "hub cache " + str(constants.HF_HUB_CACHE) if local_only else "hub"
            tried.append(f"{where}: {repo_id}/{filename} ({type(exc).__name__})")
    return None, tried


def resolve_hf_hub(spec: str) -> Path:
    """``hf-hub:org/name`` -> a local weights file, through huggingface_hub and its cache."""
    repo_id = spec[len("hf-hub:"):].strip("/")
    if repo_id.count("/") < 1:
        raise PretrainedNotFoundError(f"Malformed hub id {spec!r}; expected 'hf-hub:org/name'.")
    path, tried = _hf_download(repo_id, HUB_WEIGHT_FILENAMES, local_only=is_offline())
    if path is None:
        raise PretrainedNotFoundError(
            f"Could not get weights for {spec!r}" + (" (offline: HF_HUB_OFFLINE/ZOO_OFFLINE set)" if is_offline() else "")
            + ". Looked in:\n  " + "\n  ".join(tried)
            + "\nDownload model.safetensors on a machine with access and pass pretrained='/path/to/model.safetensors'."
        )
    return path


def hub_folder(spec: str) -> Path:
    """``hf-hub:org/name`` -> the snapshot folder of the hub cache holding its weights and the
    ``config.json`` beside them (fetched when the cache has the weights alone): the folder that
    ``from_pretrained`` and the registry's ``foreign_config`` hooks read."""
    folder = resolve_hf_hub(spec).parent
    if not (folder / "config.json").is_file():
        path, tried = _hf_download(spec[len("hf-hub:"):].strip("/"), ("config.json",), local_only=is_offline())
        if path is None:
            raise PretrainedNotFoundError(f"{spec}: no config.json beside the weights in {folder}. Looked in:\n  "
                                          + "\n  ".join(tried))
        folder = path.parent
    return folder


def _download(url: str, target: Path, name: str, source: WeightSource) -> Path:
    """Fetch ``url`` to ``target``, hashing as it streams; the file appears under its final name
    only once complete and verified, so a failed or forged download leaves nothing to be loaded."""
    from tqdm.auto import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        # the timeout bounds each connect and read, not the whole transfer: a slow link still finishes
        with urllib.request.urlopen(url, timeout=NETWORK_TIMEOUT_S) as response, open(partial, "wb") as out:
            size = response.headers.get("Content-Length")
            with tqdm(total=int(size) if size else None, unit="B", unit_scale=True, desc=target.name,
                      disable=None) as bar:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
        expected = source.expected_sha256
        if expected and not digest.hexdigest().startswith(expected):
            raise _integrity_error(f"The download of {url}", digest.hexdigest(), expected, name, source,
                                   downloaded=True)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def resolve_source(arch: str, source: WeightSource) -> Path:
    """``pretrained=True``: our cache, then the hub cache, then the torch hub cache, then the network.

    Every file found or downloaded is checked against the source's sha256 (registered, or the
    prefix in a torchvision file name); a mismatch is refused, never loaded."""
    name = f"{arch}.{source.tag}"
    tried: list[str] = []
    ours = zoo_cache_paths(arch, source)
    for path in ours:
        if path.is_file():
            return _verified(path, name, source)
        tried.append(f"zoo cache ($ZOO_CACHE): {path} (absent)")
    hub_names = (source.hf_filename,) if source.hf_filename else HUB_WEIGHT_FILENAMES
    if source.hf_hub_id:
        path, hub_tried = _hf_download(source.hf_hub_id, hub_names, local_only=True)
        if path is not None:
            return _verified(path, name, source)
        tried += hub_tried
    filename = source.cache_filename if (source.filename or source.url) else None
    if filename:
        hub = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if hub.is_file():
            return _verified(hub, name, source)
        tried.append(f"torch hub cache: {hub} (absent)")
    offline = is_offline()
    if source.hf_hub_id:
        if offline:
            tried.append(f"hub: {source.hf_hub_id} (not tried: offline, ZOO_OFFLINE/HF_HUB_OFFLINE set)")
        else:
            path, hub_tried = _hf_download(source.hf_hub_id, hub_names, local_only=False)
            if path is not None:
                return _verified(path, name, source)
            tried += hub_tried
    if source.url:
        if offline:
            tried.append(f"url: {source.url} (not tried: offline, ZOO_OFFLINE/HF_HUB_OFFLINE set)")
        else:
            try:
                return _download(source.url, ours[0], name, source)
            except WeightsIntegrityError:
                raise
            except Exception as exc:  # no network, HTTP error, timeout, disk full
                tried.append(f"url: {source.url} ({type(exc).__name__}: {exc})")
    origin = source.url or f"{hub_names[0]} from https://huggingface.co/{source.hf_hub_id}"
    raise PretrainedNotFoundError(
        f"No weights found for {name}. Looked in:\n  " + "\n  ".join(dict.fromkeys(tried))
        + f"\nDownload {origin} on a machine with access and either put it at {ours[0]} "
        f"or pass pretrained='/path/to/{ours[0].name}'."
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
    # how the state dict was dug out: container entries followed, wrapper prefix stripped
    unwrapped: list[str] = field(default_factory=list)
    # tensors holding NaN/Inf, or integers where the model has floats (loaded only when allowed)
    bad_values: list[str] = field(default_factory=list)


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


def _strip_wrapper_prefix(entry: ModelEntry, state: dict, model_keys: set[str],
                          layout: str | None) -> tuple[dict, list[str]]:
    """Remove the prefix a wrapper put on the keys, if and only if the keys then fit the model better.

    DDP and EMA wrappers save ``module.*``, ``torch.compile`` ``_orig_mod.*``, Lightning the
    LightningModule's attribute (``model.*``), and they nest (``module._orig_mod.*``). Which prefix
    is a wrapper's cannot be told from the file: a model may own a submodule called ``model``. So
    the candidates (the largest subtree, followed a few levels down) are scored by how many keys
    then land on the model's, after its key map. Keys outside the prefix (AveragedModel's
    ``n_averaged``, a LightningModule's loss weights) are let go only when what remains is exactly
    the model, and the report lists them; otherwise they stay, and the strict load names them."""

    def fit(candidate: dict) -> tuple[int, bool]:
        try:
            mapped, _ = _map_layout(entry, candidate, model_keys, layout)
        except Exception:  # a key map that cannot read this candidate does not fit it
            return 0, False
        keys = set(mapped)
        return len(keys & model_keys), keys == model_keys

    best, best_prefix, (best_hits, best_exact) = state, "", fit(state)
    inner, prefix = state, ""
    for _ in range(3):
        heads = Counter(k.split(".", 1)[0] for k in inner if "." in k)
        if not heads:
            break
        head = heads.most_common(1)[0][0] + "."
        inner = {k[len(head):]: v for k, v in inner.items() if k.startswith(head)}
        prefix += head
        hits, exact = fit(inner)
        if hits > best_hits:
            best, best_prefix, best_hits, best_exact = inner, prefix, hits, exact
    if not best_prefix:
        return state, []
    notes = [f"stripped prefix {best_prefix!r}"]
    left = sorted(k for k in state if not k.startswith(best_prefix))
    if left and not best_exact:
        return {**{k: state[k] for k in left}, **best}, notes
    if left:
        notes.append(f"ignored {len(left)} {'entry' if len(left) == 1 else 'entries'} outside {best_prefix!r}: "
                     + ", ".join(left[:10])
                     + (", ..." if len(left) > 10 else ""))
    return best, notes


def _bad_values(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> list[str]:
    """Tensors the model would compute garbage with. ``load_state_dict`` copies an int tensor into a
    float parameter without a word, and a NaN in one weight turns every output into NaN."""
    problems = []
    for key, value in state.items():
        if own[key].is_floating_point() and not value.is_floating_point():
            problems.append(f"{key}: {value.dtype} values where the model has {own[key].dtype}")
        elif value.is_floating_point() and not bool(torch.isfinite(value).all()):
            count = value.numel() - int(torch.isfinite(value).sum())
            problems.append(f"{key}: {count} of {value.numel()} values are NaN/Inf")
    return problems


def load_weights(
    model: torch.nn.Module,
    entry: ModelEntry,
    state: dict[str, torch.Tensor],
    *,
    requested: Mapping[str, Any],
    layout: str | None = None,
    source: str = "<state dict>",
    allow_nonfinite: bool = False,
) -> LoadReport:
    """Load ``state`` into ``model`` strictly, after unwrapping, key mapping and the asked-for
    adaptations. ``allow_nonfinite=True`` loads weights holding NaN/Inf or integers where the model
    has floats (a diverged run being inspected); they are listed in ``report.bad_values`` either way."""
    own = model.state_dict()
    unwrapped = list(getattr(state, "unwrapped", []))
    state, stripped = _strip_wrapper_prefix(entry, dict(state), set(own), layout)
    state, layout = _map_layout(entry, state, set(own), layout)
    report = LoadReport(source=source, layout=layout, unwrapped=unwrapped + stripped)

    if "num_classes" in requested and entry.classifier:
        head = [k for k in own if _is_classifier_key(k, entry.classifier)]
        headless = bool(head) and not any(_is_classifier_key(k, entry.classifier) for k in state)
        if headless or any(k in state and state[k].shape != own[k].shape for k in head):
            for k in head:
                state.pop(k, None)
            report.reinitialized += head
            report.notes.append(
                f"the checkpoint has no classifier; {'/'.join(entry.classifier)} initialised for "
                f"num_classes={requested['num_classes']}" if headless else
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
    report.bad_values = _bad_values(state, own)
    if report.bad_values:
        if not allow_nonfinite:
            shown = report.bad_values[:20] + ([f"... and {len(report.bad_values) - 20} more"]
                                              if len(report.bad_values) > 20 else [])
            raise CheckpointValuesError(
                f"Checkpoint {source} holds values {entry.name} cannot compute with:\n  " + "\n  ".join(shown)
                + "\nThe file is corrupted, quantized, or comes from a run that diverged. "
                "Pass allow_nonfinite=True to load it anyway."
            )
        report.notes.append(f"loaded {len(report.bad_values)} tensors with NaN/Inf or integer values (allow_nonfinite=True)")
    model.load_state_dict(state, strict=True)
    for note in report.unwrapped:
        logger.info("%s: unwrapped %s", entry.name, note)
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
    for key in ("id2label", "pretrained_cfg"):  # class names and data config, for zoo predict (set by the recipes)
        if getattr(model, key, None):
            config[key] = getattr(model, key)
    with atomic_open(directory / "model.safetensors") as fh:
        fh.write(safetensors_bytes(tensors, metadata={"format": "pt"}))
    with atomic_open(directory / CONFIG_FILENAME) as fh:
        fh.write((json.dumps(config, indent=2) + "\n").encode())
    return directory


CONFIG_VERSIONS = (1,)  # versions of our config.json this code reads
_MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few kilobytes; refuse a huge one before reading it
_MAX_CONFIG_DEPTH = 16  # ours nest lists in a dict in a dict; far deeper is not a config
# An upper bound on class counts read from a file, checked before a classifier that size is
# allocated; the largest real label sets (ImageNet-21k, vocabularies) are far below it.
_MAX_CLASSES = 10_000_000


def _config_error(path: Path, message: str) -> InvalidConfigFileError:
    return InvalidConfigFileError(f"{path}: {message}")


def _check_depth(value: Any, path: Path) -> None:
    stack = [(value, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if depth > _MAX_CONFIG_DEPTH:
            raise _config_error(path, f"{where or 'the top level'} is nested more than {_MAX_CONFIG_DEPTH} levels "
                                      "deep; a model config is a flat object of options.")
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        stack += [(v, f"{where}.{k}" if where else str(k), depth + 1) for k, v in items]


def _check_count(path: Path, field_name: str, value: Any, lowest: int) -> None:
    # bool is an int in Python and 10.0 compares equal to 10: neither is a count
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= _MAX_CLASSES:
        kind = type(value).__name__
        raise _config_error(path, f"{field_name} must be an integer from {lowest} to {_MAX_CLASSES:,}, "
                                  f"got {json.dumps(value)} ({kind}).")


def _validate_zoo_config(config: dict, path: Path) -> None:
    """The schema ``save_pretrained`` writes: every field the loader uses, checked before it is used."""
    arch = config.get("architecture")
    if not isinstance(arch, str) or not arch.strip():
        raise _config_error(path, f"'architecture' must be a registered model name (a string), got {json.dumps(arch)}.")
    if arch != arch.strip().lower():
        raise _config_error(path, f"'architecture' is {arch!r}, but model names are lowercase: did you mean "
                                  f"{arch.strip().lower()!r}?")
    if "." in arch or any(c.isspace() for c in arch):
        raise _config_error(path, f"'architecture' must be a model name without a tag or spaces, got {arch!r}.")
    version = config.get("version", CONFIG_VERSIONS[0])
    if isinstance(version, bool) or version not in CONFIG_VERSIONS:
        raise _config_error(path, f"'version' {json.dumps(version)} is not one this code reads (it reads "
                                  f"{', '.join(map(str, CONFIG_VERSIONS))}); it may come from a newer zoo: upgrade.")
    if config.get("format", "zoo") != "zoo":
        raise _config_error(path, f"'format' must be \"zoo\", got {json.dumps(config['format'])}.")
    options = config.get("config", {})
    if not isinstance(options, dict):
        raise _config_error(path, f"'config' must be an object of keyword arguments, got {type(options).__name__}.")
    if "num_classes" in options:
        _check_count(path, "config.num_classes", options["num_classes"], lowest=0)  # 0: no classifier
    if "in_chans" in options:
        _check_count(path, "config.in_chans", options["in_chans"], lowest=1)


def read_zoo_config(directory: Path) -> dict[str, Any] | None:
    """The zoo config in ``directory/config.json``, validated; None if there is none or it is a
    foreign (e.g. Hugging Face) config, which is only checked for being a sane JSON object."""
    path = directory / CONFIG_FILENAME
    if not path.is_file():
        return None
    size = path.stat().st_size
    if size > _MAX_CONFIG_BYTES:
        raise _config_error(path, f"{size:,} bytes is not a config (a config.json is a few kilobytes).")
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _config_error(path, f"not valid JSON ({exc}).") from None
    except RecursionError:
        raise _config_error(path, f"nested more than {_MAX_CONFIG_DEPTH} levels deep; "
                                  "a model config is a flat object of options.") from None
    if not isinstance(config, dict):
        raise _config_error(path, f"expected a JSON object at the top level, got {type(config).__name__}.")
    _check_depth(config, path)
    if "architecture" not in config and config.get("format") != "zoo":
        return None  # a foreign (e.g. Hugging Face) config: weights only
    _validate_zoo_config(config, path)
    return config
