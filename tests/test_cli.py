import json
import subprocess
import sys
from dataclasses import asdict

import pytest

import zoo
from zoo.shared.errors import CheckpointError
from zoo.cli import main

HEAVY = ("transformers", "diffusers", "torch_geometric", "gymnasium")


def _error_line(err: str) -> str:
    """The whole of stderr, which must be one `zoo: error:` line and no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), err
    return lines[0]


# ------------------------------------------------------------------------------------------ list


def test_list_shows_domain_and_task_in_natural_order(capsys):
    assert main(["list", "resnet1*", "--domain", "vision"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows == [[n, "vision", "image-classification"] for n in ("resnet18", "resnet101", "resnet152")]
    assert main(["list", "g*", "--domain", "graph", "--names-only"]) == 0
    assert capsys.readouterr().out.split() == ["gat", "gatv2", "gcn", "gin", "graphsage"]
    assert main(["list", "--pretrained", "resnet18*"]) == 0
    assert capsys.readouterr().out.split() == ["resnet18.tv_in1k", "vision", "image-classification"]
    assert main(["list", "gin"]) == 0
    assert capsys.readouterr().out.split() == ["gin", "graph", "graph-classification"]


def test_list_models_api_is_in_natural_order():
    assert zoo.list_models("wide*") == ["wide_resnet50_2", "wide_resnet101_2"]
    assert zoo.list_models("resnext*") == ["resnext50_32x4d", "resnext101_32x8d"]


def test_unknown_domain_is_an_error_listing_the_domains(capsys):
    assert main(["list", "--domain", "visoin"]) == 1
    line = _error_line(capsys.readouterr().err)
    assert "'visoin'" in line and all(d in line for d in zoo.DOMAINS)
    with pytest.raises(zoo.ZooError, match="the domains are"):
        zoo.list_models(domain="visoin")
    assert zoo.list_models("resnet18", domain="Vision") == ["resnet18"]  # any case


# ------------------------------------------------------------------------------------------ info


def test_info_prints_a_card(capsys):
    assert main(["info", "resnet18"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "resnet18  (vision / image-classification, 11,689,512 parameters)"
    body = {line.split()[0]: line for line in lines[1:] if line.startswith("  ") and not line.startswith("   ")}
    assert "He et al." in body["paper"]
    assert "block='basic', layers=[2, 2, 2, 2]" in body["config"]
    assert "    resnet18.tv_in1k (default)" in lines
    assert any("input 3x224x224, mean (0.485, 0.456, 0.406)" in line for line in lines)
    assert 'zoo.create("resnet18", pretrained=True)' in body["use"]
    assert main(["info", "resnet18", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["domain"] == "vision" and info["config"]["layers"] == [2, 2, 2, 2]


def test_model_info_prints_readably():
    info = zoo.model_info("gat")
    assert isinstance(info, zoo.ModelInfo) and asdict(info)["task"] == "node-classification"
    text = repr(info)
    assert text == str(info) and "ModelInfo(" not in text
    assert text.splitlines()[0] == "gat  (graph / node-classification, 92,373 parameters)"
    assert "weights  none registered" in text


def test_zoo_namespace_shows_only_the_api():
    names = dir(zoo)
    assert names == sorted([*zoo.__all__, "__version__"])
    assert not {"Any", "annotations", "importlib"} & set(names)
    assert all(hasattr(zoo, n) for n in zoo.__all__)
    from zoo.shared import errors as error_module

    errors = {n for n, c in vars(error_module).items() if isinstance(c, type) and issubclass(c, zoo.ZooError)}
    assert errors <= set(zoo.__all__)  # a user catches zoo.DatasetError without knowing zoo.shared.errors
    import importlib

    importlib.import_module("zoo.cli")  # an imported submodule stays out of dir() too
    assert not {"cli", "shared", "vision", "graph"} & set(dir(zoo))


# ------------------------------------------------------------------------------- train / finetune


def test_train_help_shows_the_recipe_options(capsys):
    assert main(["train", "resnet18", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: zoo train resnet18") and "--augment" in out and "--epochs" in out
    assert main(["finetune", "resnet18", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: zoo finetune resnet18") and "--strategy" in out
    assert main(["train", "gat", "--help"]) == 0  # the graph recipe's options
    out = capsys.readouterr().out
    assert "--dataset" in out and "--augment" not in out
    assert main(["train", "transformer_tiny", "--help"]) == 0  # nlp: the recipe the model's name picks
    out = capsys.readouterr().out
    assert out.startswith("usage: zoo train transformer_tiny") and "--stress" in out and "--scheme" not in out
    assert main(["train", "bilstm_crf", "--help"]) == 0
    assert "--scheme" in capsys.readouterr().out
    for argv in (["train", "--help"], ["train", "--epochs", "1", "-h"]):  # no name yet: how to call it
        assert main(argv) == 0
        assert capsys.readouterr().out.startswith("usage: zoo train NAME [options]")


@pytest.fixture
def recipe_calls(monkeypatch):
    """Replace the recipes' main with a recorder: which recipe got which arguments."""
    import zoo.graph.train
    import zoo.vision.finetune
    import zoo.vision.train

    calls = []
    for module in (zoo.vision.train, zoo.vision.finetune, zoo.graph.train):
        monkeypatch.setattr(module, "main", lambda argv, m=module.__name__: calls.append((m, argv)) or 0)
    return calls


@pytest.mark.parametrize("argv", [
    ["train", "resnet18", "--epochs", "1"],
    ["train", "--epochs", "1", "resnet18"],
    ["train", "--model", "resnet18", "--epochs", "1"],
    ["train", "--epochs=1", "--model=resnet18"],
    ["train", "--pretrained", "runs/r18", "--amp", "resnet18"],  # a flag before the name: a value is not a name
])
def test_model_name_before_or_after_the_options(recipe_calls, argv):
    assert main(argv) == 0
    module, args = recipe_calls[-1]
    assert module == "zoo.vision.train"
    rest = [a for a in argv[1:] if "resnet18" not in a and a != "--model"]
    assert args == ["--model", "resnet18", *rest]


def test_recipe_is_chosen_by_the_models_domain(recipe_calls):
    assert main(["train", "--dataset", "karate", "gcn"]) == 0
    assert main(["finetune", "resnet18", "--pretrained", "x"]) == 0
    assert recipe_calls == [("zoo.graph.train", ["--model", "gcn", "--dataset", "karate"]),
                            ("zoo.vision.finetune", ["--model", "resnet18", "--pretrained", "x"])]


def test_train_without_a_model_name_says_how_to_call_it(recipe_calls, capsys):
    for argv in (["train"], ["train", "--epochs", "1"]):
        assert main(argv) == 2
        assert "zoo train needs a model name: zoo train NAME [options]" in _error_line(capsys.readouterr().err)
    assert main(["train", "--epochs", "1", "resnt18"]) == 1
    assert "Unknown model 'resnt18'. Did you mean: resnet18" in _error_line(capsys.readouterr().err)
    assert main(["finetune", "gat"]) == 1
    assert "graph domain has no finetune recipe" in _error_line(capsys.readouterr().err)
    assert recipe_calls == []


# ---------------------------------------------------------------------------------------- errors


def test_bad_option_values_are_one_usage_line(capsys):
    assert main(["train", "resnet18", "--epochs", "x"]) == 2  # the recipe's own parser
    line = _error_line(capsys.readouterr().err)
    assert "--epochs: invalid int value: 'x'" in line and "zoo train resnet18 --help" in line
    assert main(["predict", "--pretrained", "d", "a.png", "--topk", "0"]) == 2
    assert "--topk: must be a positive integer, got 0" in _error_line(capsys.readouterr().err)
    assert main(["lst"]) == 2
    assert "invalid choice: 'lst'" in _error_line(capsys.readouterr().err)


def test_user_mistakes_in_a_recipe_are_one_line(capsys):
    assert main(["train", "resnet18", "--data", "/nonexistent/images"]) == 1
    assert "/nonexistent/images" in _error_line(capsys.readouterr().err)
    assert main(["finetune", "resnet18"]) == 1  # the recipe's SystemExit("... needs --pretrained")
    assert "--pretrained" in _error_line(capsys.readouterr().err)


def test_debug_shows_the_traceback_and_other_errors_are_not_hidden(monkeypatch, capsys):
    import zoo.vision.train

    def broken(argv):
        raise CheckpointError("runs/x/last.pt is truncated; delete it or train without --resume")

    monkeypatch.setattr(zoo.vision.train, "main", broken)
    assert main(["train", "resnet18"]) == 1
    assert _error_line(capsys.readouterr().err) == \
        "zoo: error: runs/x/last.pt is truncated; delete it or train without --resume"
    for argv in (["--debug", "train", "resnet18"], ["train", "resnet18", "--debug"]):
        with pytest.raises(CheckpointError):
            main(argv)
    monkeypatch.setattr(zoo.vision.train, "main", lambda argv: 1 / 0)  # a bug, not a user mistake: traceback
    with pytest.raises(ZeroDivisionError):
        main(["train", "resnet18"])

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(zoo.vision.train, "main", interrupted)
    assert main(["train", "resnet18"]) == 130
    assert capsys.readouterr().err == "zoo: interrupted\n"


def test_error_line_and_traceback_from_the_command():
    cmd = [sys.executable, "-m", "zoo", "info", "resnet19"]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode == 1 and plain.stdout == ""
    assert _error_line(plain.stderr).startswith("zoo: error: Unknown model 'resnet19'. Did you mean: resnet18")
    debug = subprocess.run([*cmd, "--debug"], capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "UnknownModelError" in debug.stderr


# ----------------------------------------------------------------------------------------- light


def test_list_does_not_import_heavy_dependencies():
    code = (
        "import sys, zoo; zoo.list_models(); zoo.model_info('resnet18');"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


@pytest.mark.slow
def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "zoo", "list", "wide*"], capture_output=True, text=True, check=True)
    assert [line.split()[0] for line in out.stdout.splitlines()] == ["wide_resnet50_2", "wide_resnet101_2"]


def test_method_names_reach_their_domains_recipes(capsys):
    assert main(["train", "ppo", "--help"]) == 0  # not a registered model: the rl recipe takes it
    out = capsys.readouterr().out
    assert out.startswith("usage: zoo train ppo") and "--env" in out
    assert main(["train", "--total-steps", "10", "ddpm", "--help"]) == 0  # the name after an option's value
    assert "--img-size" in capsys.readouterr().out
    assert main(["eval", "dqn", "--help"]) == 0
    assert "--episodes" in capsys.readouterr().out
    assert main(["sample", "ddpm", "--help"]) == 0
    assert "--steps" in capsys.readouterr().out


def test_eval_and_sample_say_which_domains_have_them(capsys):
    assert main(["eval", "resnet18"]) == 1
    assert "zoo eval works for rl models" in capsys.readouterr().err
    assert main(["sample", "gat"]) == 1
    assert "zoo sample works for generative models" in capsys.readouterr().err
    assert main(["eval", "pop"]) == 1  # neither a model nor a method: the registry's suggestions
    assert "pop" in capsys.readouterr().err
