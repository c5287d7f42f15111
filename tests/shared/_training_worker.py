"""Helper process for the training tests (resume in a new process, torchrun DDP).

Trains a tiny MLP on fixed random data and writes, from rank 0, the final model
(and EMA) weights to ``--out`` plus a JSON summary next to it. Run directly for
a single process, or under ``python -m torch.distributed.run`` for DDP.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, when run as a script

from zoo.shared.training import Callback, ClassificationTask, LossSum, TrainConfig, Trainer  # noqa: E402


class StopAtStep(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, trainer, loss):
        if trainer.state.step >= self.step:
            trainer.should_stop = True


class IgnoringClassification(ClassificationTask):
    """Cross-entropy summed over the samples whose label is kept, with their count (a ``LossSum``),
    as token tasks with padding report it: labels 3 count as padding, so batches count unequally."""

    def training_step(self, model, batch):
        x, y = batch
        y = y.masked_fill(y == 3, -100)
        total = F.cross_entropy(model(x), y, ignore_index=-100, reduction="sum")
        return LossSum(total, (y != -100).sum())


def make_data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, :2].sum(1) > 0).long() + 2 * (x[:, 2] > 0).long()
    return TensorDataset(x, y)


def make_model(dropout: float) -> nn.Module:
    torch.manual_seed(1234)
    layers = [nn.Linear(8, 32), nn.GELU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(32, 4)]
    return nn.Sequential(*layers)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=None)
    p.add_argument("--output-dir", default=None)
    p.add_argument("--n-train", type=int, default=40)
    p.add_argument("--n-val", type=int, default=0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--ema", type=float, default=None)
    p.add_argument("--optimizer", default="adamw")
    p.add_argument("--stop-at", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--loss-sum", action="store_true", help="the token-weighted task (LossSum)")
    return p.parse_args(argv)


def train(argv=None) -> tuple[Trainer, dict]:
    """Build the run described by the command line ``argv`` and fit it."""
    args = parse_args(argv)
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, grad_accum_steps=args.accum, optimizer=args.optimizer,
        lr=0.05 if args.optimizer == "sgd" else 1e-2, weight_decay=0.01, warmup_steps=2, min_lr=1e-4,
        clip_grad_norm=1.0, ema_decay=args.ema, seed=7, deterministic=args.deterministic, device="cpu", amp=False,
        output_dir=args.output_dir, resume=True if args.resume else None, checkpoint_every=args.checkpoint_every,
        progress=False, tensorboard=False, plot=False,
    )
    callbacks = [StopAtStep(args.stop_at)] if args.stop_at else []
    val = make_data(args.n_val, seed=2) if args.n_val else None
    task = IgnoringClassification() if args.loss_sum else ClassificationTask()
    trainer = Trainer(make_model(args.dropout), task, make_data(args.n_train, seed=1), val, cfg,
                      callbacks=callbacks)
    return trainer, trainer.fit()


def main() -> None:
    out = parse_args().out
    trainer, result = train()
    if trainer.is_main and out:
        weights = {"model": trainer.model.state_dict()}
        if trainer.ema is not None:
            weights["ema"] = trainer.ema.module.state_dict()
        torch.save(weights, out)
        summary = {"steps": result["steps"], "epochs": result["epochs"], "history": result["history"],
                   "world_size": trainer.dist.world_size}
        Path(out).with_suffix(".json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
