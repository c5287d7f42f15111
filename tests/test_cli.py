import json
import subprocess
import sys

import pytest

from zoo.cli import main

HEAVY = ("transformers", "diffusers", "torch_geometric", "gymnasium")


def test_list_with_pattern_and_domain(capsys):
    assert main(["list", "resnet1*", "--domain", "vision"]) == 0
    assert capsys.readouterr().out.split() == ["resnet101", "resnet152", "resnet18"]
    assert main(["list", "--pretrained", "resnet18*"]) == 0
    assert capsys.readouterr().out.split() == ["resnet18.tv_in1k"]


def test_info(capsys):
    assert main(["info", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert "11,689,512" in out and "He et al." in out and "resnet18.tv_in1k" in out
    assert main(["info", "resnet18", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["domain"] == "vision" and info["config"]["layers"] == [2, 2, 2, 2]


def test_unknown_name_exits_2_with_suggestion(capsys):
    assert main(["info", "resnet19"]) == 2
    assert "Did you mean: resnet18" in capsys.readouterr().err


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
    assert out.stdout.split() == ["wide_resnet101_2", "wide_resnet50_2"]
