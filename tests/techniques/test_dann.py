"""DANN: the paper's schedules, the gradient reversal inside the model, the shifted domain and
`zoo train dann` end to end."""

import math

import pytest
import torch
from torch import nn

import zoo
from zoo.cli import main as zoo_main
from zoo.shared.errors import InvalidConfigError
from zoo.techniques.dann import DANN, DANNSchedule, DANNTask, annealed_lr_factor, grl_lambda, shift_images


def test_lambda_schedule_is_the_papers():
    assert grl_lambda(0.0) == 0.0
    assert grl_lambda(0.5) == pytest.approx(0.9866142981514303)  # 2 / (1 + e^-5) - 1
    assert grl_lambda(1.0) == pytest.approx(0.9999092042625951)  # 2 / (1 + e^-10) - 1
    assert grl_lambda(0.1) == pytest.approx(2 / (1 + math.exp(-1)) - 1)
    values = [grl_lambda(p / 10) for p in range(11)]
    assert values == sorted(values)


def test_learning_rate_annealing_is_the_papers():
    assert annealed_lr_factor(0.0) == 1.0
    assert annealed_lr_factor(1.0) == pytest.approx(11 ** -0.75)
    assert annealed_lr_factor(0.3) == pytest.approx(1 / 4 ** 0.75)


def _dann():
    torch.manual_seed(0)
    return DANN(zoo.create("resnet18", base_channels=4, num_classes=3, in_chans=1), domain_hidden=16).train()


def test_feature_extractor_receives_the_negated_scaled_domain_gradient():
    model = _dann()
    xs, xt = torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32)
    domains = torch.cat([torch.zeros(4), torch.ones(4)])
    extractor = [p for n, p in model.net.named_parameters() if not n.startswith("fc.")]
    head = list(model.domain_classifier.parameters())

    def domain_gradients():
        _, logits = model.forward_train(xs, xt)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, domains)
        return torch.autograd.grad(loss, extractor + head)

    model.grl.lambd = 0.37
    reversed_grads = domain_gradients()
    grl, model.grl = model.grl, nn.Identity()  # the same network without reversal
    plain = domain_gradients()
    model.grl = grl
    for got, want in zip(reversed_grads[: len(extractor)], plain[: len(extractor)]):
        torch.testing.assert_close(got, -0.37 * want)
    assert any(g.abs().sum() > 0 for g in plain[: len(extractor)])
    for got, want in zip(reversed_grads[len(extractor):], plain[len(extractor):]):
        torch.testing.assert_close(got, want)  # the domain classifier itself learns to separate


def test_task_adds_the_domain_loss_only_when_adapting():
    model = _dann()
    model.grl.lambd = 1.0
    xs, ys, xt = torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 2, 0]), torch.randn(4, 1, 32, 32)
    torch.manual_seed(0)
    source_only = DANNTask(adapt=False).training_step(model, (xs, ys, xt))
    torch.testing.assert_close(source_only, nn.functional.cross_entropy(model(xs), ys))
    adapted = DANNTask(adapt=True).training_step(model, (xs, ys, xt))
    class_logits, domain_logits = model.forward_train(xs, xt)
    expected = nn.functional.cross_entropy(class_logits, ys) + nn.functional.binary_cross_entropy_with_logits(
        domain_logits, torch.cat([torch.zeros(4), torch.ones(4)]))
    torch.testing.assert_close(adapted, expected)


def test_schedule_callback_follows_training_progress():
    class State:
        step = 0

    class FakeTrainer:
        state, total_steps, model = State(), 40, _dann()

    trainer, schedule = FakeTrainer(), DANNSchedule()
    schedule.on_train_start(trainer)
    assert trainer.model.grl.lambd == 0.0
    trainer.state.step = 10
    schedule.on_step_end(trainer, None)
    assert trainer.model.grl.lambd == pytest.approx(grl_lambda(0.25))


def test_shifts():
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(shift_images(x, "invert"), 1 - x)
    noisy = shift_images(x, "invert_noise", seed=3)
    assert torch.equal(noisy, shift_images(x, "invert_noise", seed=3)) and not torch.equal(noisy, 1 - x)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert shift_images(x, "rotate").shape == x.shape
    with pytest.raises(InvalidConfigError, match="--shift"):
        shift_images(x, "blur")


@pytest.mark.parametrize("extra", [[], ["--source-only"]])
def test_zoo_train_dann_runs_and_saves_the_classifier(tmp_path, capsys, extra):
    out = tmp_path / "dann"
    assert zoo_main(["train", "dann", "--img-size", "16", "--base-channels", "8", "--max-steps", "2",
                     "--batch-size", "16", "--no-progress", "--save-model", str(out), *extra]) == 0
    printed = capsys.readouterr().out
    assert "target test accuracy" in printed and '"target/acc"' in printed
    saved = zoo.from_pretrained(out)
    assert saved.num_classes == 10 and saved.zoo_name == "resnet18"
