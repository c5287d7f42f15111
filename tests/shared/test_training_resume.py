"""Bitwise resume across processes (CPU, deterministic mode).

Run A trains straight through. Run B is the same run split over two
processes: the first stops in the middle of epoch 2 (step 5; epoch 1 ended with
a leftover-accumulation step), the second resumes from that checkpoint and
finishes. (Resuming from an epoch-end checkpoint is covered in-process in
test_training.py.) The model has dropout, uses gradient accumulation,
clipping, warmup + cosine and EMA, so data order, RNG streams, optimizer,
scheduler and EMA state must all be restored exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("_training_worker.py")
# 40 samples / batch 8 = 5 micro-batches per epoch; accum 2 -> steps of 2, 2, 1 micro-batches.
COMMON = ["--n-train", "40", "--n-val", "11", "--epochs", "3", "--batch-size", "8", "--accum", "2",
          "--dropout", "0.3", "--ema", "0.8"]


def start(out: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same threading in every process
    return subprocess.Popen([sys.executable, str(WORKER), "--out", str(out), *COMMON, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> None:
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output


@pytest.mark.slow
def test_resume_in_new_processes_is_bitwise_identical(tmp_path):
    straight = start(tmp_path / "a.pt", "--output-dir", str(tmp_path / "A"))  # runs alongside the split run
    run_dir = str(tmp_path / "B")
    finish(start(tmp_path / "b1.pt", "--output-dir", run_dir, "--stop-at", "5"))
    mid = torch.load(Path(run_dir) / "last.pt", weights_only=True)["state"]
    assert (mid["epoch"], mid["batch_in_epoch"], mid["step"]) == (1, 4, 5)  # mid-epoch checkpoint
    finish(start(tmp_path / "b2.pt", "--output-dir", run_dir, "--resume"))
    finish(straight)

    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b2.pt")
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name}"
    # The dropout actually mattered: the run stopped at step 5 is somewhere else.
    assert not torch.equal(torch.load(tmp_path / "b1.pt")["model"]["0.weight"], a["model"]["0.weight"])

    summary_a = json.loads((tmp_path / "a.json").read_text())
    summary_b = json.loads((tmp_path / "b2.json").read_text())
    assert summary_a["steps"] == summary_b["steps"] == 9
    for ra, rb in zip(summary_a["history"], summary_b["history"], strict=True):
        assert ra["epoch"] == rb["epoch"] and ra["val/loss"] == rb["val/loss"]
        assert ra["train/loss"] == pytest.approx(rb["train/loss"], rel=1e-6)
