"""The policies' fast training path equals the plain distribution path, the dueling head, and the
registry entries built from an environment id or spaces."""

import math

import gymnasium as gym
import pytest
import torch

import zoo
from zoo.rl.policies import ActorCritic, QNetwork


@pytest.mark.parametrize("kwargs", [
    dict(action_dim=3),
    dict(action_dim=2, continuous=True, log_std_init=-0.5),
    dict(action_dim=2, continuous=True, squash=True, action_low=(-2.0, -1.0), action_high=(2.0, 1.0)),
    dict(action_dim=3, shared_trunk=True),
], ids=["categorical", "gaussian", "squashed", "shared"])
def test_fast_path_equals_the_distribution_path(kwargs):
    torch.manual_seed(0)
    policy = ActorCritic(obs_shape=(5,), net_arch=(16, 16), **kwargs)
    with torch.no_grad():  # a non-trivial std and head
        if policy.continuous:
            policy.log_std.add_(torch.tensor([0.3, -0.2]))
        policy.pi_head.weight.normal_()
    obs = torch.randn(64, 5)
    raw, logprob, value = policy.sample(obs)
    dist, value_ref = policy.distribution(obs)
    lp_ref, ent_ref = policy.log_prob_entropy(dist, raw)
    torch.testing.assert_close(logprob, lp_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(value, value_ref)
    lp, ent, v = policy.evaluate_actions(obs, raw)
    torch.testing.assert_close(lp, lp_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, ent_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(v, value_ref)
    if kwargs.get("squash"):  # pi(a) of the squashed action: N(u) / |da/du| up to the constant scale
        u = raw.double()  # the naive formula, in double precision where 1 - tanh(u)^2 is still resolved
        expected = dist.log_prob(raw).sum(-1).double() - torch.log(1 - torch.tanh(u) ** 2).sum(-1)
        torch.testing.assert_close(lp.double(), expected, atol=1e-4, rtol=1e-5)
        env_a = policy.to_env(raw)
        assert (env_a[:, 0].abs() <= 2).all() and (env_a[:, 1].abs() <= 1).all()


def test_sampling_follows_the_categorical_probabilities():
    torch.manual_seed(0)
    policy = ActorCritic(obs_shape=(1,), action_dim=3, net_arch=())
    with torch.no_grad():
        policy.pi_head.weight.zero_()
        policy.pi_head.bias.copy_(torch.log(torch.tensor([0.2, 0.3, 0.5])))
    raw, _, _ = policy.sample(torch.zeros(20_000, 1))
    freq = torch.bincount(raw, minlength=3).float() / raw.numel()
    torch.testing.assert_close(freq, torch.tensor([0.2, 0.3, 0.5]), atol=0.015, rtol=0)


def test_continuous_actions_are_clipped_to_the_bounds_and_deterministic_is_the_mean():
    policy = zoo.create("ppo_mlp", env="Pendulum-v1", log_std_init=2.0)
    obs = torch.randn(256, 3)
    a = policy.act(obs)
    assert a.abs().max() <= 2.0 and (a.abs() == 2.0).any()
    torch.testing.assert_close(policy.act(obs, deterministic=True),
                               policy.distribution(obs)[0].mean.clamp(-2, 2))


def test_dueling_head_is_value_plus_centred_advantages():
    q = QNetwork(obs_shape=(3,), action_dim=4, net_arch=(8,), dueling=True)
    obs = torch.randn(5, 3)
    h = q.trunk(obs)
    a = q.advantage_head(h)
    torch.testing.assert_close(q(obs), q.value_head(h) + a - a.mean(1, keepdim=True))
    torch.testing.assert_close(q(obs).mean(1), q.value_head(h).squeeze(1))


def test_policies_from_an_env_id_or_spaces_have_the_env_sizes():
    p = zoo.create("ppo_mlp", env="Acrobot-v1")
    assert (p.obs_shape, p.action_dim, p.continuous) == ((6,), 3, False)
    q = zoo.create("dqn_mlp", observation_space=gym.spaces.Box(-1, 1, (7,)), action_space=gym.spaces.Discrete(5))
    assert q(torch.zeros(2, 7)).shape == (2, 5)
    c = zoo.create("ppo_mlp", env="MountainCarContinuous-v0")
    assert c.continuous and c.action_low.tolist() == [-1.0] and c.action_high.tolist() == [1.0]
    n = zoo.create("ppo_nature_cnn")
    assert n(torch.zeros(1, 4, 84, 84)).shape == (1, 7)
    assert sum(p.numel() for p in n.encoder.parameters()) == 1_684_128  # the Nature CNN with 4 frames


def test_env_and_spaces_together_are_refused():
    from zoo.shared.errors import InvalidConfigError

    with pytest.raises(InvalidConfigError, match="either env="):
        zoo.create("ppo_mlp", env="CartPole-v1", observation_space=gym.spaces.Box(-1, 1, (4,)),
                   action_space=gym.spaces.Discrete(2))
    with pytest.raises(InvalidConfigError, match="both observation_space"):
        zoo.create("ppo_mlp", observation_space=gym.spaces.Box(-1, 1, (4,)))
    with pytest.raises(InvalidConfigError, match="squash=True applies to continuous"):
        zoo.create("ppo_mlp", squash=True)


def test_gaussian_sampling_has_the_policy_mean_and_std():
    torch.manual_seed(0)
    policy = ActorCritic(obs_shape=(1,), action_dim=2, continuous=True, net_arch=(), log_std_init=math.log(0.5))
    with torch.no_grad():
        policy.pi_head.weight.zero_()
        policy.pi_head.bias.copy_(torch.tensor([1.0, -3.0]))
    raw, _, _ = policy.sample(torch.zeros(20_000, 1))
    torch.testing.assert_close(raw.mean(0), torch.tensor([1.0, -3.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(raw.std(0), torch.tensor([0.5, 0.5]), atol=0.02, rtol=0)


def test_plain_config_replaces_spaces_by_the_sizes_and_rebuilds_the_same_policy():
    from zoo.rl.policies import plain_config

    cfg = {"net_arch": (8,), "observation_space": gym.spaces.Box(-1, 1, (3,)),
           "action_space": gym.spaces.Box(-2, 2, (2,))}
    plain = plain_config(cfg, "ppo")
    assert plain == {"net_arch": (8,), "obs_shape": (3,), "action_dim": 2, "continuous": True,
                     "action_low": (-2.0, -2.0), "action_high": (2.0, 2.0)}
    torch.manual_seed(0)
    a = ActorCritic(**cfg)
    torch.manual_seed(0)
    b = ActorCritic(**plain)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert plain_config({"env": "CartPole-v1"}, "dqn") == {"obs_shape": (4,), "action_dim": 2}


@pytest.mark.parametrize("name, env_id", [("ppo_mlp", "Pendulum-v1"), ("dqn_mlp", "CartPole-v1")])
def test_a_policy_built_from_spaces_saves_plain_sizes_and_reloads(name, env_id, tmp_path):
    import json

    env = gym.make(env_id)
    model = zoo.create(name, observation_space=env.observation_space, action_space=env.action_space)
    zoo.save_pretrained(model, tmp_path)  # a gymnasium Space is not JSON: the registry records the sizes
    saved = json.loads((tmp_path / "config.json").read_text())["config"]
    assert "observation_space" not in saved and saved["obs_shape"] == list(env.observation_space.shape)
    loaded = zoo.from_pretrained(tmp_path)
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
