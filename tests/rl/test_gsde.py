"""Generalised state-dependent exploration (gSDE, Raffin et al. 2021) in ActorCritic and PPO: the
log-probability and entropy of the state-dependent Gaussian, the exploration matrices' schedule,
the deterministic action, exact resume, and an SB3 gSDE zip loading with the same distribution."""

import math

import numpy as np
import pytest
import torch

from zoo.rl.policies import ActorCritic
from zoo.rl.ppo import PPO, PPOConfig
from zoo.shared.errors import InvalidConfigError


def _policy(**kw):
    torch.manual_seed(0)
    return ActorCritic(obs_shape=(3,), action_dim=2, continuous=True, net_arch=(4,), use_sde=True,
                       action_low=(-1.0, -1.0), action_high=(1.0, 1.0), **kw)


def test_gsde_log_std_is_a_latent_by_action_matrix_and_forward_keeps_its_width():
    policy = _policy(log_std_init=-0.5)
    assert policy.log_std.shape == (4, 2) and torch.all(policy.log_std == -0.5)
    out = policy(torch.randn(5, 3))
    assert out.shape == (5, 2 * 2 + 1)
    with pytest.raises(InvalidConfigError, match="use_sde"):
        ActorCritic(obs_shape=(3,), action_dim=2, continuous=False, use_sde=True)
    with pytest.raises(InvalidConfigError, match="use_sde"):
        ActorCritic(obs_shape=(3,), action_dim=2, continuous=True, squash=True, use_sde=True,
                    action_low=(-1.0, -1.0), action_high=(1.0, 1.0))


def test_gsde_log_prob_and_entropy_equal_a_hand_computation():
    """A tiny example by hand: z = (1, -2), std matrix [[0.5, 1], [2, 0.1]] -> per-dimension variance
    (z^2) @ std^2 = (1*0.25 + 4*4, 1*1 + 4*0.01) = (16.25, 1.04)."""
    policy = ActorCritic(obs_shape=(2,), action_dim=2, continuous=True, net_arch=(), use_sde=True, ortho_init=False)
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([[0.5, 1.0], [2.0, 0.1]]).log())
        policy.pi_head.weight.zero_()
        policy.pi_head.bias.copy_(torch.tensor([0.3, -0.7]))  # the mean
    obs = torch.tensor([[1.0, -2.0]])  # net_arch=(): the latent z is the observation
    action = torch.tensor([[1.3, 0.2]])
    var = torch.tensor([16.25, 1.04]) + ActorCritic.sde_epsilon
    expected = sum(-0.5 * (a - m) ** 2 / v - 0.5 * math.log(2 * math.pi * v)
                   for a, m, v in zip([1.3, 0.2], [0.3, -0.7], var.tolist()))
    expected_entropy = sum(0.5 * math.log(2 * math.pi * math.e * v) for v in var.tolist())
    log_prob, entropy, _ = policy.evaluate_actions(obs, action)
    assert log_prob.item() == pytest.approx(expected, rel=1e-5)
    assert entropy.item() == pytest.approx(expected_entropy, rel=1e-5)
    normal = torch.distributions.Normal(torch.tensor([0.3, -0.7]), var.sqrt())
    assert log_prob.item() == pytest.approx(normal.log_prob(action[0]).sum().item(), rel=1e-5)
    dist, _ = policy.distribution(obs)
    torch.testing.assert_close(dist.stddev[0], var.sqrt())
    lp, ent = policy.log_prob_entropy(dist, action)
    torch.testing.assert_close(lp, log_prob)
    torch.testing.assert_close(ent, entropy)


def test_gsde_sample_is_mean_plus_latent_times_the_env_exploration_matrix():
    policy = _policy()
    obs = torch.randn(3, 3)
    policy.reset_noise(3)
    assert policy.exploration.shape == (3, 4, 2)
    raw, log_prob, value = policy.sample(obs)
    pi, _ = policy.latents(obs)
    mean = policy.pi_head(pi)
    for i in range(3):  # row i uses env i's matrix
        torch.testing.assert_close(raw[i], mean[i] + pi[i] @ policy.exploration[i])
    new_logprob, _, new_value = policy.evaluate_actions(obs, raw)
    torch.testing.assert_close(log_prob, new_logprob)
    torch.testing.assert_close(value, new_value)
    # the same matrix gives the same noise until reset_noise
    torch.testing.assert_close(policy.sample(obs)[0], raw)
    policy.reset_noise(3)
    assert not torch.allclose(policy.sample(obs)[0], raw)


def test_gsde_exploration_matrices_are_drawn_from_the_log_std():
    policy = _policy(log_std_init=math.log(0.3))
    policy.reset_noise(20_000)
    assert policy.exploration.mean().abs() < 0.01
    assert policy.exploration.std().item() == pytest.approx(0.3, rel=0.02)


def test_gsde_deterministic_action_is_the_mean_clipped():
    policy = _policy()
    obs = torch.randn(6, 3)
    with torch.no_grad():
        policy.pi_head.bias.fill_(0.5)  # some means beyond the bounds
        mean = policy.pi_head(policy.latents(obs)[0])
    torch.testing.assert_close(policy.act(obs, deterministic=True), mean.clamp(-1, 1))
    policy.reset_noise(1)
    assert not torch.allclose(policy.act(obs), mean.clamp(-1, 1))


@pytest.mark.parametrize("freq", [4, 3, -1])
def test_ppo_resamples_the_exploration_every_sde_sample_freq_steps_and_not_between(freq, monkeypatch):
    algo = PPO(PPOConfig(env_id="Pendulum-v1", num_envs=2, num_steps=10, batch_size=10, update_epochs=1,
                         total_timesteps=40, use_sde=True, sde_sample_freq=freq))
    assert algo.policy.use_sde and algo.policy.log_std.shape == (64, 1)
    seen, sample = [], algo.policy.sample

    def recording(obs):
        seen.append(algo.policy.exploration.clone())
        return sample(obs)

    monkeypatch.setattr(algo.policy, "sample", recording)
    for _ in range(2):
        seen.clear()
        algo.collect()
        assert len(seen) == 10 and all(m.shape == (2, 64, 1) for m in seen)
        changed = [t for t in range(1, 10) if not torch.equal(seen[t], seen[t - 1])]
        assert changed == ([t for t in range(1, 10) if t % freq == 0] if freq > 0 else [])
        assert not torch.equal(seen[0][0], seen[0][1])  # one matrix per environment


def test_ppo_with_gsde_trains_and_resumes_exactly(tmp_path):
    from zoo.shared.training import load_checkpoint, save_checkpoint

    def make():
        return PPO(PPOConfig(env_id="Pendulum-v1", num_envs=2, num_steps=16, batch_size=8, update_epochs=2,
                             total_timesteps=32 * 3, use_sde=True, sde_sample_freq=4, log_std_init=-1.0))

    straight = make()
    before = straight.policy.log_std.detach().clone()
    straight.learn()
    assert not torch.equal(before, straight.policy.log_std.detach())  # log_std is trained
    interrupted = make()
    interrupted.learn(until_step=interrupted.batch)
    save_checkpoint(tmp_path / "last.pt", interrupted.state_dict())
    resumed = make()
    resumed.load_state_dict(load_checkpoint(tmp_path / "last.pt"))
    resumed.learn()
    for k, v in straight.policy.state_dict().items():
        assert torch.equal(v, resumed.policy.state_dict()[k]), k


def test_sb3_gsde_ppo_zip_loads_with_the_same_distribution(tmp_path):
    sb3 = pytest.importorskip("stable_baselines3")
    from zoo.rl.policies import load_sb3

    model = sb3.PPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu",
                    use_sde=True, sde_sample_freq=4)
    model.learn(64)
    model.save(tmp_path / "ppo.zip")
    ours = load_sb3("ppo_mlp", tmp_path / "ppo.zip", env="Pendulum-v1").eval()
    assert ours.use_sde and ours.log_std.shape == model.policy.log_std.shape == (64, 1)
    obs = np.random.default_rng(0).uniform(-1, 1, size=(16, 3)).astype(np.float32)
    with torch.no_grad():
        t, _ = model.policy.obs_to_tensor(obs)
        dist = model.policy.get_distribution(t).distribution
        mine, _ = ours.distribution(torch.as_tensor(obs))
    torch.testing.assert_close(mine.mean, dist.mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mine.stddev, dist.stddev, atol=1e-6, rtol=1e-5)
    actions = torch.as_tensor(np.clip(dist.mean.numpy() + 0.1, -2, 2))
    torch.testing.assert_close(mine.log_prob(actions), dist.log_prob(actions), atol=1e-4, rtol=1e-5)
    deterministic, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(ours.act(torch.as_tensor(obs), deterministic=True).numpy(), deterministic, atol=1e-5)
