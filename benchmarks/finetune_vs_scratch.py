"""Does fine-tuning pay off? Pretrain resnet18 on digits 0-4, fine-tune on 5-9, compare with scratch.

    .venv/bin/python benchmarks/finetune_vs_scratch.py                  # 2-epoch budget, all strategies, 5 seeds
    .venv/bin/python benchmarks/finetune_vs_scratch.py --epochs 1 --strategies full linear --seeds 3

Every run goes through the CLI a user would type (`zoo train`, `zoo finetune`), with the same
data split (digits 5-9, fixed), batch size and learning-rate schedule; only the starting weights
and the strategy differ. The model is pretrained once; each of ``--seeds`` seeds then trains
every row (the seed sets the new head, the batch order and dropout), and the table gives the
mean +- std test accuracy over seeds and each seed's figure: one seed alone is too noisy to rank
starts after a budget this small.
"""

from __future__ import annotations

import argparse
import json
import statistics
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
    p.add_argument("--seed", type=int, default=0, help="the pretraining seed, and the first of --seeds")
    p.add_argument("--seeds", type=int, default=5, help="seeds per row (seed .. seed + seeds - 1)")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "digits04"
        base = zoo("train", args.model, "--classes", "0-4", "--epochs", str(args.pretrain_epochs),
                   "--seed", str(args.seed), "--save-model", str(pre))
        rows: dict[str, list[dict]] = {"from scratch": [], **{f"fine-tune ({s})": [] for s in args.strategies}}
        for seed in range(args.seed, args.seed + args.seeds):
            budget = ["--classes", "5-9", "--epochs", str(args.epochs), "--seed", str(seed)]
            rows["from scratch"].append(zoo("train", args.model, *budget))
            for strategy in args.strategies:
                rows[f"fine-tune ({strategy})"].append(
                    zoo("finetune", args.model, "--pretrained", str(pre), "--strategy", strategy, *budget))
            print(f"seed {seed}: " + ", ".join(f"{k} {100 * v[-1]['test/acc']:.2f}%" for k, v in rows.items()),
                  flush=True)

    print(f"\n{args.model}: pretrained on digits 0-4 for {args.pretrain_epochs} epochs "
          f"(test acc {100 * base['test/acc']:.2f}%), then {args.epochs} epochs on digits 5-9, "
          f"seeds {args.seed}-{args.seed + args.seeds - 1}\n")
    print("| start | digits 5-9 test acc, mean +- std | per seed | train seconds (mean) |")
    print("|---|---|---|---|")
    for name, runs in rows.items():
        accs = [100 * r["test/acc"] for r in runs]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"| {name} | {statistics.mean(accs):.2f} +- {std:.2f} | {' '.join(f'{a:.1f}' for a in accs)} "
              f"| {statistics.mean(r['train_seconds'] for r in runs):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
