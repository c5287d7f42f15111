"""The networks DQN and PPO / A2C act with, and their Stable-Baselines3 layout.

- :class:`NatureCNN` (Mnih et al. 2015): three convolutions and a 512-unit layer over 84x84 frames
  stacked 4 deep, bytes divided by 255 inside.
- :class:`QNetwork`: observation -> one Q-value per action, through an MLP or the Nature CNN,
  optionally with the dueling head of Wang et al. 2016, ``Q = V + A - mean(A)``.
- :class:`ActorCritic`: observation -> an action distribution (categorical logits, or a diagonal
  Gaussian with a state-independent log-std, or with ``use_sde=True`` the state-dependent
  Gaussian of generalised state-dependent exploration) and a state value, with separate policy and
  value trunks (Stable-Baselines3's default) or one shared trunk.

Every policy is an ``nn.Module`` whose ``forward(obs)`` returns one tensor, so the registry suite
sees every parameter: Q-values for a QNetwork; for an ActorCritic the distribution's parameters
(logits, or the Gaussian's mean then log-std) followed by the value in the last column.

Stable-Baselines3 checkpoint layout (``policy.pth`` inside a ``model.save()`` zip), mapped by
:func:`sb3_actor_critic_keys` / :func:`sb3_dqn_keys`::

    mlp_extractor.policy_net.{0,2}  -> pi_trunk.{0,2}      action_net -> pi_head, log_std -> log_std
    mlp_extractor.value_net.{0,2}   -> vf_trunk.{0,2}      value_net  -> vf_head
    features_extractor.{cnn,linear} -> encoder.{cnn,linear}
    q_net.q_net.{0,2}, q_net.q_net.4 -> trunk.{0,2}, head  (q_net_target.*: the target copy, dropped)
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from zoo.shared.errors import InputError, InvalidConfigError
from zoo.shared.registry import TestSpec, register_model

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(in_dim: int, hidden: tuple[int, ...], activation: str) -> nn.Sequential:
    """Linear, activation, Linear, activation, ... (indices 0, 2, 4 hold the weights)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), ACTIVATIONS[activation]()]
        in_dim = width
    return nn.Sequential(*layers)


class NatureCNN(nn.Module):
    """The DQN paper's convolutional torso (Mnih et al. 2015): (B, C, 84, 84) -> (B, 512)."""

    def __init__(self, in_chans: int = 4, features_dim: int = 512, image_size: int = 84):
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(in_chans, 32, kernel_size=8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        side = ((image_size - 8) // 4 + 1 - 4) // 2 + 1 - 2  # 84 -> 20 -> 9 -> 7
        self.linear = nn.Sequential(nn.Linear(64 * side * side, features_dim), nn.ReLU())

    def forward(self, frames: Tensor) -> Tensor:
        return self.linear(self.cnn(frames.float() / 255.0))


def _encoder(encoder: str, obs_shape: tuple[int, ...], features_dim: int) -> tuple[nn.Module, int]:
    if encoder == "nature_cnn":
        if len(obs_shape) != 3 or obs_shape[1] != obs_shape[2] or obs_shape[1] < 36:
            raise InvalidConfigError(
                f"the Nature CNN takes stacked square frames (channels, H, W) with H = W >= 36 (Atari: (4, 84, 84)), "
                f"got observations of shape {tuple(obs_shape)}; use an MLP policy (ppo_mlp / dqn_mlp) for vectors.")
        return NatureCNN(obs_shape[0], features_dim, obs_shape[1]), features_dim
    if len(obs_shape) != 1:
        raise InvalidConfigError(
            f"an MLP policy takes flat observation vectors, got shape {tuple(obs_shape)}; for image frames use "
            "ppo_nature_cnn / dqn_nature_cnn (with gymnasium's AtariPreprocessing and FrameStackObservation).")
    return nn.Flatten(), obs_shape[0]


def _check_obs(obs: Tensor, obs_shape: tuple[int, ...], name: str) -> None:
    if not isinstance(obs, Tensor) or tuple(obs.shape[1:]) != tuple(obs_shape):
        got = tuple(obs.shape) if isinstance(obs, Tensor) else type(obs).__name__
        raise InputError(f"{name} expects observations of shape (batch, {', '.join(map(str, obs_shape))}), got {got}.")


def spaces_config(observation_space, action_space, algo: str) -> dict[str, Any]:
    """The plain config (JSON numbers) that describes gymnasium spaces to a policy; a space the
    algorithm or the networks cannot take is an InvalidConfigError saying what would."""
    from gymnasium import spaces

    if not isinstance(observation_space, spaces.Box):
        raise InvalidConfigError(
            f"the policies here take Box observations (vectors or image frames), got {observation_space}; "
            "wrap the env, e.g. gymnasium.wrappers.FlattenObservation for Dict/Tuple spaces or a one-hot "
            "TransformObservation for Discrete ones.")
    config: dict[str, Any] = {"obs_shape": tuple(int(d) for d in observation_space.shape)}
    if isinstance(action_space, spaces.Discrete):
        config.update(action_dim=int(action_space.n))
        if algo == "ppo":
            config["continuous"] = False
    elif isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        if algo == "dqn":
            raise InvalidConfigError(
                f"DQN needs a discrete action space (one Q-value per action), this environment's is continuous "
                f"({action_space}); use PPO or A2C (ppo_mlp), or discretise the actions with a wrapper.")
        config.update(action_dim=int(action_space.shape[0]), continuous=True,
                      action_low=tuple(float(x) for x in action_space.low),
                      action_high=tuple(float(x) for x in action_space.high))
    else:
        raise InvalidConfigError(f"unsupported action space {action_space}: use Discrete or a 1-D Box.")
    return config


def _from_env(env: str | None, observation_space, action_space, algo: str) -> dict[str, Any]:
    if env is not None and (observation_space is not None or action_space is not None):
        raise InvalidConfigError("pass either env= or observation_space= / action_space=, not both.")
    if env is not None:
        from .common import make_env

        e = make_env(env)
        observation_space, action_space = e.observation_space, e.action_space
        e.close()
    elif (observation_space is None) != (action_space is None):
        raise InvalidConfigError("pass both observation_space= and action_space= (or env=).")
    if observation_space is None:
        return {}
    return spaces_config(observation_space, action_space, algo)


def plain_config(config: dict[str, Any], algo: str) -> dict[str, Any]:
    """``config`` with ``env`` / ``observation_space`` / ``action_space`` replaced by the sizes they
    stand for: what a saved policy's config.json should record (a gymnasium Space is not JSON, and
    the saved policy should not need the environment to be rebuilt). The registry records it as
    ``model.zoo_config`` (``record_config``); the recipe builds its policies from this form."""
    derived = _from_env(config.get("env"), config.get("observation_space"), config.get("action_space"), algo)
    kept = {k: v for k, v in config.items() if k not in ("env", "observation_space", "action_space")}
    return {**kept, **derived}


# ------------------------------------------------------------------------------------------------
# DQN
# ------------------------------------------------------------------------------------------------


class QNetwork(nn.Module):
    """Q(s, .) for every action: encoder (flatten or Nature CNN) -> MLP trunk -> head.

    With ``dueling=True`` the head splits into a state value and advantages (Wang et al. 2016):
    ``Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')``.
    """

    def __init__(self, obs_shape: tuple[int, ...] = (4,), action_dim: int = 2, net_arch: tuple[int, ...] = (64, 64),
                 activation: Literal["relu", "tanh"] = "relu", encoder: Literal["mlp", "nature_cnn"] = "mlp",
                 features_dim: int = 512, dueling: bool = False, env: str | None = None,
                 observation_space: Any = None, action_space: Any = None):
        super().__init__()
        derived = _from_env(env, observation_space, action_space, "dqn")
        obs_shape, action_dim = tuple(derived.get("obs_shape", obs_shape)), derived.get("action_dim", action_dim)
        self.obs_shape, self.action_dim, self.dueling = obs_shape, action_dim, dueling
        self.encoder, width = _encoder(encoder, obs_shape, features_dim)
        self.trunk = mlp(width, tuple(net_arch), activation)
        width = net_arch[-1] if net_arch else width
        if dueling:
            self.value_head = nn.Linear(width, 1)
            self.advantage_head = nn.Linear(width, action_dim)
        else:
            self.head = nn.Linear(width, action_dim)

    def forward(self, obs: Tensor) -> Tensor:
        _check_obs(obs, self.obs_shape, "QNetwork")
        h = self.trunk(self.encoder(obs))
        if self.dueling:
            advantages = self.advantage_head(h)
            return self.value_head(h) + advantages - advantages.mean(dim=1, keepdim=True)
        return self.head(h)

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """The greedy action for each observation."""
        return self(obs).argmax(dim=1)


# ------------------------------------------------------------------------------------------------
# PPO / A2C
# ------------------------------------------------------------------------------------------------


def _tanh_log_det(raw: Tensor) -> Tensor:
    """sum log(1 - tanh(u)^2), written stably: a = tanh(u) => log pi(a) = log N(u) - this."""
    return (2 * (math.log(2) - raw - nn.functional.softplus(-2 * raw))).sum(-1)


def _orthogonal(module: nn.Module, gain: float) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.orthogonal_(m.weight, gain)
            nn.init.zeros_(m.bias)


class ActorCritic(nn.Module):
    """pi(a | s) and V(s). Separate trunks by default (``pi_trunk``, ``vf_trunk``), or one shared
    ``trunk``. Discrete actions: categorical over ``action_dim`` logits. Continuous: a diagonal
    Gaussian whose mean comes from the network and whose log-std is a free parameter (one per
    dimension, not a function of the state); actions are clipped to the bounds when sent to the
    environment, or with ``squash=True`` pass through tanh and are scaled onto the bounds (the
    log-probability then carries the change-of-variables term).

    With ``use_sde=True`` (continuous, unsquashed only) exploration is generalised state-dependent
    exploration (gSDE, Raffin et al. 2021, arXiv:2005.05719): ``log_std`` is a (latent, action_dim)
    matrix, an exploration matrix ``E ~ N(0, exp(log_std)^2)`` (one per environment) is drawn by
    :meth:`reset_noise` and kept for several steps, and the action is ``mean(s) + z(s) @ E`` with
    ``z(s)`` the policy trunk's output (detached: the noise does not train the features). For a
    fixed ``s`` that is a Gaussian with variance ``(z^2) @ exp(log_std)^2`` per action dimension,
    which gives the log-probability and the entropy; the deterministic action is the mean.

    Initialisation as in the PPO implementations (and SB3): orthogonal, gain sqrt(2) in the trunks,
    0.01 for the policy head (a near-uniform first policy), 1 for the value head.
    """

    sde_epsilon = 1e-6  # added to the gSDE variance (as SB3 does), so a zero latent is not a zero std

    def __init__(self, obs_shape: tuple[int, ...] = (4,), action_dim: int = 2, continuous: bool = False,
                 net_arch: tuple[int, ...] = (64, 64), activation: Literal["tanh", "relu"] = "tanh",
                 shared_trunk: bool = False, encoder: Literal["mlp", "nature_cnn"] = "mlp", features_dim: int = 512,
                 log_std_init: float = 0.0, squash: bool = False, action_low: tuple[float, ...] | None = None,
                 action_high: tuple[float, ...] | None = None, ortho_init: bool = True, use_sde: bool = False,
                 env: str | None = None, observation_space: Any = None, action_space: Any = None):
        super().__init__()
        derived = _from_env(env, observation_space, action_space, "ppo")
        obs_shape = tuple(derived.get("obs_shape", obs_shape))
        action_dim, continuous = derived.get("action_dim", action_dim), derived.get("continuous", continuous)
        action_low, action_high = derived.get("action_low", action_low), derived.get("action_high", action_high)
        if squash and not continuous:
            raise InvalidConfigError("squash=True applies to continuous actions only.")
        if continuous and squash and (action_low is None or action_high is None):
            raise InvalidConfigError("squash=True needs action_low and action_high (or env= / action_space=).")
        if use_sde and (not continuous or squash):
            raise InvalidConfigError("use_sde=True (gSDE) applies to continuous actions without squash=True.")
        self.use_sde = use_sde
        self.exploration: Tensor | None = None  # gSDE: (n, latent, A) matrices, set by reset_noise
        self.obs_shape, self.action_dim, self.continuous, self.squash = obs_shape, action_dim, continuous, squash
        self.encoder, width = _encoder(encoder, obs_shape, features_dim)
        if shared_trunk:
            self.trunk = mlp(width, tuple(net_arch), activation)
        else:
            self.pi_trunk = mlp(width, tuple(net_arch), activation)
            self.vf_trunk = mlp(width, tuple(net_arch), activation)
        self.shared_trunk = shared_trunk
        width = net_arch[-1] if net_arch else width
        self.pi_head = nn.Linear(width, action_dim)
        self.vf_head = nn.Linear(width, 1)
        if continuous:
            shape = (width, action_dim) if use_sde else (action_dim,)
            self.log_std = nn.Parameter(torch.full(shape, float(log_std_init)))
        low = torch.tensor(action_low if action_low is not None else [-math.inf] * action_dim, dtype=torch.float32)
        high = torch.tensor(action_high if action_high is not None else [math.inf] * action_dim, dtype=torch.float32)
        self.register_buffer("action_low", low, persistent=False)
        self.register_buffer("action_high", high, persistent=False)
        if ortho_init:
            for module in (self.encoder, getattr(self, "trunk", None), getattr(self, "pi_trunk", None),
                           getattr(self, "vf_trunk", None)):
                if module is not None:
                    _orthogonal(module, math.sqrt(2))
            _orthogonal(self.pi_head, 0.01)
            _orthogonal(self.vf_head, 1.0)

    def latents(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        _check_obs(obs, self.obs_shape, "ActorCritic")
        features = self.encoder(obs)
        if self.shared_trunk:
            h = self.trunk(features)
            return h, h
        return self.pi_trunk(features), self.vf_trunk(features)

    def forward(self, obs: Tensor) -> Tensor:
        """(B, P + 1): the distribution's parameters (logits; or mean then log-std) and the value."""
        pi, vf = self.latents(obs)
        params = self.pi_head(pi)
        if self.use_sde:
            params = torch.cat([params, self._sde_std(pi).log()], dim=1)
        elif self.continuous:
            params = torch.cat([params, self.log_std.expand_as(params)], dim=1)
        return torch.cat([params, self.vf_head(vf)], dim=1)

    def value(self, obs: Tensor) -> Tensor:
        return self.vf_head(self.latents(obs)[1]).squeeze(-1)

    def distribution(self, obs: Tensor) -> tuple[torch.distributions.Distribution, Tensor]:
        """(pi(. | s), V(s)). Continuous: a Normal over the pre-squash / unclipped action."""
        pi, vf = self.latents(obs)
        out = self.pi_head(pi)
        if self.use_sde:
            dist = torch.distributions.Normal(out, self._sde_std(pi), validate_args=False)
        elif self.continuous:
            dist = torch.distributions.Normal(out, self.log_std.exp().expand_as(out), validate_args=False)
        else:
            dist = torch.distributions.Categorical(logits=out, validate_args=False)
        return dist, self.vf_head(vf).squeeze(-1)

    def log_prob_entropy(self, dist, raw_actions: Tensor) -> tuple[Tensor, Tensor]:
        """log pi(a | s) of stored raw actions and the entropy (of the Gaussian before squashing)."""
        if not self.continuous:
            return dist.log_prob(raw_actions), dist.entropy()
        log_prob = dist.log_prob(raw_actions).sum(-1)
        if self.squash:
            log_prob = log_prob - _tanh_log_det(raw_actions)
        return log_prob, dist.entropy().sum(-1)

    # The training loops' path: the same quantities as distribution() + log_prob_entropy() (a test
    # holds them equal), written out so that no Distribution object is built per step.
    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(raw action, its log-probability, V(s)) for a batch, sampled from pi(. | s)."""
        pi, vf = self.latents(obs)
        out, value = self.pi_head(pi), self.vf_head(vf).squeeze(-1)
        if self.use_sde:
            raw = out + self.sde_noise(pi)
            return raw, self._sde_log_prob(out, self._sde_std(pi), raw), value
        if self.continuous:
            raw = out + self.log_std.exp() * torch.randn_like(out)
            return raw, self._gaussian_log_prob(out, raw), value
        log_p = torch.log_softmax(out, dim=-1)
        raw = torch.multinomial(log_p.exp(), 1).squeeze(-1)
        return raw, log_p.gather(-1, raw.unsqueeze(-1)).squeeze(-1), value

    def evaluate_actions(self, obs: Tensor, raw_actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(log pi(a | s), entropy of pi(. | s), V(s)) for stored raw actions."""
        pi, vf = self.latents(obs)
        out, value = self.pi_head(pi), self.vf_head(vf).squeeze(-1)
        if self.use_sde:
            std = self._sde_std(pi)
            entropy = (0.5 + 0.5 * math.log(2 * math.pi) + std.log()).sum(-1)
            return self._sde_log_prob(out, std, raw_actions), entropy, value
        if self.continuous:
            entropy = (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum().expand(out.shape[0])
            return self._gaussian_log_prob(out, raw_actions), entropy, value
        log_p = torch.log_softmax(out, dim=-1)
        entropy = -(log_p.exp() * log_p).sum(-1)
        return log_p.gather(-1, raw_actions.unsqueeze(-1)).squeeze(-1), entropy, value

    # ---------------------------------------------------------------- gSDE
    def reset_noise(self, n: int = 1) -> None:
        """gSDE: draw new exploration matrices, ``E[i] ~ N(0, exp(log_std)^2)`` elementwise, one per
        environment (``n`` of them; with ``n == 1`` one matrix shared by every row of a batch)."""
        std = self.log_std.detach().exp()
        self.exploration = std * torch.randn((n, *std.shape), device=std.device, dtype=std.dtype)

    def sde_noise(self, pi_latent: Tensor) -> Tensor:
        """``z(s) @ E``: row i of the batch uses environment i's matrix (or the one shared matrix)."""
        z = pi_latent.detach()
        if self.exploration is None or (len(self.exploration) not in (1, len(z))):
            self.reset_noise(1)
        if len(self.exploration) == 1:
            return z @ self.exploration[0]
        return torch.bmm(z.unsqueeze(1), self.exploration).squeeze(1)

    def _sde_std(self, pi_latent: Tensor) -> Tensor:
        """Per-state std of ``z @ E``: sqrt((z^2) @ exp(log_std)^2 + eps), shape (B, A)."""
        variance = pi_latent.detach().pow(2) @ self.log_std.exp().pow(2)
        return (variance + self.sde_epsilon).sqrt()

    @staticmethod
    def _sde_log_prob(mean: Tensor, std: Tensor, raw: Tensor) -> Tensor:
        return (-0.5 * ((raw - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    def _gaussian_log_prob(self, mean: Tensor, raw: Tensor) -> Tensor:
        log_prob = (-0.5 * ((raw - mean) / self.log_std.exp()) ** 2 - self.log_std
                    - 0.5 * math.log(2 * math.pi)).sum(-1)
        return log_prob - _tanh_log_det(raw) if self.squash else log_prob

    def to_env(self, raw_actions: Tensor) -> Tensor:
        """The action the environment receives: clipped, or squashed and scaled onto the bounds."""
        if not self.continuous:
            return raw_actions
        if self.squash:
            return self.action_low + (torch.tanh(raw_actions) + 1) * 0.5 * (self.action_high - self.action_low)
        return torch.clamp(raw_actions, self.action_low, self.action_high)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Environment actions: the mode (argmax / mean) when deterministic, else a sample."""
        dist, _ = self.distribution(obs)
        if deterministic:
            raw = dist.mean if self.continuous else dist.probs.argmax(-1)
        elif self.use_sde:
            raw = dist.mean + self.sde_noise(self.latents(obs)[0])
        else:
            raw = dist.sample()
        return self.to_env(raw)


# ------------------------------------------------------------------------------------------------
# Stable-Baselines3 key maps
# ------------------------------------------------------------------------------------------------


def sb3_actor_critic_keys(state: dict) -> dict:
    """SB3 ``ActorCriticPolicy`` / ``ActorCriticCnnPolicy`` -> ActorCritic (separate trunks). SB3
    keeps the shared features extractor under three names; the copies under ``pi_`` / ``vf_`` are
    the same tensors and are dropped."""
    out = {}
    for key, value in state.items():
        if key.startswith(("pi_features_extractor.", "vf_features_extractor.")):
            continue
        new = (key.replace("mlp_extractor.policy_net.", "pi_trunk.").replace("mlp_extractor.value_net.", "vf_trunk.")
               .replace("features_extractor.", "encoder."))
        new = re.sub(r"^action_net\.", "pi_head.", new)
        new = re.sub(r"^value_net\.", "vf_head.", new)
        out[new] = value
    return out


def sb3_dqn_keys(state: dict) -> dict:
    """SB3 ``DQNPolicy`` / ``CnnPolicy`` -> QNetwork. ``q_net.q_net`` is Linear, ReLU, ..., Linear:
    the last Linear is our head. ``q_net_target.*`` (SB3's target copy) is not part of the policy."""
    linear = sorted({int(m.group(1)) for k in state if (m := re.match(r"q_net\.q_net\.(\d+)\.", k))})
    out = {}
    for key, value in state.items():
        if key.startswith("q_net_target."):
            continue
        m = re.match(r"q_net\.q_net\.(\d+)\.(.*)", key)
        if m:
            index, rest = int(m.group(1)), m.group(2)
            out[f"head.{rest}" if index == linear[-1] else f"trunk.{index}.{rest}"] = value
        else:
            out[key.replace("q_net.features_extractor.", "encoder.")] = value
    return out


def sb3_to_ours(state: dict) -> dict:
    """Either map, chosen by the keys (a DQN policy has ``q_net.*``)."""
    return sb3_dqn_keys(state) if any(k.startswith("q_net.") for k in state) else sb3_actor_critic_keys(state)


# ------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------


def _vector_inputs(cfg: dict, batch: int) -> tuple:
    return (torch.randn(batch, *cfg["obs_shape"]),)


def _frame_inputs(cfg: dict, batch: int) -> tuple:
    return (torch.randint(0, 256, (batch, *cfg["obs_shape"]), dtype=torch.uint8).float(),)


def _ac_width(cfg: dict, batch: int) -> tuple:
    return (batch, cfg["action_dim"] * (2 if cfg.get("continuous") else 1) + 1)


PPO_PAPER = "Schulman et al. 2017, Proximal Policy Optimization Algorithms (arXiv:1707.06347)"
DQN_PAPER = "Mnih et al. 2015, Human-level control through deep reinforcement learning (Nature 518)"
SB3_MAPS = {"sb3": sb3_to_ours}


def _sb3_hook(name: str):
    """The registry's ``foreign_config`` for ``name``: the net_arch / activation an SB3 zip describes,
    so ``zoo.create(name, env=..., pretrained="ppo.zip")`` builds it like the saved policy."""
    return lambda path: sb3_zip_config(name, path)


register_model(
    "ppo_mlp", ActorCritic, dict(net_arch=(64, 64), activation="tanh"), domain="rl", task="policy",
    paper=PPO_PAPER, inputs="observations (batch, obs_dim) float; env= / observation_space= + action_space= set sizes",
    key_maps=SB3_MAPS, foreign_config=_sb3_hook("ppo_mlp"),
    record_config=lambda config: plain_config(config, "ppo"),
    test=TestSpec(config=dict(obs_shape=(5,), action_dim=2, continuous=True, net_arch=(8, 8)), inputs=_vector_inputs,
                  output_shape=_ac_width),
)
register_model(
    "ppo_nature_cnn", ActorCritic, dict(obs_shape=(4, 84, 84), action_dim=6, net_arch=(), encoder="nature_cnn",
                                        activation="relu"),
    domain="rl", task="policy", paper=PPO_PAPER, inputs="stacked frames (batch, 4, 84, 84), bytes 0..255",
    key_maps=SB3_MAPS, foreign_config=_sb3_hook("ppo_nature_cnn"),
    record_config=lambda config: plain_config(config, "ppo"),
    test=TestSpec(config=dict(obs_shape=(2, 36, 36), action_dim=3, features_dim=16), inputs=_frame_inputs,
                  output_shape=_ac_width),
)
register_model(
    "dqn_mlp", QNetwork, dict(net_arch=(64, 64), activation="relu"), domain="rl", task="q-values",
    paper=DQN_PAPER, inputs="observations (batch, obs_dim) float; env= / observation_space= + action_space= set sizes",
    key_maps=SB3_MAPS, foreign_config=_sb3_hook("dqn_mlp"),
    record_config=lambda config: plain_config(config, "dqn"),
    test=TestSpec(config=dict(obs_shape=(5,), action_dim=3, net_arch=(8, 8), dueling=True), inputs=_vector_inputs,
                  output_shape=lambda cfg, batch: (batch, cfg["action_dim"])),
)
register_model(
    "dqn_nature_cnn", QNetwork, dict(obs_shape=(4, 84, 84), action_dim=6, net_arch=(), encoder="nature_cnn"),
    domain="rl", task="q-values", paper=DQN_PAPER, inputs="stacked frames (batch, 4, 84, 84), bytes 0..255",
    key_maps=SB3_MAPS, foreign_config=_sb3_hook("dqn_nature_cnn"),
    record_config=lambda config: plain_config(config, "dqn"),
    test=TestSpec(config=dict(obs_shape=(2, 36, 36), action_dim=3, features_dim=16), inputs=_frame_inputs,
                  output_shape=lambda cfg, batch: (batch, cfg["action_dim"])),
)


def sb3_zip_state(path) -> dict[str, Tensor]:
    """``policy.pth`` from a Stable-Baselines3 ``model.save()`` zip, read as tensors only
    (``torch.load(weights_only=True)``); the zip's pickled entries are never unpickled."""
    return _read_sb3_zip(path)[0]


def _read_sb3_zip(path) -> tuple[dict[str, Tensor], dict]:
    import io
    import json
    import zipfile

    from zoo.shared.errors import CheckpointError

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "policy.pth" not in names:
                raise CheckpointError(f"{path} is a zip but not a Stable-Baselines3 save: it has no policy.pth "
                                      f"(it holds {', '.join(names[:6])}).")
            raw = archive.read("policy.pth")
            data = json.loads(archive.read("data")) if "data" in names else {}
    except zipfile.BadZipFile:
        raise CheckpointError(f"{path} is not a readable zip file (truncated, or not a Stable-Baselines3 save).") \
            from None
    return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True), data


def sb3_config(data: dict, name: str) -> dict[str, Any]:
    """Our config from the JSON-readable parts of an SB3 zip's ``data`` (``policy_kwargs``: the
    net_arch and the activation's name); nothing pickled in it is unpickled."""
    kwargs = data.get("policy_kwargs") or {}
    config: dict[str, Any] = {}
    arch = kwargs.get("net_arch")
    if isinstance(arch, dict):
        if arch.get("pi") != arch.get("vf"):
            raise InvalidConfigError(f"SB3 net_arch {arch} has different policy and value widths; ActorCritic builds "
                                     "the same widths for both trunks.")
        arch = arch.get("pi")
    if isinstance(arch, list):
        config["net_arch"] = tuple(arch)
    act = str(kwargs.get("activation_fn", ""))
    for key, cls in ACTIVATIONS.items():
        if f".{cls.__name__}'" in act:
            config["activation"] = key
    if kwargs.get("ortho_init") is not None:
        config["ortho_init"] = bool(kwargs["ortho_init"])
    if name.startswith("ppo") and "log_std_init" in kwargs:
        config["log_std_init"] = float(kwargs["log_std_init"])
    if name.startswith("ppo") and (data.get("use_sde") is True or kwargs.get("use_sde") is True):
        if kwargs.get("full_std") is False or kwargs.get("use_expln") is True or kwargs.get("squash_output") is True:
            raise InvalidConfigError("this SB3 gSDE policy uses full_std=False, use_expln=True or squash_output=True; "
                                     "our gSDE is SB3's default form (full_std, exp, unsquashed) only.")
        config["use_sde"] = True
    return config


def sb3_zip_config(name: str, path) -> dict[str, Any] | None:
    """The config an SB3 zip describes for ``name`` (None when ``path`` is not an SB3 zip): the
    registry's ``foreign_config`` hook behind ``zoo.create(name, pretrained="x.zip")``."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        if "policy.pth" not in archive.namelist():
            return None
    return sb3_config(_read_sb3_zip(path)[1], name)


def load_sb3(name: str, path, **kwargs) -> nn.Module:
    """``name`` (ppo_mlp, dqn_mlp, ...) built as the SB3 zip at ``path`` describes (net_arch, activation;
    ``env=`` or the spaces for the sizes) and loaded strictly through the SB3 key map; the model's
    ``load_report`` says what was mapped. ``zoo.create(name, pretrained="x.zip", env=...)`` does the
    same through the registry (the core reads the zip's policy.pth, ``foreign_config`` its data)."""
    from zoo.shared.factory import create
    from zoo.shared.registry import get_entry
    from zoo.shared.weights import load_weights

    state, data = _read_sb3_zip(path)
    model = create(name, **{**sb3_config(data, name), **kwargs})
    model.load_report = load_weights(model, get_entry(name), state, requested=kwargs, layout="sb3", source=str(path))
    return model


def np_obs(obs, device="cpu") -> Tensor:
    """A numpy observation batch as a float32 tensor (frames stay bytes until the CNN divides)."""
    return torch.as_tensor(np.asarray(obs), device=device).float()
