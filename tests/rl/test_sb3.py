"""Stable-Baselines3 policies load into ours strictly and act the same: same action distribution,
same value, same Q-values for the same observations. SB3 trains for a few steps to make each zip."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import zoo
from zoo.rl.policies import load_sb3, sb3_zip_state
from zoo.shared.errors import CheckpointError, CheckpointMismatchError

sb3 = pytest.importorskip("stable_baselines3")


def _obs(space, n=16, seed=0):
    rng = np.random.default_rng(seed)
    if space.dtype == np.uint8:
        return rng.integers(0, 256, size=(n, *space.shape), dtype=np.uint8)
    low = np.maximum(space.low, -3)
    high = np.minimum(space.high, 3)
    return rng.uniform(low, high, size=(n, *space.shape)).astype(np.float32)


def _sb3_actor_critic(model, obs):
    policy = model.policy
    with torch.no_grad():
        t, _ = policy.obs_to_tensor(obs)
        dist = policy.get_distribution(t).distribution
        return dist, policy.predict_values(t).squeeze(-1)


def _same_through_zoo_create(ours, name, path, **kwargs):
    """zoo.create(name, pretrained=zip) builds the architecture the zip describes (the registry's
    foreign_config) and loads the same tensors as load_sb3."""
    import zoo

    created = zoo.create(name, pretrained=path, **kwargs)
    assert created.load_report.layout == "sb3" and created.zoo_config == ours.zoo_config
    state = ours.state_dict()
    assert created.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in created.state_dict().items())


@pytest.mark.parametrize("env_id, kwargs", [
    ("CartPole-v1", {}),
    ("Pendulum-v1", {}),
    ("CartPole-v1", {"policy_kwargs": {"net_arch": [32], "activation_fn": torch.nn.ReLU}}),
])
def test_sb3_ppo_zip_gives_the_same_distribution_and_value(env_id, kwargs, tmp_path):
    model = sb3.PPO("MlpPolicy", env_id, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu", **kwargs)
    model.learn(64)  # one update: weights away from their initialisation
    model.save(tmp_path / "ppo.zip")
    ours = load_sb3("ppo_mlp", tmp_path / "ppo.zip", env=env_id).eval()
    assert ours.load_report.layout == "sb3"
    _same_through_zoo_create(ours, "ppo_mlp", tmp_path / "ppo.zip", env=env_id)
    obs = _obs(model.observation_space)
    dist, value = _sb3_actor_critic(model, obs)
    with torch.no_grad():
        mine, mine_value = ours.distribution(torch.as_tensor(obs))
    torch.testing.assert_close(mine_value, value, atol=1e-5, rtol=1e-5)
    if ours.continuous:
        torch.testing.assert_close(mine.mean, dist.mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mine.stddev, dist.stddev, atol=1e-6, rtol=1e-6)
    else:
        torch.testing.assert_close(mine.probs, dist.probs, atol=1e-6, rtol=1e-5)
        actions, _ = model.predict(obs, deterministic=True)
        assert np.array_equal(ours.act(torch.as_tensor(obs), deterministic=True).numpy(), actions)


def test_sb3_dqn_zip_gives_the_same_q_values(tmp_path):
    model = sb3.DQN("MlpPolicy", "CartPole-v1", learning_starts=32, train_freq=8, batch_size=16, buffer_size=500,
                    seed=0, device="cpu", policy_kwargs={"net_arch": [32, 32]})
    model.learn(100)
    model.save(tmp_path / "dqn.zip")
    ours = load_sb3("dqn_mlp", tmp_path / "dqn.zip", env="CartPole-v1").eval()
    _same_through_zoo_create(ours, "dqn_mlp", tmp_path / "dqn.zip", env="CartPole-v1")
    obs = _obs(model.observation_space)
    with torch.no_grad():
        expected = model.q_net(torch.as_tensor(obs))
        torch.testing.assert_close(ours(torch.as_tensor(obs)), expected, atol=1e-5, rtol=1e-5)
    assert np.array_equal(ours.act(torch.as_tensor(obs)).numpy(), model.predict(obs, deterministic=True)[0])


class _Frames(gym.Env):
    """Stacked 84x84 byte frames, channels first, like AtariPreprocessing + FrameStackObservation."""

    observation_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    action_space = gym.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 1.0, bool(self.np_random.random() < 0.1), False, {}


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_sb3_nature_cnn_zip_loads_and_matches(algo, tmp_path):
    if algo == "ppo":
        model = sb3.PPO("CnnPolicy", _Frames(), n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    else:
        model = sb3.DQN("CnnPolicy", _Frames(), learning_starts=8, train_freq=4, batch_size=8, buffer_size=64,
                        seed=0, device="cpu")
    model.learn(16)
    model.save(tmp_path / "cnn.zip")
    ours = load_sb3(f"{algo}_nature_cnn", tmp_path / "cnn.zip", observation_space=_Frames.observation_space,
                    action_space=_Frames.action_space).eval()
    obs = _obs(_Frames.observation_space, n=4)
    with torch.no_grad():
        if algo == "ppo":
            dist, value = _sb3_actor_critic(model, obs)
            mine, mine_value = ours.distribution(torch.as_tensor(obs))
            torch.testing.assert_close(mine.probs, dist.probs, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(mine_value, value, atol=1e-5, rtol=1e-5)
        else:
            expected = model.q_net(model.q_net.obs_to_tensor(obs)[0])
            torch.testing.assert_close(ours(torch.as_tensor(obs).float()), expected, atol=1e-5, rtol=1e-5)


def test_sb3_policy_pth_loads_through_zoo_create_with_the_key_map(tmp_path):
    model = sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.save(tmp_path / "ppo.zip")
    torch.save(sb3_zip_state(tmp_path / "ppo.zip"), tmp_path / "policy.pth")
    ours = zoo.create("ppo_mlp", env="CartPole-v1", pretrained=tmp_path / "policy.pth")
    assert ours.load_report.layout == "sb3"
    assert torch.equal(ours.pi_head.weight, model.policy.action_net.weight.detach())


def test_sb3_zip_with_another_architecture_is_refused_naming_the_keys(tmp_path):
    model = sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu",
                    policy_kwargs={"net_arch": [32]})
    model.save(tmp_path / "ppo.zip")
    with pytest.raises(CheckpointMismatchError, match="pi_trunk.0.weight"):
        load_sb3("ppo_mlp", tmp_path / "ppo.zip", env="CartPole-v1", net_arch=(64, 64))
    with pytest.raises(CheckpointMismatchError, match="wrong shape"):  # CartPole's policy into Acrobot's sizes
        load_sb3("ppo_mlp", tmp_path / "ppo.zip", env="Acrobot-v1")


def test_a_zip_that_is_not_an_sb3_save_is_refused(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="no policy.pth"):
        load_sb3("ppo_mlp", tmp_path / "other.zip", env="CartPole-v1")
    (tmp_path / "cut.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="not a readable zip"):
        load_sb3("ppo_mlp", tmp_path / "cut.zip", env="CartPole-v1")


def test_sb3_zip_config_reads_the_architecture_and_ignores_other_files(tmp_path):
    from zoo.rl.policies import sb3_zip_config

    model = sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu",
                    policy_kwargs={"net_arch": [16, 8], "activation_fn": torch.nn.ReLU})
    model.save(tmp_path / "ppo.zip")
    assert sb3_zip_config("ppo_mlp", tmp_path / "ppo.zip") == {"net_arch": (16, 8), "activation": "relu"}
    torch.save({}, tmp_path / "w.pth")
    assert sb3_zip_config("ppo_mlp", tmp_path / "w.pth") is None


def test_zips_that_are_not_sb3_saves_are_clear_errors(tmp_path):
    import zipfile

    import zoo

    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("weights.bin", b"123")
    with pytest.raises(zoo.CheckpointError, match="without policy.pth"):
        zoo.create("ppo_mlp", env="CartPole-v1", pretrained=tmp_path / "other.zip")
    model = sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.save(tmp_path / "ppo.zip")
    data = (tmp_path / "ppo.zip").read_bytes()
    for cut in (data[:-30], data[: len(data) // 2], data[:40]):  # the archive's directory gone, or more
        (tmp_path / "cut.zip").write_bytes(cut)
        with pytest.raises(zoo.CheckpointError, match="truncated or corrupted"):
            zoo.create("ppo_mlp", env="CartPole-v1", pretrained=tmp_path / "cut.zip")
