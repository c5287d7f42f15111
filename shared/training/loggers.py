"""Run logs: ``metrics.csv``, TensorBoard scalars and ``curves.png``.

Only rank 0 creates a :class:`RunLogger`. The CSV and the plot are rewritten
from the full epoch history each time, so a resumed run (whose history comes
back from the checkpoint) produces the same files as an uninterrupted one.
TensorBoard and matplotlib are optional: if either is missing, that output is
skipped with a warning.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path


class RunLogger:
    def __init__(self, output_dir: str | Path, *, tensorboard: bool = True, plot: bool = True):
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.plot_enabled = plot
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional dependency
                warnings.warn("tensorboard is not installed; TensorBoard logging is off", stacklevel=2)
            else:
                self.writer = SummaryWriter(log_dir=str(self.dir / "tensorboard"))

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def log_epoch(self, history: list[dict]) -> None:
        """Write one CSV row per epoch record, the latest epoch to TensorBoard, and the plot."""
        if not history:
            return
        self._write_csv(history)
        last = history[-1]
        self.log_scalars({k: v for k, v in last.items() if "/" in k}, int(last["step"]))
        if self.writer is not None:
            self.writer.flush()
        if self.plot_enabled:
            plot_curves(history, self.dir / "curves.png")

    def _write_csv(self, history: list[dict]) -> None:
        columns: list[str] = []
        for row in history:
            columns += [k for k in row if k not in columns]
        tmp = self.dir / ".metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)
        tmp.replace(self.dir / "metrics.csv")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def plot_curves(history: list[dict], path: str | Path) -> bool:
    """One panel per metric (``loss``, ``acc``, ...) with train and val curves vs epoch.

    Returns False (after a warning) when matplotlib is not installed.
    """
    try:
        # A bare Figure renders with the Agg canvas and never touches pyplot's
        # global backend, so this is safe in headless and interactive sessions alike.
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn("matplotlib is not installed; curves.png is not written", stacklevel=2)
        return False

    # "train/loss", "val/loss", "val/acc" -> panels {"loss": [train, val], "acc": [val]}
    panels: dict[str, list[str]] = {}
    for row in history:
        for key in row:
            if "/" in key and key.split("/", 1)[0] in ("train", "val"):
                name = key.split("/", 1)[1]
                if key not in panels.setdefault(name, []):
                    panels[name].append(key)
    if not panels:
        return False
    fig = Figure(figsize=(4.5 * len(panels), 3.5))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels.items()):
        for key in sorted(keys):
            points = [(r["epoch"], r[key]) for r in history
                      if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            if points:
                ax.plot(*zip(*points), marker="o", label=key.split("/", 1)[0])
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True
