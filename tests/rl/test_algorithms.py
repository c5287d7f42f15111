"""The algorithms on a hand-made environment where treating a truncation as a termination changes
the returns, learning-rate annealing, and exact resume (networks, optimizers, replay buffer, env
state, normalisation statistics, RNG states)."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from zoo.rl.a2c import A2C, A2CConfig
from zoo.rl.dqn import DQN, DQNConfig
from zoo.rl.ppo import PPO, PPOConfig


class Corridor(gym.Env):
    """Reward 1 per step. The observation is the step count inside the episode. With
    ``terminate_at`` the episode terminates there; otherwise only the TimeLimit ends it."""

    observation_space = gym.spaces.Box(0, 100, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, terminate_at=None):
        self.terminate_at = terminate_at

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        return np.array([float(self.t)], np.float32), 1.0, terminated, False, {}


gym.register("ZooTest/CorridorTruncated-v0", entry_point=Corridor, max_episode_steps=3)
gym.register("ZooTest/CorridorTerminated-v0", entry_point=lambda: Corridor(terminate_at=3))


def _constant_value(policy, value: float):
    """V(s) = value for every s: the value head reads nothing and outputs its bias."""
    with torch.no_grad():
        policy.vf_head.weight.zero_()
        policy.vf_head.bias.fill_(value)


@pytest.mark.parametrize("env_id, last_return", [
    ("ZooTest/CorridorTruncated-v0", 1 + 0.5 * 10.0),  # cut by the time limit: bootstrap V(final) = 10
    ("ZooTest/CorridorTerminated-v0", 1.0),  # a true end: the reward alone
])
def test_ppo_returns_bootstrap_from_the_final_observation_only_after_a_truncation(env_id, last_return):
    algo = PPO(PPOConfig(env_id=env_id, num_envs=2, num_steps=6, gamma=0.5, gae_lambda=1.0, total_timesteps=12))
    _constant_value(algo.policy, 10.0)
    data = algo.collect()
    returns = data["returns"].reshape(6, 2)[:, 0]
    # steps 0, 1, 2 of episode 1 then of episode 2; the rollout ends inside nothing (6 = 2 episodes)
    step2 = last_return
    step1 = 1 + 0.5 * step2
    step0 = 1 + 0.5 * step1
    torch.testing.assert_close(returns, torch.tensor([step0, step1, step2] * 2))


@pytest.mark.parametrize("env_id, discount", [("ZooTest/CorridorTruncated-v0", 0.5),
                                              ("ZooTest/CorridorTerminated-v0", 0.0)])
def test_dqn_stores_the_final_observation_and_bootstraps_only_after_a_truncation(env_id, discount):
    algo = DQN(DQNConfig(env_id=env_id, gamma=0.5, learning_starts=100, buffer_size=10, net_arch=(8,)))
    for _ in range(3):
        algo.step()
    b = algo.buffer
    assert b.obs[:3, 0].tolist() == [0, 1, 2]
    assert b.next_obs[:3, 0].tolist() == [1, 2, 3]  # the final observation, not the next episode's first
    assert b.discounts[:3].tolist() == [0.5, 0.5, discount]
    assert algo.obs[0, 0] == 0  # the env was reset in the same step


def test_ppo_anneals_the_learning_rate_linearly():
    algo = PPO(PPOConfig(num_envs=2, num_steps=8, batch_size=16, update_epochs=1, total_timesteps=64,
                         learning_rate=1e-3))
    lrs = []
    algo.learn(callback=lambda a, s: lrs.append(a.optimizer.param_groups[0]["lr"]))
    assert lrs == pytest.approx([7.5e-4, 5e-4, 2.5e-4, 0.0])


def _params(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("make", [
    lambda: PPO(PPOConfig(env_id="Pendulum-v1", num_envs=2, num_steps=16, batch_size=8, update_epochs=2,
                          total_timesteps=32 * 4, normalize_obs=True, normalize_reward=True, target_kl=0.5)),
    lambda: A2C(A2CConfig(env_id="CartPole-v1", num_envs=2, num_steps=5, total_timesteps=10 * 6)),
], ids=["ppo", "a2c"])
def test_ppo_and_a2c_resume_exactly(make, tmp_path):
    from zoo.shared.training import load_checkpoint, save_checkpoint

    straight = make()
    straight.learn()
    interrupted = make()
    interrupted.learn(until_step=interrupted.batch * 2)
    save_checkpoint(tmp_path / "last.pt", interrupted.state_dict())
    resumed = make()
    resumed.load_state_dict(load_checkpoint(tmp_path / "last.pt"))
    resumed.learn()
    _assert_same(_params(straight.policy), _params(resumed.policy))
    assert straight.optimizer.state_dict()["state"][0]["step"] == resumed.optimizer.state_dict()["state"][0]["step"]
    assert straight.recent_returns == resumed.recent_returns
    if straight.cfg.normalize_obs:
        from zoo.rl.common import env_state

        a, b = env_state(straight.envs)["envs"][1], env_state(resumed.envs)["envs"][1]
        assert a["obs_rms"]["count"] > 32  # the statistics moved during the run
        assert torch.equal(a["obs_rms"]["var"], b["obs_rms"]["var"])
        assert torch.equal(a["return_rms"]["var"], b["return_rms"]["var"])


def test_dqn_resumes_exactly_with_its_replay_buffer(tmp_path):
    from zoo.shared.training import load_checkpoint, save_checkpoint

    cfg = DQNConfig(total_timesteps=400, learning_starts=50, train_freq=20, gradient_steps=4, batch_size=16,
                    buffer_size=300, target_update_interval=30, n_step=3, double_dqn=True, dueling=True,
                    net_arch=(16,), exploration_fraction=0.5)
    straight = DQN(cfg)
    straight.learn()
    interrupted = DQN(cfg)
    interrupted.learn(until_step=170)
    save_checkpoint(tmp_path / "last.pt", interrupted.state_dict())
    resumed = DQN(cfg)
    resumed.load_state_dict(load_checkpoint(tmp_path / "last.pt"))
    resumed.learn()
    _assert_same(_params(straight.q_net), _params(resumed.q_net))
    _assert_same(_params(straight.target_net), _params(resumed.target_net))
    # 400 steps, 2 transitions still in the 3-step window: the ring of 300 wrapped to position 98
    assert (straight.buffer.pos, straight.buffer.size) == (resumed.buffer.pos, resumed.buffer.size) == (98, 300)
    assert np.array_equal(straight.buffer.obs, resumed.buffer.obs)
    assert straight.recent_returns == resumed.recent_returns


def test_resume_matters_the_check_is_not_vacuous():
    """Two runs with different seeds differ, so equality above is not a constant."""
    a = PPO(PPOConfig(num_envs=2, num_steps=8, batch_size=16, update_epochs=1, total_timesteps=32, seed=0))
    b = PPO(PPOConfig(num_envs=2, num_steps=8, batch_size=16, update_epochs=1, total_timesteps=32, seed=1))
    a.learn()
    b.learn()
    assert not torch.equal(a.policy.pi_head.weight, b.policy.pi_head.weight)


def test_polyak_and_hard_target_updates():
    from zoo.rl.dqn import polyak_update
    from zoo.rl.policies import QNetwork

    online, target = QNetwork(net_arch=(4,)), QNetwork(net_arch=(4,))
    before = target.head.weight.clone()
    polyak_update(target, online, 0.25)
    torch.testing.assert_close(target.head.weight, 0.75 * before + 0.25 * online.head.weight)
    polyak_update(target, online, 1.0)
    assert torch.equal(target.head.weight, online.head.weight)


def test_td_targets_double_dqn_uses_the_online_argmax():
    from zoo.rl.dqn import td_targets

    online = lambda x: torch.tensor([[1.0, 5.0]])  # noqa: E731  online prefers action 1
    target = lambda x: torch.tensor([[3.0, 2.0]])  # noqa: E731  target's max is action 0
    r, d = torch.tensor([1.0]), torch.tensor([0.5])
    assert td_targets(online, target, None, r, d, double_dqn=False).item() == 1 + 0.5 * 3
    assert td_targets(online, target, None, r, d, double_dqn=True).item() == 1 + 0.5 * 2
    assert td_targets(online, target, None, r, torch.tensor([0.0]), double_dqn=True).item() == 1.0


def test_configs_are_plain_dataclasses():
    for cfg in (PPOConfig(), DQNConfig(), A2CConfig()):
        assert all(isinstance(f.name, str) for f in dataclasses.fields(cfg))


class Frames(gym.Env):
    """Stacked 84x84 byte frames, channels first (what AtariPreprocessing + FrameStackObservation give)."""

    observation_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), float(action == 1), bool(self.np_random.random() < 0.05), False, {}


gym.register("ZooTest/Frames-v0", entry_point=Frames, max_episode_steps=20)


def test_nature_cnn_dqn_and_ppo_smoke_on_frames():
    """No Atari here (ale-py is not installed): frames of Atari's shape check the CNN loops."""
    dqn = DQN(DQNConfig(env_id="ZooTest/Frames-v0", encoder="nature_cnn", net_arch=(), learning_starts=16,
                        train_freq=4, gradient_steps=1, batch_size=4, buffer_size=32, total_timesteps=40))
    dqn.learn()
    assert dqn.buffer.obs.dtype == np.uint8 and dqn.buffer.obs.shape == (32, 4, 84, 84)  # bytes, 1/4 of float32
    assert dqn.updates == 6 and np.isfinite(dqn.last_loss)
    ppo = PPO(PPOConfig(env_id="ZooTest/Frames-v0", encoder="nature_cnn", net_arch=(), activation="relu",
                        num_envs=2, num_steps=8, batch_size=8, update_epochs=1, total_timesteps=16))
    stats = []
    ppo.learn(callback=lambda a, s: stats.append(s))
    assert len(stats) == 1 and all(np.isfinite(v) for v in stats[0].values())


def _phase_one_target_pass_per_minibatch(self):
    """DQN's training phase written the plain way: targets computed minibatch by minibatch."""
    import torch.nn.functional as F

    from zoo.rl.dqn import td_targets
    from zoo.shared.training import optimizer_step

    cfg, n = self.cfg, self.cfg.batch_size
    b = self.buffer.sample(n * cfg.gradient_steps)
    for g in range(cfg.gradient_steps):
        part = slice(g * n, (g + 1) * n)
        y = td_targets(self.q_net, self.target_net, b["next_obs"][part], b["returns"][part], b["discounts"][part],
                       False)
        q = self.q_net(b["obs"][part]).gather(1, b["actions"][part].unsqueeze(1)).squeeze(1)
        loss = F.smooth_l1_loss(q, y)
        loss.backward()
        optimizer_step(self.optimizer, loss.detach(), clip_grad_norm=cfg.max_grad_norm)
    return float(loss.detach())


def test_dqn_batched_targets_train_like_one_target_pass_per_minibatch(monkeypatch):
    cfg = DQNConfig(total_timesteps=300, learning_starts=100, train_freq=100, gradient_steps=16, batch_size=8,
                    buffer_size=300, net_arch=(32, 32), target_update_interval=1000)  # target != online at 300
    batched = DQN(cfg)
    batched.learn()
    monkeypatch.setattr(DQN, "train_phase", _phase_one_target_pass_per_minibatch)
    plain = DQN(cfg)
    plain.learn()
    for (k, a), b in zip(batched.q_net.state_dict().items(), plain.q_net.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=k)
    assert not torch.equal(batched.q_net.head.weight, DQN(cfg).q_net.head.weight)  # it did train


@pytest.mark.parametrize("flush", [True, False])
def test_dqn_learns_with_subnormals_flushed_and_leaves_the_default_after(flush):
    tiny = torch.tensor([1e-39])  # subnormal in float32
    seen = []
    cfg = DQNConfig(total_timesteps=40, learning_starts=10, train_freq=10, gradient_steps=1, batch_size=4,
                    net_arch=(8,), flush_denormals=flush)
    DQN(cfg).learn(callback=lambda agent, stats: seen.append(float((tiny * 1.0)[0])), every=10)
    assert len(seen) == 4 and all((v == 0.0) == flush for v in seen)
    assert float((tiny * 1.0)[0]) > 0.0  # the process default is back
