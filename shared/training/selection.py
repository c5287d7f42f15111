"""Best-model tracking and early stopping with a pluggable rule.

A rule looks at one evaluation's metrics and answers two questions: is this the model to keep,
and does it count as progress (which resets the patience)? :class:`BestTracker` applies a rule
to a stream of evaluations; the Trainer, graph training and any hand-written loop use it.

- :class:`Monitor` (``Monitor("val/acc", "max")``): one metric, kept and reset when strictly
  better than the best so far (``ties=True``: also when equal).
- :class:`AccuracyThenLoss`: the best accuracy, ties broken by the lower loss; progress when
  either got strictly better.
- :class:`AccuracyAndLoss`: the GAT authors' rule (Velickovic et al. 2018, reference code):
  keep an evaluation whose accuracy and loss are both at least as good as the best seen so
  far; progress when either equals or beats its best.

A non-finite metric is never kept and never progress, except that the very first
evaluation is always kept (there must be a model to return). Rules that let a tie reset the
patience could run forever on a model whose metric no longer moves (a constant accuracy), so
the tracker also stops after ``tie_limit`` evaluations without a strict improvement
(default: ten times the patience).
"""

from __future__ import annotations

import math
from typing import Any


def _finite(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


class Rule:
    """Decides, evaluation by evaluation, what to keep and what counts as progress."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every evaluation seen."""

    def judge(self, metrics: dict[str, float]) -> tuple[bool, bool, bool]:
        """``(keep, progress, strict)`` for one evaluation: keep this model, reset the patience,
        and whether something got strictly better (not only equalled). Updates the running bests."""
        raise NotImplementedError

    def required(self) -> tuple[str, ...]:
        """The metric names the rule reads."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        vars(self).update(state)


class Monitor(Rule):
    def __init__(self, name: str, mode: str = "max", ties: bool = False):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.name, self.mode, self.ties = name, mode, ties
        super().__init__()

    def reset(self) -> None:
        self.best = None

    def required(self):
        return (self.name,)

    def judge(self, metrics):
        value = metrics[self.name]
        if not _finite(value):
            return False, False, False
        sign = 1 if self.mode == "max" else -1
        strict = self.best is None or sign * value > sign * self.best
        better = strict or (self.ties and value == self.best)
        if better:
            self.best = value
        return better, better, strict


class _AccuracyLossRule(Rule):
    """A rule over a (higher-is-better) accuracy and a (lower-is-better) loss."""

    def __init__(self, acc: str = "val/acc", loss: str = "val/loss"):
        self.acc, self.loss = acc, loss
        super().__init__()

    def reset(self) -> None:
        self.best_acc, self.best_loss = -math.inf, math.inf

    def required(self):
        return (self.acc, self.loss)

    def judge(self, metrics):
        acc, loss = metrics[self.acc], metrics[self.loss]
        if not _finite(acc, loss):
            return False, False, False
        verdict = self._judge(acc, loss)
        self.best_acc, self.best_loss = max(self.best_acc, acc), min(self.best_loss, loss)
        return verdict

    def _judge(self, acc: float, loss: float) -> tuple[bool, bool, bool]:
        raise NotImplementedError


class AccuracyThenLoss(_AccuracyLossRule):
    def reset(self) -> None:
        super().reset()
        self.kept: tuple[float, float] | None = None  # (acc, -loss) of the kept evaluation

    def _judge(self, acc, loss):
        keep = self.kept is None or (acc, -loss) > tuple(self.kept)
        if keep:
            self.kept = (acc, -loss)
        progress = acc > self.best_acc or loss < self.best_loss
        return keep, progress, progress


class AccuracyAndLoss(_AccuracyLossRule):
    def _judge(self, acc, loss):
        keep = acc >= self.best_acc and loss <= self.best_loss
        progress = acc >= self.best_acc or loss <= self.best_loss
        strict = acc > self.best_acc or loss < self.best_loss
        return keep, progress, strict


class BestTracker:
    """Applies ``rule`` to successive evaluations; ``stop`` after ``patience`` evaluations in a row
    without progress (``patience=0``: at the first one; ``None``: never).

    ``update(metrics, step=..., epoch=...)`` returns True when this evaluation is the one to keep
    (save or copy its weights then). ``best`` holds the kept evaluation's metrics with its
    ``step`` / ``epoch``.
    """

    def __init__(self, rule: Rule, patience: int | None = None, tie_limit: int | None = None):
        if patience is not None and patience < 0:
            raise ValueError(f"patience must be >= 0 or None, got {patience}")
        self.rule, self.patience = rule, patience
        self.tie_limit = tie_limit if tie_limit is not None else (10 * patience if patience else None)
        self.best: dict[str, float] | None = None
        self.waited = 0  # evaluations in a row without progress
        self.since_strict = 0  # evaluations in a row without a strict improvement

    def update(self, metrics: dict[str, float], **position: float) -> bool:
        missing = [k for k in self.rule.required() if k not in metrics]
        if missing:
            raise KeyError(f"the selection rule needs {missing}, but the evaluation gave {sorted(metrics)}")
        keep, progress, strict = self.rule.judge(metrics)
        keep = keep or self.best is None  # the first evaluation is always kept
        if keep:
            self.best = {**position, **metrics}
        self.waited = 0 if progress else self.waited + 1
        self.since_strict = 0 if strict else self.since_strict + 1
        return keep

    @property
    def stop(self) -> bool:
        out_of_patience = self.patience is not None and self.waited > 0 and self.waited >= self.patience
        only_ties = self.tie_limit is not None and self.since_strict >= self.tie_limit
        return out_of_patience or only_ties

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "waited": self.waited, "since_strict": self.since_strict,
                "rule": self.rule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.waited, self.since_strict = state["best"], state["waited"], state["since_strict"]
        self.rule.load_state_dict(state["rule"])
