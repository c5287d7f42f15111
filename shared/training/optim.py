"""Optimizer and LR-schedule factories (schedules are stepped once per optimizer step)."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim import lr_scheduler as sched

from .config import OPTIMIZERS, TrainConfig


def decay_groups(params, weight_decay: float, decay_norm_and_bias: bool = False, **options) -> list[dict]:
    """Optimizer param groups: unless ``decay_norm_and_bias``, 1-D parameters (biases, norm
    scales) get ``weight_decay=0``. ``options`` (e.g. ``lr``) go into every group."""
    params = list(params)
    if decay_norm_and_bias or weight_decay == 0:
        groups = [{"params": params, "weight_decay": weight_decay}]
    else:
        groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    return [{**g, **options} for g in groups if g["params"]]


def build_optimizer(params, *, name: str = "adamw", lr: float = 1e-3, weight_decay: float = 0.0,
                    betas: tuple[float, float] = (0.9, 0.999), momentum: float = 0.9,
                    eps: float = 1e-8) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD over ``params``: parameters, or parameter groups (dicts whose own
    ``lr`` / ``weight_decay`` override the defaults given here, e.g. from :func:`decay_groups`).

    ``betas`` and ``eps`` are Adam's; ``momentum`` is SGD's (a GAN's Adam beta1 = 0.5 is
    ``betas=(0.5, 0.999)``).
    """
    params = list(params)
    if not params:
        raise ValueError("build_optimizer got no parameters to optimize")
    if name in ("adamw", "adam"):
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        return cls(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=_fusable(params))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use one of {OPTIMIZERS}")


def _fusable(params) -> bool | None:
    """Adam's fused kernel (one pass per tensor; on CPU the default is a Python loop of about ten
    tensor ops per parameter, 4x slower) takes floating-point CPU or CUDA tensors; else the default."""
    tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    return True if all(t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in tensors) else None


def optimizer_from_config(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The Trainer's default: ``cfg.optimizer`` over the trainable parameters, 1-D ones (biases,
    norm scales) without weight decay unless ``cfg.decay_norm_and_bias``."""
    params = [p for p in model.parameters() if p.requires_grad]
    return build_optimizer(decay_groups(params, cfg.weight_decay, cfg.decay_norm_and_bias),
                           name=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay,
                           betas=(cfg.beta1, cfg.beta2), momentum=cfg.momentum, eps=cfg.eps)


def warmup_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    return max(cfg.warmup_steps, round(cfg.warmup_epochs * steps_per_epoch))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int,
                    total_steps: int) -> sched.LRScheduler:
    """The schedule named by ``cfg.scheduler`` over ``total_steps`` optimizer steps.

    - cosine: linear warmup (``LinearLR``) then ``CosineAnnealingLR`` down to ``min_lr``.
    - constant: linear warmup then a constant LR.
    - step: linear warmup then ``StepLR`` (x ``step_gamma`` every ``step_size_epochs``).
    - onecycle: ``OneCycleLR`` peaking at ``lr``; its warm-up fraction is the warmup
      (if any) over the total, else torch's default 0.3.
    """
    warmup = min(warmup_steps(cfg, steps_per_epoch), max(total_steps - 1, 0))
    if cfg.scheduler == "onecycle":
        pct = warmup / total_steps if warmup else 0.3
        return sched.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                total_steps=max(total_steps, 2), pct_start=pct)

    if cfg.scheduler == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=max(total_steps - warmup, 1), eta_min=cfg.min_lr)
    elif cfg.scheduler == "constant":
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    elif cfg.scheduler == "step":
        step_size = max(round(cfg.step_size_epochs * steps_per_epoch), 1)
        main = sched.StepLR(optimizer, step_size=step_size, gamma=cfg.step_gamma)
    else:
        raise ValueError(f"unknown scheduler {cfg.scheduler!r}")
    if warmup == 0:
        return main
    # Warm up from lr/warmup to lr over `warmup` steps, then hand over to the main schedule.
    warm = sched.LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup)
    return sched.SequentialLR(optimizer, [warm, main], milestones=[warmup])
