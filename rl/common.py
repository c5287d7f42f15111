"""The pieces every algorithm here is built from: returns (GAE, n-step), the replay buffer, the
exploration schedule, vector environments that tell truncation from termination, and the
environment state a checkpoint needs to resume a run exactly.

Truncation is not termination. A time limit cuts an episode that would have gone on, so the value
of the state it stopped in still counts: the target bootstraps from ``V(final_obs)``. A true
termination has no future: its target is the reward alone. The vector environments run in
gymnasium's ``SAME_STEP`` autoreset mode, so the observation after an episode's last step is the
next episode's first, and the real final observation is in ``info["final_obs"]``.
"""

from __future__ import annotations

import difflib
from collections import deque
from contextlib import contextmanager
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from zoo.shared.errors import InvalidConfigError


# ------------------------------------------------------------------------------------------------
# Returns
# ------------------------------------------------------------------------------------------------


def gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
        ended: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over a rollout of shape (T, N).

    ``next_values[t]`` is the value of the observation that followed step t: ``values[t + 1]``
    inside an episode, ``V(final_obs)`` where the episode ended at t, the bootstrap value after the
    last step. ``terminated[t]``: the episode truly ended (no bootstrap); ``ended[t]``: terminated or
    truncated (the advantage does not flow back across it). Returns (advantages, returns).

        delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
        A_t     = delta_t + gamma * lam * (1 - ended_t) * A_{t+1}
    """
    not_terminated = 1.0 - terminated.float()
    not_ended = 1.0 - ended.float()
    deltas = rewards + gamma * not_terminated * next_values - values
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        running = deltas[t] + gamma * lam * not_ended[t] * running
        advantages[t] = running
    return advantages, advantages + values


class NStep:
    """n-step transitions (Sutton & Barto 7.1) for N parallel environments.

    ``push`` takes one vector step and returns the transitions that became complete:
    ``(obs, action, G, next_obs, discount)`` with ``G = sum_k gamma^k r_{t+k}`` over m <= n steps
    and ``discount = gamma^m`` (0 after a termination), so the target is ``G + discount * max_a
    Q(next_obs, a)``. An episode end flushes that environment's window: after a termination the
    future is worth nothing; after a truncation ``next_obs`` is the final observation and is
    bootstrapped from.
    """

    def __init__(self, num_envs: int, n: int, gamma: float):
        if n < 1:
            raise InvalidConfigError(f"n-step returns need n >= 1, got {n}.")
        self.n, self.gamma = n, gamma
        self.windows: list[deque] = [deque() for _ in range(num_envs)]

    def push(self, obs, actions, rewards, next_obs, terminated, truncated) -> list[tuple]:
        out = []
        for i, window in enumerate(self.windows):
            window.append((obs[i], actions[i], float(rewards[i])))
            ended = bool(terminated[i] or truncated[i])
            while window and (len(window) == self.n or ended):
                ret = sum(self.gamma ** k * r for k, (_, _, r) in enumerate(window))
                discount = 0.0 if terminated[i] and ended else self.gamma ** len(window)
                out.append((window[0][0], window[0][1], ret, next_obs[i], discount))
                window.popleft()
        return out

    def state_dict(self) -> dict:
        return {"windows": [[(torch.as_tensor(np.asarray(o)), torch.as_tensor(np.asarray(a)), r) for o, a, r in w]
                            for w in self.windows]}

    def load_state_dict(self, state: dict) -> None:
        self.windows = [deque((o.numpy(), a.numpy(), r) for o, a, r in w) for w in state["windows"]]


# ------------------------------------------------------------------------------------------------
# Replay buffer
# ------------------------------------------------------------------------------------------------


class ReplayBuffer:
    """A ring of transitions ``(obs, action, G, next_obs, discount)`` in preallocated numpy arrays.

    When full, the oldest transition is overwritten. ``sample`` draws uniformly with the buffer's
    own generator (its state is part of the checkpoint) and returns tensors on ``device``.
    """

    def __init__(self, capacity: int, obs_shape: tuple, obs_dtype, action_shape: tuple = (),
                 action_dtype=np.int64, device: str | torch.device = "cpu", seed: int | np.random.SeedSequence = 0):
        if capacity < 1:
            raise InvalidConfigError(f"the replay buffer needs capacity >= 1, got {capacity}.")
        self.capacity, self.device = capacity, torch.device(device)
        self.obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((capacity, *action_shape), dtype=action_dtype)
        self.returns = np.zeros(capacity, dtype=np.float32)
        self.discounts = np.zeros(capacity, dtype=np.float32)
        self.pos, self.size = 0, 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, ret: float, next_obs, discount: float) -> None:
        i = self.pos
        self.obs[i], self.actions[i], self.returns[i] = obs, action, ret
        self.next_obs[i], self.discounts[i] = next_obs, discount
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        if self.size == 0:
            raise RuntimeError("sample() from an empty replay buffer")
        idx = self.rng.integers(0, self.size, size=batch_size)
        put = lambda a: torch.as_tensor(a[idx]).to(self.device, non_blocking=True)  # noqa: E731
        return {"obs": put(self.obs), "actions": put(self.actions), "returns": put(self.returns),
                "next_obs": put(self.next_obs), "discounts": put(self.discounts)}

    def state_dict(self) -> dict:
        n = self.size
        return {"obs": torch.from_numpy(self.obs[:n].copy()), "next_obs": torch.from_numpy(self.next_obs[:n].copy()),
                "actions": torch.from_numpy(self.actions[:n].copy()),
                "returns": torch.from_numpy(self.returns[:n].copy()),
                "discounts": torch.from_numpy(self.discounts[:n].copy()), "pos": self.pos, "size": n,
                "rng": _bitgen_state(self.rng)}

    def load_state_dict(self, state: dict) -> None:
        n = state["size"]
        if n > self.capacity:
            raise InvalidConfigError(f"the checkpoint's replay buffer holds {n} transitions, more than this "
                                     f"run's capacity {self.capacity}; resume with the same buffer size.")
        for key in ("obs", "next_obs", "actions", "returns", "discounts"):
            getattr(self, key)[:n] = state[key].numpy()
        self.pos, self.size = state["pos"], n
        _set_bitgen_state(self.rng, state["rng"])


@contextmanager
def flush_denormals(enabled: bool = True):
    """Subnormal floats (magnitudes below 1.2e-38) read and written as zero inside the block; the
    default (off) again after it.

    Why DQN wants it: a ReLU unit that stopped firing gets zero gradients, so Adam's first moment
    of its weights decays by beta1 each update and, after about 800 updates, sits in the subnormal
    range, where x86 arithmetic is tens of times slower. On CartPole's 256x256 Q-network that
    made Adam's step 2-3x slower than on the same tensors without subnormals. Values that small
    change no update that matters (Adam divides them by a square root that is far larger).
    """
    if not enabled or not torch.set_flush_denormal(True):  # False: this CPU cannot
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


# ------------------------------------------------------------------------------------------------
# Schedules
# ------------------------------------------------------------------------------------------------


def linear_schedule(start: float, end: float, duration: int) -> Callable[[int], float]:
    """``start`` at step 0, moving linearly to ``end`` at step ``duration``, then ``end``
    (DQN's epsilon: Mnih et al. 2015 anneal 1 -> 0.1 over the first million frames)."""

    def value(step: int) -> float:
        if duration <= 0:
            return end
        return start + (end - start) * min(1.0, step / duration)

    return value


# ------------------------------------------------------------------------------------------------
# Environments
# ------------------------------------------------------------------------------------------------


def _looks_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/") or "NoFrameskip" in env_id


def check_env_id(env_id: str) -> None:
    """An unknown id is an InvalidConfigError naming the closest registered ids. Atari ids are
    registered on first use (ale-py ships the ROMs; gymnasium knows them only once it is imported)."""
    if isinstance(env_id, str) and env_id not in gym.registry and _looks_atari(env_id):
        try:
            import ale_py

            gym.register_envs(ale_py)
        except ImportError:
            raise InvalidConfigError(f"{env_id!r} is an Atari id and needs ale-py (pip install ale-py).") from None
    if not isinstance(env_id, str) or env_id not in gym.registry:
        close = difflib.get_close_matches(str(env_id), list(gym.registry), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise InvalidConfigError(
            f"unknown environment id {env_id!r}.{hint} Pass a registered gymnasium id (gymnasium.registry "
            "lists them; Atari and Box2D ids need ale-py / box2d installed).")


def is_atari(env_id: str) -> bool:
    """An id served by ale-py (``ALE/Pong-v5``, ``PongNoFrameskip-v4``)."""
    check_env_id(env_id)
    return "ale_py" in str(gym.spec(env_id).entry_point)


def _resize_frame(frame: np.ndarray, size: int = 84) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BOX))  # area averaging


def make_env(env_id: str, render_mode: str | None = None, **kwargs) -> gym.Env:
    """``gym.make(env_id)``; an Atari game comes as the DQN paper saw it: each action repeated 4
    frames with the last two max-pooled, 84x84 grayscale bytes, the last 4 stacked
    (``FrameStackObservation``): observations of shape (4, 84, 84), uint8. The emulator is made
    with ``frameskip=1`` so that the skipping happens once, in the wrapper. With OpenCV installed
    that is gymnasium's ``AtariPreprocessing`` (also up to 30 no-op starts); without it, the same
    pipeline from gymnasium's ``MaxAndSkipObservation`` and a Pillow area resize (no no-op starts)."""
    check_env_id(env_id)
    atari = is_atari(env_id)
    if atari:
        kwargs = {"frameskip": 1, **kwargs}
        try:
            import cv2  # noqa: F401  (AtariPreprocessing resizes with it)
        except ImportError:
            kwargs["obs_type"] = "grayscale"
            atari = "no-cv2"
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise InvalidConfigError(f"environment {env_id!r} needs a package that is not installed: {exc}") from None
    if atari == "no-cv2":
        env = gym.wrappers.MaxAndSkipObservation(env, skip=4)
        env = gym.wrappers.TransformObservation(env, _resize_frame, gym.spaces.Box(0, 255, (84, 84), np.uint8))
    elif atari:
        env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True,
                                              scale_obs=False, terminal_on_life_loss=False)
    if atari:
        env = gym.wrappers.FrameStackObservation(env, 4)
    return env


def make_vec_env(env_id: str, num_envs: int, seed: int, *, normalize_obs: bool = False,
                 normalize_reward: bool = False, gamma: float = 0.99) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id`` stepped in this process (classic-control steps cost
    microseconds: worker processes would cost more than they save), SAME_STEP autoreset.

    Each copy records its episode statistics (raw rewards) and, optionally, is wrapped in
    gymnasium's ``NormalizeObservation`` / ``NormalizeReward``. They wrap each copy rather than the
    vector env because gymnasium's vector observation wrappers refuse SAME_STEP autoreset (they
    would leave ``final_obs`` unnormalised); per copy, the final observation is normalised like
    every other. :func:`merged_obs_stats` combines the copies' statistics for evaluation. Atari
    games come through :func:`make_env`'s wrappers, and train on clipped rewards."""
    check_env_id(env_id)

    atari = is_atari(env_id)

    def one() -> gym.Env:
        env = gym.wrappers.RecordEpisodeStatistics(make_env(env_id))
        if atari:  # learn from the reward's sign (Mnih et al. 2015); the episode statistics keep the score
            env = gym.wrappers.TransformReward(env, np.sign)
        if normalize_obs:
            env = gym.wrappers.NormalizeObservation(env)
        if normalize_reward:
            env = gym.wrappers.NormalizeReward(env, gamma=gamma)
        return env

    envs = gym.vector.SyncVectorEnv([one for _ in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs.action_space.seed(seed)
    return envs


def episode_returns(infos: dict) -> list[float]:
    """Undiscounted returns (of the raw rewards) of the episodes that ended this step."""
    final = infos.get("final_info")
    if not final or "episode" not in final:
        return []
    return [float(r) for r in final["episode"]["r"][final["_episode"]]]


def find_wrapper(env, cls):
    """The first wrapper of type ``cls`` around ``env``, else None."""
    while env is not None:
        if isinstance(env, cls):
            return env
        env = getattr(env, "env", None)
    return None


def final_observations(envs, infos: dict, next_obs: np.ndarray, ended: np.ndarray) -> np.ndarray:
    """The true next observation of every env: ``next_obs``, except where an episode ended, where
    it is the ``final_obs`` that autoreset replaced."""
    if not ended.any():
        return next_obs
    real = next_obs.copy()
    for i in np.flatnonzero(ended):
        real[i] = infos["final_obs"][i]
    return real


def _rms(rms) -> dict:
    return {"mean": torch.as_tensor(np.asarray(rms.mean, dtype=np.float64)),
            "var": torch.as_tensor(np.asarray(rms.var, dtype=np.float64)), "count": float(rms.count)}


def _set_rms(rms, state: dict) -> None:
    rms.mean = state["mean"].numpy().astype(np.asarray(rms.mean).dtype).copy()
    rms.var = state["var"].numpy().astype(np.asarray(rms.var).dtype).copy()
    rms.count = state["count"]


def merged_obs_stats(envs) -> dict | None:
    """One set of observation statistics from every copy's NormalizeObservation (Chan et al.'s
    parallel mean / variance), for normalising evaluation observations; None without normalisation."""
    parts = [find_wrapper(env, gym.wrappers.NormalizeObservation) for env in envs.envs]
    if not parts or parts[0] is None:
        return None
    mean, var, count = parts[0].obs_rms.mean, parts[0].obs_rms.var, parts[0].obs_rms.count
    for p in parts[1:]:
        m, v, c = p.obs_rms.mean, p.obs_rms.var, p.obs_rms.count
        total = count + c
        delta = m - mean
        mean = mean + delta * c / total
        var = (var * count + v * c + delta ** 2 * count * c / total) / total
        count = total
    return {"mean": torch.as_tensor(np.asarray(mean, dtype=np.float32)),
            "var": torch.as_tensor(np.asarray(var, dtype=np.float32)), "epsilon": float(parts[0].epsilon)}


def normalize_obs(obs: np.ndarray, stats: dict | None) -> np.ndarray:
    """gymnasium's NormalizeObservation with frozen statistics: (obs - mean) / sqrt(var + eps)."""
    if stats is None:
        return obs
    return ((obs - stats["mean"].numpy()) / np.sqrt(stats["var"].numpy() + stats["epsilon"])).astype(np.float32)


def _bitgen_state(rng: np.random.Generator) -> dict:
    s = rng.bit_generator.state  # PCG64: {"bit_generator", "state": {"state", "inc"}, "has_uint32", "uinteger"}
    return {"bit_generator": s["bit_generator"], "state": str(s["state"]["state"]), "inc": str(s["state"]["inc"]),
            "has_uint32": int(s["has_uint32"]), "uinteger": int(s["uinteger"])}


def _set_bitgen_state(rng: np.random.Generator, s: dict) -> None:
    rng.bit_generator.state = {"bit_generator": s["bit_generator"],
                               "state": {"state": int(s["state"]), "inc": int(s["inc"])},
                               "has_uint32": s["has_uint32"], "uinteger": s["uinteger"]}


def env_state(envs) -> dict:
    """What a checkpoint needs to continue the vector env's episodes exactly: every copy's
    simulator state (``unwrapped.state`` / ``last_u``), its RNG, its time-limit counter, its episode
    statistics and normalisation statistics; the action space's RNG. Written for gymnasium's
    classic-control environments; others restart their episodes on resume."""
    subs = []
    for env in envs.envs:
        inner, sub = env.unwrapped, {}
        if isinstance(getattr(inner, "state", None), (np.ndarray, tuple, list)):
            sub["state"] = torch.as_tensor(np.asarray(inner.state, dtype=np.float64))
        for attr in ("last_u", "steps_beyond_terminated"):
            value = getattr(inner, attr, None)
            if value is None or isinstance(value, (int, float, np.floating, np.integer)):
                sub[attr] = None if value is None else value.item() if hasattr(value, "item") else value
        if getattr(inner, "_np_random", None) is not None:
            sub["np_random"] = _bitgen_state(inner._np_random)
        limit = find_wrapper(env, gym.wrappers.TimeLimit)
        if limit is not None:
            sub["elapsed"] = int(limit._elapsed_steps or 0)
        stats = find_wrapper(env, gym.wrappers.RecordEpisodeStatistics)
        if stats is not None:
            sub["episode"] = [float(stats.episode_returns), int(stats.episode_lengths)]
        obs_norm = find_wrapper(env, gym.wrappers.NormalizeObservation)
        if obs_norm is not None:
            sub["obs_rms"] = _rms(obs_norm.obs_rms)
        rew_norm = find_wrapper(env, gym.wrappers.NormalizeReward)
        if rew_norm is not None:
            sub["return_rms"] = _rms(rew_norm.return_rms)
            sub["discounted_reward"] = torch.as_tensor(np.asarray(rew_norm.discounted_reward, dtype=np.float64))
        subs.append(sub)
    return {"envs": subs, "action_space_rng": _bitgen_state(envs.action_space.np_random),
            "autoreset": torch.as_tensor(envs._autoreset_envs)}


def load_env_state(envs, state: dict) -> None:
    for env, sub in zip(envs.envs, state["envs"]):
        inner = env.unwrapped
        if "state" in sub:
            inner.state = sub["state"].numpy().astype(np.asarray(inner.state).dtype).copy()
        for attr in ("last_u", "steps_beyond_terminated"):
            if attr in sub:
                setattr(inner, attr, sub[attr])
        if "np_random" in sub:
            _set_bitgen_state(inner.np_random, sub["np_random"])
        limit = find_wrapper(env, gym.wrappers.TimeLimit)
        if limit is not None and "elapsed" in sub:
            limit._elapsed_steps = sub["elapsed"]
        stats = find_wrapper(env, gym.wrappers.RecordEpisodeStatistics)
        if stats is not None and "episode" in sub:
            stats.episode_returns, stats.episode_lengths = sub["episode"]
        if "obs_rms" in sub:
            _set_rms(find_wrapper(env, gym.wrappers.NormalizeObservation).obs_rms, sub["obs_rms"])
        if "return_rms" in sub:
            rew_norm = find_wrapper(env, gym.wrappers.NormalizeReward)
            _set_rms(rew_norm.return_rms, sub["return_rms"])
            rew_norm.discounted_reward = sub["discounted_reward"].numpy().astype(
                np.asarray(rew_norm.discounted_reward).dtype).copy()
    _set_bitgen_state(envs.action_space.np_random, state["action_space_rng"])
    envs._autoreset_envs = state["autoreset"].numpy().copy()
