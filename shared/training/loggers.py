"""Run logs: ``metrics.csv``, TensorBoard scalars and ``curves.png``.

Only rank 0 creates a :class:`RunLogger`. Each record (an evaluation or an
epoch's end) appends one CSV row; when a run resumes, the CSV is rewritten once
from the checkpoint's history, so it ends up with the same rows as an
uninterrupted run.
TensorBoard and matplotlib are optional: if either is missing, that output is
skipped with a warning.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path


class RunLogger:
    """``metrics.csv`` (one row appended per record), TensorBoard scalars by global step and
    ``curves.png``. ``start(history)`` makes the files agree with a (resumed) run's history:
    rows past the last record of the checkpoint are dropped, then rows are only appended."""

    def __init__(self, output_dir: str | Path, *, tensorboard: bool = True, plot: bool = True):
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.dir / "metrics.csv"
        self.plot_enabled = plot
        self.history: list[dict] = []
        self.columns: list[str] = []
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional dependency
                warnings.warn("tensorboard is not installed; TensorBoard logging is off", stacklevel=2)
            else:
                self.writer = SummaryWriter(log_dir=str(self.dir / "tensorboard"))

    def start(self, history: list[dict]) -> None:
        """Rewrite ``metrics.csv`` once from ``history`` (empty for a new run)."""
        self.history = list(history)
        self.columns = _columns(self.history)
        self._rewrite_csv()

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def log_record(self, record: dict) -> None:
        """Append one record: a CSV row, its scalars to TensorBoard at its step, and the plot."""
        self.history.append(record)
        if any(k not in self.columns for k in record):  # a new metric: the header must grow
            self.columns = _columns(self.history)
            self._rewrite_csv()
        else:
            with open(self.csv_path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns).writerow(record)
        self.log_scalars({k: v for k, v in record.items() if "/" in k}, int(record["step"]))
        if self.writer is not None:
            self.writer.flush()
        if self.plot_enabled:
            plot_curves(self.history, self.dir / "curves.png")

    def _rewrite_csv(self) -> None:
        tmp = self.dir / ".metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.history)
        tmp.replace(self.csv_path)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _columns(history: list[dict]) -> list[str]:
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    return columns


def plot_curves(history: list[dict], path: str | Path, x: str | None = None) -> bool:
    """One panel per metric name with its curves, e.g. ``train/loss`` and ``val/loss`` in the
    ``loss`` panel, ``val/fid`` in ``fid``, ``rollout/return`` in ``return``.

    ``x`` is ``"epoch"`` or ``"step"``; by default ``epoch`` when every record ends an epoch,
    else ``step`` (evaluations inside epochs, or loops that count steps only). Keys without a
    ``/`` (``epoch``, ``step``, ``lr``) are not plotted. Returns False (after a warning) when
    matplotlib is not installed.
    """
    try:
        # A bare Figure renders with the Agg canvas and never touches pyplot's
        # global backend, so this is safe in headless and interactive sessions alike.
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn("matplotlib is not installed; curves.png is not written", stacklevel=2)
        return False

    if x is None:
        whole_epochs = all(isinstance(r.get("epoch"), (int, float)) and float(r["epoch"]).is_integer()
                           for r in history)
        x = "epoch" if whole_epochs else "step"
    # "train/loss", "val/loss", "val/acc" -> panels {"loss": [train/loss, val/loss], "acc": [val/acc]}
    panels: dict[str, list[str]] = {}
    for row in history:
        for key in row:
            if "/" in key:
                name = key.split("/", 1)[1]
                if key not in panels.setdefault(name, []):
                    panels[name].append(key)
    if not panels:
        return False
    fig = Figure(figsize=(4.5 * len(panels), 3.5))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels.items()):
        for key in sorted(keys):
            points = [(r[x], r[key]) for r in history
                      if isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) and x in r]
            if points:
                ax.plot(*zip(*points), marker="o" if len(points) < 50 else None, label=key.split("/", 1)[0])
        ax.set_title(name)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True
