"""Deep Q-Networks (Mnih et al. 2015), read top to bottom, with the usual improvements as options:
Double DQN (van Hasselt et al. 2016), the dueling head (Wang et al. 2016) and n-step returns.

Each environment step: act epsilon-greedily, store the (n-step) transition in the replay buffer.
Every ``train_freq`` steps, ``gradient_steps`` updates on minibatches from the buffer:

    y    = G + discount * Q_target(s', argmax_a Q(s', a))   (Double DQN; plain DQN: max_a Q_target(s', a))
    loss = Huber(Q(s, a) - y)

with ``discount = gamma^m`` for an m-step return and 0 after a termination (a truncated episode
bootstraps from its final observation). The target network follows the online one every
``target_update_interval`` steps, fully (``tau = 1``) or by Polyak averaging.

Every hyper-parameter is a field of :class:`DQNConfig`; the defaults are rl-baselines3-zoo's for
CartPole-v1.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from zoo.shared.training import get_rng_state, optimizer_step, seed_everything, set_rng_state

from .common import (NStep, ReplayBuffer, _bitgen_state, _set_bitgen_state, env_state, episode_returns, flush_denormals,
                     final_observations, linear_schedule, load_env_state, make_vec_env)
from .policies import QNetwork, spaces_config


@dataclass
class DQNConfig:
    env_id: str = "CartPole-v1"
    total_timesteps: int = 50_000
    seed: int = 0
    num_envs: int = 1
    learning_rate: float = 2.3e-3
    buffer_size: int = 100_000
    learning_starts: int = 1000  # env steps of random-ish play before the first update
    batch_size: int = 64
    gamma: float = 0.99
    n_step: int = 1  # n-step returns
    train_freq: int = 256  # env steps between training phases
    gradient_steps: int = 128  # updates per training phase; -1: one per env step collected since the last
    target_update_interval: int = 10  # env steps between target-network updates
    tau: float = 1.0  # 1: copy the online network; < 1: Polyak averaging
    exploration_fraction: float = 0.16  # fraction of the run over which epsilon decays
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.04
    max_grad_norm: float = 10.0
    double_dqn: bool = False
    dueling: bool = False
    net_arch: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    encoder: str = "mlp"
    device: str = "cpu"
    flush_denormals: bool = True  # subnormal floats as zero while learning (rl.common.flush_denormals: speed)


def polyak_update(target: torch.nn.Module, online: torch.nn.Module, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target (tau = 1: a hard copy)."""
    with torch.no_grad():
        for t, o in zip(target.parameters(), online.parameters()):
            t.lerp_(o, tau)


def td_targets(q_net, target_net, next_obs, returns, discounts, double_dqn: bool) -> torch.Tensor:
    """y = G + discount * Q_target(s', a*), a* = argmax Q_target (DQN) or argmax Q_online (Double DQN)."""
    with torch.no_grad():
        next_q = target_net(next_obs)
        if double_dqn:
            best = q_net(next_obs).argmax(dim=1, keepdim=True)
            next_value = next_q.gather(1, best).squeeze(1)
        else:
            next_value = next_q.max(dim=1).values
        return returns + discounts * next_value


class DQN:
    """Setup in ``__init__``; :meth:`step` is one environment step and its training; :meth:`learn`
    loops it; ``state_dict`` / ``load_state_dict`` resume exactly (buffer included)."""

    algo = "dqn"

    def __init__(self, cfg: DQNConfig, q_net: QNetwork | None = None):
        self.cfg = cfg
        seed_everything(cfg.seed)
        self.device = torch.device(cfg.device)
        self.envs = make_vec_env(cfg.env_id, cfg.num_envs, cfg.seed)
        obs_space = self.envs.single_observation_space
        self.policy_config = {**spaces_config(obs_space, self.envs.single_action_space, "dqn"),
                              "net_arch": tuple(cfg.net_arch), "activation": cfg.activation, "encoder": cfg.encoder,
                              "dueling": cfg.dueling}
        self.q_net = (q_net or QNetwork(**self.policy_config)).to(self.device)
        self.policy = self.q_net
        self.target_net = copy.deepcopy(self.q_net)
        self.target_net.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=cfg.learning_rate, fused=True)
        # independent streams for the epsilon coin and the minibatch indices (one seed, two children)
        coin_seed, buffer_seed = np.random.SeedSequence(cfg.seed).spawn(2)
        self.buffer = ReplayBuffer(cfg.buffer_size, obs_space.shape, obs_space.dtype, device=self.device,
                                   seed=buffer_seed)
        self.nstep = NStep(cfg.num_envs, cfg.n_step, cfg.gamma)
        self.epsilon = linear_schedule(cfg.exploration_initial_eps, cfg.exploration_final_eps,
                                       int(cfg.exploration_fraction * cfg.total_timesteps))
        self.rng = np.random.default_rng(coin_seed)  # the epsilon coin
        self.global_step, self.updates, self.last_loss = 0, 0, float("nan")
        # SB3's gradient_steps=-1: as many updates as transitions collected in a training period
        self.gradient_steps = cfg.gradient_steps if cfg.gradient_steps >= 0 else max(cfg.train_freq, cfg.num_envs)
        self.obs, _ = self.envs.reset(seed=cfg.seed)
        self.recent_returns: list[float] = []

    def train_phase(self) -> float:
        """``gradient_steps`` updates on minibatches drawn from the buffer as it stands. No env step
        happens in between, so the target network is the same for the whole phase: with plain DQN
        every minibatch's targets come from one batched forward pass (the same values as one pass
        per minibatch, at a fraction of the calls). Double DQN asks the online network, which
        changes after each update, so its targets are computed minibatch by minibatch."""
        cfg, n = self.cfg, self.cfg.batch_size
        steps = self.gradient_steps
        if steps == 0:
            return float("nan")
        b = self.buffer.sample(n * steps)
        obs, next_obs, actions = b["obs"].float(), b["next_obs"].float(), b["actions"].long().unsqueeze(1)
        if not cfg.double_dqn:
            all_targets = td_targets(None, self.target_net, next_obs, b["returns"], b["discounts"], False)
        losses = []
        for g in range(steps):
            part = slice(g * n, (g + 1) * n)
            if cfg.double_dqn:
                y = td_targets(self.q_net, self.target_net, next_obs[part], b["returns"][part], b["discounts"][part],
                               True)
            else:
                y = all_targets[part]
            q = self.q_net(obs[part]).gather(1, actions[part]).squeeze(1)
            loss = F.smooth_l1_loss(q, y)  # Huber: the gradient of a large TD error is clipped to +-1
            loss.backward()
            optimizer_step(self.optimizer, loss.detach(), clip_grad_norm=cfg.max_grad_norm,
                           where=f"at DQN update {self.updates}")
            self.updates += 1
            losses.append(loss.detach())
        return float(torch.stack(losses).mean())

    def step(self) -> None:
        cfg, N = self.cfg, self.cfg.num_envs
        # act epsilon-greedily (the Q-network is not asked when every env explores)
        explore = self.rng.random(N) < self.epsilon(self.global_step)
        actions = self.envs.action_space.sample()
        if not explore.all():
            greedy = self.q_net.act(torch.as_tensor(self.obs, device=self.device).float()).cpu().numpy()
            actions = np.where(explore, actions, greedy)
        next_obs, rewards, term, trunc, infos = self.envs.step(actions)
        self.global_step += N
        # store: the true next observation (final_obs where an episode ended)
        real_next = final_observations(self.envs, infos, next_obs, np.logical_or(term, trunc))
        for transition in self.nstep.push(self.obs, actions, rewards, real_next, term, trunc):
            self.buffer.add(*transition)
        self.obs = next_obs
        self.recent_returns += episode_returns(infos)
        # train
        if self.global_step > cfg.learning_starts and self.global_step % cfg.train_freq < N:
            self.last_loss = self.train_phase()
        if self.global_step % cfg.target_update_interval < N:
            polyak_update(self.target_net, self.q_net, cfg.tau)

    def learn(self, until_step: int | None = None, callback: Callable[["DQN", dict], bool | None] | None = None,
              every: int = 1000) -> None:
        """Step until ``until_step`` env steps; ``callback(self, stats)`` every ``every`` steps may
        return True to stop."""
        until = self.cfg.total_timesteps if until_step is None else until_step
        start = time.perf_counter()
        with flush_denormals(self.cfg.flush_denormals):
            while self.global_step < until:
                self.step()
                if callback is not None and self.global_step % every < self.cfg.num_envs:
                    stats = {"loss": self.last_loss, "epsilon": self.epsilon(self.global_step),
                             "elapsed_s": time.perf_counter() - start}
                    if callback(self, stats):
                        break

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.q_net.act(torch.as_tensor(obs, device=self.device).float()).cpu().numpy()

    # -------------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        return {"algo": self.algo, "config": asdict(self.cfg), "policy": self.q_net.state_dict(),
                "target": self.target_net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "buffer": self.buffer.state_dict(), "nstep": self.nstep.state_dict(), "rng": get_rng_state(),
                "eps_rng": _bitgen_state(self.rng), "global_step": self.global_step, "updates": self.updates,
                "obs": torch.as_tensor(self.obs), "env": env_state(self.envs),
                "recent_returns": list(self.recent_returns)}

    def load_state_dict(self, state: dict) -> None:
        self.q_net.load_state_dict(state["policy"])
        self.target_net.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.nstep.load_state_dict(state["nstep"])
        _set_bitgen_state(self.rng, state["eps_rng"])
        self.global_step, self.updates = state["global_step"], state["updates"]
        self.obs = state["obs"].numpy().copy()
        load_env_state(self.envs, state["env"])
        set_rng_state(state["rng"])
        self.recent_returns = list(state["recent_returns"])
