"""DCGAN in the tutorial's layout (strict loads of tutorial checkpoints) and the WGAN-GP penalty."""

import pytest
import torch

import zoo
from zoo.generative.wgan_gp import critic_loss, gradient_penalty
from zoo.shared.errors import CheckpointMismatchError, InputError, InvalidConfigError

from .reference import Tutorial32Generator, TutorialDiscriminator, TutorialGenerator


def _randomize_bn(model):
    """Give batch-norm running statistics non-trivial values, so eval outputs depend on them."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(7)


@pytest.mark.parametrize("kind,reference,config,inputs", [
    ("dcgan_generator", TutorialGenerator, dict(), lambda: torch.randn(2, 100, 1, 1)),
    ("dcgan_discriminator", TutorialDiscriminator, dict(), lambda: torch.rand(2, 3, 64, 64) * 2 - 1),
    ("dcgan_generator", Tutorial32Generator, dict(nc=1, image_size=32), lambda: torch.randn(2, 100, 1, 1)),
])
def test_a_tutorial_checkpoint_loads_strictly_and_gives_the_same_output(kind, reference, config, inputs, tmp_path):
    torch.manual_seed(0)
    ref = reference(**({"nc": config["nc"]} if "nc" in config else {}))
    with torch.no_grad():
        _randomize_bn(ref)
    torch.save(ref.state_dict(), tmp_path / "netG.pth")  # what the tutorial's training script saves
    ours = zoo.create(kind, pretrained=tmp_path / "netG.pth", **config)
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = inputs()
    ref.eval(), ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)


def test_the_tutorial_sizes_are_the_default_and_count_its_parameters():
    g, d = zoo.create("dcgan_generator"), zoo.create("dcgan_discriminator")
    assert sum(p.numel() for p in g.parameters()) == sum(p.numel() for p in TutorialGenerator().parameters())
    assert sum(p.numel() for p in d.parameters()) == sum(p.numel() for p in TutorialDiscriminator().parameters())
    assert g(torch.randn(3, 100)).shape == (3, 3, 64, 64)  # (B, nz) works too
    assert d(torch.zeros(3, 3, 64, 64)).shape == (3,)


@pytest.mark.parametrize("size,channels", [(32, 1), (32, 3), (64, 1), (16, 4)])
def test_sizes_and_channels(size, channels):
    g = zoo.create("dcgan_generator", nc=channels, image_size=size, ngf=8)
    d = zoo.create("dcgan_discriminator", nc=channels, image_size=size, ndf=8)
    img = g(torch.randn(2, 100, 1, 1))
    assert img.shape == (2, channels, size, size) and img.abs().max() <= 1
    out = d(img)
    assert out.shape == (2,) and ((out > 0) & (out < 1)).all()


def test_a_32px_checkpoint_does_not_load_into_a_64px_model(tmp_path):
    torch.save(Tutorial32Generator(nc=3).state_dict(), tmp_path / "g.pth")
    with pytest.raises(CheckpointMismatchError, match="main"):
        zoo.create("dcgan_generator", pretrained=tmp_path / "g.pth")


def test_bad_sizes_and_inputs_are_refused():
    with pytest.raises(InvalidConfigError, match="power of two"):
        zoo.create("dcgan_generator", image_size=48)
    with pytest.raises(InputError, match=r"\(batch, 100\)"):
        zoo.create("dcgan_generator", ngf=4)(torch.randn(2, 64))
    with pytest.raises(InputError, match="64, 64"):
        zoo.create("dcgan_discriminator", ndf=4)(torch.randn(2, 3, 32, 32))


def test_the_wgan_critic_has_no_batch_norm_and_no_sigmoid():
    critic = zoo.create("wgan_gp_critic", nc=1, image_size=32)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Sigmoid)) for m in critic.modules())
    with torch.no_grad():
        for p in critic.parameters():
            p.mul_(50)
    assert critic(torch.randn(8, 1, 32, 32)).abs().max() > 1  # a raw score, not a probability


class TinyCritic(torch.nn.Module):
    """D(x) = sum_j v_j tanh(W x + b)_j, small enough to differentiate by hand."""

    def __init__(self, d=6, h=4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W = torch.nn.Parameter(torch.randn(h, d, generator=g))
        self.b = torch.nn.Parameter(torch.randn(h, generator=g))
        self.v = torch.nn.Parameter(torch.randn(h, generator=g))

    def forward(self, x):
        return torch.tanh(x.flatten(1) @ self.W.T + self.b) @ self.v


def _hand_penalty(critic, real, fake, eps):
    """grad_x D = W^T (v * (1 - tanh^2(W x + b))), written out; the penalty mean_i (|grad_i| - 1)^2."""
    xhat = eps[:, None] * real.flatten(1) + (1 - eps[:, None]) * fake.flatten(1)
    pre = xhat @ critic.W.T + critic.b
    grad = (critic.v * (1 - torch.tanh(pre) ** 2)) @ critic.W
    return ((grad.pow(2).sum(1).sqrt() - 1) ** 2).mean()


def test_gradient_penalty_equals_the_hand_computation_and_its_gradient():
    critic = TinyCritic()
    g = torch.Generator().manual_seed(1)
    real, fake, eps = torch.randn(5, 1, 2, 3, generator=g), torch.randn(5, 1, 2, 3, generator=g), torch.rand(5, generator=g)
    ours = gradient_penalty(critic, real, fake, eps)
    hand = _hand_penalty(critic, real, fake, eps)
    torch.testing.assert_close(ours, hand, rtol=1e-6, atol=1e-7)
    # the penalty must train the critic: its gradient with respect to the weights equals the hand one's
    ours_grads = torch.autograd.grad(ours, list(critic.parameters()))
    hand_grads = torch.autograd.grad(hand, list(critic.parameters()))
    for a, b in zip(ours_grads, hand_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_critic_loss_is_fake_minus_real_plus_ten_times_the_penalty():
    critic = TinyCritic()
    g = torch.Generator().manual_seed(2)
    real, fake, eps = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g), torch.rand(4, generator=g)
    loss, logs = critic_loss(critic, real, fake, 10.0, eps)
    expected = critic(fake).mean() - critic(real).mean() + 10 * _hand_penalty(critic, real, fake, eps)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logs["wasserstein"], (critic(real).mean() - critic(fake).mean()).detach())


def test_a_critic_with_unit_gradient_everywhere_has_zero_penalty():
    linear = torch.nn.Linear(4, 1, bias=True)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[0.6, 0.0, 0.8, 0.0]]))  # |w| = 1
    critic = lambda x: linear(x).squeeze(1)  # noqa: E731
    assert gradient_penalty(critic, torch.randn(3, 4), torch.randn(3, 4)).item() == pytest.approx(0.0, abs=1e-12)
