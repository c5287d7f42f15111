"""The domain-agnostic training core (see docs/DESIGN.md, "The training core").

A domain supplies a :class:`Task` (batch -> loss, batch -> metric sums); the
:class:`Trainer` supplies the loop. Loops that are not "batch -> loss" (RL,
GANs, diffusion sampling, full-batch graph training) call the same pieces the
Trainer is built from: :func:`optimizer_step` (check, unscale, clip, step),
:func:`build_optimizer`, :class:`BestTracker` with a rule (early stopping),
:func:`seed_everything`, :func:`save_checkpoint` / :func:`load_checkpoint`,
:class:`ModelEMA`, ``amp.resolve_amp`` / ``amp.resolve_device``, :class:`RunLogger`.
"""

from .amp import AmpSettings, resolve_amp, resolve_device
from .callbacks import Callback
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .distributed import is_main_process
from .ema import ModelEMA
from .loggers import RunLogger, plot_curves
from .optim import build_optimizer, build_scheduler, decay_groups
from .reproducibility import get_rng_state, seed_everything, set_rng_state
from .selection import AccuracyAndLoss, AccuracyThenLoss, BestTracker, Monitor, Rule
from .step import NonFiniteLossError, StepResult, optimizer_step
from .task import ClassificationTask, LossSum, Task
from .trainer import Trainer, TrainState

__all__ = [
    "AccuracyAndLoss",
    "AccuracyThenLoss",
    "AmpSettings",
    "BestTracker",
    "LossSum",
    "Monitor",
    "Rule",
    "RunLogger",
    "StepResult",
    "build_optimizer",
    "build_scheduler",
    "decay_groups",
    "optimizer_step",
    "plot_curves",
    "Callback",
    "ClassificationTask",
    "ModelEMA",
    "NonFiniteLossError",
    "Task",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "get_rng_state",
    "is_main_process",
    "load_checkpoint",
    "resolve_amp",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
]
