"""The model registry: one table of every architecture, how to build it and where its weights live.

A model file describes its variants as a table of :class:`Variant` (the builder's keyword arguments
as named fields, plus paper and weights) and registers each the same way::

    VARIANTS = {
        "resnet18": Variant(block="basic", layers=(2, 2, 2, 2), weights=[WeightSource("tv_in1k", ...)]),
        "resnext50_32x4d": Variant(block="bottleneck", layers=(3, 4, 6, 3), groups=32, width_per_group=4, ...),
    }
    for name, v in VARIANTS.items():
        register_model(name, ResNet, v.config(), paper=v.paper, weights=v.weights, **FAMILY)

and users build it through :func:`create` (re-exported as ``zoo.create``). The registry only
knows what was registered; importing the domain packages (which registers their models) is
the job of ``zoo``, so this module never imports a domain.

The registry owns the record of what was built (``model.zoo_name``, ``model.zoo_config``); a model
never writes to it. :func:`reset_classifier` changes a built model's head and that record together.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .errors import InvalidConfigError, UnknownModelError


@dataclass(frozen=True)
class WeightSource:
    """One pretrained source, named by a tag: ``resnet50.tv_in1k`` -> tag ``tv_in1k``."""

    tag: str
    url: str | None = None
    hf_hub_id: str | None = None
    hf_filename: str | None = None
    filename: str | None = None  # name in the cache; defaults to the URL's basename
    layout: str = "zoo"  # checkpoint layout: "zoo", "torchvision", "timm", ...
    num_classes: int | None = None
    input_size: tuple[int, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    crop_pct: float | None = None
    license: str | None = None
    description: str = ""
    # sha256 of the file: the full 64 hex digits, or a prefix of at least 8. Unset, a file name in
    # torch.hub's "name-<sha256 prefix>.ext" convention (torchvision's resnet18-f37072fd.pth) supplies it.
    sha256: str | None = None

    def __post_init__(self):
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{8,64}", self.sha256):
            raise ValueError(f"WeightSource {self.tag!r}: sha256 must be 8 to 64 lowercase hex digits, got {self.sha256!r}")

    @property
    def cache_filename(self) -> str | None:
        if self.filename:
            return self.filename
        if self.url:
            return self.url.rstrip("/").rsplit("/", 1)[-1]
        return self.hf_filename

    @property
    def expected_sha256(self) -> str | None:
        """The registered sha256 (or prefix), else the prefix the file name carries, else None."""
        if self.sha256:
            return self.sha256
        name = self.cache_filename or ""
        found = re.search(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$", name)
        return found.group(1) if found else None

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "")}


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One row of a family's variant table. A family subclasses it with the builder's keyword
    arguments as fields (with the family's defaults); ``paper`` and ``weights`` are what the
    registry records beside the config."""

    paper: str = ""
    weights: Sequence[WeightSource] = ()

    def config(self) -> dict[str, Any]:
        """The builder's keyword arguments: every field except ``paper`` and ``weights``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("paper", "weights")}


@dataclass
class TestSpec:
    """What the registry-wide test suite needs: a tiny config and a way to make inputs.

    ``inputs(config, batch_size)`` returns the positional inputs of ``model(...)``;
    ``output_shape(config, batch_size)`` the expected shape of the output.
    """

    config: dict[str, Any]
    inputs: Callable[[dict, int], tuple]
    output_shape: Callable[[dict, int], tuple] | None = None
    batch_consistency: bool = True
    # (inputs, output, i) -> (inputs of sample i alone, the part of output that is sample i's).
    # Default: slice dim 0 of every input and of the output. Graph models return the i-th graph
    # of a disjoint union here, so "one sample alone equals the same sample in a batch" still holds.
    select: Callable[[tuple, Any, int], tuple[tuple, Any]] | None = None
    atol: float = 1e-5


@dataclass
class ModelEntry:
    name: str
    builder: Callable[..., Any]
    config: dict[str, Any]
    domain: str
    task: str
    paper: str = ""
    inputs: str = ""
    weights: dict[str, WeightSource] = field(default_factory=dict)
    default_tag: str | None = None
    key_maps: dict[str, Callable[[dict], dict]] = field(default_factory=dict)
    classifier: tuple[str, ...] = ()  # state-dict prefixes of the classifier head
    first_conv: str | None = None  # state-dict key of the input projection weight
    # option name -> fn(state, model) -> (state, note): adapts a checkpoint when the user asked for
    # that option (e.g. ViT's img_size resamples the position embedding); the note is reported.
    adapters: dict[str, Callable[[dict, Any], tuple[dict, str | None]]] = field(default_factory=dict)
    test: TestSpec | None = None


@dataclass
class ModelInfo:
    """What ``zoo.model_info(name)`` returns."""

    name: str
    domain: str
    task: str
    paper: str
    config: dict[str, Any]
    num_params: int
    inputs: str
    weights: list[dict[str, Any]]
    default_tag: str | None


_REGISTRY: dict[str, ModelEntry] = {}


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def register_model(
    name: str,
    builder: Callable[..., Any],
    config: Mapping[str, Any] | None = None,
    *,
    domain: str,
    task: str,
    paper: str = "",
    inputs: str = "",
    weights: Sequence[WeightSource] = (),
    default_tag: str | None = None,
    key_maps: Mapping[str, Callable[[dict], dict]] | None = None,
    classifier: str | Sequence[str] = (),
    first_conv: str | None = None,
    adapters: Mapping[str, Callable[[dict, Any], tuple[dict, str | None]]] | None = None,
    test: TestSpec | None = None,
) -> ModelEntry:
    """Add an architecture to the registry. ``builder(**config)`` must return an ``nn.Module``."""
    if name != name.lower() or "." in name:
        raise ValueError(f"model names are lowercase with no '.', got {name!r} (tags go in WeightSource)")
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].builder!r})")
    tags = {w.tag: w for w in weights}
    entry = ModelEntry(
        name=name,
        builder=builder,
        config=_jsonable(dict(config or {})),
        domain=domain,
        task=task,
        paper=paper,
        inputs=inputs,
        weights=tags,
        default_tag=default_tag or (next(iter(tags)) if tags else None),
        key_maps=dict(key_maps or {}),
        classifier=(classifier,) if isinstance(classifier, str) else tuple(classifier),
        first_conv=first_conv,
        adapters=dict(adapters or {}),
        test=test,
    )
    _REGISTRY[name] = entry
    return entry


def split_name(name: str) -> tuple[str, str | None]:
    """``"resnet50.tv_in1k"`` -> ``("resnet50", "tv_in1k")``."""
    arch, _, tag = name.strip().lower().partition(".")
    return arch, (tag or None)


def _suggest(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    close += [c for c in candidates if name and name in c and c not in close][: 5 - len(close)]
    if close:
        return "Did you mean: " + ", ".join(close) + "?"
    return "See `zoo list` for the registered models."


def get_entry(name: str) -> ModelEntry:
    arch, tag = split_name(name)
    if arch not in _REGISTRY:
        raise UnknownModelError(f"Unknown model {name!r}. {_suggest(arch, sorted(_REGISTRY))}")
    entry = _REGISTRY[arch]
    if tag is not None and tag not in entry.weights:
        known = ", ".join(f"{arch}.{t}" for t in entry.weights) or "none"
        raise UnknownModelError(f"Model {arch!r} has no pretrained tag {tag!r}. Known tags: {known}.")
    return entry


def list_models(pattern: str | None = None, domain: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered names, sorted; ``pattern`` is a shell wildcard (``"resnet*"``)."""
    names = []
    for name, entry in sorted(_REGISTRY.items()):
        if domain is not None and entry.domain != domain:
            continue
        if pretrained:
            names += [f"{name}.{tag}" for tag in entry.weights]
        else:
            names.append(name)
    if pattern:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern.lower())]
    return names


def build_config(entry: ModelEntry, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The registered default config with the user's overrides, checked against the builder."""
    params = inspect.signature(entry.builder).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not takes_kwargs:
        unknown = [k for k in overrides if k not in params]
        if unknown:
            options = ", ".join(k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL)
            raise InvalidConfigError(
                f"{entry.name} does not take {', '.join(map(repr, unknown))}. Its options are: {options}."
            )
    return {**entry.config, **_jsonable(dict(overrides))}


def build(entry: ModelEntry, config: Mapping[str, Any]):
    """Call the builder and stamp the model with its registry name and config."""
    model = entry.builder(**config)
    model.zoo_name = entry.name
    model.zoo_config = dict(config)
    return model


def reset_classifier(model: Any, num_classes: int) -> None:
    """Give a built model a fresh classifier for ``num_classes`` outputs (0: no head) through its own
    ``reset_classifier``, and record the new ``num_classes`` in the config the registry keeps for it,
    so that ``save_pretrained`` / ``from_pretrained`` rebuild the model with that head."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise InvalidConfigError(f"num_classes must be an int >= 0 (0: no classifier), got {num_classes!r}")
    if not callable(getattr(model, "reset_classifier", None)):
        name = getattr(model, "zoo_name", None) or type(model).__name__
        raise InvalidConfigError(f"{name} has no classifier to reset (no reset_classifier method)")
    model.reset_classifier(num_classes)
    if getattr(model, "zoo_config", None) is not None:
        model.zoo_config = {**model.zoo_config, "num_classes": num_classes}


def count_params(entry: ModelEntry, config: Mapping[str, Any] | None = None) -> int:
    """Parameter count, built on the meta device so nothing is allocated."""
    import torch

    with torch.device("meta"):
        model = entry.builder(**(config if config is not None else entry.config))
    return sum(p.numel() for p in model.parameters())


def model_info(name: str) -> ModelInfo:
    entry = get_entry(name)
    return ModelInfo(
        name=entry.name,
        domain=entry.domain,
        task=entry.task,
        paper=entry.paper,
        config=dict(entry.config),
        num_params=count_params(entry),
        inputs=entry.inputs,
        weights=[w.describe() for w in entry.weights.values()],
        default_tag=entry.default_tag,
    )


def registered_entries() -> dict[str, ModelEntry]:
    return dict(_REGISTRY)
