"""The README's two commands are the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    install, tests = blocks[0].strip(), blocks[1].strip()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith(("#", "echo", "set ", "cd "))]
    assert ci == [install, tests]
    assert "constraints.txt" in install
    pins = (ROOT / "constraints.txt").read_text().split()
    assert pins == ["torch==2.11.0", "torchvision==0.26.0", "torchaudio==2.11.0"]
