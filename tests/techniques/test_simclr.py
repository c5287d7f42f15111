"""SimCLR: NT-Xent against a hand computation, the gradient cache against the full batch's
gradient, the augmentation, `zoo pretrain simclr` and `zoo finetune` from its encoder."""

import math

import pytest
import torch
from torch import nn

import zoo
from zoo.cli import main as zoo_main
from zoo.techniques.simclr import SimCLR, SimCLRTask, TwoViews, linear_probe, nt_xent, simclr_augment


def test_nt_xent_equals_a_hand_computation():
    z1 = [[1.0, 0.0], [0.6, 0.8]]
    z2 = [[0.8, 0.6], [0.0, -2.0]]
    tau = 0.5
    views = z1 + z2
    unit = [[a / math.hypot(*v) for a in v] for v in views]
    cos = lambda i, j: sum(a * b for a, b in zip(unit[i], unit[j]))  # noqa: E731
    n, total = 2, 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        denominator = sum(math.exp(cos(i, k) / tau) for k in range(2 * n) if k != i)  # self-pair left out
        total += -math.log(math.exp(cos(i, positive) / tau) / denominator)
    got = nt_xent(torch.tensor(z1), torch.tensor(z2), temperature=tau)
    assert got.item() == pytest.approx(total / (2 * n), rel=1e-6)


def test_nt_xent_is_low_when_views_agree_and_rejects_mismatched_batches():
    z = torch.randn(8, 16)
    assert nt_xent(z, z + 0.01 * torch.randn(8, 16), 0.1) < nt_xent(z, torch.randn(8, 16), 0.1)
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(torch.randn(4, 3), torch.randn(5, 3))


def _encoder_with_dropout():
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Dropout(0.3),
                         nn.Linear(4 * 7 * 7, 16))


@pytest.mark.parametrize("chunk", [4, 5, 8])  # divides the 16 views, does not, splits views from their pairs
def test_gradient_cache_gives_the_full_batch_gradient(chunk):
    torch.manual_seed(0)
    model = SimCLR(_encoder_with_dropout(), 16, hidden_dim=32, out_dim=8).train()
    batch = (torch.randn(8, 1, 16, 16), torch.randn(8, 1, 16, 16))

    torch.manual_seed(1)
    full = SimCLRTask(temperature=0.3).training_step(model, batch)
    full.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    torch.manual_seed(1)  # the same dropout masks: the cache replays each chunk's RNG state
    task = SimCLRTask(temperature=0.3, chunk_size=chunk)
    cached = task.training_step(model, batch)
    assert cached.item() == pytest.approx(full.item(), rel=1e-5)
    cached.backward()  # what the trainer does with the returned loss: adds nothing
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_gradient_cache_updates_batchnorm_statistics_once_per_chunk():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = SimCLR(encoder, 4, 8, 4).train()
    batch = (torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8))
    reference = SimCLR(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                       4, 8, 4).train()
    reference.load_state_dict(model.state_dict())
    SimCLRTask(0.5, chunk_size=4).training_step(model, batch)
    with torch.no_grad():
        for chunk in torch.cat(batch).split(4):
            reference(chunk)  # one pass per chunk
    torch.testing.assert_close(model.encoder[1].running_mean, reference.encoder[1].running_mean)
    torch.testing.assert_close(model.encoder[1].running_var, reference.encoder[1].running_var)


def test_two_views_differ_and_keep_the_shape():
    base = torch.utils.data.TensorDataset(torch.rand(3, 1, 32, 32), torch.tensor([0, 1, 2]))
    torch.manual_seed(0)
    a, b = TwoViews(base, simclr_augment(32))[0]
    assert a.shape == b.shape == (1, 32, 32) and not torch.equal(a, b)


def test_linear_probe_selects_on_validation_and_scores_test():
    from zoo.vision.data import load_digits

    data = load_digits(8)
    encoder = nn.Flatten()  # the raw pixels are a linearly separable representation of digits
    out = linear_probe(encoder, data, cs=(1.0,))
    assert out["probe/C"] == 1.0 and out["probe/test_acc"] > 0.9


def test_zoo_pretrain_then_finetune_from_the_encoder(tmp_path, capsys):
    enc = tmp_path / "enc"
    assert zoo_main(["pretrain", "simclr", "resnet18", "--base-channels", "8", "--img-size", "16", "--max-steps", "2",
                     "--batch-size", "16", "--chunk-size", "12", "--no-probe", "--no-progress",
                     "--save-model", str(enc)]) == 0
    saved = zoo.from_pretrained(enc)
    assert saved.num_classes == 0 and saved.in_chans == 1 and saved.conv1.out_channels == 8
    out = tmp_path / "ft"
    assert zoo_main(["finetune", "resnet18", "--pretrained", str(enc), "--img-size", "16", "--label-fraction", "0.1",
                     "--max-steps", "2", "--batch-size", "16", "--no-progress", "--save-model", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "122 train" in printed and "no classifier" in printed
    tuned = zoo.from_pretrained(out)
    assert tuned.num_classes == 10
    # the encoder's weights were loaded: the stem moved only by the two fine-tuning steps
    assert (tuned.conv1.weight - saved.conv1.weight).abs().max() < 0.05


def test_gradient_accumulation_is_refused_with_the_fix(capsys):
    assert zoo_main(["pretrain", "simclr", "resnet18", "--grad-accum-steps", "2", "--max-steps", "1"]) != 0
    assert "--chunk-size" in capsys.readouterr().err
