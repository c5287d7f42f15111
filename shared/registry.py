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

import collections.abc
import dataclasses
import difflib
import fnmatch
import inspect
import math
import numbers
import re
import types
import typing
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
    # the family's rules beyond the option types (see "What a model's options may be" below)
    ranges: dict[str, "Range"] = field(default_factory=dict)
    checks: tuple[Callable[[dict], str | None], ...] = ()
    # fn(directory | file | "hf-hub:org/name") -> our config | None: reads another library's config
    # (a Hugging Face or diffusers config.json, the data of a Stable-Baselines3 zip) so that
    # zoo.create(name, pretrained=that) builds the model it describes; None when it holds none.
    foreign_config: Callable[[Any], dict | None] | None = None
    # fn(config) -> the config to record as model.zoo_config (what save_pretrained writes) when the
    # options a user passes are not plain values: an RL policy built from gymnasium spaces records
    # the sizes they stand for, so the saved config.json is JSON and rebuilds the same network.
    record_config: Callable[[dict], dict] | None = None


# ------------------------------------------------------------------------------------------------
# What a model's options may be
#
# Every option is checked before anything is built: its type against the builder's annotation (or,
# unannotated, its default's type), then its range, then the family's cross-option checks. A family
# declares its rules once, beside its variant table: ``ranges={"layers": AT_LEAST_ONE}`` and
# ``checks=[fn]`` where ``fn(config) -> message | None`` sees the whole config (builder defaults
# filled in). Ranges that hold for an option name in every family (class counts, channels, drop
# probabilities) are :data:`COMMON_RANGES`, so a family that declares nothing is still checked.
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """The values a numeric option may take: ``low <= value <= high`` (None: unbounded; with
    ``open_low`` the low end is excluded). A list option (ResNet's ``layers``, ViT's ``img_size=(h,
    w)``) is checked entry by entry."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    note: str = ""  # said after the rule: "(0: no classifier)"

    def admits(self, value: float) -> bool:
        if self.low is not None and not (value > self.low if self.open_low else value >= self.low):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            text = f"from {self.low} to {self.high}"
        elif self.low is not None:
            text = f"> {self.low}" if self.open_low else f">= {self.low}"
        elif self.high is not None:
            text = f"<= {self.high}"
        else:
            text = "any number"
        return f"{text} {self.note}" if self.note else text


AT_LEAST_ONE = Range(1)
POSITIVE = Range(0, open_low=True)
PROBABILITY = Range(0.0, 1.0, note="(a probability)")

COMMON_RANGES: dict[str, Range] = {
    "num_classes": Range(0, note="(0: no classifier)"),
    **dict.fromkeys(("depth", "patch_size", "img_size"), AT_LEAST_ONE),
}
# By the end of the name, in every family: sizes and counts (in_chans, hidden_channels, embed_dim,
# edge_dim, num_heads, num_layers, ResNet's per-stage layers) are at least 1; drop rates and dropout
# probabilities (drop_rate, drop_path_rate, attention_dropout, hidden_dropout_prob) are probabilities.
_NAME_RANGES = (
    (re.compile(r"(^|_)(chans|channels|dim|heads|layers)$"), AT_LEAST_ONE),
    (re.compile(r"(^|_)(dropout|drop_rate|drop_path_rate|prob)$"), PROBABILITY),
)
_EMPTY = inspect.Parameter.empty


@dataclass(frozen=True)
class _Option:
    hint: Any  # the annotation, else the default's type, else _EMPTY (anything goes)
    default: Any


def _declared_options(builder: Callable) -> tuple[dict[str, _Option], bool] | None:
    """The builder's keyword options and whether it also takes ``**kwargs``; None when its
    signature cannot be read (a builtin), so nothing can be checked against it."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return None
    try:
        hints = typing.get_type_hints(builder.__init__ if isinstance(builder, type) else builder)
    except Exception:  # an annotation that does not evaluate: fall back to the defaults' types
        hints = {}
    options, takes_kwargs = {}, False
    for name, p in params.items():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            takes_kwargs = True
        elif p.kind is not inspect.Parameter.VAR_POSITIONAL:
            hint = hints.get(name, _EMPTY)
            if hint is _EMPTY and type(p.default) in (bool, int, float, str):
                hint = type(p.default)
            options[name] = _Option(hint, p.default)
    return options, takes_kwargs


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the annotated type. bool is not an int here, an int is a float, a
    list stands for a tuple (JSON has no tuples); an annotation this does not model lets anything pass."""
    if hint is Any or hint is _EMPTY:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    container = origin or hint
    if container in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if container is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_matches, value, args))
        return not args or all(_matches(v, args[0]) for v in value)
    if container in (dict, collections.abc.Mapping):
        return isinstance(value, Mapping)
    return not isinstance(container, type) or isinstance(value, container)


def _describe(hint: Any) -> str:
    """``int | None`` -> "an int or None"."""
    simple = {bool: "True or False", int: "an int", float: "a number", str: "a string", type(None): "None"}
    if hint in simple:
        return simple[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(a) for a in args))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if (origin or hint) in (list, tuple, collections.abc.Sequence):
        if (origin or hint) is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
        return f"a list of {getattr(args[0], '__name__', args[0])}" if args else "a list"
    return f"a {getattr(hint, '__name__', hint)}"


def _show(value: Any) -> str:
    import reprlib

    return f"{reprlib.repr(value)} ({type(value).__name__})"


def _plain(value: Any) -> Any:
    """numpy / torch-style scalars as plain ints and floats, so the config stays JSON."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, int)):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _range_problem(value: Any, rule: Range) -> str | None:
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, numbers.Real) and not isinstance(v, bool) and not rule.admits(v):
            each = " (every entry)" if isinstance(value, (list, tuple)) else ""
            return f"must be {rule}{each}, got {value!r}"
    return None


def check_config(entry: ModelEntry, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` checked against the builder's declared options and the family's rules, before
    anything is built. Returns it with numpy-style scalars made plain; raises an InvalidConfigError
    that names the first option at fault and what it may be."""
    declared = _declared_options(entry.builder)
    options = declared[0] if declared else {}
    ranges = {**COMMON_RANGES, **entry.ranges}
    checked = {}
    for key, value in config.items():
        hint = options[key].hint if key in options else _EMPTY
        if not _matches(value, hint):
            raise InvalidConfigError(f"{entry.name}: {key} must be {_describe(hint)}, got {_show(value)}.")
        value = _plain(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidConfigError(f"{entry.name}: {key} must be a finite number, got {value!r}.")
        rule = ranges.get(key) or next((r for pattern, r in _NAME_RANGES if pattern.search(key)), None)
        problem = rule and _range_problem(value, rule)
        if problem:
            raise InvalidConfigError(f"{entry.name}: {key} {problem}.")
        checked[key] = value
    if entry.checks:
        full = {k: o.default for k, o in options.items() if o.default is not _EMPTY} | checked
        for check in entry.checks:
            problem = check(full)
            if problem:
                raise InvalidConfigError(f"{entry.name}: {problem}")
    return checked


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


_NAME = re.compile(r"[a-z][a-z0-9_]*")  # resnet50, vit_small_patch16_224
# zoo.create's own arguments: a builder option of one of these names could never be passed
CREATE_OPTIONS = ("name", "pretrained", "features_only", "out_indices", "allow_nonfinite")
_TAG = re.compile(r"[a-z0-9][a-z0-9_]*")  # tv_in1k, augreg_in21k_ft_in1k


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
    ranges: Mapping[str, Range] | None = None,
    checks: Sequence[Callable[[dict], str | None]] = (),
    foreign_config: Callable[[Any], dict | None] | None = None,
    record_config: Callable[[dict], dict] | None = None,
) -> ModelEntry:
    """Add an architecture to the registry. ``builder(**config)`` must return an ``nn.Module``.

    ``ranges`` / ``checks`` are the family's rules for its options (see :func:`check_config`).
    Everything is checked here, so a malformed registration fails at import, naming the model:
    the name (lowercase ``arch``; a ``.tag`` belongs to a WeightSource), a callable builder, the
    default config against the builder's signature and rules, unique tags; a name is never
    registered twice."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidConfigError(f"register_model: a model needs a name, got {name!r}.")
    if "." in name:
        raise InvalidConfigError(
            f"register_model: {name!r}: register the architecture alone ({name.split('.')[0]!r}); a '.tag' names "
            "a pretrained source: pass it as weights=[WeightSource(tag=...)].")
    if not _NAME.fullmatch(name):
        raise InvalidConfigError(
            f"register_model: {name!r} is not a model name: lowercase letters, digits and '_', starting with a "
            "letter (e.g. 'resnet50', 'vit_small_patch16_224').")
    if name in _REGISTRY:
        raise InvalidConfigError(
            f"register_model: model {name!r} is already registered (by {_REGISTRY[name].builder!r}); "
            "a name is registered once: pick another name.")
    if not callable(builder):
        raise InvalidConfigError(
            f"register_model: {name}: the builder must be a class or function returning an nn.Module, "
            f"got {_show(builder)}.")
    for what, value in (("domain", domain), ("task", task)):
        if not isinstance(value, str) or not value.strip():
            raise InvalidConfigError(f"register_model: {name}: {what} must be a non-empty string, got {value!r}.")
    tags: dict[str, WeightSource] = {}
    for source in weights:
        if not isinstance(source, WeightSource):
            raise InvalidConfigError(f"register_model: {name}: weights must be WeightSource rows, got {_show(source)}.")
        if not isinstance(source.tag, str) or not _TAG.fullmatch(source.tag):
            raise InvalidConfigError(
                f"register_model: {name}: weight tag {source.tag!r} is not a tag: lowercase letters, digits and "
                "'_' (e.g. 'tv_in1k').")
        if source.tag in tags:
            raise InvalidConfigError(
                f"register_model: {name}: two weight sources are tagged {source.tag!r}; a tag names one source.")
        tags[source.tag] = source
    if default_tag is not None and default_tag not in tags:
        raise InvalidConfigError(
            f"register_model: {name}: default_tag {default_tag!r} is not one of its tags ({', '.join(tags) or 'none'}).")
    config = _jsonable(dict(config or {}))
    declared = _declared_options(builder)
    if declared is not None:
        options, takes_kwargs = declared
        unknown = [k for k in [*config, *(ranges or {})] if k not in options]
        if unknown and not takes_kwargs:
            raise InvalidConfigError(
                f"register_model: {name}: {', '.join(map(repr, dict.fromkeys(unknown)))} is not an argument of "
                f"{getattr(builder, '__name__', builder)} (its arguments: {', '.join(options) or 'none'}).")
        taken = [k for k in options if k in CREATE_OPTIONS]
        if taken:
            raise InvalidConfigError(
                f"register_model: {name}: {getattr(builder, '__name__', builder)} takes {', '.join(map(repr, taken))}, "
                f"which zoo.create keeps for itself ({', '.join(CREATE_OPTIONS)}): rename the argument.")
        required = [k for k, o in options.items() if o.default is _EMPTY and k not in config]
        if required:
            raise InvalidConfigError(
                f"register_model: {name}: {getattr(builder, '__name__', builder)} needs {', '.join(required)}, "
                "which has no default: give it in the registered config.")
    if record_config is not None and not callable(record_config):
        raise InvalidConfigError(f"register_model: {name}: record_config must be a function config -> config, "
                                 f"got {_show(record_config)}.")
    if foreign_config is not None and not callable(foreign_config):
        raise InvalidConfigError(f"register_model: {name}: foreign_config must be a function "
                                 f"(folder or 'hf-hub:org/name') -> config | None, got {_show(foreign_config)}.")
    for check in checks:
        if not callable(check):
            raise InvalidConfigError(f"register_model: {name}: checks must be functions config -> message | None, "
                                     f"got {_show(check)}.")
    entry = ModelEntry(
        name=name,
        builder=builder,
        config=config,
        domain=domain.strip().lower(),
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
        ranges=dict(ranges or {}),
        checks=tuple(checks),
        foreign_config=foreign_config,
        record_config=record_config,
    )
    try:
        entry.config = check_config(entry, config)
    except InvalidConfigError as exc:
        raise InvalidConfigError(f"register_model: the default config is refused: {exc}") from None
    _REGISTRY[name] = entry
    return entry


def split_name(name: str) -> tuple[str, str | None]:
    """``"resnet50.tv_in1k"`` -> ``("resnet50", "tv_in1k")``."""
    if not isinstance(name, str):
        raise InvalidConfigError(f"a model name is a string such as 'resnet50', got {_show(name)}.")
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
        if domain is not None and entry.domain != str(domain).strip().lower():
            continue
        if pretrained:
            names += [f"{name}.{tag}" for tag in entry.weights]
        else:
            names.append(name)
    if pattern:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern.lower())]
    return names


def build_config(entry: ModelEntry, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The registered default config with the user's overrides, checked against the builder
    (unknown options, types) and the family's rules (ranges, checks) before anything is built."""
    declared = _declared_options(entry.builder)
    if declared is not None and not declared[1]:
        unknown = [k for k in overrides if k not in declared[0]]
        if unknown:
            raise InvalidConfigError(
                f"{entry.name} does not take {', '.join(map(repr, unknown))}. Its options are: {', '.join(declared[0])}."
            )
    return check_config(entry, {**entry.config, **_jsonable(dict(overrides))})


def build(entry: ModelEntry, config: Mapping[str, Any]):
    """Call the builder and stamp the model with its registry name and config."""
    model = entry.builder(**config)
    model.zoo_name = entry.name
    model.zoo_config = entry.record_config(dict(config)) if entry.record_config else dict(config)
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
