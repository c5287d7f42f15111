"""Does fine-tuning pay off? Pretrain resnet18 on digits 0-4, fine-tune on 5-9, compare with scratch.

    .venv/bin/python benchmarks/finetune_vs_scratch.py                  # 2-epoch budget, all strategies
    .venv/bin/python benchmarks/finetune_vs_scratch.py --epochs 1 --strategies full linear

Every run goes through the CLI a user would type (`zoo train`, `zoo finetune`), with the same
seed, data split (digits 5-9, fixed), batch size and learning-rate schedule; only the starting
weights and the strategy differ. Prints a markdown table of test accuracy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def zoo(*args: str) -> dict:
    """Run a zoo command and return the JSON summary line the recipe prints last."""
    out = subprocess.run([sys.executable, "-m", "zoo", *args, "--no-progress"], check=True,
                         capture_output=True, text=True).stdout
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--pretrain-epochs", type=int, default=12)
    p.add_argument("--epochs", type=int, default=2, help="the small budget given to both fine-tuning and scratch")
    p.add_argument("--strategies", nargs="+", default=["full", "llrd", "gradual", "linear"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "digits04"
        base = zoo("train", args.model, "--classes", "0-4", "--epochs", str(args.pretrain_epochs),
                   "--seed", str(args.seed), "--save-model", str(pre))
        budget = ["--classes", "5-9", "--epochs", str(args.epochs), "--seed", str(args.seed)]
        rows = [("from scratch", zoo("train", args.model, *budget))]
        for strategy in args.strategies:
            rows.append((f"fine-tune ({strategy})",
                         zoo("finetune", args.model, "--pretrained", str(pre), "--strategy", strategy, *budget)))

    print(f"{args.model}: pretrained on digits 0-4 for {args.pretrain_epochs} epochs "
          f"(test acc {100 * base['test/acc']:.2f}%), then {args.epochs} epochs on digits 5-9\n")
    print("| start | digits 5-9 test acc | train seconds |")
    print("|---|---|---|")
    for name, summary in rows:
        print(f"| {name} | {100 * summary['test/acc']:.2f}% | {summary['train_seconds']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
