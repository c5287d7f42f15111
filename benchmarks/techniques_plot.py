"""One figure of the three techniques benchmarks' results (per-seed points, mean ± std bars), from
the ``results.json`` their runs wrote.

    python benchmarks/techniques_plot.py --distill /tmp/techniques_distill --simclr /tmp/techniques_simclr \\
        --dann /tmp/techniques_dann --out docs/images/techniques_results.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def _arms(results: list[dict], arms: list[tuple[str, str]], key: str):
    out = []
    for arm, label in arms:
        values = [100 * r[key] for r in results if r["arm"] == arm]
        if values:
            out.append((label, values))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--distill", required=True)
    p.add_argument("--simclr", required=True)
    p.add_argument("--dann", required=True)
    p.add_argument("--out", default="docs/images/techniques_results.png")
    args = p.parse_args()
    from matplotlib.figure import Figure

    distill = json.loads((Path(args.distill) / "results.json").read_text())
    simclr = json.loads((Path(args.simclr) / "results.json").read_text())["runs"]
    dann = json.loads((Path(args.dann) / "results.json").read_text())
    panels = [
        ("distillation: resnet18 student, width 4", _arms(distill, [("alone", "alone"), ("kd", "KD"),
                                                                ("kd_features", "KD +\nfeatures")], "test/acc")),
        ("SimCLR: fine-tuning on 10% of labels", _arms(simclr, [("scratch", "scratch"),
                                                               ("simclr_finetune", "SimCLR\nencoder")], "test/acc")),
        ("DANN: digits -> rotated digits (target)", _arms(dann, [("source_only", "source\nonly"),
                                                                 ("no_adversary", "BN sees\ntarget"),
                                                                 ("dann", "DANN")], "target/acc")),
    ]
    fig = Figure(figsize=(12, 3.8))
    for i, (title, arms) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        for x, (label, values) in enumerate(arms):
            mean = statistics.mean(values)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            ax.bar(x, mean, yerr=std, color="C0" if x == len(arms) - 1 else "0.7", capsize=4, width=0.6)
            ax.scatter([x] * len(values), values, color="k", s=10, zorder=3)
        ax.set_xticks(range(len(arms)), [label for label, _ in arms])
        lows = [min(v) for _, v in arms]
        ax.set_ylim(max(0, min(lows) - 5), min(100, max(max(v) for _, v in arms) + 3))
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("test accuracy %")
    fig.suptitle("mean ± std over 5 seeds (points: seeds), digits, 1 CPU thread per run", fontsize=10)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
