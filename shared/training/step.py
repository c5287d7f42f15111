"""One optimizer step, the same for every loop: the Trainer, a GAN's two optimizers, PPO's
minibatch epochs, a DQN update, full-batch graph training.

After ``loss.backward()`` (or several, for accumulation) the loop calls
:func:`optimizer_step`, which

1. checks that the loss is finite, and the gradient norm too whenever it is computed
   (clipping computes it; ``check_grads=True`` computes it otherwise, one fused pass over the
   gradients, about 1.5% of a small MLP's step). A non-finite value either stops training with
   the step named (``nan_policy="raise"``) or drops the gradients and skips the update (``"skip"``);
2. unscales the gradients when a ``GradScaler`` is used, so clipping sees the true values;
3. clips the global gradient norm when ``clip_grad_norm`` is set;
4. steps the optimizer (through the scaler, which itself skips an fp16-overflowed step)
   and zeroes the gradients.

It reads the loss on the host once per call: that is the price of never applying an update
from a NaN/inf loss and of naming the exact step in the error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

NAN_POLICIES = ("raise", "skip")


class NonFiniteLossError(RuntimeError):
    """The training loss (or gradient) became NaN/inf and ``nan_policy="raise"``."""


@dataclass(frozen=True)
class StepResult:
    loss: float  # the loss value that was checked
    grad_norm: float | None  # total gradient norm before clipping (None when not computed)
    skipped: bool  # True: non-finite under nan_policy="skip", no update was applied


def _params_of(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor | float, *,
                   scaler: torch.amp.GradScaler | None = None, clip_grad_norm: float | None = None,
                   parameters: Iterable[torch.Tensor] | None = None, nan_policy: str = "raise",
                   check_grads: bool = False, where: str | Callable[[], str] = "") -> StepResult:
    """Finish one update of ``optimizer`` whose gradients are already accumulated.

    ``loss`` is the step's loss (a detached tensor or a float), only read for the check.
    ``parameters`` are clipped and checked (default: every parameter of ``optimizer``).
    A finite loss with a non-finite gradient is refused when the norm is known: with
    ``clip_grad_norm``, or ``check_grads=True``. With a ``scaler`` that is left to the scaler,
    whose job is to skip fp16 overflows and lower the scale.
    ``where`` completes the error message, e.g. ``"at global step 12, epoch 2"`` (or a function
    returning it, called only when there is an error to report).
    """
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    params = _params_of(optimizer) if parameters is None else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]

    unscaled = scaler is not None and clip_grad_norm is not None
    if unscaled:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    norm = None
    if clip_grad_norm is not None or (check_grads and scaler is None and grads):
        norm = nn.utils.get_total_norm(grads) if grads else torch.zeros(())

    # One host read for both numbers (and for whether clipping changes anything: clip_grad_norm_'s
    # factor max_norm / (norm + 1e-6), capped at 1, multiplies every gradient even when it is 1;
    # reading it here lets a step under the limit skip that pass, bitwise the same).
    loss_t = loss.detach().float() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
    if norm is not None:
        norm_t = norm.detach().float()
        numbers = [loss_t.to(norm.device), norm_t]
        if clip_grad_norm is not None:
            numbers.append(clip_grad_norm / (norm_t + 1e-6))
        loss_value, norm_value, *factor = torch.stack(numbers).tolist()
        if factor and not factor[0] >= 1.0:  # over the limit (or not finite: refused or skipped below)
            nn.utils.clip_grads_with_norm_(params, clip_grad_norm, norm)
    else:
        loss_value, norm_value = float(loss_t), None
    bad_grad = scaler is None and norm_value is not None and not math.isfinite(norm_value)
    if not math.isfinite(loss_value) or bad_grad:
        what = (f"non-finite training loss ({loss_value})" if not math.isfinite(loss_value)
                else f"non-finite gradient norm ({norm_value}) with a finite loss ({loss_value:.4g})")
        if nan_policy == "raise":
            where = where() if callable(where) else where
            raise NonFiniteLossError(
                f"{what}{' ' + where if where else ''}. No update was applied. Try a lower lr, "
                "clip_grad_norm, checking the data for NaN/inf, or nan_policy='skip'.")
        optimizer.zero_grad(set_to_none=True)  # drop the poisoned gradients, no update
        if unscaled:
            scaler.update()  # unscale_ above must be closed by an update before the next step
        return StepResult(loss_value, norm_value, skipped=True)

    if scaler is not None:
        scaler.step(optimizer)  # skips the update itself if fp16 grads overflowed
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss_value, norm_value, skipped=False)
