"""Shared by the techniques benchmarks: run recipe commands over seeds (at most ``jobs`` at once,
one thread each), read the JSON summary each prints last, and write mean +- std tables."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def run_commands(runs: list[tuple[str, int, list[str]]], log_dir: Path, jobs: int = 2,
                 reuse: bool = False) -> list[dict]:
    """``runs``: (arm, seed, argv after ``python -m``). Each runs with OMP_NUM_THREADS=1, its output
    in ``log_dir/<arm>_seed<seed>.log``; returns its summary dict with ``arm`` and ``seed`` added.
    ``reuse``: a run whose log already ends with its summary (same command) is not run again."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def one(item):
        arm, seed, argv = item
        log = log_dir / f"{arm}_seed{seed}.log"
        if reuse and log.is_file() and log.read_text().startswith("$ " + " ".join(argv) + "\n"):
            done = [ln for ln in log.read_text().splitlines() if ln.startswith("{")]
            if done:
                print(f"  {arm} seed {seed}: reused {log}", flush=True)
                return {"arm": arm, "seed": seed, **json.loads(done[-1])}
        start = time.perf_counter()
        with open(log, "w") as fh:
            fh.write("$ " + " ".join(argv) + "\n")
            fh.flush()
            code = subprocess.call([sys.executable, "-m", *argv], stdout=fh, stderr=subprocess.STDOUT, env=env)
        lines = [ln for ln in log.read_text().splitlines() if ln.startswith("{")]
        if code != 0 or not lines:
            raise RuntimeError(f"{arm} seed {seed} failed (exit {code}); see {log}")
        print(f"  {arm} seed {seed}: done in {time.perf_counter() - start:.0f}s", flush=True)
        return {"arm": arm, "seed": seed, **json.loads(lines[-1])}

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, runs))


def mean_std(values: list[float]) -> str:
    values = [100 * v for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def table(results: list[dict], arms: list[tuple[str, str]], metrics: list[tuple[str, str]]) -> str:
    """A markdown table: one row per (arm key, arm label), one column per (metric key, label),
    mean ± std over seeds in percent, then the per-seed values."""
    head = "| | " + " | ".join(label for _, label in metrics) + " | per seed (" + metrics[0][1] + ") |"
    rows = [head, "|" + "---|" * (len(metrics) + 2)]
    for arm, label in arms:
        mine = sorted((r for r in results if r["arm"] == arm), key=lambda r: r["seed"])
        if not mine:
            continue
        cells = [mean_std([r[k] for r in mine]) for k, _ in metrics]
        per_seed = ", ".join(f"{100 * r[metrics[0][0]]:.2f}" for r in mine)
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {per_seed} |")
    return "\n".join(rows)
