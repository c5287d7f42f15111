"""The ``zoo`` command: ``list``, ``info NAME``, ``predict``, ``train NAME ...``, ``finetune NAME ...``,
``eval NAME ...``, ``sample NAME ...``, and the tools ``export``, ``quantize``, ``serve``, ``distill``,
``pretrain`` (``TOOL_COMMANDS``).

``zoo train NAME [options]`` runs the recipe of NAME's domain (``zoo.vision.train``, ``zoo.graph.train``,
``<domain>.train``) with ``--model NAME`` and the options, which may also come before NAME;
``zoo train NAME --help`` shows that recipe's options. NAME may also be a method whose recipe
builds its own models (``zoo train ppo --env CartPole-v1``, ``zoo train ddpm``). ``zoo eval`` runs
``<domain>.evaluate`` and ``zoo sample`` ``<domain>.sample`` the same way.

A user's mistake (an unknown name, a missing file, a bad option value) ends in one line,
``zoo: error: ...``, exit status 2 for a usage error and 1 otherwise; ``--debug`` anywhere on the
command line shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from zoo.shared.cli_types import floats, positive_int

RECIPE_COMMANDS = ("train", "finetune", "eval", "sample")
RECIPE_MODULES = {"eval": "evaluate"}  # command -> its module in the domain (zoo eval -> zoo.rl.evaluate)
# recipes named after a method rather than one registered model: the domain that runs them
RECIPE_ALIASES = {"ppo": "rl", "dqn": "rl", "a2c": "rl",
                  "dcgan": "generative", "wgan_gp": "generative", "vae": "generative", "ddpm": "generative",
                  "dann": "techniques"}  # zoo train dann -> zoo.techniques.train
# commands that are not a domain's recipe: `zoo export ...` runs zoo.deploy.export.main(argv); each module
# has main(argv) and build_parser() (for `zoo export --help`)
TOOL_COMMANDS = {"export": ("zoo.deploy.export", "export a saved model to ONNX / torch.export / TorchScript"),
                 "quantize": ("zoo.deploy.quantize", "int8-quantize a saved model (dynamic or calibrated static)"),
                 "serve": ("zoo.deploy.serve", "serve a saved model over HTTP (FastAPI + uvicorn)"),
                 "distill": ("zoo.techniques.distill", "knowledge distillation from a teacher into a student"),
                 "pretrain": ("zoo.techniques.pretrain", "self-supervised pretraining (zoo pretrain simclr NAME)")}
RECIPE_HELP = {"train": "train a model", "finetune": "fine-tune pretrained weights on new classes",
               "eval": "evaluate a saved model (rl: episodes on an environment)",
               "sample": "draw samples from a saved generative model into a PNG grid"}


class UsageError(Exception):
    """A command line that cannot be parsed; exit status 2, as argparse."""


@contextlib.contextmanager
def _usage_errors(hint: str | None = None):
    """Turn every argparse error raised inside into a UsageError, the recipes' parsers included.

    argparse prints the whole usage block and exits; a recipe's parser (built inside its ``main``)
    would print ``python -m zoo.vision.train: error: ...`` under 15 lines of usage. Replacing the class's
    ``error`` for the duration of the command gives one ``zoo: error:`` line for all of them.
    """
    original = argparse.ArgumentParser.error

    def error(parser: argparse.ArgumentParser, message: str):
        raise UsageError(f"{message} (see `{hint or parser.prog} --help`)")

    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


# ------------------------------------------------------------------------------------------------
# list, info, predict
# ------------------------------------------------------------------------------------------------


def _cmd_list(args) -> int:
    import zoo
    from zoo.shared.registry import get_entry

    names = zoo.list_models(args.pattern, domain=args.domain, pretrained=args.pretrained)
    if args.names_only:
        for name in names:
            print(name)
    elif names:
        width = max(map(len, names))
        entries = [get_entry(n) for n in names]
        domain_width = max(len(e.domain) for e in entries)
        for name, entry in zip(names, entries):
            print(f"{name:<{width}}  {entry.domain:<{domain_width}}  {entry.task}")
    if not names:
        where = f" in domain {args.domain.lower()}" if args.domain else ""
        print(f"no models match {args.pattern or '*'}{where}", file=sys.stderr)
    return 0


def _cmd_info(args) -> int:
    import json
    from dataclasses import asdict

    import zoo

    info = zoo.model_info(args.name)
    print(json.dumps(asdict(info), indent=2) if args.json else info)
    return 0


def _cmd_predict(args) -> int:
    import json

    from .predict import load_predictor

    predictor = load_predictor(args.pretrained, img_size=args.img_size, mean=args.mean, std=args.std)
    if predictor.labels is None:
        print(f"note: {args.pretrained} has no id2label in its config.json; showing class indices", file=sys.stderr)
    results = predictor.predict(args.files, topk=args.topk, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        print(result["file"])
        for row in result["top"]:
            print(f"  {row['prob']:.4f}  {row['label']}")
    return 0


# ------------------------------------------------------------------------------------------------
# train / finetune NAME: the domain's recipe
# ------------------------------------------------------------------------------------------------


def _is_model(token: str) -> bool:
    from zoo.shared.registry import registered_entries, split_name

    return split_name(token)[0] in registered_entries()


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _split_model(command: str, rest: list[str]) -> tuple[str, list[str]]:
    """(model name, the recipe's other arguments) from ``zoo <command>``'s arguments.

    The name comes first (``zoo train resnet18 --epochs 1``), after options (``zoo train --epochs 1
    resnet18``: the first argument that is a registered name) or as ``--model NAME``.
    """
    for i, token in enumerate(rest):
        if token == "--model" and i + 1 < len(rest):
            return rest[i + 1], rest[:i] + rest[i + 2:]
        if token.startswith("--model="):
            return token.split("=", 1)[1], rest[:i] + rest[i + 1:]
    positional = [i for i, token in enumerate(rest) if not token.startswith("-")]
    if positional and positional[0] != 0:
        registered = [i for i in positional if _is_model(rest[i]) or rest[i] in RECIPE_ALIASES]
        if registered:
            positional = registered
        else:  # the intended name: an argument that is not an option's value, nor a number
            positional = [i for i in positional if not rest[i - 1].startswith("-")] or \
                         [i for i in positional if not _is_number(rest[i])]
    if not positional:
        raise UsageError(f"zoo {command} needs a model name: zoo {command} NAME [options], "
                         f"e.g. zoo {command} resnet18 --epochs 1 (zoo list shows the names)")
    i = positional[0]
    return rest[i], rest[:i] + rest[i + 1:]


def _recipe_module(domain: str, command: str):
    import importlib
    import importlib.util

    from zoo.shared.errors import ZooError

    name = f"zoo.{domain}.{RECIPE_MODULES.get(command, command)}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name not in (name, domain):
            raise ZooError(f"{name} needs the {exc.name!r} module, which is not installed "
                           f"(pip install {exc.name.split('.')[0]})") from exc
    import zoo

    have = [d for d in zoo.DOMAINS if importlib.util.find_spec(f"zoo.{d}.{RECIPE_MODULES.get(command, command)}")]
    raise ZooError(f"the {domain} domain has no {command} recipe yet ({name} does not exist); "
                   f"zoo {command} works for {', '.join(have) or 'no domain'} models")


def _cmd_tool(command: str, rest: list[str]) -> int:
    """``zoo export ...``: ``TOOL_COMMANDS[command]``'s ``main(rest)``, with its errors on one line."""
    import importlib

    from zoo.shared.errors import ZooError

    module_name = TOOL_COMMANDS[command][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ZooError(f"zoo {command} is not available in this installation ({module_name} is missing)") from exc
        raise ZooError(f"zoo {command} needs the {exc.name!r} module, which is not installed "
                       f"(pip install {exc.name.split('.')[0]})") from exc
    if any(a in ("-h", "--help") for a in rest) and hasattr(module, "build_parser"):
        parser = module.build_parser()
        parser.prog = f"zoo {command}"
        parser.print_help()
        return 0
    with _usage_errors(hint=f"zoo {command}"):
        return module.main(rest) or 0


def _recipe_help(command: str) -> str:
    return (f"usage: zoo {command} NAME [options]\n\n"
            f"{RECIPE_HELP[command][0].upper()}{RECIPE_HELP[command][1:]}: the registered model NAME (or a method: "
            f"{', '.join(RECIPE_ALIASES)}) with its domain's recipe "
            f"(python -m zoo.<domain>.{RECIPE_MODULES.get(command, command)} --model NAME).\n"
            f"`zoo {command} NAME --help` lists that recipe's options; `zoo list` lists the models.\n")


def _cmd_recipe(command: str, rest: list[str]) -> int:
    """``zoo train NAME`` / ``zoo finetune NAME``: ``<domain>.<command>.main(["--model", NAME, ...])``."""
    import zoo
    from zoo.shared.registry import get_entry

    wants_help = any(a in ("-h", "--help") for a in rest)
    zoo.list_models()  # the domains register their models
    try:
        name, recipe_argv = _split_model(command, rest)
    except UsageError:
        if not wants_help:
            raise
        print(_recipe_help(command), end="")  # `zoo train --help`: no name yet, say how to call it
        return 0
    if name in RECIPE_ALIASES:  # zoo train ppo / zoo train dann: the method's recipe
        domain = RECIPE_ALIASES[name]
    else:
        domain = get_entry(name).domain  # an unknown name: the registry's "did you mean"
    recipe = _recipe_module(domain, command)
    if hasattr(recipe, "recipe_module"):  # a domain with several recipes names the one for this model
        recipe = recipe.recipe_module(name)
    prog = f"zoo {command} {name}"
    if wants_help and hasattr(recipe, "build_parser"):
        parser = recipe.build_parser()
        parser.prog = prog
        parser.print_help()
        return 0
    with _usage_errors(hint=prog):
        return recipe.main(["--model", name, *recipe_argv]) or 0


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo", description="PyTorch model zoo: list, describe, train, fine-tune and run registered models.",
        epilog="--debug (anywhere on the command line) shows the traceback of an error.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("list", help="list registered models with their domain and task")
    p.add_argument("pattern", nargs="?", help="shell wildcard, e.g. 'resnet*'")
    p.add_argument("--domain", help="one of vision, nlp, audio, rl, graph, generative")
    p.add_argument("--pretrained", action="store_true", help="list name.tag for every pretrained source")
    p.add_argument("--names-only", action="store_true", help="names alone, one per line (for scripts)")
    p = sub.add_parser("info", help="describe a model: paper, inputs, config, weights")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="the same as JSON")
    p = sub.add_parser("predict", help="top-k classes of a saved image classifier for image files")
    p.add_argument("files", nargs="+", metavar="FILE", help="image files")
    p.add_argument("--pretrained", required=True, metavar="DIR",
                   help="a directory written by save_pretrained / --save-model (or hf-hub:org/name)")
    p.add_argument("--topk", type=positive_int, default=5, help="classes shown per image (default 5)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass")
    p.add_argument("--img-size", type=positive_int, default=None,
                   help="input size, for a saved model without pretrained_cfg (or to override it)")
    p.add_argument("--mean", type=floats, default=None,
                   help="mean of the [0, 1] pixels, one or one per channel: 0.5,0.5,0.5")
    p.add_argument("--std", type=floats, default=None, help="std of the [0, 1] pixels, one or one per channel")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    for command in RECIPE_COMMANDS:  # parsed by _cmd_recipe; listed here for `zoo --help`
        what = RECIPE_HELP[command]
        sub.add_parser(command, help=f"{what} with its domain's recipe: zoo {command} NAME [options] "
                                     f"(zoo {command} NAME --help lists them)", add_help=False)
    for command, (_, what) in TOOL_COMMANDS.items():  # parsed by _cmd_tool
        sub.add_parser(command, help=f"{what} (zoo {command} --help lists the options)", add_help=False)
    return parser


def _run(argv: list[str]) -> int:
    if argv and argv[0] in RECIPE_COMMANDS:
        return _cmd_recipe(argv[0], argv[1:])
    if argv and argv[0] in TOOL_COMMANDS:
        return _cmd_tool(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    return {"list": _cmd_list, "info": _cmd_info, "predict": _cmd_predict}[args.command](args)


def _user_errors() -> tuple[type[BaseException], ...]:
    from zoo.shared.errors import ZooError

    return (ZooError, FileNotFoundError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    argv = [a for i, a in enumerate(argv) if i >= end or a != "--debug"]
    try:
        with _usage_errors():
            return _run(argv)
    except UsageError as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # argparse's --help (0), a recipe's SystemExit("message")
        if isinstance(exc.code, str):
            print(f"zoo: error: {exc.code}", file=sys.stderr)
            return 1
        return exc.code or 0
    except KeyboardInterrupt:
        if debug:
            raise
        print("zoo: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug or not isinstance(exc, _user_errors()):
            raise
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
