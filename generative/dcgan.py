"""DCGAN generator and discriminator.

Paper: Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", ICLR 2016 (arXiv:1511.06434): all-convolutional, strided
(transposed) convolutions instead of pooling, batch norm in both nets except the generator's
output and the discriminator's input layer, ReLU / tanh in the generator, LeakyReLU(0.2) in the
discriminator, weights drawn from N(0, 0.02), Adam(2e-4, betas (0.5, 0.999)).

Checkpoint layout: the PyTorch DCGAN tutorial / examples (``main.N.*`` inside an ``nn.Sequential``,
``nz=100``, ``ngf=ndf=64``). For 64x64 images the generator is
ConvT(nz, 8ngf, 4, 1, 0) BN ReLU, then 4ngf, 2ngf, ngf with ConvT(4, 2, 1) BN ReLU, then
ConvT(ngf, nc, 4, 2, 1) tanh; the discriminator mirrors it with Conv(4, 2, 1) and LeakyReLU(0.2),
ending in Conv(8ndf, 1, 4, 1, 0) and a sigmoid. Other power-of-two sizes (16 to 256) add or drop
middle stages: 32x32 starts the generator at 4ngf. Any number of channels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from zoo.shared.errors import InputError, InvalidConfigError
from zoo.shared.registry import TestSpec, register_model

PAPER = "Radford et al. 2016, Unsupervised Representation Learning with DCGANs (arXiv:1511.06434)"


def _stages(image_size: int) -> int:
    """Stride-2 stages between 4x4 and the image: 4 for 64x64, 3 for 32x32."""
    return int(math.log2(image_size)) - 2


def _size_problem(cfg: dict) -> str | None:
    size = cfg["image_size"]
    if size < 16 or size > 256 or size & (size - 1):
        return f"image_size must be a power of two from 16 to 256 (64 is the tutorial's), got {size}"
    return None


@torch.no_grad()
def dcgan_init(module: nn.Module) -> None:
    """The paper's initialisation: conv weights N(0, 0.02), batch-norm scales N(1, 0.02), shifts 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """``G(z)``: noise ``(B, nz)`` or ``(B, nz, 1, 1)`` -> images ``(B, nc, image_size, image_size)`` in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, image_size: int = 64):
        super().__init__()
        problem = _size_problem({"image_size": image_size})
        if problem:
            raise InvalidConfigError(f"DCGANGenerator: {problem}")
        self.nz, self.nc, self.image_size = nz, nc, image_size
        mult = 2 ** (_stages(image_size) - 1)  # 8 for 64x64: the first layer has 8 * ngf channels
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, ngf * mult, 4, 1, 0, bias=False),  # 1x1 -> 4x4
                                   nn.BatchNorm2d(ngf * mult), nn.ReLU(True)]
        while mult > 1:
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ngf * mult // 2), nn.ReLU(True)]
            mult //= 2
        layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: Tensor) -> Tensor:
        if not isinstance(z, Tensor) or z.dim() not in (2, 4) or z.shape[1] != self.nz or (
                z.dim() == 4 and z.shape[2:] != (1, 1)):
            got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise InputError(f"DCGANGenerator expects noise of shape (batch, {self.nz}) or (batch, {self.nz}, 1, 1), "
                             f"got {got}.")
        return self.main(z.reshape(z.shape[0], self.nz, 1, 1))

    def sample_noise(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        return torch.randn(n, self.nz, 1, 1, generator=generator, device=device)


class DCGANDiscriminator(nn.Module):
    """``D(x)``: images -> one score per image, shape ``(B,)``: a probability with ``sigmoid=True``
    (DCGAN), a raw critic value otherwise (WGAN). ``norm="none"`` drops the batch norms (the WGAN-GP
    critic, whose penalty is per-sample), which renumbers ``main.N``."""

    def __init__(self, ndf: int = 64, nc: int = 3, image_size: int = 64, norm: str = "batch", sigmoid: bool = True):
        super().__init__()
        problem = _size_problem({"image_size": image_size}) or _norm_problem({"norm": norm})
        if problem:
            raise InvalidConfigError(f"DCGANDiscriminator: {problem}")
        self.nc, self.image_size = nc, image_size
        layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        mult = 1
        for _ in range(_stages(image_size) - 1):
            layers.append(nn.Conv2d(ndf * mult, ndf * mult * 2, 4, 2, 1, bias=False))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(ndf * mult * 2))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            mult *= 2
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 0, bias=False))  # 4x4 -> 1x1
        if sigmoid:
            layers.append(nn.Sigmoid())
        self.main = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1:] != (self.nc, self.image_size, self.image_size):
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(f"DCGANDiscriminator expects images of shape (batch, {self.nc}, {self.image_size}, "
                             f"{self.image_size}), got {got}.")
        return self.main(x).view(-1)


def _norm_problem(cfg: dict) -> str | None:
    return None if cfg["norm"] in ("batch", "none") else f"norm must be 'batch' or 'none', got {cfg['norm']!r}"


def _noise_inputs(cfg: dict, batch: int) -> tuple:
    return (torch.randn(batch, cfg["nz"], 1, 1, generator=torch.Generator().manual_seed(0)),)


def image_inputs(cfg: dict, batch: int) -> tuple:
    size = cfg["image_size"]
    return (torch.rand(batch, cfg["nc"], size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1,)


register_model(
    "dcgan_generator", DCGANGenerator, dict(nz=100, ngf=64, nc=3, image_size=64), domain="generative",
    task="image-generation", paper=PAPER, inputs="noise (B, nz, 1, 1)", checks=[_size_problem],
    test=TestSpec(config=dict(nz=8, ngf=4, nc=1, image_size=16), inputs=_noise_inputs,
                  output_shape=lambda cfg, b: (b, cfg["nc"], cfg["image_size"], cfg["image_size"])),
)
register_model(
    "dcgan_discriminator", DCGANDiscriminator, dict(ndf=64, nc=3, image_size=64), domain="generative",
    task="image-discrimination", paper=PAPER, inputs="images (B, nc, image_size, image_size) in [-1, 1]",
    checks=[_size_problem, _norm_problem],
    test=TestSpec(config=dict(ndf=4, nc=1, image_size=16), inputs=image_inputs, output_shape=lambda cfg, b: (b,)),
)
