"""Tasks: the only domain knowledge the trainer sees.

A task says how a batch becomes a training loss and how evaluation batches
become metrics. Evaluation is split in two so it works unchanged across
processes: ``evaluation_step`` returns per-batch *sums* (sum of losses, number
correct, number of samples, ...), the trainer adds them up over all batches and
all ranks, and ``compute_metrics`` turns the totals into the reported numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class LossSum(NamedTuple):
    """A training loss summed over what the task counts, with that count.

    Returned by ``training_step`` when samples weigh differently, e.g. padded sequences
    whose loss is a mean over tokens: ``LossSum(token_losses.sum(), n_tokens)``. The trainer
    then divides the gradients of an accumulation group by its total count (over all ranks),
    so micro-batches of unequal token counts give the gradient of one big batch.
    """

    total: torch.Tensor
    count: torch.Tensor | int


class Task:
    """Base class. Subclasses implement at least ``training_step``.

    ``monitor``: ``(metric name, "max" | "min")`` that picks the best model and drives early
    stopping, or None (the trainer then keeps no best model unless its config names one).
    """

    monitor: tuple[str, str] | None = None

    def training_step(self, model: nn.Module, batch) -> torch.Tensor | LossSum:
        """Return the scalar training loss: the mean over the batch, or a :class:`LossSum`."""
        raise NotImplementedError

    def evaluation_step(self, model: nn.Module, batch) -> dict[str, float | torch.Tensor]:
        """Return sums to accumulate over batches, e.g. ``{"loss": sum_loss, "count": n}``.

        The default evaluates the training loss, weighted by the batch size (or by the
        count of a :class:`LossSum`).
        """
        out = self.training_step(model, batch)
        if isinstance(out, LossSum):
            return {"loss": out.total.detach().float(), "count": out.count}
        n = self.batch_size(batch)
        return {"loss": out.detach().float() * n, "count": n}

    def compute_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Turn accumulated sums into metrics. Default: every sum divided by ``count``."""
        count = max(sums.get("count", 1.0), 1.0)
        return {k: v / count for k, v in sums.items() if k != "count"}

    def batch_size(self, batch) -> int:
        """Number of samples in a batch. Default: length of the first tensor found."""
        first = batch
        while not isinstance(first, torch.Tensor):
            if isinstance(first, Mapping):
                first = next(iter(first.values()))
            elif isinstance(first, Sequence) and not isinstance(first, str):
                first = first[0]
            else:
                return len(first)
        return len(first)

    def to_device(self, batch, device: torch.device):
        """Move every tensor in a (nested) batch to ``device``."""
        return move_to_device(batch, device)


def move_to_device(obj, device: torch.device):
    """Recursively move tensors inside tuples, lists and dicts.

    ``non_blocking`` only overlaps the copy with compute when the source is in
    pinned memory (the trainer pins batches for CUDA); otherwise it is a normal copy.
    """
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return type(obj)({k: move_to_device(v, device) for k, v in obj.items()})
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(move_to_device(v, device) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to_device(v, device) for v in obj)
    return obj


class ClassificationTask(Task):
    """Single-label classification: ``batch = (inputs, targets)``, logits ``(N, C)``.

    Trains with cross-entropy (optional label smoothing) and reports the
    unsmoothed validation loss, top-1 accuracy ``acc`` and, when the model has at
    least k classes, top-k accuracy ``top{k}`` for every other k in ``topk``.

    ``batch_transform(inputs, targets) -> (inputs, targets)`` is applied to training
    batches only, e.g. torchvision's ``v2.MixUp`` / ``v2.CutMix``, whose soft targets
    (N, C) cross-entropy accepts as class probabilities.
    """

    monitor = ("val/acc", "max")

    def __init__(self, label_smoothing: float = 0.0, topk: Sequence[int] = (1, 5), batch_transform=None):
        self.label_smoothing = label_smoothing
        self.topk = tuple(topk)
        self.batch_transform = batch_transform

    def training_step(self, model, batch):
        inputs, targets = batch[0], batch[1]
        if self.batch_transform is not None:
            inputs, targets = self.batch_transform(inputs, targets)
        logits = model(inputs)
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    def evaluation_step(self, model, batch):
        inputs, targets = batch[0], batch[1]
        logits = model(inputs).float()
        sums = {"loss": F.cross_entropy(logits, targets, reduction="sum"), "count": len(targets)}
        num_classes = logits.shape[-1]
        ks = [k for k in self.topk if k <= num_classes]
        if ks:
            top = logits.topk(max(ks), dim=-1).indices  # (N, kmax), best first
            hits = top == targets.unsqueeze(-1)
            for k in ks:
                sums["correct" if k == 1 else f"top{k}"] = hits[:, :k].any(dim=-1).sum()
        return sums

    def compute_metrics(self, sums):
        count = max(sums["count"], 1.0)
        metrics = {"loss": sums["loss"] / count}
        if "correct" in sums:
            metrics["acc"] = sums["correct"] / count
        for k in self.topk:
            if k != 1 and f"top{k}" in sums:
                metrics[f"top{k}"] = sums[f"top{k}"] / count
        return metrics
