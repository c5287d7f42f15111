"""Domain-adversarial training on digits -> shifted digits: target test accuracy of DANN against
the same network trained on the source alone, over seeds.

    python benchmarks/techniques_dann.py                      # rotate shift, thin ResNet-18, 5 seeds
    python benchmarks/techniques_dann.py --shift invert_noise --seeds 0 1 2

Each run is ``python -m zoo.techniques.train --model dann`` on one thread; ``--source-only`` is the
baseline with the same network, data order, optimizer and schedule. Nothing is selected on the
target: both keep their last model. Prints a markdown table (mean ± std).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from techniques_common import run_commands, table  # noqa: E402


# the baseline, and a control: DANN's batches (target images through the network, so BatchNorm's
# statistics mix both domains) with the domain loss weighted 0, which separates what the adversary
# adds from what the shared normalisation statistics alone do
ARMS = (("dann", []), ("source_only", ["--source-only"]), ("no_adversary", ["--domain-weight", "0"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--base-channels", default="16", help="'' for the backbone's full width")
    p.add_argument("--shift", default="rotate")
    p.add_argument("--epochs", default="15")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="/tmp/techniques_dann")
    p.add_argument("--reuse", action="store_true", help="keep the runs whose logs already hold their summary")
    args = p.parse_args()
    base = ["zoo.techniques.train", "--model", "dann", "--backbone", args.backbone, "--shift", args.shift,
            "--epochs", args.epochs, "--no-progress"]
    if args.base_channels:
        base += ["--base-channels", args.base_channels]
    runs = [(arm, s, [*base, *extra, "--seed", str(s)])
            for s in args.seeds for arm, extra in ARMS]
    results = run_commands(runs, Path(args.out) / "logs", args.jobs, args.reuse)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1))
    width = f" (base_channels {args.base_channels})" if args.base_channels else ""
    print(f"\n{args.backbone}{width}, digits -> digits shifted by {args.shift}, {args.epochs} epochs, "
          f"{len(args.seeds)} seeds, accuracy %:")
    print(table(results, [("dann", "DANN"), ("source_only", "source only"),
                          ("no_adversary", "control: target batches through BatchNorm, no domain loss")],
                [("target/acc", "target test accuracy"), ("source/acc", "source test accuracy")]))


if __name__ == "__main__":
    main()
