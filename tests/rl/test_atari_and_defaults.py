"""Atari through gymnasium's wrappers (84x84x4 uint8 frames) with the Nature CNN for DQN and PPO, a
short smoke each; and the per-environment rl-zoo defaults the recipe picks."""

import numpy as np
import pytest
import torch

from zoo.rl import train
from zoo.rl.hyperparams import HYPERPARAMS, default_hyperparams

ale_py = pytest.importorskip("ale_py", reason="Atari needs ale-py (it ships the ROMs)")

PONG = "ALE/Pong-v5"


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def test_atari_frames_are_84x84x4_bytes_in_the_paper_layout():
    from zoo.rl.common import make_env, make_vec_env

    env = make_env(PONG)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and env.observation_space.shape == (4, 84, 84)
    assert env.unwrapped._frameskip == 1  # the wrapper repeats the action, the emulator does not as well
    right = env.unwrapped.get_action_meanings().index("RIGHT")
    for _ in range(8):  # moving the paddle changes every frame; NOOP/FIRE alone can leave the screen still
        obs, *_ = env.step(right)
    assert obs.max() > 0 and not np.array_equal(obs[0], obs[-1])  # four different frames, oldest first
    env.close()
    envs = make_vec_env(PONG, 2, seed=0)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    envs.close()


def test_dqn_nature_cnn_smoke_on_pong():
    from zoo.rl.dqn import DQN, DQNConfig

    cfg = DQNConfig(**{**default_hyperparams("dqn", PONG), "env_id": PONG, "total_timesteps": 200, "buffer_size": 500,
                       "learning_starts": 100, "batch_size": 8, "train_freq": 4, "gradient_steps": 1})
    agent = DQN(cfg)
    assert agent.q_net.encoder.__class__.__name__ == "NatureCNN"
    before = _params(agent.q_net)
    agent.learn()
    assert agent.global_step == 200 and agent.updates == 25  # steps 104, 108, ..., 200
    assert agent.buffer.obs.dtype == np.uint8 and agent.buffer.obs.shape[1:] == (4, 84, 84)
    assert agent.buffer.obs[:agent.buffer.size].max() > 0  # real frames were stored
    assert np.isfinite(agent.last_loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.q_net.parameters()))
    q = agent.q_net(torch.as_tensor(agent.buffer.obs[:3]).float())
    assert q.shape == (3, 6) and torch.isfinite(q).all()


def test_ppo_nature_cnn_smoke_on_pong():
    from zoo.rl.ppo import PPO, PPOConfig

    cfg = PPOConfig(**{**default_hyperparams("ppo", PONG), "env_id": PONG, "num_envs": 2, "num_steps": 32,
                       "batch_size": 32, "update_epochs": 1, "total_timesteps": 64})
    agent = PPO(cfg)
    before = _params(agent.policy)
    data = agent.collect()
    assert data["obs"].shape == (64, 4, 84, 84)
    stats = agent.update(data)
    assert all(np.isfinite(v) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()))


@pytest.mark.slow  # a whole evaluation episode of Pong through the Nature CNN
def test_recipe_picks_the_nature_cnn_and_the_wrappers_for_an_atari_id(tmp_path):
    args = train.build_parser().parse_args(
        ["--algo", "dqn", "--env", PONG, "--total-steps", "160", "--eval-every", "160", "--eval-episodes", "1",
         "--hp", "buffer_size=200", "--hp", "learning_starts=150", "--hp", "batch_size=4",
         "--output-dir", str(tmp_path), "--no-progress"])
    _, cfg = train.make_config(args, "dqn", 0)
    assert cfg.encoder == "nature_cnn" and cfg.net_arch == () and cfg.exploration_final_eps == 0.01
    run = train.run(args)["runs"][0]
    import zoo

    policy = zoo.from_pretrained(run["policy_dir"])
    assert policy.zoo_name == "dqn_nature_cnn" and policy.obs_shape == (4, 84, 84)
    assert run["eval_mean"] <= 21 and np.isfinite(run["eval_mean"])


@pytest.mark.parametrize("algo, env, field, value", [
    ("ppo", "LunarLander-v3", "num_steps", 1024),
    ("ppo", "LunarLander-v3", "gamma", 0.999),
    ("ppo", "Acrobot-v1", "normalize_reward", True),
    ("dqn", "Acrobot-v1", "gradient_steps", -1),
    ("ppo", "Pendulum-v1", "gamma", 0.9),
    ("ppo", "Pendulum-v1", "use_sde", True),
    ("ppo", "Pendulum-v1", "sde_sample_freq", 4),
    ("dqn", "CartPole-v1", "train_freq", 256),  # no row change: the dataclass defaults are CartPole's
])
def test_recipe_defaults_are_the_environments_rl_zoo_row_and_hp_overrides_them(algo, env, field, value):
    args = train.build_parser().parse_args(["--algo", algo, "--env", env])
    _, cfg = train.make_config(args, algo, 0)
    assert getattr(cfg, field) == value and cfg.env_id == env
    args = train.build_parser().parse_args(["--algo", algo, "--env", env, "--hp", "gamma=0.5"])
    assert train.make_config(args, algo, 0)[1].gamma == 0.5


def test_every_table_row_builds_its_config():
    for (algo, env), row in HYPERPARAMS.items():
        Algo, Config = train._algorithm(algo)
        Config(**row)  # every key is a field of the config
    assert default_hyperparams("a2c", "LunarLander-v3") == {}
    assert default_hyperparams("a2c", PONG)["encoder"] == "nature_cnn"


def test_gradient_steps_minus_one_trains_once_per_collected_step():
    from zoo.rl.dqn import DQN, DQNConfig

    agent = DQN(DQNConfig(env_id="CartPole-v1", total_timesteps=40, learning_starts=8, train_freq=4,
                          gradient_steps=-1, batch_size=4, net_arch=(8,)))
    agent.learn()
    assert agent.updates == 4 * 8  # training phases at steps 12, 16, ..., 40: 8 phases of 4 updates
