"""The domain-agnostic training loop.

``Trainer(model, task, train_data, val_data, config).fit()`` trains ``model`` on
a map-style ``Dataset`` or a stream (``IterableDataset``, run length in
``max_steps``) with everything a recipe expects: device selection, AMP,
gradient accumulation (token-weighted when the task returns a ``LossSum``) and
clipping, LR schedules, weight EMA, evaluation every N epochs and/or steps,
best-model tracking and early stopping (:mod:`.selection`), atomic checkpoints
with bitwise resume, DDP under torchrun, progress bar, CSV/TensorBoard logs and
a curves plot. Its optimizer step is :func:`.step.optimizer_step`, the same one
hand-written loops call.

Counting conventions
--------------------
- A *step* is one optimizer step (one accumulation group of micro-batches).
  ``state.step`` counts steps taken, including steps skipped for a
  non-finite loss (they consumed data and a slot of the LR schedule).
- ``state.epoch`` is the epoch in progress (0-based); ``state.batch_in_epoch``
  the number of its micro-batches already consumed. At an epoch boundary the
  checkpoint says ``(epoch + 1, 0)``. User-facing messages count from 1.

Resume
------
A checkpoint is taken only at a step boundary (no half-accumulated grads) and
stores model, optimizer, scheduler, scaler, EMA, every rank's RNG states, the
counters above and the history. Resuming restores all of it, re-creates the
epoch's permutation (seed + epoch) and skips the consumed batches, so the run
continues with exactly the batches, dropout masks and updates it would have
had. With ``deterministic=True`` on CPU the result is bitwise identical.
The LR schedule continues as saved (its length included), even if the new
config asks for more epochs.
Exception: with ``num_workers > 0`` random augmentations inside workers are
seeded per epoch, not per batch, so a mid-epoch resume changes them.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .amp import make_grad_scaler, resolve_amp, resolve_device
from .callbacks import Callback
from ..atomic import check_writable
from ..errors import DatasetError, InvalidConfigError
from .checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import batches_per_epoch, build_eval_loader, build_train_loader, is_streaming
from .distributed import all_gather_objects, all_reduce_mean, barrier, init_distributed
from .ema import ModelEMA
from .loggers import RunLogger
from .optim import build_scheduler, optimizer_from_config
from .reproducibility import get_rng_state, seed_everything, set_rng_state
from .selection import BestTracker, Monitor
from .step import NonFiniteLossError, optimizer_step
from .task import LossSum, Task

__all__ = ["NonFiniteLossError", "TrainState", "Trainer"]


@dataclass
class TrainState:
    epoch: int = 0  # epoch in progress, 0-based
    step: int = 0  # optimizer steps taken (including skipped non-finite ones)
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed
    skipped_steps: int = 0  # steps skipped because the loss was not finite
    selection: dict | None = None  # the BestTracker's state (best metrics, patience count)
    epoch_loss_sum: float = 0.0  # running train-loss sum of the epoch in progress (for resume)
    epoch_samples: float = 0  # what that sum counts (samples, or the task's LossSum counts)
    window_loss_sum: float = 0.0  # the same since the last history record (step evaluations)
    window_samples: float = 0
    history: list = field(default_factory=list)  # one dict of floats per evaluation / epoch


class Trainer:
    """Train ``model`` on ``train_data`` with ``task`` as configured by ``config``.

    ``optimizer`` / ``scheduler`` replace the ones built from the config; a custom
    scheduler is stepped once per optimizer step. ``selection`` replaces the best-model
    rule (default: ``Monitor`` of ``config.monitor``, else of ``task.monitor``, with
    ``config.early_stopping_patience``). ``collate_fn`` is passed to both data loaders.
    Attributes: ``model`` (unwrapped), ``optimizer``, ``scheduler``, ``scaler`` (None unless
    fp16 on CUDA), ``ema`` (None unless ``ema_decay``), ``selection`` (None when nothing is
    monitored), ``state``, ``device``, ``config``, ``should_stop``.
    """

    def __init__(self, model: nn.Module, task: Task, train_data: Dataset, val_data: Dataset | None = None,
                 config: TrainConfig | None = None, *, optimizer: torch.optim.Optimizer | None = None,
                 scheduler=None, callbacks=(), collate_fn=None, selection: BestTracker | None = None):
        self.config = cfg = config if config is not None else TrainConfig()
        if cfg.early_stopping_patience is not None and val_data is None:
            raise InvalidConfigError("early_stopping_patience needs val_data to monitor")
        if cfg.eval_every_steps is not None and val_data is None:
            raise InvalidConfigError("eval_every_steps needs val_data to evaluate")
        if cfg.resume is True and not cfg.output_dir:
            raise InvalidConfigError("resume=True means output_dir/last.pt: set output_dir (--output-dir, the run folder) or pass a checkpoint path")
        if scheduler is not None and optimizer is None:
            raise ValueError("a custom scheduler needs the optimizer it was built for")
        self.task = task
        self.train_data, self.val_data = train_data, val_data
        self.callbacks: list[Callback] = list(callbacks)
        self.should_stop = False

        self.device = resolve_device(cfg.device)
        self.dist = init_distributed(self.device)
        # Each rank gets its own RNG stream (different dropout masks per rank); the
        # model itself is identical everywhere because DDP broadcasts rank 0's weights.
        seed_everything(cfg.seed + self.dist.rank, cfg.deterministic)

        self.model = model.to(self.device)
        self.amp = resolve_amp(cfg.amp, cfg.amp_dtype, self.device)
        self.scaler = make_grad_scaler(self.amp, self.device)
        if self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._train_model: nn.Module = DistributedDataParallel(self.model, device_ids=device_ids)
        else:
            self._train_model = self.model

        pin = self.device.type == "cuda"
        self.train_loader, self.train_sampler, self._loader_generator = build_train_loader(
            train_data, self.dist, batch_size=cfg.batch_size, shuffle=cfg.shuffle, seed=cfg.seed,
            num_workers=cfg.num_workers, drop_last=cfg.drop_last, pin_memory=pin, collate_fn=collate_fn)
        self._eval_loader_args = dict(batch_size=cfg.eval_batch_size or cfg.batch_size,
                                      num_workers=cfg.num_workers, pin_memory=pin, collate_fn=collate_fn)
        self.streaming = is_streaming(train_data)
        if self.streaming:
            # A stream has no length: the run is max_steps long, epochs end when the stream does.
            if cfg.max_steps is None:
                raise InvalidConfigError("a streaming (IterableDataset) training set needs max_steps: "
                                 "its length, and so the LR schedule's, is unknown")
            self.batches_per_epoch = None
            self.steps_per_epoch = cfg.max_steps  # only sizes epoch-based schedule options
            self.total_steps = cfg.max_steps
        else:
            self.batches_per_epoch = batches_per_epoch(self.train_sampler.num_samples, cfg.batch_size,
                                                       cfg.drop_last)
            if self.batches_per_epoch == 0:
                raise DatasetError(f"training data gives no batch ({len(train_data)} samples, "
                                 f"batch_size={cfg.batch_size}, drop_last={cfg.drop_last})")
            self.steps_per_epoch = math.ceil(self.batches_per_epoch / cfg.grad_accum_steps)
            self.total_steps = cfg.epochs * self.steps_per_epoch
            if cfg.max_steps is not None:
                self.total_steps = min(self.total_steps, cfg.max_steps)

        self.optimizer = optimizer if optimizer is not None else optimizer_from_config(self.model, cfg)
        self._custom_scheduler = scheduler is not None
        self.scheduler = scheduler if scheduler is not None else build_scheduler(
            self.optimizer, cfg, self.steps_per_epoch, self.total_steps)
        self.ema = (ModelEMA(self.model, cfg.ema_decay, warmup=cfg.ema_warmup)
                    if cfg.ema_decay is not None else None)
        self.selection = selection if selection is not None else self._default_selection(task)
        if cfg.early_stopping_patience is not None and self.selection is None:
            raise InvalidConfigError("early_stopping_patience needs a metric to monitor: set config.monitor "
                             "or give the task a monitor")

        self.state = TrainState()
        self.output_dir = Path(cfg.output_dir) if cfg.output_dir else None
        self.logger: RunLogger | None = None
        self._best_weights: dict[str, torch.Tensor] | None = None
        self._last_step_loss = float("nan")
        self._val_loader = None
        self._last_saved_step = -1

    def _default_selection(self, task: Task) -> BestTracker | None:
        cfg = self.config
        if cfg.monitor is not None:
            task_mode = task.monitor[1] if task.monitor and task.monitor[0] == cfg.monitor else "max"
            name, mode = cfg.monitor, cfg.monitor_mode or task_mode
        elif task.monitor is not None:
            name, mode = task.monitor[0], cfg.monitor_mode or task.monitor[1]
        else:
            return None
        return BestTracker(Monitor(name, mode), cfg.early_stopping_patience)

    # ------------------------------------------------------------------ info
    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    @property
    def eval_model(self) -> nn.Module:
        """The weights used for evaluation: the EMA copy when EMA evaluation is on."""
        return self.ema.module if (self.ema is not None and self.config.ema_eval) else self.model

    # ------------------------------------------------------------------ fit
    def fit(self) -> dict:
        """Train until ``epochs``/``max_steps``, early stopping or ``should_stop``.

        Returns ``{"history", "best", "steps", "epochs", "skipped_steps", "stopped_early"}``;
        ``history`` has one dict per evaluation or epoch (``epoch``, ``step``, ``lr``,
        ``train/loss``, ``val/...``) plus a fractional-epoch record when training stops mid-epoch.
        """
        cfg = self.config
        if self.output_dir is not None and self.is_main:
            check_writable(self.output_dir)  # a read-only or full disk fails now, not after an epoch
        if cfg.resume:
            self._resume()  # replaces self.state
            if self._finished() and self.is_main:
                print(f"the run in {self.output_dir or cfg.resume} is already finished (epoch {self.state.epoch}/"
                      f"{cfg.epochs}, step {self.state.step}); pass a larger epochs / max_steps to extend it")
        st = self.state
        if self.is_main and self.output_dir is not None:
            self.logger = RunLogger(self.output_dir, tensorboard=cfg.tensorboard, plot=cfg.plot)
            self.logger.start(st.history)  # a resumed run continues the files from its checkpoint
        self.should_stop = False
        self._call("on_train_start")
        try:
            while st.epoch < cfg.epochs and not (self.should_stop or self._done()):
                self._call("on_epoch_start")
                if not self._train_epoch():
                    self._stopped_mid_epoch()
                    break
                self._end_epoch()
            else:
                if self.output_dir is not None and self._last_saved_step != st.step:
                    self.save_checkpoint()

            if self._restores_best() and self._best_weights is not None:
                self.model.load_state_dict(self._best_weights)
                if self.ema is not None and cfg.ema_eval:
                    self.ema.module.load_state_dict(self._best_weights)
            self._call("on_train_end")
        finally:
            if self.logger is not None:
                self.logger.close()
        self._check_something_was_learned()
        best = self.selection.best if self.selection is not None else None
        name = getattr(self.selection.rule, "name", None) if self.selection is not None else None
        return {
            "history": st.history,
            "best": {"monitor": name, "value": (best or {}).get(name), "epoch": (best or {}).get("epoch"),
                     "step": (best or {}).get("step"),
                     "metrics": {k: v for k, v in (best or {}).items() if "/" in k}},
            "steps": st.step,
            "epochs": st.epoch,
            "skipped_steps": st.skipped_steps,
            "stopped_early": self._early_stop_reached(),
        }

    def _check_something_was_learned(self) -> None:
        st = self.state
        if st.skipped_steps and st.skipped_steps >= st.step:
            raise NonFiniteLossError(
                f"every one of the {st.step} optimizer steps was skipped for a non-finite loss or "
                "gradient (nan_policy='skip'): nothing was learned. Check the data for NaN/inf, "
                "lower the lr or set clip_grad_norm.")
        if st.skipped_steps:
            warnings.warn(f"{st.skipped_steps} of {st.step} optimizer steps were skipped for a "
                          "non-finite loss or gradient", stacklevel=3)

    def _restores_best(self) -> bool:
        return self.config.early_stopping_patience is not None and self.config.restore_best

    def _done(self) -> bool:
        max_steps = self.config.max_steps
        return (max_steps is not None and self.state.step >= max_steps) or self._early_stop_reached()

    def _early_stop_reached(self) -> bool:
        return self.selection is not None and self.config.early_stopping_patience is not None \
            and self.selection.stop

    def _train_epoch(self) -> bool:
        """Train on the rest of the current epoch. Returns False if stopped before its end."""
        cfg, st = self.config, self.state
        n_batches, accum = self.batches_per_epoch, cfg.grad_accum_steps
        start = st.batch_in_epoch
        self.train_sampler.set_epoch(st.epoch, start=start * cfg.batch_size)
        self._loader_generator.manual_seed(cfg.seed + 10_000 * self.dist.rank + st.epoch)  # worker seeds
        self._train_model.train()
        ddp = isinstance(self._train_model, DistributedDataParallel)

        desc = f"epoch {st.epoch + 1}/{cfg.epochs}" if not self.streaming else f"epoch {st.epoch + 1}"
        bar = tqdm(total=n_batches, initial=start, desc=desc, leave=False, unit="batch",
                   dynamic_ncols=True, disable=not (cfg.progress and self.is_main))
        micro_losses: list[torch.Tensor] = []  # the group's micro-batch losses, kept on device
        step_count = 0  # what the group's loss counts: samples, or the task's LossSum counts
        group_samples = 0
        weighted = False
        log_time, log_samples = time.perf_counter(), 0
        for i, batch in enumerate(self.train_loader, start=start):
            # Micro-batches are grouped from the start of the epoch; the last group may be
            # shorter (leftover batches), and every mean loss is divided by its own group's size.
            # A stream's length is unknown: its groups are divided by `accum`, and a shorter last
            # group is rescaled when the stream ends (below).
            group_start = i - i % accum
            group_size = accum if n_batches is None else min(accum, n_batches - group_start)
            closes_group = i == group_start + group_size - 1

            batch = self.task.to_device(batch, self.device)
            samples = self.task.batch_size(batch)
            # DDP all-reduces gradients in backward; skip that until the group's last micro-batch.
            sync = self._train_model.no_sync() if (ddp and not closes_group) else contextlib.nullcontext()
            with sync:
                with self.amp.autocast(self.device):
                    out = self.task.training_step(self._train_model, batch)
                if isinstance(out, LossSum):
                    # Summed losses are backpropagated as they are; the group's gradient is divided
                    # by its total count (over all ranks) when the group closes.
                    weighted, loss, n = True, out.total, out.count
                else:
                    loss, n = out, samples
                    loss_to_backprop = loss / group_size if group_size > 1 else loss
                backprop = loss if weighted else loss_to_backprop
                (self.scaler.scale(backprop) if self.scaler is not None else backprop).backward()
            micro_losses.append(loss.detach())
            step_count = step_count + (n.detach() if isinstance(n, torch.Tensor) else n)
            group_samples += samples
            st.batch_in_epoch = i + 1
            bar.update(1)
            if not closes_group:
                continue
            self._close_group(micro_losses, step_count, weighted, group_size)
            log_samples += group_samples
            micro_losses, step_count, group_samples = [], 0, 0
            log_time, log_samples = self._log_progress(bar, log_time, log_samples)
            if self.should_stop:
                break
        else:
            if micro_losses:  # a stream ended inside an accumulation group
                if not weighted:
                    rescale = accum / len(micro_losses)  # the group's losses were divided by accum
                    torch._foreach_mul_([p.grad for p in self.model.parameters() if p.grad is not None], rescale)
                self._close_group(micro_losses, step_count, weighted, len(micro_losses))
        bar.close()
        if self.should_stop:
            return False
        return n_batches is None or st.batch_in_epoch >= n_batches

    def _close_group(self, micro_losses: list[torch.Tensor], count, weighted: bool, group_size: int) -> None:
        """Step on an accumulation group, then evaluate / checkpoint when a step count says so."""
        cfg, st = self.config, self.state
        if weighted:
            total = torch.stack(micro_losses).float().sum()
            count_t = torch.as_tensor(count, dtype=torch.float64, device=self.device)
            if self.dist.enabled:
                count_t = all_reduce_mean(count_t, self.dist) * self.dist.world_size
            # DDP averaged the per-rank sums; undo that and divide by the global count.
            scale = (self.dist.world_size / count_t.clamp(min=1)).float()
            torch._foreach_mul_([p.grad for p in self.model.parameters() if p.grad is not None], scale)
            # This rank's sum, scaled alike: the mean over ranks (taken in _optimizer_step) is then
            # the global sum over the global count, the loss one process with the global batch reports.
            mean_loss = total * self.dist.world_size / count_t.clamp(min=1).to(total.dtype)
            count = count_t  # the history weights each step by its global count, as one process would
        else:
            mean_loss = micro_losses[0] if group_size == 1 else torch.stack(micro_losses).float().mean()
        mean_loss, value = self._optimizer_step(mean_loss, count)
        self._call("on_step_end", mean_loss)
        if cfg.eval_every_steps and st.step % cfg.eval_every_steps == 0:
            self._evaluate_and_record(epoch=st.epoch + self._epoch_fraction())
            if self.output_dir is not None:
                self.save_checkpoint()
        if cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0 and self.output_dir is not None \
                and self._last_saved_step != st.step:
            self.save_checkpoint()
        if cfg.max_steps is not None and st.step >= cfg.max_steps:
            self.should_stop = True

    def _epoch_fraction(self) -> float:
        n = self.batches_per_epoch
        return self.state.batch_in_epoch / n if n else 0.0

    def _log_progress(self, bar, log_time: float, log_samples: int) -> tuple[float, int]:
        cfg, st = self.config, self.state
        if st.step % cfg.log_every != 0 or (self.logger is None and bar.disable):
            return log_time, log_samples
        now = time.perf_counter()
        rate = log_samples * self.dist.world_size / max(now - log_time, 1e-9)
        lr = self.optimizer.param_groups[0]["lr"]
        value = self._last_step_loss
        bar.set_postfix(loss=f"{value:.4g}", lr=f"{lr:.3g}", samples_s=f"{rate:.0f}", refresh=False)
        if self.logger is not None:
            self.logger.log_scalars({"train/step_loss": value, "train/lr": lr, "train/samples_per_s": rate},
                                    st.step)
        return now, 0

    def _optimizer_step(self, loss: torch.Tensor, count) -> tuple[torch.Tensor, float]:
        """Finish one accumulation group: check, clip, step (:func:`optimizer_step`), then EMA
        and schedule. Returns the step's loss (averaged over ranks) as a tensor and a float."""
        cfg, st = self.config, self.state
        loss = all_reduce_mean(loss, self.dist)  # every rank must take the same decision below
        def where() -> str:
            return (f"at global step {st.step + 1}, epoch {st.epoch + 1} (batch {st.batch_in_epoch}"
                    f"{'/' + str(self.batches_per_epoch) if self.batches_per_epoch else ''}; counted from 1). "
                    "No checkpoint was written for this step")

        result = optimizer_step(self.optimizer, loss, scaler=self.scaler, clip_grad_norm=cfg.clip_grad_norm,
                                parameters=self.model.parameters(), nan_policy=cfg.nan_policy,
                                check_grads=cfg.check_grads, where=where)
        value = result.loss
        self._last_step_loss = value
        if result.skipped:
            st.skipped_steps += 1
        else:
            if self.ema is not None:
                self.ema.update(self.model)
            count = float(count)
            st.epoch_loss_sum += value * count
            st.epoch_samples += count
            st.window_loss_sum += value * count
            st.window_samples += count
        if st.step == 0:
            # If this first update was skipped (non-finite loss, or the fp16 scaler's first
            # overflow) torch warns that the schedule steps before the optimizer; here that
            # is intended: the skipped step still uses up its slot of the schedule.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                self.scheduler.step()
        else:
            self.scheduler.step()
        st.step += 1
        return loss, value

    def _mean_train_loss(self, total: float, count: float) -> float:
        """Mean train loss from a running (sum, count), over all ranks."""
        sums = torch.tensor([total, count], dtype=torch.float64)
        if self.dist.enabled:  # gloo reduces CPU tensors, NCCL device tensors
            sums = all_reduce_mean(sums.to(self.device), self.dist).cpu()
        total, count = sums.tolist()
        return total / count if count > 0 else float("nan")

    def _record(self, epoch: float, train_loss: float) -> dict:
        st = self.state
        return {"epoch": epoch, "step": st.step, "lr": self.optimizer.param_groups[0]["lr"],
                "train/loss": train_loss}

    def _evaluate_and_record(self, epoch: float) -> dict:
        """An evaluation in the middle of an epoch (``eval_every_steps``): one history record with
        the train loss since the previous record."""
        st = self.state
        record = self._record(epoch, self._mean_train_loss(st.window_loss_sum, st.window_samples))
        st.window_loss_sum, st.window_samples = 0.0, 0
        metrics = self.evaluate(self.val_data)
        record.update(metrics)
        self._track_best(metrics, epoch)
        self._append(record)
        return record

    def _append(self, record: dict) -> None:
        self.state.history.append(record)
        if self.config.verbose and self.is_main:
            tqdm.write(_format_record(record, self.config.epochs))
        if self.logger is not None:
            self.logger.log_record(record)

    def _end_epoch(self) -> None:
        cfg, st = self.config, self.state
        record = self._record(st.epoch + 1, self._mean_train_loss(st.epoch_loss_sum, st.epoch_samples))
        every = cfg.eval_every_epochs
        if self.val_data is not None and every is not None and ((st.epoch + 1) % every == 0
                                                                or st.epoch + 1 == cfg.epochs):
            metrics = self.evaluate(self.val_data)
            record.update(metrics)
            self._track_best(metrics, st.epoch + 1)
        self._append(record)
        self._call("on_epoch_end")
        st.epoch, st.batch_in_epoch = st.epoch + 1, 0
        st.epoch_loss_sum, st.epoch_samples = 0.0, 0
        st.window_loss_sum, st.window_samples = 0.0, 0
        if self.output_dir is not None:
            self.save_checkpoint()

    def _stopped_mid_epoch(self) -> None:
        """max_steps or a callback stopped training inside an epoch: save, then report."""
        st = self.state
        if self.output_dir is not None and self._last_saved_step != st.step:
            self.save_checkpoint()
        # Reported (returned, CSV) but not part of the saved state: a resumed run
        # finishes this epoch and records it in full.
        if st.history and st.history[-1]["step"] == st.step:
            return  # a step evaluation has just recorded this point
        record = self._record(st.epoch + self._epoch_fraction(),
                              self._mean_train_loss(st.epoch_loss_sum, st.epoch_samples))
        if self.val_data is not None:
            record.update(self.evaluate(self.val_data))
        st.history.append(record)
        if self.logger is not None:
            self.logger.log_record(record)

    def _track_best(self, metrics: dict[str, float], epoch: float) -> None:
        cfg, st = self.config, self.state
        if self.selection is None:
            return
        if not all(k in metrics for k in self.selection.rule.required()):
            if cfg.early_stopping_patience is not None:
                raise KeyError(f"the monitored metric(s) {list(self.selection.rule.required())} are not "
                               f"among the evaluation metrics {sorted(metrics)}")
            return
        keep = self.selection.update(metrics, epoch=epoch, step=st.step)
        st.selection = self.selection.state_dict()
        if self.selection.stop:
            self.should_stop = True
        if not keep:
            return
        weights = {k: v.detach().to("cpu", copy=True) for k, v in self.eval_model.state_dict().items()}
        if self._restores_best():
            self._best_weights = weights
        if self.output_dir is not None and self.is_main:
            rule = self.selection.rule
            save_checkpoint(self.output_dir / "best.pt",
                            {"model": weights, "monitor": getattr(rule, "name", type(rule).__name__),
                             "value": metrics.get(getattr(rule, "name", ""), float("nan")),
                             "epoch": epoch, "step": st.step})

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, data: Dataset, prefix: str = "val") -> dict[str, float]:
        """Metrics of ``self.eval_model`` on ``data`` as ``{f"{prefix}/{name}": value}``.

        Under torchrun every rank must call it: each evaluates its shard of ``data``
        and the task's sums are added over ranks before ``compute_metrics``.
        """
        if data is self.val_data:
            if self._val_loader is None:
                self._val_loader = build_eval_loader(data, self.dist, **self._eval_loader_args)
            loader = self._val_loader
        else:
            loader = build_eval_loader(data, self.dist, **self._eval_loader_args)
        model = self.eval_model
        was_training = model.training
        model.eval()
        acc_dtype = torch.float32 if self.device.type == "mps" else torch.float64  # mps has no float64
        sums: dict = {}
        for batch in loader:
            batch = self.task.to_device(batch, self.device)
            with self.amp.autocast(self.device):
                out = self.task.evaluation_step(model, batch)
            for key, value in out.items():
                if isinstance(value, torch.Tensor):
                    value = value.detach().to(acc_dtype)
                sums[key] = sums.get(key, 0.0) + value
        model.train(was_training)
        local = {k: float(v) for k, v in sums.items()}  # one host sync per evaluation
        totals: dict[str, float] = {}
        for rank_sums in all_gather_objects(local, self.dist):
            for key, value in rank_sums.items():
                totals[key] = totals.get(key, 0.0) + value
        metrics = {f"{prefix}/{k}": float(v) for k, v in self.task.compute_metrics(totals).items()}
        self._call("on_evaluate", metrics)
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything needed to resume; a collective under DDP (gathers every rank's RNG)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": all_gather_objects(get_rng_state(), self.dist),  # one entry per rank
            "state": asdict(self.state),
            "config": self.config.to_dict(),
            "world_size": self.dist.world_size,
        }

    def load_state_dict(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:
            if ckpt.get("ema") is not None:
                self.ema.load_state_dict(ckpt["ema"])
            else:  # EMA switched on at resume: start it from the loaded weights
                self.ema = ModelEMA(self.model, self.config.ema_decay)
        known = {f.name for f in fields(TrainState)}
        self.state = TrainState(**{k: v for k, v in ckpt["state"].items() if k in known})
        if self.selection is not None and self.state.selection is not None:
            self.selection.load_state_dict(self.state.selection)
        self._last_saved_step = self.state.step
        rng = ckpt["rng"]
        if len(rng) != self.dist.world_size:
            warnings.warn(f"checkpoint was written by {len(rng)} process(es), resuming with "
                          f"{self.dist.world_size}: training continues but not bitwise identically")
        set_rng_state(rng[self.dist.rank % len(rng)])

    def save_checkpoint(self, path: str | Path | None = None) -> None:
        """Write the resumable state (default ``output_dir/last.pt``); rank 0 writes, all ranks wait."""
        if path is None:
            if self.output_dir is None:
                raise ValueError("save_checkpoint() needs a path when config.output_dir is not set")
            path = self.output_dir / "last.pt"
        state = self.state_dict()  # collective: every rank must get here
        if self.is_main:
            save_checkpoint(path, state)
        self._last_saved_step = self.state.step
        barrier(self.dist)

    def _resume(self) -> None:
        cfg = self.config
        path = Path(self.output_dir / "last.pt") if cfg.resume is True else Path(cfg.resume)
        if not path.is_file():
            if cfg.resume is True:  # "resume if there is something to resume"
                return
            raise FileNotFoundError(f"resume checkpoint not found: {path}")
        ckpt = load_checkpoint(path, map_location="cpu", expected_format=CHECKPOINT_FORMAT)
        self.load_state_dict(ckpt)
        self._stretch_schedule(ckpt.get("config", {}), path)
        best = path.parent / "best.pt"
        if self._restores_best() and best.is_file():
            self._best_weights = load_checkpoint(best)["model"]

    def _stretch_schedule(self, saved: dict, path: Path) -> None:
        """A run resumed with another length (``--epochs 20`` after a 10-epoch run): the LR
        schedule is rebuilt for the new length and brought to the current step, so it continues
        the same schedule stretched, instead of running past its end (cosine would climb back)."""
        cfg, st = self.config, self.state
        planned = (saved.get("epochs"), saved.get("max_steps"))
        if planned == (cfg.epochs, cfg.max_steps) or not saved:
            return
        if self._custom_scheduler:
            warnings.warn(f"{path} was planned for epochs={planned[0]}, max_steps={planned[1]}; the custom "
                          "scheduler continues as saved", stacklevel=3)
            return
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch, self.total_steps)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            for _ in range(min(st.step, self.total_steps)):
                self.scheduler.step()
        if self.is_main and not self._finished():
            print(f"resuming {path} at step {st.step}: the run was planned for {planned[0]} epochs"
                  f"{f' / {planned[1]} steps' if planned[1] else ''}; its LR schedule is stretched to "
                  f"{cfg.epochs} epochs{f' / {cfg.max_steps} steps' if cfg.max_steps else ''} "
                  f"({self.total_steps} steps)")

    def _finished(self) -> bool:
        cfg, st = self.config, self.state
        return st.epoch >= cfg.epochs or (cfg.max_steps is not None and st.step >= cfg.max_steps)

    # ------------------------------------------------------------------ callbacks
    def _call(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)


def _format_record(record: dict, epochs: int) -> str:
    """One summary line per record, e.g. ``epoch 3/10 (step 120): train/loss 0.41 | val/acc 0.87``."""
    values = " | ".join(f"{k} {v:.4g}" for k, v in record.items() if "/" in k)
    epoch = record["epoch"]
    epoch = f"{epoch:.2f}" if epoch != int(epoch) else f"{int(epoch)}"
    return f"epoch {epoch}/{epochs} (step {record['step']}): {values}"
