"""Variational auto-encoder, with MLP or convolutional encoder and decoder.

Papers:
  Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (arXiv:1312.6114): the encoder
  q(z|x) = N(mu(x), diag sigma^2(x)), the reparameterisation z = mu + sigma * eps, a N(0, I) prior,
  the ELBO E_q[log p(x|z)] - KL(q(z|x) || p(z)) with the KL in closed form (appendix B):
  KL = -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2).
  Higgins et al., "beta-VAE", ICLR 2017: the KL term weighted by beta.
  Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016 (arXiv:1509.00519):
  log p(x) >= E[log 1/k sum_i p(x, z_i) / q(z_i|x)], the bound used to report a test
  log-likelihood, which tightens as k grows.

Likelihoods: ``bernoulli`` (pixels in [0, 1]; the decoder outputs logits) and ``gaussian``
(the decoder outputs the mean, with a fixed standard deviation ``gaussian_std``). All
log-likelihoods are in nats per image, summed over pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.shared.errors import InputError, InvalidConfigError
from zoo.shared.registry import TestSpec, register_model

PAPER = "Kingma & Welling 2014, Auto-Encoding Variational Bayes (arXiv:1312.6114)"
LIKELIHOODS = ("bernoulli", "gaussian")
_LOG_2PI = math.log(2 * math.pi)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, in closed form."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=-1)


def gaussian_log_prob(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag exp(logvar)), summed over the last dim."""
    return -0.5 * (_LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(dim=-1)


def kl_monte_carlo(mu: Tensor, logvar: Tensor, samples: int, generator: torch.Generator | None = None) -> Tensor:
    """The same KL estimated as E_q[log q(z) - log p(z)] with ``samples`` draws (a check of the closed form)."""
    eps = torch.randn((samples, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
    z = mu + (0.5 * logvar).exp() * eps
    zeros = torch.zeros_like(mu)
    return (gaussian_log_prob(z, mu, logvar) - gaussian_log_prob(z, zeros, zeros)).mean(dim=0)


class VAE(nn.Module):
    """``model(x)`` -> ``(decoder output, mu, logvar)``; the decoder output is the Bernoulli logits or
    the Gaussian mean of ``x``'s reconstruction. In training mode z is sampled (reparameterised);
    in eval mode z = mu, so evaluation is deterministic. ``model.elbo(x)`` gives the loss terms,
    ``model.iwae_bound(x, k)`` the test log-likelihood bound, ``model.decode(z)`` samples."""

    def __init__(self, kind: str = "conv", in_chans: int = 1, img_size: int = 32, latent_dim: int = 16,
                 hidden_dim: int = 400, base_channels: int = 32, likelihood: str = "bernoulli",
                 gaussian_std: float = 0.1, beta: float = 1.0):
        super().__init__()
        problem = _kind_problem(dict(kind=kind, img_size=img_size, likelihood=likelihood))
        if problem:
            raise InvalidConfigError(f"VAE: {problem}")
        self.kind, self.in_chans, self.img_size, self.latent_dim = kind, in_chans, img_size, latent_dim
        self.likelihood, self.gaussian_std, self.beta = likelihood, gaussian_std, beta
        pixels = in_chans * img_size * img_size
        if kind == "mlp":
            self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden_dim), nn.ReLU(),
                                         nn.Linear(hidden_dim, hidden_dim), nn.ReLU())
            self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU(),
                                         nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, pixels),
                                         nn.Unflatten(1, (in_chans, img_size, img_size)))
            features = hidden_dim
        else:  # three stride-2 convs down to img_size / 8, then a linear layer; the decoder mirrors it
            c, s = base_channels, img_size // 8
            self.encoder = nn.Sequential(
                nn.Conv2d(in_chans, c, 4, 2, 1), nn.ReLU(), nn.Conv2d(c, 2 * c, 4, 2, 1), nn.ReLU(),
                nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * c * s * s, hidden_dim),
                nn.ReLU())
            self.decoder = nn.Sequential(
                nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 4 * c * s * s), nn.ReLU(),
                nn.Unflatten(1, (4 * c, s, s)), nn.ConvTranspose2d(4 * c, 2 * c, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(c, in_chans, 4, 2, 1))
            features = hidden_dim
        self.mu = nn.Linear(features, latent_dim)
        self.logvar = nn.Linear(features, latent_dim)

    def _check(self, x) -> None:
        shape = (self.in_chans, self.img_size, self.img_size)
        if not isinstance(x, Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != shape:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(f"VAE expects images of shape (batch, {', '.join(map(str, shape))}), got {got}.")

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        """The decoder output (logits or mean) for latents ``z``."""
        return self.decoder(z)

    def mean_image(self, z: Tensor) -> Tensor:
        """The expected image E[x|z] in pixel space: sigmoid(logits) or the Gaussian mean."""
        out = self.decode(z)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def reparameterize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        return mu + (0.5 * logvar).exp() * torch.randn_like(mu)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar) if self.training else mu
        return self.decode(z), mu, logvar

    def log_likelihood(self, decoded: Tensor, x: Tensor) -> Tensor:
        """log p(x|z) per image, summed over pixels (nats)."""
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(decoded, x, reduction="none").flatten(1).sum(1)
        var = self.gaussian_std ** 2
        return -0.5 * ((x - decoded).pow(2) / var + math.log(var) + _LOG_2PI).flatten(1).sum(1)

    def elbo(self, x: Tensor) -> dict[str, Tensor]:
        """Batch means of the reconstruction term -log p(x|z) (one z per image), the closed-form KL,
        the ELBO and the loss ``recon + beta * KL`` that training minimises."""
        if self.likelihood == "bernoulli" and (x.min() < 0 or x.max() > 1):
            raise InputError("a Bernoulli VAE models pixels in [0, 1]; rescale the images (got values in "
                             f"[{float(x.min()):.3g}, {float(x.max()):.3g}]) or use likelihood='gaussian'")
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        recon = -self.log_likelihood(self.decode(z), x).mean()
        kl = kl_divergence(mu, logvar).mean()
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl, "elbo": -(recon + kl)}

    @torch.no_grad()
    def iwae_bound(self, x: Tensor, k: int = 100, generator: torch.Generator | None = None) -> Tensor:
        """The importance-weighted bound on log p(x) per image (nats), with ``k`` samples of q(z|x):
        logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k. k = 1 is the ELBO."""
        if k < 1:
            raise InputError(f"the IWAE bound needs k >= 1 samples, got {k}")
        mu, logvar = self.encode(x)
        eps = torch.randn((k, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu + (0.5 * logvar).exp() * eps  # (k, B, latent)
        decoded = self.decode(z.flatten(0, 1))
        log_px = self.log_likelihood(decoded, x.repeat(k, *([1] * (x.dim() - 1)))).view(k, -1)
        zeros = torch.zeros_like(mu)
        log_w = log_px + gaussian_log_prob(z, zeros, zeros) - gaussian_log_prob(z, mu, logvar)
        return torch.logsumexp(log_w, dim=0) - math.log(k)

    @torch.no_grad()
    def test_nll(self, images: Tensor, k: int = 100, seed: int = 0, batch_size: int = 64) -> float:
        """Mean negative IWAE bound (k samples) over ``images`` in nats per image: the test
        log-likelihood figure the recipe and the quality benchmark report. One generator seeded
        with ``seed`` draws every batch's samples, so the figure repeats exactly."""
        device = next(self.parameters()).device
        g = torch.Generator(device=device).manual_seed(seed)
        bounds = [self.iwae_bound(chunk.to(device), k, generator=g) for chunk in images.split(batch_size)]
        return float(-torch.cat(bounds).mean())

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        """``n`` images E[x|z], z ~ N(0, I), in pixel space."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.mean_image(z)


def _kind_problem(cfg: dict) -> str | None:
    if cfg["kind"] not in ("conv", "mlp"):
        return f"kind must be 'conv' or 'mlp', got {cfg['kind']!r}"
    if cfg["likelihood"] not in LIKELIHOODS:
        return f"likelihood must be one of {LIKELIHOODS}, got {cfg['likelihood']!r}"
    if cfg["kind"] == "conv" and cfg["img_size"] % 8:
        return f"the conv VAE halves the image three times: img_size must be a multiple of 8, got {cfg['img_size']}"
    return None


def _inputs(cfg: dict, batch: int) -> tuple:
    size = cfg["img_size"]
    return (torch.rand(batch, cfg["in_chans"], size, size, generator=torch.Generator().manual_seed(0)),)


def _spec(**config) -> TestSpec:
    return TestSpec(config=config, inputs=_inputs,
                    output_shape=lambda cfg, b: (b, cfg["in_chans"], cfg["img_size"], cfg["img_size"]))


_FAMILY = dict(domain="generative", task="variational-autoencoder", paper=PAPER, checks=[_kind_problem],
               inputs="images (B, C, H, W), pixels in [0, 1]")
register_model("vae_conv", VAE, dict(kind="conv", in_chans=1, img_size=32, latent_dim=16, hidden_dim=256),
               test=_spec(kind="conv", in_chans=1, img_size=16, latent_dim=4, hidden_dim=16, base_channels=4),
               **_FAMILY)
register_model("vae_mlp", VAE, dict(kind="mlp", in_chans=1, img_size=32, latent_dim=16, hidden_dim=400),
               test=_spec(kind="mlp", in_chans=1, img_size=8, latent_dim=4, hidden_dim=16), **_FAMILY)
