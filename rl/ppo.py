"""Proximal Policy Optimization (Schulman et al. 2017), read top to bottom.

Each iteration: collect ``num_steps`` steps from ``num_envs`` environments with the current policy,
compute advantages with GAE (truncated episodes bootstrap from their final observation), then run
``update_epochs`` passes of minibatch gradient steps on the clipped surrogate objective, the
(optionally clipped) value loss and the entropy bonus.

Every hyper-parameter is a field of :class:`PPOConfig`; the defaults are rl-baselines3-zoo's for
CartPole-v1. The value loss is ``mean((V - R)^2)`` weighted by ``vf_coef`` (as in
Stable-Baselines3, so rl-zoo's hyper-parameters carry over). With ``use_sde`` continuous actions
explore with gSDE (:class:`~zoo.rl.policies.ActorCritic`): the rollout draws one exploration matrix
per environment at its start and every ``sde_sample_freq`` steps, as SB3 does.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from zoo.shared.training import get_rng_state, optimizer_step, seed_everything, set_rng_state

from .common import episode_returns, final_observations, gae, load_env_state, make_vec_env, env_state
from .policies import ActorCritic, spaces_config


@dataclass
class PPOConfig:
    env_id: str = "CartPole-v1"
    total_timesteps: int = 100_000
    seed: int = 0
    num_envs: int = 8  # parallel environments in the rollout
    num_steps: int = 32  # steps per environment per rollout
    learning_rate: float = 1e-3
    anneal_lr: bool = True  # learning rate linearly to 0 over the run
    gamma: float = 0.98
    gae_lambda: float = 0.8
    batch_size: int = 256  # minibatch size (num_envs * num_steps = the rollout)
    update_epochs: int = 20
    norm_adv: bool = True  # advantages normalised per minibatch
    clip_coef: float = 0.2
    anneal_clip: bool = True  # clip range linearly to 0 over the run (rl-zoo's lin_0.2)
    clip_vloss: float | None = None  # clip the value change to +-this (None: no value clipping)
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None  # stop an update's epochs once the approximate KL exceeds 1.5x this
    adam_eps: float = 1e-5
    normalize_obs: bool = False  # gymnasium's NormalizeObservation around the vector env
    normalize_reward: bool = False  # gymnasium's NormalizeReward (scales by the return's std)
    net_arch: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    shared_trunk: bool = False
    log_std_init: float = 0.0
    squash: bool = False  # continuous actions: tanh-squash onto the bounds instead of clipping
    use_sde: bool = False  # continuous actions: generalised state-dependent exploration (gSDE) instead of white noise
    sde_sample_freq: int = -1  # gSDE: new exploration matrices every this many vector steps (<= 0: once per rollout)
    encoder: str = "mlp"  # "nature_cnn" for stacked 84x84 frames
    device: str = "cpu"


def ppo_loss(new_logprob, old_logprob, advantages, new_values, old_values, returns, entropy, *, clip_coef: float,
             clip_vloss: float | None, ent_coef: float, vf_coef: float, norm_adv: bool) -> tuple[torch.Tensor, dict]:
    """The PPO objective on one minibatch, to minimise, and its terms.

        ratio   = exp(log pi(a|s) - log pi_old(a|s))
        L_pi    = mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))
        L_v     = mean((V - R)^2), or with clip_vloss: mean(max((V - R)^2, (V_old + clip(V - V_old, +-c) - R)^2))
        loss    = L_pi - ent_coef * mean(entropy) + vf_coef * L_v
    """
    if norm_adv and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    log_ratio = new_logprob - old_logprob
    ratio = log_ratio.exp()
    pg_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()
    if clip_vloss is None:
        v_loss = F.mse_loss(new_values, returns)
    else:
        clipped = old_values + (new_values - old_values).clamp(-clip_vloss, clip_vloss)
        v_loss = torch.max((new_values - returns) ** 2, (clipped - returns) ** 2).mean()
    entropy_mean = entropy.mean()
    loss = pg_loss - ent_coef * entropy_mean + vf_coef * v_loss
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()  # Schulman's k3 estimator of KL(old || new)
        clip_frac = ((ratio - 1).abs() > clip_coef).float().mean()
    return loss, {"pg_loss": pg_loss.detach(), "v_loss": v_loss.detach(), "entropy": entropy_mean.detach(),
                  "approx_kl": approx_kl, "clip_frac": clip_frac}


class PPO:
    """Setup in ``__init__``; :meth:`collect` and :meth:`update` are one iteration; :meth:`learn`
    loops them; ``state_dict`` / ``load_state_dict`` make a checkpoint that resumes exactly."""

    algo = "ppo"

    def __init__(self, cfg: PPOConfig, policy: ActorCritic | None = None):
        self.cfg = cfg
        seed_everything(cfg.seed)
        self.device = torch.device(cfg.device)
        self.envs = make_vec_env(cfg.env_id, cfg.num_envs, cfg.seed, normalize_obs=cfg.normalize_obs,
                                 normalize_reward=cfg.normalize_reward, gamma=cfg.gamma)
        self.policy_config = {**spaces_config(self.envs.single_observation_space, self.envs.single_action_space, "ppo"),
                              "net_arch": tuple(cfg.net_arch), "activation": cfg.activation,
                              "shared_trunk": cfg.shared_trunk, "log_std_init": cfg.log_std_init, "squash": cfg.squash,
                              "encoder": cfg.encoder, **({"use_sde": True} if cfg.use_sde else {})}
        self.policy = (policy or ActorCritic(**self.policy_config)).to(self.device)
        self.optimizer = self.make_optimizer()
        self.batch = cfg.num_envs * cfg.num_steps
        self.num_iterations = max(1, cfg.total_timesteps // self.batch)
        self.scheduler = torch.optim.lr_scheduler.LinearLR(
            self.optimizer, start_factor=1.0, end_factor=0.0 if cfg.anneal_lr else 1.0, total_iters=self.num_iterations)
        self.iteration, self.global_step = 0, 0
        obs, _ = self.envs.reset(seed=cfg.seed)
        self.obs = torch.as_tensor(obs, device=self.device).float()
        self.recent_returns: list[float] = []

    def make_optimizer(self) -> torch.optim.Optimizer:
        # fused: one kernel for every parameter's update instead of a dozen small ops per tensor
        return torch.optim.Adam(self.policy.parameters(), lr=self.cfg.learning_rate, eps=self.cfg.adam_eps, fused=True)

    # -------------------------------------------------------------------------------- rollout
    @torch.no_grad()
    def collect(self) -> dict[str, torch.Tensor]:
        """``num_steps`` vector steps with the current policy, then GAE."""
        T, N, policy = self.cfg.num_steps, self.cfg.num_envs, self.policy
        obs_buf = torch.zeros((T, N, *self.obs.shape[1:]), device=self.device)
        act_shape = (policy.action_dim,) if policy.continuous else ()
        actions = torch.zeros((T, N, *act_shape), device=self.device, dtype=torch.float32 if policy.continuous
                              else torch.long)
        logprobs, values, next_values = (torch.zeros((T, N), device=self.device) for _ in range(3))
        # what the environments return stays in numpy until the rollout ends: one conversion, not T
        rewards, terminated, ended = (np.zeros((T, N), dtype=np.float32) for _ in range(3))
        sde = getattr(policy, "use_sde", False)
        for t in range(T):
            # gSDE (as SB3): new exploration matrices, one per env, at the rollout's start and every sde_sample_freq steps
            if sde and (t == 0 or (self.cfg.sde_sample_freq > 0 and t % self.cfg.sde_sample_freq == 0)):
                policy.reset_noise(N)
            obs_buf[t] = self.obs
            raw, logprobs[t], values[t] = policy.sample(self.obs)
            actions[t] = raw
            next_obs, rewards[t], term, trunc, infos = self.envs.step(policy.to_env(raw).cpu().numpy())
            self.global_step += N
            terminated[t], ended[t] = term, term | trunc
            cut = trunc & ~term  # time limit: the episode would have gone on, bootstrap from V(final_obs)
            if cut.any():
                final = final_observations(self.envs, infos, next_obs, cut)[cut]
                next_values[t, torch.as_tensor(cut, device=self.device)] = policy.value(
                    torch.as_tensor(final, device=self.device).float())
            if "final_info" in infos:
                self.recent_returns += episode_returns(infos)
            self.obs = torch.as_tensor(next_obs, device=self.device).float()
        rewards, terminated, ended = (torch.as_tensor(x, device=self.device) for x in (rewards, terminated, ended))
        # inside an episode the next value is the next step's; where an episode ended it was set above
        following = torch.cat([values[1:], policy.value(self.obs)[None]])
        next_values = torch.where(ended.bool(), next_values, following)
        advantages, returns = gae(rewards, values, next_values, terminated, ended, self.cfg.gamma, self.cfg.gae_lambda)
        flat = lambda x: x.reshape(T * N, *x.shape[2:])  # noqa: E731
        return {"obs": flat(obs_buf), "actions": flat(actions), "logprobs": flat(logprobs), "values": flat(values),
                "advantages": flat(advantages), "returns": flat(returns)}

    # -------------------------------------------------------------------------------- update
    def update(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.cfg
        progress_left = 1.0 - self.iteration / self.num_iterations
        clip_coef = cfg.clip_coef * (progress_left if cfg.anneal_clip else 1.0)
        stats: dict[str, torch.Tensor] = {}
        for _ in range(cfg.update_epochs):
            order = torch.randperm(self.batch, device=self.device)
            for start in range(0, self.batch, cfg.batch_size):
                idx = order[start:start + cfg.batch_size]
                new_logprob, entropy, new_values = self.policy.evaluate_actions(data["obs"][idx], data["actions"][idx])
                loss, stats = ppo_loss(new_logprob, data["logprobs"][idx], data["advantages"][idx], new_values,
                                       data["values"][idx], data["returns"][idx], entropy, clip_coef=clip_coef,
                                       clip_vloss=cfg.clip_vloss, ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef,
                                       norm_adv=cfg.norm_adv)
                loss.backward()
                optimizer_step(self.optimizer, loss.detach(), clip_grad_norm=cfg.max_grad_norm,
                               where=f"at PPO iteration {self.iteration}")
            if cfg.target_kl is not None and float(stats["approx_kl"]) > 1.5 * cfg.target_kl:
                break  # the policy moved too far from the one that collected the data
        self.scheduler.step()
        self.iteration += 1
        return {k: float(v) for k, v in stats.items()}

    # -------------------------------------------------------------------------------- loop
    def learn(self, until_step: int | None = None,
              callback: Callable[["PPO", dict], bool | None] | None = None) -> None:
        """Iterate until ``until_step`` env steps (default: the config's total); ``callback(self,
        stats)`` after each iteration may return True to stop."""
        until = self.cfg.total_timesteps if until_step is None else until_step
        while self.iteration < self.num_iterations and self.global_step < until:
            start = time.perf_counter()
            stats = self.update(self.collect())
            stats["iteration_s"] = time.perf_counter() - start
            if callback is not None and callback(self, stats):
                break

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions for the evaluation env."""
        return self.policy.act(torch.as_tensor(obs, device=self.device).float(), deterministic=True).cpu().numpy()

    # -------------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        return {"algo": self.algo, "config": asdict(self.cfg), "policy": self.policy.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "iteration": self.iteration, "global_step": self.global_step, "obs": self.obs.cpu(),
                "env": env_state(self.envs), "rng": get_rng_state(), "recent_returns": list(self.recent_returns)}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration, self.global_step = state["iteration"], state["global_step"]
        self.obs = state["obs"].to(self.device)
        load_env_state(self.envs, state["env"])
        set_rng_state(state["rng"])
        self.recent_returns = list(state["recent_returns"])
