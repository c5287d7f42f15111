"""A model's card: what ``zoo info NAME`` prints and what ``zoo.model_info(name)`` shows in a REPL."""

from __future__ import annotations

import dataclasses
import textwrap

from zoo.shared.registry import ModelInfo

WIDTH = 100


def _value(v) -> str:
    """Config values as a user would type them: strings quoted, sequences without repr noise."""
    if isinstance(v, tuple):
        return "(" + ", ".join(map(_value, v)) + ")"
    if isinstance(v, list):
        return "[" + ", ".join(map(_value, v)) + "]"
    return repr(v) if isinstance(v, str) else str(v)


def _field(label: str, text: str, indent: int = 2) -> list[str]:
    """``label`` then ``text`` wrapped to WIDTH, continuation lines under the text."""
    head = " " * indent + f"{label:<9}"
    return textwrap.wrap(text, WIDTH, initial_indent=head, subsequent_indent=" " * len(head),
                         break_on_hyphens=False, break_long_words=False) or [head.rstrip()]


def _weights_lines(info: ModelInfo) -> list[str]:
    if not info.weights:
        return _field("weights", f"none registered: train it (zoo train {info.name}) or pass pretrained=<file>")
    lines = ["  weights"]
    for w in info.weights:
        default = " (default)" if w["tag"] == info.default_tag else ""
        lines.append(f"    {info.name}.{w['tag']}{default}")
        data = []
        if w.get("input_size"):
            data.append("input " + "x".join(str(s) for s in w["input_size"]))
        for key in ("mean", "std"):
            if w.get(key):
                data.append(f"{key} {_value(tuple(w[key]))}")
        if w.get("crop_pct"):
            data.append(f"crop {w['crop_pct']}")
        if w.get("interpolation"):
            data.append(w["interpolation"])
        if w.get("num_classes"):
            data.append(f"{w['num_classes']} classes")
        if w.get("layout"):
            data.append(f"{w['layout']} layout")
        if w.get("license"):
            data.append(f"license {w['license']}")
        for text in (w.get("description"), ", ".join(data), w.get("url") or w.get("hf_hub_id")):
            if text:
                lines += textwrap.wrap(text, WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 8,
                                       break_on_hyphens=False, break_long_words=False)
    return lines


def card(info: ModelInfo) -> str:
    """A few readable lines: name, domain / task, size, paper, inputs, default config, weights, how to use."""
    lines = [f"{info.name}  ({info.domain} / {info.task}, {info.num_params:,} parameters)"]
    if info.paper:
        lines += _field("paper", info.paper)
    if info.inputs:
        lines += _field("inputs", info.inputs)
    lines += _field("config", ", ".join(f"{k}={_value(v)}" for k, v in info.config.items()))
    lines += _weights_lines(info)
    use = f'zoo.create("{info.name}"' + (", pretrained=True" if info.default_tag else "") + ")"
    lines += _field("use", use) + [" " * 11 + f"zoo train {info.name} --help"]
    return "\n".join(lines)


class ModelCard(ModelInfo):
    """:class:`ModelInfo` that prints as its card (``asdict`` and the fields are unchanged)."""

    @classmethod
    def of(cls, info: ModelInfo) -> "ModelCard":
        return cls(**{f.name: getattr(info, f.name) for f in dataclasses.fields(info)})

    def __str__(self) -> str:
        return card(self)

    __repr__ = __str__
