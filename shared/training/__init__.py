"""The domain-agnostic training core (see docs/DESIGN.md, "The training core").

A domain supplies a :class:`Task` (batch -> loss, batch -> metric sums); the
:class:`Trainer` supplies the loop. Loops that are not "batch -> loss" (RL,
GANs, diffusion sampling) reuse the pieces: :func:`seed_everything`,
:func:`save_checkpoint` / :func:`load_checkpoint`, :class:`ModelEMA`,
``amp.resolve_amp`` / ``amp.resolve_device``, ``loggers.RunLogger``.
"""

from .amp import AmpSettings, resolve_amp, resolve_device
from .callbacks import Callback
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .ema import ModelEMA
from .reproducibility import get_rng_state, seed_everything, set_rng_state
from .task import ClassificationTask, Task
from .trainer import NonFiniteLossError, Trainer, TrainState

__all__ = [
    "AmpSettings",
    "Callback",
    "ClassificationTask",
    "ModelEMA",
    "NonFiniteLossError",
    "Task",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "get_rng_state",
    "load_checkpoint",
    "resolve_amp",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
]
