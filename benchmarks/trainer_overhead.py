"""How much does ``Trainer.fit`` cost per step over a hand-written training loop?

Both sides train the same MLP on the same random data with the same optimizer
(the Trainer's AdamW) and batch size, full precision, for one epoch of
``--steps`` steps. The Trainer runs with progress bar and logging off but its
normal per-step bookkeeping on: NaN check, LR schedule step, running loss,
callbacks, step counters. The minimal loop is forward / backward / step only.

Repeats are interleaved (A B, B A, ...) and medians reported, to cut the noise
of a shared machine; wall-clock and process CPU time are both shown. Target:
overhead <= 5%.

    python benchmarks/trainer_overhead.py                      # defaults below
    python benchmarks/trainer_overhead.py --hidden 256 --depth 1 --batch-size 32 --steps 200  # tiny steps
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from zoo.shared.training import ClassificationTask, TrainConfig, Trainer  # noqa: E402
from zoo.shared.training.optim import optimizer_from_config  # noqa: E402


def make_mlp(in_dim: int, hidden: int, depth: int, classes: int) -> nn.Module:
    layers, width = [], in_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


class Clock:
    """Wall-clock and process CPU time of a block (CPU time is less disturbed by other
    processes on a shared machine; with several threads it also counts their spinning)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def minimal_loop(model: nn.Module, data: TensorDataset, cfg: TrainConfig) -> Clock:
    """The hand-written baseline: one epoch."""
    optimizer = optimizer_from_config(model, cfg)
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    model.train()
    with Clock() as clock:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return clock


def trainer_fit(model: nn.Module, data: TensorDataset, cfg: TrainConfig) -> Clock:
    """``Trainer.fit`` over one epoch (constructing the Trainer is not timed)."""
    trainer = Trainer(model, ClassificationTask(), data, config=cfg)
    with Clock() as clock:
        trainer.fit()
    assert trainer.state.step == len(data) // cfg.batch_size
    return clock


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--in-dim", type=int, default=512)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--depth", type=int, default=2, help="hidden layers")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per timed run")
    p.add_argument("--repeats", type=int, default=11, help="timed runs per side, interleaved")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads; 0 = torch's default. One thread keeps step times stable on a "
                        "shared machine, where multi-threaded kernels stall on busy cores")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    n = args.steps * args.batch_size
    data = TensorDataset(torch.randn(n, args.in_dim), torch.randint(0, args.classes, (n,)))
    base = make_mlp(args.in_dim, args.hidden, args.depth, args.classes)
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, device="cpu", amp=False, progress=False, verbose=False,
                      tensorboard=False, plot=False, output_dir=None)
    params = sum(p.numel() for p in base.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MLP {args.in_dim}-"
          f"{'-'.join([str(args.hidden)] * args.depth)}-{args.classes} ({params / 1e6:.2f}M params), "
          f"batch {args.batch_size}, {args.steps} steps x {args.repeats} repeats")

    runs = {"minimal": minimal_loop, "trainer": trainer_fit}
    for fn in runs.values():  # warm-up: allocator, thread pool, first-call costs
        fn(copy.deepcopy(base), data, cfg)
    per_step = {clock: {name: [] for name in runs} for clock in ("wall", "cpu")}
    for r in range(args.repeats):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            clock = runs[name](copy.deepcopy(base), data, cfg)
            per_step["wall"][name].append(clock.wall / args.steps)
            per_step["cpu"][name].append(clock.cpu / args.steps)

    for clock, times in per_step.items():
        med = {name: statistics.median(t) for name, t in times.items()}
        print(f"[{clock} time]")
        for name, t in times.items():
            print(f"  {name:>8}: median {med[name] * 1e3:8.3f} ms/step  min {min(t) * 1e3:8.3f}  runs: "
                  + " ".join(f"{x * 1e3:.2f}" for x in t))
        overhead = med["trainer"] / med["minimal"] - 1
        # Each repeat ran both sides back to back: their ratio cancels slow drifts in machine load.
        paired = statistics.median(t / m for t, m in zip(times["trainer"], times["minimal"])) - 1
        best = min(times["trainer"]) / min(times["minimal"]) - 1
        print(f"  overhead (ratio of medians): {overhead * 100:+.2f}% "
              f"({(med['trainer'] - med['minimal']) * 1e6:+.0f} us/step)  [median of paired ratios "
              f"{paired * 100:+.2f}%, ratio of minima {best * 100:+.2f}%]  "
              f"target <= 5%: {'OK' if overhead <= 0.05 else 'MISSED'}")

if __name__ == "__main__":
    main()
