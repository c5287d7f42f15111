"""DDP under torchrun (2 CPU processes, gloo) matches one process with the global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.shared import _training_worker as worker

WORKER = Path(worker.__file__)
# No dropout / BatchNorm: the two runs must compute the same function. 64 training
# samples: one process with batch 16 or two ranks with batch 8 see the same global
# batches (seeded permutation, rank r takes perm[r::2]); 37 validation samples
# do not split evenly, so evaluation must neither drop nor double-count samples.
COMMON = ["--n-train", "64", "--n-val", "37", "--epochs", "2", "--accum", "2", "--dropout", "0",
          "--no-deterministic"]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["mean", "loss-sum"])
def test_torchrun_two_processes_match_single_process_with_global_batch(tmp_path, task):
    """"loss-sum": a task that returns LossSum with unequal counts per rank (labels 3 ignored): the
    gradient is divided by the global count, and the reported training loss is the global one."""
    common = COMMON + (["--loss-sum"] if task == "loss-sum" else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(WORKER), "--out", str(tmp_path / "ddp.pt"), "--batch-size", "8",
                          "--output-dir", str(tmp_path / "ddp_run"), *common],
                         env=env, capture_output=True, text=True, timeout=180)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    single, result = worker.train(["--batch-size", "16", *common])  # the reference, in this process

    a = single.model.state_dict()
    b = torch.load(tmp_path / "ddp.pt")["model"]
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=0)

    hb = json.loads((tmp_path / "ddp.json").read_text())
    assert single.dist.world_size == 1 and hb["world_size"] == 2 and result["steps"] == hb["steps"] == 4
    for ra, rb in zip(result["history"], hb["history"], strict=True):
        assert rb["val/acc"] == ra["val/acc"]  # all-reduced over both shards of the 37 samples
        assert rb["val/loss"] == pytest.approx(ra["val/loss"], abs=1e-6)
        assert rb["train/loss"] == pytest.approx(ra["train/loss"], abs=1e-6)

    # Rank 0 alone wrote the files (no stray per-rank temp files); last.pt has both ranks' RNG states.
    run_dir = tmp_path / "ddp_run"
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])  # per-rank streams
    assert sorted(p.name for p in run_dir.iterdir() if p.is_file()) == ["best.pt", "last.pt", "metrics.csv"]


def test_is_main_process_is_rank_0_of_the_group(monkeypatch):
    import torch.distributed as dist

    from zoo.shared.training import is_main_process

    assert is_main_process()  # no process group: a single process is the main one
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    assert not is_main_process()
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 0)
    assert is_main_process()
