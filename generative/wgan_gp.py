"""WGAN-GP: the Wasserstein GAN with a gradient penalty.

Paper: Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville, "Improved Training of Wasserstein GANs",
NeurIPS 2017 (arXiv:1704.00028), Algorithm 1: the critic minimises
``D(G(z)) - D(x) + lambda * (||grad_xhat D(xhat)||_2 - 1)^2`` on random interpolates
``xhat = eps x + (1 - eps) G(z)``, ``eps ~ U[0, 1]`` per sample; ``n_critic = 5`` critic updates per
generator update, which minimises ``-D(G(z))``; ``lambda = 10``, Adam(1e-4, betas (0, 0.9)).
The penalty is per sample, so the critic has no batch norm (the paper suggests layer norm or
none; here: none). The generator is the DCGAN generator (:mod:`zoo.generative.dcgan`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from zoo.shared.registry import TestSpec, register_model

from .dcgan import DCGANDiscriminator, _size_problem, image_inputs

PAPER = "Gulrajani et al. 2017, Improved Training of Wasserstein GANs (arXiv:1704.00028)"


@dataclass(frozen=True)
class WGANGPConfig:
    """The paper's hyper-parameters (Algorithm 1)."""

    gp_lambda: float = 10.0  # weight of the gradient penalty
    n_critic: int = 5  # critic updates per generator update
    lr: float = 1e-4  # Adam, both nets
    betas: tuple[float, float] = (0.0, 0.9)


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, eps: Tensor | None = None) -> Tensor:
    """``mean_i (||grad D(xhat_i)||_2 - 1)^2`` over interpolates ``xhat_i = eps_i real_i + (1 - eps_i) fake_i``.

    ``eps`` (one per sample, U[0, 1]) is drawn when not given. The graph is kept (``create_graph``)
    so the penalty's own gradient reaches the critic's weights."""
    if eps is None:
        eps = torch.rand(real.shape[0], device=real.device, dtype=real.dtype)
    eps = eps.reshape(-1, *([1] * (real.dim() - 1)))
    xhat = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(xhat)
    (grad,) = torch.autograd.grad(scores.sum(), xhat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def critic_loss(critic: nn.Module, real: Tensor, fake: Tensor, gp_lambda: float = 10.0,
                eps: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Algorithm 1, line 7: ``D(fake) - D(real) + lambda * GP``; also returns the Wasserstein estimate
    ``D(real) - D(fake)`` and the penalty for logging."""
    d_real, d_fake = critic(real).mean(), critic(fake.detach()).mean()
    gp = gradient_penalty(critic, real, fake, eps)
    return d_fake - d_real + gp_lambda * gp, {"wasserstein": (d_real - d_fake).detach(), "gp": gp.detach()}


def generator_loss(critic: nn.Module, fake: Tensor) -> Tensor:
    """Algorithm 1, line 11: ``-D(G(z))``."""
    return -critic(fake).mean()


def WGANGPCritic(ndf: int = 64, nc: int = 3, image_size: int = 64) -> DCGANDiscriminator:
    """The DCGAN discriminator without batch norm and without the sigmoid."""
    return DCGANDiscriminator(ndf=ndf, nc=nc, image_size=image_size, norm="none", sigmoid=False)


register_model(
    "wgan_gp_critic", WGANGPCritic, dict(ndf=64, nc=3, image_size=64), domain="generative", task="image-critic",
    paper=PAPER, inputs="images (B, nc, image_size, image_size) in [-1, 1]", checks=[_size_problem],
    test=TestSpec(config=dict(ndf=4, nc=1, image_size=16), inputs=image_inputs, output_shape=lambda cfg, b: (b,)),
)
