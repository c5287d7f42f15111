"""The ``zoo`` command: ``zoo list``, ``zoo info NAME``, ``zoo train NAME ...``, ``zoo finetune NAME ...``."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import asdict


def _cmd_list(args) -> int:
    import zoo

    names = zoo.list_models(args.pattern, domain=args.domain, pretrained=args.pretrained)
    for name in names:
        print(name)
    if not names:
        print(f"no models match {args.pattern or '*'}" + (f" in domain {args.domain}" if args.domain else ""), file=sys.stderr)
    return 0


def _cmd_info(args) -> int:
    import zoo

    info = zoo.model_info(args.name)
    if args.json:
        print(json.dumps(asdict(info), indent=2))
        return 0
    print(f"{info.name}  ({info.domain} / {info.task})")
    print(f"  paper:   {info.paper}")
    print(f"  params:  {info.num_params:,}")
    print(f"  inputs:  {info.inputs}")
    print(f"  config:  {json.dumps(info.config)}")
    for w in info.weights:
        where = w.get("url") or w.get("hf_hub_id")
        default = " (default)" if w["tag"] == info.default_tag else ""
        print(f"  weights: {info.name}.{w['tag']}{default}  layout={w.get('layout')}  {where}  license={w.get('license')}")
    return 0


def _cmd_recipe(args, rest: list[str]) -> int:
    """``zoo train NAME`` / ``zoo finetune NAME``: the model's domain recipe, ``<domain>.<command>``."""
    import zoo

    info = zoo.model_info(args.name)
    try:
        recipe = importlib.import_module(f"{info.domain}.{args.command}")
    except ModuleNotFoundError:
        print(f"the {info.domain} domain has no {args.command} recipe yet", file=sys.stderr)
        return 2
    return recipe.main(["--model", args.name, *rest]) or 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zoo", description="PyTorch model zoo")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", help="shell wildcard, e.g. 'resnet*'")
    p.add_argument("--domain", help="vision, nlp, audio, rl, graph, generative")
    p.add_argument("--pretrained", action="store_true", help="list name.tag for every pretrained source")
    p = sub.add_parser("info", help="describe a model")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("train", help="train a model with its domain's recipe (other options go to the recipe)")
    p.add_argument("name")
    p = sub.add_parser("finetune", help="fine-tune pretrained weights on new classes (options go to the recipe)")
    p.add_argument("name")
    args, rest = parser.parse_known_args(argv)
    from shared.errors import ZooError

    try:
        if args.command in ("train", "finetune"):
            return _cmd_recipe(args, rest)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return _cmd_list(args) if args.command == "list" else _cmd_info(args)
    except ZooError as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
