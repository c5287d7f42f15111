"""The training core's public parts, called as hand-written loops call them, and the Trainer
features built on them: step-based evaluation, streaming data, token-weighted accumulation,
task-chosen monitors, EMA warm-up, appended logs."""

from __future__ import annotations

import csv
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, IterableDataset, TensorDataset

from zoo.shared.errors import InvalidConfigError
from zoo.shared.training import (
    AccuracyAndLoss,
    AccuracyThenLoss,
    BestTracker,
    ClassificationTask,
    LossSum,
    ModelEMA,
    Monitor,
    NonFiniteLossError,
    Task,
    TrainConfig,
    Trainer,
    build_optimizer,
    load_checkpoint,
    optimizer_step,
    plot_curves,
)

from .test_training import assert_weights_equal, weights  # noqa: E402

QUIET = dict(device="cpu", progress=False, tensorboard=False, plot=False, verbose=False)


def make_data(n=48, dim=8, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, dim, generator=g), torch.randint(0, classes, (n,), generator=g))


def make_mlp(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 4))


# ---------------------------------------------------------------- optimizer_step


def _loss_and_grads(model, scale=1.0):
    x = torch.randn(4, 8)
    loss = model(x).pow(2).mean() * scale
    loss.backward()
    return loss.detach()


def test_optimizer_step_steps_and_zeroes():
    model = make_mlp()
    opt = build_optimizer(model.parameters(), name="sgd", lr=0.1, momentum=0.0)
    before = weights(model)
    loss = _loss_and_grads(model)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    result = optimizer_step(opt, loss)
    assert not result.skipped and result.loss == pytest.approx(loss.item())
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[n] - 0.1 * grads[n])
        assert p.grad is None


def test_optimizer_step_non_finite_loss_raises_or_skips():
    model = make_mlp()
    opt = build_optimizer(model.parameters(), name="adamw", lr=0.1, weight_decay=0.1)
    before = weights(model)
    _loss_and_grads(model)
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss \(nan\) at update 3"):
        optimizer_step(opt, torch.tensor(float("nan")), where="at update 3")
    assert_weights_equal(weights(model), before)
    result = optimizer_step(opt, float("inf"), nan_policy="skip")
    assert result.skipped and all(p.grad is None for p in model.parameters())
    assert_weights_equal(weights(model), before)  # AdamW's decay would have moved them on a real step


def test_optimizer_step_refuses_a_non_finite_gradient_behind_a_finite_loss():
    model = make_mlp()
    opt = build_optimizer(model.parameters(), name="sgd", lr=0.1)
    loss = _loss_and_grads(model)
    model[0].weight.grad[0, 0] = float("inf")
    with pytest.raises(NonFiniteLossError, match="gradient norm"):
        optimizer_step(opt, loss, check_grads=True)
    with pytest.raises(NonFiniteLossError, match="gradient norm"):
        optimizer_step(opt, loss, clip_grad_norm=1.0)  # clipping computes the norm: always checked
    assert optimizer_step(opt, loss, nan_policy="skip", check_grads=True).skipped
    _loss_and_grads(model)
    model[0].weight.grad[0, 0] = float("inf")
    assert optimizer_step(opt, loss).skipped is False  # by default only the loss is read


def test_optimizer_step_clips_the_unscaled_gradients_of_a_scaler():
    model = make_mlp()
    opt = build_optimizer(model.parameters(), name="sgd", lr=1.0, momentum=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    x = torch.randn(4, 8)
    scaler.scale(model(x).pow(2).mean()).backward()
    result = optimizer_step(opt, torch.tensor(1.0), scaler=scaler, clip_grad_norm=1e-3)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.linalg.vector_norm(after - before).item() == pytest.approx(1e-3, rel=1e-4)
    assert result.grad_norm > 1e-3  # the norm reported is the true one, before clipping


def test_two_optimizers_as_a_gan_loop_uses_them():
    g, d = make_mlp(seed=1), nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt_g = build_optimizer(g.parameters(), name="adam", lr=2e-4, betas=(0.5, 0.999))
    opt_d = build_optimizer(d.parameters(), name="adam", lr=2e-4, betas=(0.5, 0.999))
    assert opt_g.param_groups[0]["betas"] == (0.5, 0.999)
    d_before, g_before = weights(d), weights(g)
    z = torch.randn(4, 8)
    d_loss = d(g(z).detach()).mean()
    d_loss.backward()
    optimizer_step(opt_d, d_loss.detach())
    assert all(p.grad is None for p in g.parameters())  # the detached fake gave G no gradient
    g_loss = -d(g(z)).mean()
    g_loss.backward()
    optimizer_step(opt_g, g_loss.detach(), parameters=g.parameters())
    assert not torch.equal(weights(g)["0.weight"], g_before["0.weight"])
    assert not torch.equal(weights(d)["0.weight"], d_before["0.weight"])


def test_build_optimizer_takes_groups_and_named_hyper_parameters():
    model = make_mlp()
    groups = [{"params": [model[0].weight], "weight_decay": 0.1, "lr": 0.5}, {"params": [model[0].bias]}]
    opt = build_optimizer(groups, name="adamw", lr=0.01, weight_decay=0.0, betas=(0.8, 0.9), eps=1e-6)
    assert [(g["lr"], g["weight_decay"]) for g in opt.param_groups] == [(0.5, 0.1), (0.01, 0.0)]
    assert opt.param_groups[1]["betas"] == (0.8, 0.9) and opt.param_groups[1]["eps"] == 1e-6
    sgd = build_optimizer(model.parameters(), name="sgd", lr=0.1, momentum=0.5, betas=(0.1, 0.2))
    assert sgd.param_groups[0]["momentum"] == 0.5 and "betas" not in sgd.param_groups[0]
    # The Trainer's config: momentum is SGD's only; Adam's beta1 is its own field.
    trainer = Trainer(make_mlp(), ClassificationTask(), make_data(), config=TrainConfig(
        momentum=0.1, beta1=0.5, beta2=0.99, **QUIET))
    assert trainer.optimizer.param_groups[0]["betas"] == (0.5, 0.99)
    with pytest.raises(ValueError, match="lion"):
        build_optimizer(model.parameters(), name="lion")


# ---------------------------------------------------------------- BestTracker


def replay(tracker, curve):
    for epoch, (acc, loss) in enumerate(curve, 1):
        tracker.update({"val/acc": acc, "val/loss": loss}, epoch=epoch)
        if tracker.stop:
            break
    return tracker.best["epoch"], epoch


CURVE = [(0.5, 1.0), (0.7, 0.9), (0.7, 0.8), (0.8, 0.85), (0.6, 0.7), (0.6, 0.95), (0.5, 0.99)]


def test_rules_keep_what_they_promise():
    assert replay(BestTracker(Monitor("val/acc", "max"), 2), CURVE) == (4, 6)
    assert replay(BestTracker(Monitor("val/loss", "min"), 2), CURVE) == (5, 7)
    assert replay(BestTracker(AccuracyThenLoss(), 2), CURVE) == (4, 7)
    assert replay(BestTracker(AccuracyAndLoss(), 2), CURVE) == (3, 7)
    assert replay(BestTracker(Monitor("val/acc", "max", ties=True), 0), [(0.7, 1.0), (0.7, 2.0), (0.6, 1)]) == (2, 3)
    assert replay(BestTracker(Monitor("val/acc", "max"), None), CURVE) == (4, 7)  # None: never stops


@pytest.mark.parametrize("rule", [AccuracyAndLoss(), AccuracyThenLoss()])
def test_non_finite_metrics_never_reset_patience(rule):
    # A model that outputs NaN: constant accuracy, NaN loss. Ties would reset the GAT rule's
    # patience forever; a non-finite evaluation is never progress, so patience ends the run.
    assert replay(BestTracker(rule, patience=5), [(0.1, float("nan"))] * 100) == (1, 5)


def test_ties_alone_cannot_keep_a_run_going_forever():
    # The GAT CiteSeer rule reads only the accuracy and a tie resets the patience: a model
    # stuck at one accuracy would run to the epoch limit. The tie limit (10 x patience) ends it.
    assert replay(BestTracker(Monitor("val/acc", "max", ties=True), 5), [(0.1, 1.0)] * 100) == (51, 51)
    assert replay(BestTracker(Monitor("val/acc", "max", ties=True), 5, tie_limit=20), [(0.1, 1.0)] * 100) == (21, 21)
    # a strict improvement now and then keeps it alive
    curve = [(0.1 + 0.01 * (i // 40), 1.0) for i in range(100)]
    assert replay(BestTracker(Monitor("val/acc", "max", ties=True), 5), curve) == (100, 100)


def test_tracker_state_round_trips():
    a = BestTracker(AccuracyThenLoss(), 3)
    replay(a, CURVE[:4])
    b = BestTracker(AccuracyThenLoss(), 3)
    b.load_state_dict(a.state_dict())
    for tracker in (a, b):
        tracker.update({"val/acc": 0.8, "val/loss": 0.5}, epoch=5)
    assert a.best == b.best and a.waited == b.waited and b.best["epoch"] == 5
    with pytest.raises(KeyError, match="val/loss"):
        BestTracker(AccuracyThenLoss()).update({"val/acc": 1.0})


# ---------------------------------------------------------------- monitor from the task


class Regression(Task):
    def training_step(self, model, batch):
        return F.mse_loss(model(batch[0]).squeeze(-1), batch[1])


def regression_data(n=30):
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    return TensorDataset(x, x.sum(1))


def test_monitor_comes_from_the_task_or_is_none():
    data = regression_data()
    out = Trainer(nn.Linear(4, 1), Regression(), data, data, TrainConfig(epochs=2, batch_size=10, **QUIET)).fit()
    assert out["best"]["monitor"] is None  # nothing defaults to an accuracy the task does not report
    with pytest.raises(InvalidConfigError, match="monitor"):
        Trainer(nn.Linear(4, 1), Regression(), data, data,
                TrainConfig(epochs=2, early_stopping_patience=1, **QUIET))

    class LowerIsBetter(Regression):
        monitor = ("val/loss", "min")

    out = Trainer(nn.Linear(4, 1), LowerIsBetter(), data, data,
                  TrainConfig(epochs=3, batch_size=10, lr=0.05, **QUIET)).fit()
    losses = [r["val/loss"] for r in out["history"]]
    assert out["best"]["monitor"] == "val/loss" and out["best"]["value"] == min(losses)
    cls = Trainer(make_mlp(), ClassificationTask(), make_data(), make_data(), TrainConfig(epochs=1, **QUIET))
    assert (cls.selection.rule.name, cls.selection.rule.mode) == ("val/acc", "max")


# ---------------------------------------------------------------- step-based evaluation


def test_evaluation_and_checkpoints_every_n_steps(tmp_path):
    data = make_data(n=80)
    cfg = TrainConfig(epochs=1, batch_size=8, eval_every_steps=4, eval_every_epochs=None,
                      output_dir=str(tmp_path), **QUIET)
    out = Trainer(make_mlp(), ClassificationTask(), data, data, cfg).fit()
    assert [r["step"] for r in out["history"]] == [4, 8, 10]  # 10 steps; the epoch end records too
    assert [r["epoch"] for r in out["history"]] == [0.4, 0.8, 1]
    assert all("val/acc" in r for r in out["history"][:2])
    assert out["best"]["step"] in (4, 8)
    with open(tmp_path / "metrics.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [4, 8, 10]


def test_step_evaluations_resume_bitwise(tmp_path):
    data = make_data(n=80)
    base = dict(epochs=2, batch_size=8, eval_every_steps=3, shuffle=True, deterministic=True, **QUIET)
    straight = Trainer(make_mlp(dropout=0.3), ClassificationTask(), data, data, TrainConfig(**base))
    expected = straight.fit()

    class StopAt:
        def __init__(self, step):
            self.step = step

        def __getattr__(self, hook):
            return lambda trainer, *a: None

        def on_step_end(self, trainer, loss):
            if trainer.state.step == self.step:
                trainer.should_stop = True

    Trainer(make_mlp(dropout=0.3), ClassificationTask(), data, data,
            TrainConfig(**base, output_dir=str(tmp_path)), callbacks=[StopAt(7)]).fit()
    resumed = Trainer(make_mlp(seed=5, dropout=0.3), ClassificationTask(), data, data,
                      TrainConfig(**base, output_dir=str(tmp_path), resume=True))
    out = resumed.fit()
    assert_weights_equal(weights(resumed.model), weights(straight.model))
    assert [r["step"] for r in out["history"]] == [r["step"] for r in expected["history"]]
    with open(tmp_path / "metrics.csv") as f:  # appended after the resume, no duplicated rows
        assert [int(r["step"]) for r in csv.DictReader(f)] == [r["step"] for r in expected["history"]]


# ---------------------------------------------------------------- streaming data


class Stream(IterableDataset):
    """A seeded stream whose order depends on the epoch, as a shuffle buffer's would."""

    def __init__(self, n=44):
        self.data, self.epoch = make_data(n=n), 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        order = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(self.epoch))
        return (self.data[i] for i in order.tolist())


def test_streaming_dataset_trains_for_max_steps_and_resumes_bitwise(tmp_path):
    base = dict(epochs=100, max_steps=9, batch_size=8, deterministic=True, **QUIET)  # 6 batches per pass
    with pytest.raises(InvalidConfigError, match="max_steps"):
        Trainer(make_mlp(), ClassificationTask(), Stream(), config=TrainConfig(epochs=2, **QUIET))
    straight = Trainer(make_mlp(dropout=0.3), ClassificationTask(), Stream(), config=TrainConfig(**base))
    out = straight.fit()
    assert out["steps"] == 9 and out["epochs"] == 1  # one full pass of 6 steps, then 3 of the second
    seen = []

    class Spy(Stream):
        def __iter__(self):
            for item in super().__iter__():
                seen.append((self.epoch, item[1].item()))
                yield item

    class StopAt8:
        def __getattr__(self, hook):
            return lambda trainer, *a: None

        def on_step_end(self, trainer, loss):
            trainer.should_stop = trainer.state.step == 8

    Trainer(make_mlp(dropout=0.3), ClassificationTask(), Spy(), config=TrainConfig(
        **base, output_dir=str(tmp_path)), callbacks=[StopAt8()]).fit()
    resumed = Trainer(make_mlp(seed=3, dropout=0.3), ClassificationTask(), Stream(),
                      config=TrainConfig(**base, output_dir=str(tmp_path), resume=True))
    resumed.fit()
    assert_weights_equal(weights(resumed.model), weights(straight.model))
    assert {e for e, _ in seen} == {0, 1}  # the second pass was a different (epoch-seeded) order


class Regrouping(Dataset):
    """Map-style data whose items depend on the epoch it was last told, as per-epoch batches would."""

    def __init__(self):
        self.data, self.epoch, self.told = make_data(n=16), 0, []

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.told.append(epoch)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data[(i + 5 * self.epoch) % len(self.data)][0], self.data[i][1]


def test_a_map_style_dataset_is_told_the_epoch_before_each_pass_and_on_resume(tmp_path):
    base = dict(epochs=3, batch_size=8, deterministic=True, **QUIET)  # 2 steps an epoch
    data = Regrouping()
    straight = Trainer(make_mlp(), ClassificationTask(), data, config=TrainConfig(**base))
    straight.fit()
    assert data.told == [0, 1, 2]

    class StopAt3:  # mid-way through the second epoch
        def __getattr__(self, hook):
            return lambda trainer, *a: None

        def on_step_end(self, trainer, loss):
            trainer.should_stop = trainer.state.step == 3

    Trainer(make_mlp(), ClassificationTask(), Regrouping(), config=TrainConfig(
        **base, output_dir=str(tmp_path)), callbacks=[StopAt3()]).fit()
    data = Regrouping()
    resumed = Trainer(make_mlp(seed=3), ClassificationTask(), data,
                      config=TrainConfig(**base, output_dir=str(tmp_path), resume=True))
    resumed.fit()
    assert data.told == [1, 2]
    assert_weights_equal(weights(resumed.model), weights(straight.model))


def test_streaming_accumulation_rescales_a_short_last_group():
    data = make_data(n=24)

    class Finite(IterableDataset):
        def __iter__(self):
            return iter(data)

    sgd = dict(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.0, scheduler="constant", **QUIET)
    # 3 micro-batches of 8 with accumulation 2: one group of 16 samples and a leftover of 8.
    streamed = Trainer(make_mlp(), ClassificationTask(), Finite(), config=TrainConfig(
        epochs=1, max_steps=2, batch_size=8, grad_accum_steps=2, **sgd))
    mapped = Trainer(make_mlp(), ClassificationTask(), data, config=TrainConfig(
        epochs=1, batch_size=8, grad_accum_steps=2, shuffle=False, **sgd))
    streamed.fit(), mapped.fit()
    assert streamed.state.step == mapped.state.step == 2
    for k, v in weights(mapped.model).items():
        torch.testing.assert_close(weights(streamed.model)[k], v, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- token-weighted accumulation


class PaddedSequences(Dataset):
    """Sequences of 1-7 tokens padded to 8; label -100 marks the padding."""

    def __init__(self, n=12, vocab=10):
        g = torch.Generator().manual_seed(0)
        self.lengths = [1, 7, 2, 6, 3, 5, 7, 1, 4, 4, 2, 6][:n]
        self.x = torch.randint(0, vocab, (n, 8), generator=g)
        self.y = torch.randint(0, vocab, (n, 8), generator=g)
        for i, length in enumerate(self.lengths):
            self.y[i, length:] = -100

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class TokenTagging(Task):
    def training_step(self, model, batch):
        x, y = batch
        logits = model(x)
        total = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100, reduction="sum")
        return LossSum(total, (y != -100).sum())


class TokenTagger(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.out = nn.Embedding(10, 6), nn.Linear(6, 10)

    def forward(self, x):
        return self.out(torch.tanh(self.emb(x)))


def test_token_weighted_accumulation_equals_one_big_batch():
    data = PaddedSequences()
    sgd = dict(optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.0, scheduler="constant", shuffle=False, **QUIET)
    big = Trainer(TokenTagger(), TokenTagging(), data, config=TrainConfig(epochs=1, batch_size=12, **sgd))
    # micro-batches of 3 sequences hold 10, 14, 12 and 12 tokens: a per-micro-batch mean would
    # weigh their tokens unequally
    accum = Trainer(TokenTagger(), TokenTagging(), data,
                    config=TrainConfig(epochs=1, batch_size=3, grad_accum_steps=4, **sgd))
    out_big, out_accum = big.fit(), accum.fit()
    assert big.state.step == accum.state.step == 1
    for k, v in weights(big.model).items():
        torch.testing.assert_close(weights(accum.model)[k], v, atol=1e-6, rtol=1e-5)
    assert out_accum["history"][0]["train/loss"] == pytest.approx(out_big["history"][0]["train/loss"], rel=1e-6)
    # and the evaluation counts tokens too
    metrics = big.evaluate(data)
    x, y = data.x, data.y
    with torch.no_grad():
        expected = F.cross_entropy(big.model(x).flatten(0, 1), y.flatten(), ignore_index=-100).item()
    assert metrics["val/loss"] == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- EMA warm-up, logs


def test_ema_warmup_ramps_the_decay():
    model = nn.Linear(2, 1, bias=False)
    ema = ModelEMA(model, decay=0.999, warmup=True)
    expected = ema.module.weight.detach().clone()
    decays = []
    for t in range(3):
        with torch.no_grad():
            model.weight.add_(1.0)
        decays.append(ema.current_decay())
        expected = decays[-1] * expected + (1 - decays[-1]) * model.weight.detach()
        ema.update(model)
    assert decays == pytest.approx([1 / 10, 2 / 11, 3 / 12])
    torch.testing.assert_close(ema.module.weight, expected)
    assert ModelEMA(model, decay=0.9, warmup=True).current_decay() == pytest.approx(0.1)
    restored = ModelEMA(model, decay=0.999, warmup=True)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 3 and restored.current_decay() == pytest.approx(4 / 13)


def test_trainer_ema_warmup_and_saving_the_ema_weights(tmp_path):
    import zoo

    model = zoo.create("gcn", in_channels=8, num_classes=4, hidden_channels=4)

    class Nodes(Task):
        monitor = ("val/loss", "min")

        def training_step(self, m, batch):
            x, y = batch
            n = len(x)
            edge_index = torch.stack([torch.arange(n), torch.arange(n).roll(1)])
            return F.cross_entropy(m(x, edge_index), y)

    cfg = TrainConfig(epochs=2, batch_size=48, shuffle=False, ema_decay=0.999, ema_warmup=True, **QUIET)
    trainer = Trainer(model, Nodes(), make_data(), make_data(), cfg)
    trainer.fit()
    assert trainer.ema.updates == 2
    # with warm-up the EMA has moved most of the way (decay 0.1 then 0.18); without, 0.1%
    start = zoo.create("gcn", in_channels=8, num_classes=4, hidden_channels=4)
    moved = (trainer.ema.module.state_dict()["conv1.lin.weight"] - start.state_dict()["conv1.lin.weight"]).norm()
    total = (trainer.model.state_dict()["conv1.lin.weight"] - start.state_dict()["conv1.lin.weight"]).norm()
    assert moved > 0.5 * total
    zoo.save_pretrained(trainer.ema.module, tmp_path / "ema")
    loaded = zoo.from_pretrained(tmp_path / "ema")
    assert_weights_equal(weights(loaded), weights(trainer.ema.module))


def test_all_steps_skipped_is_an_error_and_some_a_warning():
    class Poison(ClassificationTask):
        def __init__(self, every):
            super().__init__()
            self.every, self.calls = every, 0

        def training_step(self, model, batch):
            self.calls += 1
            loss = super().training_step(model, batch)
            return loss * float("nan") if self.calls % self.every == 0 else loss

    cfg = TrainConfig(epochs=1, batch_size=8, nan_policy="skip", **QUIET)
    with pytest.raises(NonFiniteLossError, match="nothing was learned"):
        Trainer(make_mlp(), Poison(every=1), make_data(), config=cfg).fit()
    with pytest.warns(UserWarning, match="2 of 6 optimizer steps were skipped"):
        Trainer(make_mlp(), Poison(every=3), make_data(), config=cfg).fit()


def test_curves_plot_any_metric_over_steps_or_epochs(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    drawn = {}
    real_savefig = Figure.savefig

    def spy(fig, path, **kw):
        drawn["panels"] = [(ax.get_title(), ax.get_xlabel(), len(ax.lines)) for ax in fig.axes]
        return real_savefig(fig, path, **kw)

    monkeypatch.setattr(Figure, "savefig", spy)
    history = [{"step": s, "rollout/return": float(s), "train/d_loss": 1.0 / s, "train/g_loss": 2.0 / s}
               for s in (10, 20, 30)]
    assert plot_curves(history, tmp_path / "c.png")
    assert drawn["panels"] == [("return", "step", 1), ("d_loss", "step", 1), ("g_loss", "step", 1)]
    history = [{"epoch": e, "step": 4 * e, "train/loss": 1.0, "val/loss": 2.0, "val/ppl": math.e}
               for e in (1, 2)]
    assert plot_curves(history, tmp_path / "c.png")
    assert drawn["panels"] == [("loss", "epoch", 2), ("ppl", "epoch", 1)]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_best_checkpoint_names_the_step(tmp_path):
    data = make_data(n=64)
    cfg = TrainConfig(epochs=1, batch_size=8, eval_every_steps=2, output_dir=str(tmp_path), **QUIET)
    out = Trainer(make_mlp(), ClassificationTask(), data, data, cfg).fit()
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["step"] == out["best"]["step"] and best["monitor"] == "val/acc"


# ---------------------------------------------------------------- extending a finished run


def test_resume_with_more_epochs_stretches_the_schedule(tmp_path, capsys):
    data = make_data(n=32)  # 4 steps per epoch
    base = dict(batch_size=8, lr=0.1, warmup_steps=2, scheduler="cosine", output_dir=str(tmp_path), **QUIET)
    Trainer(make_mlp(), ClassificationTask(), data, config=TrainConfig(epochs=2, **base)).fit()
    lrs = []

    class LR:
        def __getattr__(self, hook):
            return lambda trainer, *a: None

        def on_step_end(self, trainer, loss):
            lrs.append(trainer.optimizer.param_groups[0]["lr"])

    finished = Trainer(make_mlp(), ClassificationTask(), data, config=TrainConfig(epochs=2, resume=True, **base),
                       callbacks=[LR()]).fit()
    assert finished["steps"] == 8 and lrs == [] and "already finished" in capsys.readouterr().out
    out = Trainer(make_mlp(), ClassificationTask(), data, config=TrainConfig(epochs=4, resume=True, **base),
                  callbacks=[LR()]).fit()
    assert out["steps"] == 16 and "stretched to 4 epochs (16 steps)" in capsys.readouterr().out
    # the lr after each step of epochs 3-4 is the 16-step schedule's: still falling, ending at 0,
    # never warming up again nor climbing back up a second cosine cycle
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    from zoo.shared.training.optim import build_scheduler

    ref = build_scheduler(opt, TrainConfig(epochs=4, **base), 4, 16)
    expected = []
    for _ in range(16):
        opt.step()
        ref.step()
        expected.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx(expected[8:], abs=1e-9)
    assert all(a >= b for a, b in zip(lrs, lrs[1:])) and lrs[-1] == pytest.approx(0.0, abs=1e-9)


def test_resume_from_a_file_that_is_not_a_training_checkpoint_names_it(tmp_path):
    from zoo.shared.errors import ForeignCheckpointError
    from zoo.shared.training import save_checkpoint

    path = tmp_path / "weights.pt"
    save_checkpoint(path, make_mlp().state_dict())  # a model state dict, not a training run
    with pytest.raises(ForeignCheckpointError, match="weights.pt"):
        Trainer(make_mlp(), ClassificationTask(), make_data(), config=TrainConfig(resume=str(path), **QUIET)).fit()


def test_an_unwritable_output_directory_fails_before_training(tmp_path):
    from zoo.shared.errors import WriteError

    (tmp_path / "file").write_text("in the way")
    calls = []
    task = ClassificationTask()
    task.training_step = lambda model, batch: calls.append(1)
    with pytest.raises(WriteError, match="file"):
        Trainer(make_mlp(), task, make_data(), config=TrainConfig(output_dir=str(tmp_path / "file" / "run"),
                                                                  **QUIET)).fit()
    assert calls == []


def test_no_progress_keeps_the_metric_lines(capsys):
    # Logs written under nohup or CI keep the training history: progress=False removes the bar only.
    data = make_data(n=16)
    cfg = TrainConfig(epochs=2, batch_size=8, **{**QUIET, "verbose": True})
    Trainer(make_mlp(), ClassificationTask(), data, data, cfg).fit()
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("epoch ")]
    assert [line.split(" (")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert "val/acc" in lines[0] and "it/s" not in out.err + out.out  # no bar drawn
    Trainer(make_mlp(), ClassificationTask(), data, data, TrainConfig(epochs=1, batch_size=8, **QUIET)).fit()
    assert capsys.readouterr().out == ""  # verbose=False is the way to silence them


def test_trainer_check_grads_catches_an_infinite_gradient_behind_a_finite_loss():
    class SqrtAtZero(ClassificationTask):
        def training_step(self, model, batch):
            w = model[0].weight.sum()
            return super().training_step(model, batch) + torch.sqrt(w - w.detach())  # value 0, gradient inf

    cfg = TrainConfig(epochs=1, batch_size=8, check_grads=True, **QUIET)
    with pytest.raises(NonFiniteLossError, match=r"gradient norm \(.*\) with a finite loss.*global step 1"):
        Trainer(make_mlp(), SqrtAtZero(), make_data(), config=cfg).fit()


@pytest.mark.parametrize("scale", [0.01, 100.0])  # under the limit (no pass over the gradients) and over it
def test_optimizer_step_clips_bitwise_like_clip_grad_norm(scale):
    torch.manual_seed(0)
    ours, theirs = make_mlp(), make_mlp()
    theirs.load_state_dict(ours.state_dict())
    opt_ours = build_optimizer(ours.parameters(), name="adam", lr=1e-2)
    opt_theirs = build_optimizer(theirs.parameters(), name="adam", lr=1e-2)
    for _ in range(5):
        x = torch.randn(16, ours[0].in_features) * scale
        loss = ours(x).pow(2).mean()
        loss.backward()
        result = optimizer_step(opt_ours, loss.detach(), clip_grad_norm=1.0)
        theirs(x).pow(2).mean().backward()
        norm = torch.nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
        opt_theirs.step()
        opt_theirs.zero_grad()
        assert result.grad_norm == pytest.approx(float(norm))
        assert (result.grad_norm > 1.0) == (scale > 1)  # the case the parameter names
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
