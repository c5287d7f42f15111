"""Planetoid accuracy of the graph recipes against the papers' figures (mean over seeds, public split).

    .venv/bin/python benchmarks/graph_accuracy.py                 # 10 seeds, Cora + CiteSeer, GAT + GCN
    .venv/bin/python benchmarks/graph_accuracy.py --seeds 3 --only gcn

Runs ``graph.train`` with the papers' hyper-parameters (see graph/train.py RECIPES) and prints a
table: mean +- std test accuracy, the paper's figure, and whether the mean reaches it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graph import train  # noqa: E402

PAPER = {("gat", "cora"): 83.0, ("gcn", "cora"): 81.5, ("gat", "citeseer"): 72.5, ("gcn", "citeseer"): 70.3}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--only", default=None, help="gat or gcn")
    p.add_argument("--datasets", default="cora,citeseer")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None, help="write the summaries here")
    args = p.parse_args(argv)
    rows, summaries = [], []
    for dataset in args.datasets.split(","):
        for model in ("gat", "gcn"):
            if args.only and model != args.only:
                continue
            t0 = time.perf_counter()
            extra = ["--data-dir", args.data_dir] if args.data_dir else []
            train.main(["--model", model, "--dataset", dataset, "--seeds", str(args.seeds), "--no-progress", *extra])
            s = train.main.last_summary
            summaries.append(s)
            target = PAPER[(model, dataset)]
            rows.append((model, s["dataset"], s["test_acc_mean"], s["test_acc_std"], target,
                         "yes" if s["test_acc_mean"] >= target else "NO", time.perf_counter() - t0))
    print(f"\n| model | dataset | test acc (mean +- std, {args.seeds} seeds) | paper | reached | wall s |")
    print("|---|---|---|---|---|---|")
    for m, d, mean, std, target, ok, sec in rows:
        print(f"| {m} | {d} | {mean:.2f} +- {std:.2f} | {target} | {ok} | {sec:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
