"""Planetoid accuracy of the graph recipes against the papers' figures (mean over seeds, public split).

    .venv/bin/python benchmarks/graph_accuracy.py                 # 10 seeds, Cora + CiteSeer, GAT + GCN
    .venv/bin/python benchmarks/graph_accuracy.py --seeds 3 --only gcn
    .venv/bin/python benchmarks/graph_accuracy.py --seeds 100 --jobs 2 --only gat --datasets citeseer  # the paper's 100 runs
    .venv/bin/python benchmarks/graph_accuracy.py --seeds 100 --jobs 16 --only gat --datasets citeseer --select gat_acc

Runs ``zoo.graph.train`` with the papers' hyper-parameters (see graph/train.py RECIPES) and prints a
table: mean +- std test accuracy, the paper's figure, and whether the mean reaches it.
``--jobs N`` splits the seeds into N contiguous ranges trained in parallel processes (each with
its share of the CPU threads); run k is trained with seed k however the seeds are split.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.graph import train  # noqa: E402

PAPER = {("gat", "cora"): 83.0, ("gcn", "cora"): 81.5, ("gat", "citeseer"): 72.5, ("gcn", "citeseer"): 70.3}


def run_seeds(argv: list[str], threads: int | None = None) -> dict:
    """``zoo.graph.train`` on ``argv`` in this process; returns its summary (with every seed's run)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    return train.run(train.build_parser().parse_args(argv))


def seed_ranges(seeds: int, jobs: int) -> list[tuple[int, int]]:
    """``(first seed, count)`` for each of at most ``jobs`` contiguous ranges covering 0..seeds-1."""
    jobs = max(1, min(jobs, seeds))
    base, extra = divmod(seeds, jobs)
    out, start = [], 0
    for j in range(jobs):
        n = base + (j < extra)
        out.append((start, n))
        start += n
    return out


def evaluate(model: str, dataset: str, args) -> dict:
    """Train ``args.seeds`` runs of ``model`` on ``dataset`` (in ``args.jobs`` processes); the summary."""
    common = ["--model", model, "--dataset", dataset, "--no-progress", "--device", args.device]
    if args.data_dir:
        common += ["--data-dir", args.data_dir]
    if args.select:
        common += ["--select", args.select]
    ranges = seed_ranges(args.seeds, args.jobs)
    argvs = [[*common, "--seed", str(first), "--seeds", str(n)] for first, n in ranges]
    if len(argvs) == 1:
        parts = [run_seeds(argvs[0])]
    else:
        threads = max(1, (os.cpu_count() or 1) // len(argvs))
        with ProcessPoolExecutor(len(argvs), mp_context=get_context("spawn")) as pool:
            parts = list(pool.map(run_seeds, argvs, [threads] * len(argvs)))
    runs = sorted((r for part in parts for r in part["runs"]), key=lambda r: r["seed"])
    mean, std = train.accuracy_stats(runs)
    return {"model": model, "dataset": parts[0]["dataset"], "recipe": parts[0]["recipe"], "seeds": len(runs),
            "test_acc_mean": round(mean, 2), "test_acc_std": round(std, 2),
            "val_acc_mean": round(100 * statistics.mean(r["val_acc"] for r in runs), 2), "runs": runs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--only", default=None, help="gat or gcn")
    p.add_argument("--datasets", default="cora,citeseer")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--select", default=None, help="override the recipes' selection rule (zoo.graph.train --select)")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes, each training a range of seeds")
    p.add_argument("--json", default=None, help="write the summaries here")
    args = p.parse_args(argv)
    rows, summaries = [], []
    for dataset in args.datasets.split(","):
        for model in ("gat", "gcn"):
            if args.only and model != args.only:
                continue
            t0 = time.perf_counter()
            s = evaluate(model, dataset, args)
            summaries.append(s)
            target = PAPER[(model, dataset)]
            rows.append((model, s["dataset"], s["test_acc_mean"], s["test_acc_std"], s["val_acc_mean"], target,
                         "yes" if s["test_acc_mean"] >= target else "NO", time.perf_counter() - t0))
            if args.json:  # after every row, so a cut-off run keeps what it finished
                Path(args.json).write_text(json.dumps(summaries, indent=2) + "\n")
    print(f"\n| model | dataset | test acc (mean +- std, {args.seeds} seeds) | val acc (mean) | paper | reached | wall s |")
    print("|---|---|---|---|---|---|---|")
    for m, d, mean, std, val, target, ok, sec in rows:
        print(f"| {m} | {d} | {mean:.2f} +- {std:.2f} | {val:.2f} | {target} | {ok} | {sec:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
