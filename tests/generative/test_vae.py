"""VAE: the KL term against its closed form and a Monte-Carlo estimate, the ELBO's parts, the IWAE bound."""

import math

import pytest
import torch

import zoo
from zoo.generative.vae import gaussian_log_prob, kl_divergence, kl_monte_carlo
from zoo.shared.errors import InputError, InvalidConfigError


def test_closed_form_kl_equals_the_textbook_formula_and_a_monte_carlo_estimate():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    var = logvar.exp()
    # KL(N(mu, var) || N(0, 1)) per dimension: (var + mu^2 - 1 - log var) / 2
    textbook = (0.5 * (var + mu ** 2 - 1 - logvar)).sum(-1)
    torch.testing.assert_close(kl_divergence(mu, logvar), textbook)
    mc = kl_monte_carlo(mu, logvar, 200_000, generator=g)
    torch.testing.assert_close(mc, textbook, rtol=0.02, atol=0.02)


def test_gaussian_log_prob_equals_torch_distributions():
    g = torch.Generator().manual_seed(1)
    z, mu, logvar = (torch.randn(4, 3, generator=g) for _ in range(3))
    expected = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(z, mu, logvar), expected)


@pytest.mark.parametrize("name", ["vae_conv", "vae_mlp"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_elbo_terms_match_their_definitions(name, likelihood):
    torch.manual_seed(0)
    model = zoo.create(name, likelihood=likelihood, img_size=16, latent_dim=4, hidden_dim=32, beta=2.0)
    x = torch.rand(6, 1, 16, 16)
    torch.manual_seed(5)
    terms = model.elbo(x)
    torch.manual_seed(5)  # the same eps: recompute by hand with torch.distributions
    mu, logvar = model.encode(x)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    out = model.decode(z)
    if likelihood == "bernoulli":
        log_px = torch.distributions.Bernoulli(logits=out, validate_args=False).log_prob(x).flatten(1).sum(1)
    else:
        log_px = torch.distributions.Normal(out, model.gaussian_std).log_prob(x).flatten(1).sum(1)
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * logvar).exp()),
                                           torch.distributions.Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(terms["recon"], -log_px.mean(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms["kl"], kl.mean(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(terms["loss"], -log_px.mean() + 2.0 * kl.mean(), rtol=1e-5, atol=1e-4)


def test_iwae_bound_is_the_elbo_at_k1_and_tightens_with_k():
    torch.manual_seed(0)
    model = zoo.create("vae_mlp", img_size=8, latent_dim=2, hidden_dim=16).eval()
    with torch.no_grad():  # a wide q(z|x) and a decoder that depends on z: a loose ELBO for IWAE to tighten
        model.logvar.bias.fill_(1.0)
        model.decoder[0].weight.mul_(5)
    x = (torch.rand(4, 1, 8, 8) > 0.5).float()
    g = torch.Generator().manual_seed(0)

    def mean_bound(k, repeats):
        return torch.stack([model.iwae_bound(x, k, generator=g) for _ in range(repeats)]).mean(0)

    k1 = mean_bound(1, 4000)  # k = 1 is an unbiased estimate of the ELBO
    mu, logvar = model.encode(x)
    with torch.no_grad():
        z = mu + (0.5 * logvar).exp() * torch.randn(4000, *mu.shape, generator=g)
        log_px = model.log_likelihood(model.decode(z.flatten(0, 1)), x.repeat(4000, 1, 1, 1)).view(4000, -1).mean(0)
        elbo = log_px - kl_divergence(mu, logvar)
    torch.testing.assert_close(k1, elbo, rtol=0, atol=0.2)
    bounds = [k1.mean().item()] + [mean_bound(k, 50).mean().item() for k in (3, 30)]
    assert all(a < b for a, b in zip(bounds, bounds[1:])), bounds  # a larger k tightens the bound


def test_iwae_bound_is_exact_when_the_posterior_is_the_prior_and_the_decoder_ignores_z():
    """With a decoder that ignores z and q = p(z), every weight is p(x): the bound is log p(x) for any k."""
    model = zoo.create("vae_mlp", img_size=8, latent_dim=2, hidden_dim=16).eval()
    with torch.no_grad():
        for layer in (model.mu, model.logvar):
            layer.weight.zero_(), layer.bias.zero_()
        model.decoder[0].weight.zero_()
    x = (torch.rand(3, 1, 8, 8) > 0.5).float()
    logits = model.decode(torch.zeros(1, 2))
    exact = torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(model.iwae_bound(x, 7), exact, rtol=1e-5, atol=1e-4)


def test_test_nll_is_the_mean_negative_bound_over_every_batch_and_repeats_for_a_seed():
    torch.manual_seed(0)
    model = zoo.create("vae_mlp", img_size=8, latent_dim=2, hidden_dim=16).eval()
    x = (torch.rand(10, 1, 8, 8) > 0.5).float()
    g = torch.Generator().manual_seed(3)
    by_hand = -torch.cat([model.iwae_bound(chunk, 5, generator=g) for chunk in x.split(4)]).mean()
    nll = model.test_nll(x, 5, seed=3, batch_size=4)
    assert nll == pytest.approx(by_hand.item(), abs=1e-5)
    assert nll > 0 and model.test_nll(x, 5, seed=3, batch_size=4) == nll
    assert model.test_nll(x, 5, seed=4, batch_size=4) != nll


def test_eval_uses_the_mean_and_training_samples():
    model = zoo.create("vae_conv", img_size=16, latent_dim=4, hidden_dim=16, base_channels=4)
    x = torch.rand(2, 1, 16, 16)
    model.eval()
    a, mu, _ = model(x)
    torch.testing.assert_close(a, model.decode(mu))
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])


def test_bad_vae_inputs_are_refused():
    with pytest.raises(InvalidConfigError, match="multiple of 8"):
        zoo.create("vae_conv", img_size=12)
    with pytest.raises(InvalidConfigError, match="likelihood"):
        zoo.create("vae_mlp", likelihood="poisson")
    model = zoo.create("vae_mlp", img_size=8, hidden_dim=8)
    with pytest.raises(InputError, match="in \\[0, 1\\]"):
        model.elbo(torch.randn(2, 1, 8, 8))
    with pytest.raises(InputError, match=r"\(batch, 1, 8, 8\)"):
        model(torch.rand(2, 1, 16, 16))
    with pytest.raises(InputError, match="k >= 1"):
        model.iwae_bound(torch.rand(2, 1, 8, 8), 0)
    assert math.isfinite(model.iwae_bound(torch.rand(2, 1, 8, 8), 3).sum().item())
