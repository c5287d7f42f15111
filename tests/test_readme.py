"""The README's two commands are the ones CI runs, and the versions they install fit together."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    install, tests = blocks[0].strip(), blocks[1].strip()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith(("#", "echo", "set ", "cd "))]
    assert ci == [install, tests]
    assert re.search(r"pip install (.* )?-c constraints\.txt ", install), "the install must apply constraints.txt"


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier  # exactly one "==" pin per package
            assert spec.operator == "==", f"constraints.txt pins exact versions, got {line!r}"
            pins[req.name] = Version(spec.version)
    return pins


def test_constraints_pin_a_matching_torch_trio_within_pyproject_ranges():
    pins = _pins()
    assert set(pins) == {"torch", "torchvision", "torchaudio"}
    torch, vision, audio = pins["torch"], pins["torchvision"], pins["torchaudio"]
    # the releases made together: torch 2.N ships with torchvision 0.(N + 15) and torchaudio 2.N
    assert (vision.major, vision.minor) == (0, torch.minor + 15), f"torchvision {vision} is not built for torch {torch}"
    assert (audio.major, audio.minor) == (torch.major, torch.minor), f"torchaudio {audio} is not built for torch {torch}"
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ranges = {r.name: r.specifier for r in map(Requirement, dependencies)}
    for name, version in pins.items():
        assert name in ranges, f"{name} is pinned in constraints.txt but not a dependency in pyproject.toml"
        assert version in ranges[name], f"constraints.txt pins {name}=={version} outside pyproject's {ranges[name]}"
