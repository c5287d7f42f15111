"""Unit tests of the training core on tiny MLPs and random tensors (CPU, fast)."""

from __future__ import annotations

import csv
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import zoo.shared.training.trainer as trainer_module
from zoo.shared.errors import InvalidConfigError
from zoo.shared.training import (
    Callback,
    ClassificationTask,
    ModelEMA,
    NonFiniteLossError,
    Task,
    TrainConfig,
    Trainer,
    get_rng_state,
    load_checkpoint,
    resolve_amp,
    resolve_device,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from zoo.shared.training import checkpoint as checkpoint_module
from zoo.shared.training.optim import build_scheduler

# Fast, quiet defaults for every test: CPU, no bar, no TensorBoard, no plot.
QUIET = dict(device="cpu", progress=False, tensorboard=False, plot=False)


def make_data(n=48, dim=8, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return TensorDataset(x, y)


def make_mlp(dim=8, classes=4, hidden=16, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, classes))


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_weights_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class Recorder(Callback):
    """Records hook calls and the weights after every optimizer step."""

    def __init__(self, stop_at_step=None):
        self.events, self.step_weights, self.stop_at_step = [], {}, stop_at_step

    def on_train_start(self, trainer):
        self.events.append("train_start")
        self.step_weights[0] = weights(trainer.model)

    def on_epoch_start(self, trainer):
        self.events.append("epoch_start")

    def on_step_end(self, trainer, loss):
        assert isinstance(loss, torch.Tensor) and loss.ndim == 0
        self.events.append("step")
        self.step_weights[trainer.state.step] = weights(trainer.model)
        if self.stop_at_step is not None and trainer.state.step >= self.stop_at_step:
            trainer.should_stop = True

    def on_evaluate(self, trainer, metrics):
        self.events.append("evaluate")

    def on_epoch_end(self, trainer):
        self.events.append("epoch_end")

    def on_train_end(self, trainer):
        self.events.append("train_end")


# ---------------------------------------------------------------- config, device, AMP


def test_config_rejects_bad_values():
    with pytest.raises(InvalidConfigError, match="optimizer"):
        TrainConfig(optimizer="lion")
    with pytest.raises(InvalidConfigError, match="grad_accum_steps"):
        TrainConfig(grad_accum_steps=0)
    with pytest.raises(InvalidConfigError, match="amp"):
        TrainConfig(amp="fp8")
    cfg = TrainConfig(lr=0.5)
    assert TrainConfig.from_dict({**cfg.to_dict(), "unknown_key": 1}) == cfg


def test_device_auto_selection(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda", 1)  # torchrun: one GPU per local rank
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("amp, amp_dtype, device, expected", [
    ("auto", None, "cpu", (False, None, False)),
    ("auto", None, "mps", (False, None, False)),
    ("auto", None, "cuda", (True, torch.float16, True)),
    ("auto", "bf16", "cuda", (True, torch.bfloat16, False)),
    (True, None, "cpu", (True, torch.bfloat16, False)),
    (True, None, "cuda", (True, torch.float16, True)),
    ("bf16", None, "cpu", (True, torch.bfloat16, False)),
    (False, None, "cuda", (False, None, False)),
])
def test_amp_resolution(amp, amp_dtype, device, expected):
    s = resolve_amp(amp, amp_dtype, torch.device(device))
    assert (s.enabled, s.dtype, s.use_scaler) == expected


def test_only_torch_amp_apis_are_used():
    source = "".join(p.read_text() for p in Path(trainer_module.__file__).parent.glob("*.py"))
    assert "torch.cuda.amp" not in source


class AutocastProbe(ClassificationTask):
    def training_step(self, model, batch):
        self.autocast = (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))
        self.logits_dtype = model(batch[0]).dtype
        return super().training_step(model, batch)


def test_cpu_amp_true_trains_under_bf16_autocast():
    task = AutocastProbe()
    trainer = Trainer(make_mlp(), task, make_data(), config=TrainConfig(epochs=1, batch_size=16, amp=True, **QUIET))
    out = trainer.fit()
    assert trainer.scaler is None  # bf16 needs no loss scaling
    assert task.autocast == (True, torch.bfloat16) and task.logits_dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights stay fp32
    assert math.isfinite(out["history"][-1]["train/loss"])


# ---------------------------------------------------------------- accumulation, clipping, schedule


def sgd_config(**kw):
    base = dict(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.0, scheduler="constant", shuffle=False)
    return TrainConfig(**{**base, **QUIET, **kw})


def test_grad_accumulation_equals_one_big_batch():
    data = make_data(n=24)
    big = Trainer(make_mlp(), ClassificationTask(), data, config=sgd_config(epochs=2, batch_size=12))
    accum = Trainer(make_mlp(), ClassificationTask(), data,
                    config=sgd_config(epochs=2, batch_size=4, grad_accum_steps=3))
    big.fit(), accum.fit()
    assert big.state.step == accum.state.step == 4
    for k, v in weights(big.model).items():
        torch.testing.assert_close(weights(accum.model)[k], v, atol=1e-6, rtol=1e-5)


def test_leftover_micro_batches_still_step_with_their_own_scale():
    data = make_data(n=12)  # 3 micro-batches of 4 with accum 2: one full group + one leftover
    model = make_mlp()
    ref = make_mlp()
    trainer = Trainer(model, ClassificationTask(), data, config=sgd_config(epochs=1, batch_size=4, grad_accum_steps=2))
    trainer.fit()
    assert trainer.state.step == 2 and trainer.scheduler.last_epoch == 2  # schedule stepped per optimizer step

    x, y = data.tensors
    with torch.no_grad():
        for chunk in (slice(0, 8), slice(8, 12)):  # group 1: mean over 8 samples; leftover: its 4 samples
            with torch.enable_grad():
                grads = torch.autograd.grad(F.cross_entropy(ref(x[chunk]), y[chunk]), list(ref.parameters()))
            for p, g in zip(ref.parameters(), grads):
                p -= 0.1 * g
    for k, v in weights(ref).items():
        torch.testing.assert_close(weights(model)[k], v, atol=1e-6, rtol=1e-5)


def test_grad_clipping_happens_on_unscaled_gradients():
    clip, lr = 1e-3, 1.0
    trainer = Trainer(make_mlp(), ClassificationTask(), make_data(n=16),
                      config=sgd_config(epochs=1, batch_size=16, lr=lr, clip_grad_norm=clip))
    # A real loss scaler on CPU: clipping the still-scaled gradients would give a
    # step 1024x too small, clipping after unscale_ gives exactly lr * clip.
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
    trainer.fit()
    after = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    assert torch.linalg.vector_norm(after - before).item() == pytest.approx(lr * clip, rel=1e-4)


def test_warmup_cosine_schedule_uses_torch_schedulers():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg = TrainConfig(scheduler="cosine", lr=1.0, warmup_steps=5, min_lr=0.1)
    sched = build_scheduler(opt, cfg, steps_per_epoch=10, total_steps=20)
    assert isinstance(sched, torch.optim.lr_scheduler.SequentialLR)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.2)  # warmup starts at lr / warmup_steps
    assert all(a < b for a, b in zip(lrs[:5], lrs[1:6]))  # linear ramp
    assert lrs[5] == pytest.approx(1.0)
    for t in range(5, 21):  # then cosine from lr to min_lr over the remaining 15 steps
        assert lrs[t] == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * (t - 5) / 15)) / 2, abs=1e-6)


@pytest.mark.parametrize("name", ["cosine", "constant", "step", "onecycle"])
def test_every_scheduler_checkpoints_weights_only(name, tmp_path):
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=0.1)
    cfg = TrainConfig(scheduler=name, warmup_epochs=0.5, step_size_epochs=1)
    sched = build_scheduler(opt, cfg, steps_per_epoch=4, total_steps=12)
    for _ in range(3):
        opt.step()
        sched.step()
    save_checkpoint(tmp_path / "s.pt", {"scheduler": sched.state_dict(), "optimizer": opt.state_dict()})
    state = load_checkpoint(tmp_path / "s.pt")
    opt2 = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=0.1)
    sched2 = build_scheduler(opt2, cfg, steps_per_epoch=4, total_steps=12)
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    for _ in range(5):
        opt.step(), sched.step(), opt2.step(), sched2.step()
        assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]


# ---------------------------------------------------------------- EMA


def test_model_ema_update_and_buffers():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = ModelEMA(model, decay=0.9)
    start = weights(ema.module)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(8, 3))  # moves the BatchNorm running statistics
    ema.update(model)
    for name, p in model.named_parameters():
        torch.testing.assert_close(ema.module.state_dict()[name], 0.9 * start[name] + 0.1 * p.detach())
    for name, b in model.named_buffers():
        assert torch.equal(ema.module.state_dict()[name], b)  # buffers follow the model exactly
    assert not any(p.requires_grad for p in ema.parameters()) and not ema.module.training


def test_trainer_evaluates_with_ema_weights():
    data = make_data()
    trainer = Trainer(make_mlp(), ClassificationTask(), data, data,
                      config=TrainConfig(epochs=2, batch_size=8, ema_decay=0.5, **QUIET))
    trainer.fit()
    assert trainer.eval_model is trainer.ema.module
    assert not torch.equal(trainer.ema.module[0].weight, trainer.model[0].weight)
    x, y = data.tensors
    with torch.no_grad():
        expected = (trainer.ema.module(x).argmax(1) == y).float().mean().item()
    assert trainer.evaluate(data)["val/acc"] == pytest.approx(expected)


# ---------------------------------------------------------------- evaluation, early stopping, callbacks


def test_classification_metrics_sum_over_uneven_batches():
    data = make_data(n=37, classes=6)
    trainer = Trainer(make_mlp(classes=6), ClassificationTask(), data,
                      config=TrainConfig(epochs=1, batch_size=8, eval_batch_size=5, **QUIET))
    metrics = trainer.evaluate(data, prefix="test")
    x, y = data.tensors
    with torch.no_grad():
        logits = trainer.model(x)
    assert metrics["test/loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert metrics["test/acc"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    top5 = (logits.topk(5, dim=1).indices == y[:, None]).any(1).float().mean().item()
    assert metrics["test/top5"] == pytest.approx(top5)
    few = Trainer(make_mlp(classes=3), ClassificationTask(), make_data(classes=3), config=TrainConfig(**QUIET))
    assert "val/top5" not in few.evaluate(make_data(classes=3))  # top-5 needs >= 5 classes


class ScriptedMetricTask(ClassificationTask):
    """Reports a scripted val/score per evaluation, to drive early stopping."""

    def __init__(self, scores):
        super().__init__()
        self.scores = list(scores)

    def compute_metrics(self, sums):
        return {**super().compute_metrics(sums), "score": self.scores.pop(0)}


def test_early_stopping_restores_best_weights(tmp_path):
    recorder = EpochWeights()
    cfg = TrainConfig(epochs=10, batch_size=16, early_stopping_patience=2, monitor="val/score",
                      monitor_mode="max", output_dir=str(tmp_path), **QUIET)
    data = make_data()
    trainer = Trainer(make_mlp(), ScriptedMetricTask([0.5, 0.7, 0.6, 0.65, 0.9]), data, data, cfg,
                      callbacks=[recorder])
    out = trainer.fit()
    assert out["stopped_early"] and out["epochs"] == 4  # epochs 3 and 4 did not beat epoch 2
    assert out["best"]["epoch"] == 2 and out["best"]["value"] == 0.7
    assert_weights_equal(weights(trainer.model), recorder.by_epoch[2])
    assert_weights_equal(load_checkpoint(tmp_path / "best.pt")["model"], recorder.by_epoch[2])
    assert load_checkpoint(tmp_path / "last.pt")["state"]["epoch"] == 4  # last.pt keeps the latest state


class EpochWeights(Callback):
    def __init__(self):
        self.by_epoch = {}

    def on_epoch_end(self, trainer):
        self.by_epoch[trainer.state.epoch + 1] = weights(trainer.model)


def test_callback_hooks_order_and_should_stop():
    data = make_data(n=32)
    rec = Recorder()
    Trainer(make_mlp(), ClassificationTask(), data, data, TrainConfig(epochs=2, batch_size=16, **QUIET),
            callbacks=[rec]).fit()
    epoch = ["epoch_start", "step", "step", "evaluate", "epoch_end"]
    assert rec.events == ["train_start", *epoch, *epoch, "train_end"]

    rec = Recorder(stop_at_step=3)
    out = Trainer(make_mlp(), ClassificationTask(), data, config=TrainConfig(epochs=5, batch_size=8, **QUIET),
                  callbacks=[rec]).fit()
    assert out["steps"] == 3 and rec.events.count("step") == 3
    assert out["history"][-1]["epoch"] == pytest.approx(0.75)  # epochs done: stopped 3/4 into the first


def test_max_steps_caps_training_and_schedule():
    trainer = Trainer(make_mlp(), ClassificationTask(), make_data(n=40),
                      config=TrainConfig(epochs=5, batch_size=8, max_steps=7, warmup_steps=2, **QUIET))
    assert trainer.total_steps == 7
    out = trainer.fit()
    assert out["steps"] == 7 and trainer.state.epoch == 1 and trainer.state.batch_in_epoch == 2
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine reached min_lr


def test_progress_bar_postfix_and_disable(monkeypatch):
    bars = []

    class RecordingBar(trainer_module.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.postfixes, self.was_disabled = [], self.disable  # close() sets disable
            bars.append(self)

        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
            self.postfixes.append(kwargs)
            super().set_postfix(ordered_dict, refresh, **kwargs)

    monkeypatch.setattr(trainer_module, "tqdm", RecordingBar)
    cfg = TrainConfig(epochs=1, batch_size=8, log_every=2, **{**QUIET, "progress": True})
    Trainer(make_mlp(), ClassificationTask(), make_data(n=32), config=cfg).fit()
    assert len(bars) == 1 and not bars[0].was_disabled
    assert len(bars[0].postfixes) == 2  # every log_every=2 of the 4 steps
    assert {"loss", "samples_s", "lr"} <= set(bars[0].postfixes[0])
    bars.clear()
    Trainer(make_mlp(), ClassificationTask(), make_data(n=32), config=TrainConfig(epochs=1, **QUIET)).fit()
    assert bars[0].was_disabled and bars[0].postfixes == []


def test_logs_csv_tensorboard_and_curves(tmp_path):
    data = make_data()
    cfg = TrainConfig(epochs=3, batch_size=16, output_dir=str(tmp_path), device="cpu", progress=False,
                      tensorboard=True, plot=True, log_every=1)
    Trainer(make_mlp(), ClassificationTask(), data, data, cfg).fit()
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"step", "lr", "train/loss", "val/loss", "val/acc"} <= set(rows[0])
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pytest.importorskip("tensorboard")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


# ---------------------------------------------------------------- seeding, RNG, checkpoints


def test_seed_everything_and_deterministic_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    draws = []
    for _ in range(2):
        seed_everything(123)
        draws.append((random.random(), np.random.rand(), torch.rand(1).item()))
    assert draws[0] == draws[1]
    try:
        seed_everything(1, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        seed_everything(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic


def test_rng_state_roundtrips_through_weights_only_checkpoint(tmp_path):
    seed_everything(5)
    save_checkpoint(tmp_path / "rng.pt", {"rng": get_rng_state()})
    expected = (random.random(), np.random.rand(3).tolist(), torch.randn(3))
    random.random(), np.random.rand(), torch.randn(7)  # move every generator on
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    got = (random.random(), np.random.rand(3).tolist(), torch.randn(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])


def test_trainer_checkpoint_contents_load_weights_only(tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=8, ema_decay=0.9, output_dir=str(tmp_path), **QUIET)
    Trainer(make_mlp(), ClassificationTask(), make_data(n=20), config=cfg).fit()
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "ema", "rng", "state", "config"} <= set(ckpt)
    assert ckpt["state"]["epoch"] == 1 and ckpt["state"]["step"] == 3 and ckpt["state"]["batch_in_epoch"] == 0
    assert ckpt["config"]["ema_decay"] == 0.9 and len(ckpt["rng"]) == 1
    assert {"python", "numpy", "torch"} <= set(ckpt["rng"][0])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("fail_in", ["torch.save", "os.replace"])
def test_crash_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch, fail_in):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"version": torch.tensor(1)})

    if fail_in == "torch.save":
        def broken_save(obj, f):
            f.write(b"PK\x03\x04 half a checkpoint")  # some bytes reach the disk, then the process "dies"
            raise OSError("disk full")
        monkeypatch.setattr(checkpoint_module.torch, "save", broken_save)
    else:
        def broken_replace(src, dst):
            raise OSError("killed before rename")
        monkeypatch.setattr(checkpoint_module.os, "replace", broken_replace)

    with pytest.raises(OSError):
        save_checkpoint(path, {"version": torch.tensor(2)})
    monkeypatch.undo()
    assert load_checkpoint(path)["version"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # the partial temp file is gone


def test_resume_options(tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=8, output_dir=str(tmp_path), resume=True, **QUIET)
    out = Trainer(make_mlp(), ClassificationTask(), make_data(n=16), config=cfg).fit()  # nothing yet: fresh start
    assert out["steps"] == 2
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        Trainer(make_mlp(), ClassificationTask(), make_data(n=16),
                config=TrainConfig(resume=str(tmp_path / "missing.pt"), **QUIET)).fit()
    with pytest.raises(InvalidConfigError, match="output_dir"):
        Trainer(make_mlp(), ClassificationTask(), make_data(n=16), config=TrainConfig(resume=True, **QUIET))


def test_in_process_resume_continues_from_checkpoint(tmp_path):
    data = make_data(n=40)
    base = dict(epochs=2, batch_size=8, output_dir=str(tmp_path), **QUIET)
    straight = Trainer(make_mlp(), ClassificationTask(), data, config=TrainConfig(**{**base, "output_dir": None}))
    straight.fit()
    for stop in (5, 7):  # the end of epoch 1, then the middle of epoch 2
        Trainer(make_mlp(), ClassificationTask(), data, config=TrainConfig(**base, resume=True),
                callbacks=[Recorder(stop_at_step=stop)]).fit()
        assert load_checkpoint(tmp_path / "last.pt")["state"]["step"] == stop
    resumed = Trainer(make_mlp(seed=99), ClassificationTask(), data, config=TrainConfig(**base, resume=True))
    out = resumed.fit()
    assert out["steps"] == 10 and [r["epoch"] for r in out["history"]] == [1, 2]
    assert_weights_equal(weights(resumed.model), weights(straight.model))


# ---------------------------------------------------------------- non-finite losses


class PoisonTask(ClassificationTask):
    """Returns a NaN loss on the given training calls (1-based micro-batch count)."""

    def __init__(self, poison_calls):
        super().__init__()
        self.poison_calls, self.calls = set(poison_calls), 0

    def training_step(self, model, batch):
        self.calls += 1
        loss = super().training_step(model, batch)
        return loss * float("nan") if self.calls in self.poison_calls else loss


def test_nan_loss_raises_with_step_and_epoch_and_keeps_last_good_checkpoint(tmp_path):
    # 4 steps per epoch; call 7 is the 3rd step of epoch 2 = global step 7.
    cfg = TrainConfig(epochs=3, batch_size=8, checkpoint_every=1, output_dir=str(tmp_path), **QUIET)
    trainer = Trainer(make_mlp(), PoisonTask({7}), make_data(n=32), config=cfg, callbacks=[rec := Recorder()])
    with pytest.raises(NonFiniteLossError, match=r"global step 7, epoch 2"):
        trainer.fit()
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["state"]["step"] == 6
    assert_weights_equal(last["model"], rec.step_weights[6])
    assert all(torch.isfinite(v).all() for v in last["model"].values())


def test_nan_loss_skip_leaves_weights_unchanged_and_continues():
    cfg = TrainConfig(epochs=1, batch_size=8, nan_policy="skip", weight_decay=0.1, **QUIET)  # AdamW: a
    rec = Recorder()  # zero-grad step would still move the weights, so the step must really be skipped
    trainer = Trainer(make_mlp(), PoisonTask({3}), make_data(n=48), config=cfg, callbacks=[rec])
    out = trainer.fit()
    assert out["skipped_steps"] == 1 and out["steps"] == 6
    assert_weights_equal(rec.step_weights[3], rec.step_weights[2])
    assert not torch.equal(rec.step_weights[4]["0.weight"], rec.step_weights[3]["0.weight"])
    assert math.isfinite(out["history"][-1]["train/loss"])  # skipped step excluded from the epoch mean


def test_default_task_evaluation_uses_training_loss():
    class Regression(Task):
        def training_step(self, model, batch):
            return F.mse_loss(model(batch[0]).squeeze(-1), batch[1])

    x = torch.randn(30, 4)
    data = TensorDataset(x, x.sum(1))
    trainer = Trainer(nn.Linear(4, 1), Regression(), data, data,
                      config=TrainConfig(epochs=2, batch_size=10, lr=0.05, monitor="val/loss", monitor_mode="min",
                                         **QUIET))
    out = trainer.fit()
    assert set(out["history"][0]) == {"epoch", "step", "lr", "train/loss", "val/loss"}
    assert out["best"]["monitor"] == "val/loss" and out["best"]["epoch"] is not None
