"""The domains install under the zoo namespace, so nothing in a user's folder shadows them."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_users_vision_py_and_graph_py_do_not_shadow_the_zoo(tmp_path):
    # Files a user may well have in their working directory, which would win over top-level
    # packages named `vision` / `graph` / `shared` (the working directory comes first on sys.path).
    for name in ("vision", "graph", "shared", "nlp"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py was imported')\n")
    code = ("import zoo; m = zoo.create('resnet18', num_classes=3); g = zoo.create('gcn', in_channels=4, "
            "num_classes=2); import zoo.vision.train, zoo.graph.train; "
            "print(type(m).__module__, type(g).__module__, len(zoo.list_models()) > 10)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["zoo.vision.resnet", "zoo.graph.gcn", "True"]


def test_every_package_folder_is_installed_under_zoo():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, mapping = set(config["packages"]), config["package-dir"]
    tracked = subprocess.run(["git", "ls-files", "*__init__.py"], cwd=ROOT, capture_output=True, text=True).stdout
    folders = {str(Path(f).parent) for f in tracked.split() if Path(f).parts[0] not in ("tests", "benchmarks")}
    expected = {"zoo" if f == "zoo" else "zoo." + f.replace("/", ".") for f in folders}
    assert listed == expected, f"add {sorted(expected - listed)} / remove {sorted(listed - expected)}"
    for name in listed:  # each top-level domain maps to its folder at the top of the repository
        top = name.split(".")[1] if name != "zoo" else "zoo"
        assert mapping["zoo" if name == "zoo" else f"zoo.{top}"] == top
