"""Callback hooks. Subclass ``Callback`` and override the hooks you need.

Hooks run on every rank (so a callback may take part in collectives); guard
side effects with ``trainer.is_main`` when only rank 0 should do them. Any
hook may set ``trainer.should_stop = True``; the trainer then stops after the
current optimizer step (or at the end of the current epoch for epoch hooks),
writes ``last.pt`` when it has an ``output_dir``, and returns from ``fit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer


class Callback:
    def on_train_start(self, trainer: "Trainer") -> None:
        pass

    def on_epoch_start(self, trainer: "Trainer") -> None:
        pass

    def on_step_end(self, trainer: "Trainer", loss: torch.Tensor) -> None:
        """After each optimizer step; ``loss`` is the step's mean loss as a detached tensor.

        ``loss.item()`` forces a device sync; call it only when you need the value.
        """

    def on_evaluate(self, trainer: "Trainer", metrics: dict[str, float]) -> None:
        pass

    def on_epoch_end(self, trainer: "Trainer") -> None:
        pass

    def on_train_end(self, trainer: "Trainer") -> None:
        pass
