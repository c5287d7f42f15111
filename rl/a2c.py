"""Advantage Actor-Critic (Mnih et al. 2016, the synchronous variant), from PPO's pieces.

The rollout and the advantages are PPO's (:meth:`zoo.rl.ppo.PPO.collect`: vector envs, GAE with
truncation bootstrapping); the update is one gradient step on the whole rollout:

    loss = -mean(A * log pi(a|s)) - ent_coef * mean(entropy) + vf_coef * mean((V - R)^2)

with RMSprop as in the paper. The defaults are Stable-Baselines3's A2C defaults (rl-zoo's CartPole-v1
entry uses 8 envs and an entropy coefficient of 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zoo.shared.training import optimizer_step

from .ppo import PPO, PPOConfig


@dataclass
class A2CConfig(PPOConfig):
    num_envs: int = 8
    num_steps: int = 5
    learning_rate: float = 7e-4
    anneal_lr: bool = False
    gamma: float = 0.99
    gae_lambda: float = 1.0  # lambda = 1: the n-step return of the paper
    norm_adv: bool = False
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    rms_alpha: float = 0.99
    rms_eps: float = 1e-5
    # PPO-only fields, unused here
    update_epochs: int = 1
    anneal_clip: bool = False


class A2C(PPO):
    algo = "a2c"

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.RMSprop(self.policy.parameters(), lr=self.cfg.learning_rate, alpha=self.cfg.rms_alpha,
                                   eps=self.cfg.rms_eps)

    def update(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.cfg
        logprob, entropy, values = self.policy.evaluate_actions(data["obs"], data["actions"])
        advantages = data["advantages"]
        if cfg.norm_adv:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        pg_loss = -(advantages * logprob).mean()
        v_loss = F.mse_loss(values, data["returns"])
        loss = pg_loss - cfg.ent_coef * entropy.mean() + cfg.vf_coef * v_loss
        loss.backward()
        optimizer_step(self.optimizer, loss.detach(), clip_grad_norm=cfg.max_grad_norm,
                       where=f"at A2C iteration {self.iteration}")
        self.scheduler.step()
        self.iteration += 1
        return {"pg_loss": float(pg_loss.detach()), "v_loss": float(v_loss.detach()),
                "entropy": float(entropy.detach().mean())}
