"""Deterministic evaluation of a policy on a separate environment, the GIF of one episode, and
``python -m zoo.rl.evaluate --pretrained DIR --env ID --episodes 20`` (what ``zoo eval`` runs).

``evaluate`` runs ``episodes`` copies of the environment side by side, one episode each (copy i
seeded ``seed + i``), the policy acting on the whole batch at once, and returns the undiscounted
returns. Observations are normalised with the frozen statistics saved with the policy
(``normalization.json`` beside ``config.json``), as gymnasium's ``NormalizeObservation`` would.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .common import check_env_id, make_env, normalize_obs

NORMALIZATION_FILE = "normalization.json"


def evaluate(act: Callable[[np.ndarray], np.ndarray], env_id: str, episodes: int = 20, seed: int = 10_000,
             obs_stats: dict | None = None, max_steps: int = 100_000) -> list[float]:
    """Returns of ``episodes`` episodes played with ``act(obs_batch) -> actions`` (deterministic)."""
    import gymnasium as gym

    check_env_id(env_id)
    envs = gym.vector.SyncVectorEnv([lambda: make_env(env_id) for _ in range(episodes)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs, _ = envs.reset(seed=seed)
    returns = np.zeros(episodes)
    running = np.ones(episodes, dtype=bool)
    for _ in range(max_steps):
        obs, rewards, term, trunc, _ = envs.step(act(normalize_obs(obs, obs_stats)))
        returns += rewards * running
        running &= ~(term | trunc)
        if not running.any():
            break
    envs.close()
    return returns.tolist()


def policy_actor(policy: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """Deterministic actions of a QNetwork or ActorCritic for a numpy batch."""
    device = next(policy.parameters()).device

    def act(obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(obs, device=device).float()
        with torch.no_grad():
            out = policy.act(x, deterministic=True) if hasattr(policy, "continuous") else policy.act(x)
        return out.cpu().numpy()

    return act


def record_gif(act: Callable[[np.ndarray], np.ndarray], env_id: str, path: str | Path, seed: int = 10_000,
               obs_stats: dict | None = None, every: int = 2, max_frames: int = 300, fps: int = 25) -> Path:
    """A GIF of one deterministic episode: ``rgb_array`` frames (no display), every ``every``-th
    frame, at most ``max_frames`` of them."""
    import imageio.v2 as imageio

    env = make_env(env_id, render_mode="rgb_array")
    obs, _ = env.reset(seed=seed)
    frames, done, t = [env.render()], False, 0
    while not done and len(frames) < max_frames:
        action = act(normalize_obs(obs[None], obs_stats))[0]
        obs, _, term, trunc, _ = env.step(action)
        done, t = term or trunc, t + 1
        if t % every == 0:
            frames.append(env.render())
    env.close()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
    return path


def save_obs_stats(directory: str | Path, stats: dict | None) -> None:
    from zoo.shared.atomic import atomic_open

    if stats is None:
        return
    data = {"mean": stats["mean"].tolist(), "var": stats["var"].tolist(), "epsilon": stats["epsilon"]}
    with atomic_open(Path(directory) / NORMALIZATION_FILE) as f:
        f.write(json.dumps(data).encode())


def load_obs_stats(directory: str | Path) -> dict | None:
    path = Path(directory) / NORMALIZATION_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return {"mean": torch.tensor(data["mean"]), "var": torch.tensor(data["var"]), "epsilon": float(data["epsilon"])}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zoo.rl.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrained", required=True, help="a policy directory written by zoo.rl.train (save_pretrained)")
    p.add_argument("--env", required=True, help="gymnasium id, e.g. CartPole-v1")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=10_000)
    p.add_argument("--record", default=None, help="also write a GIF of one episode here")
    p.add_argument("--model", default=None, help="(from zoo eval NAME) the policy's registry name, checked")
    return p


def run(args: argparse.Namespace) -> dict:
    from zoo.shared.factory import from_pretrained

    from zoo.shared.errors import InvalidConfigError

    check_env_id(args.env)
    if args.episodes < 1:
        raise InvalidConfigError(f"--episodes must be >= 1, got {args.episodes}.")
    policy = from_pretrained(args.pretrained).eval()
    kind = policy.zoo_name.split("_")[0]  # ppo_* policies are trained by PPO or A2C, dqn_* by DQN
    if args.model and args.model != policy.zoo_name and {"a2c": "ppo"}.get(args.model, args.model) != kind:
        raise InvalidConfigError(f"{args.pretrained} holds a {policy.zoo_name} policy, not {args.model}.")
    stats = load_obs_stats(args.pretrained)
    returns = evaluate(policy_actor(policy), args.env, args.episodes, args.seed, stats)
    summary = {"env": args.env, "episodes": args.episodes, "mean": float(np.mean(returns)),
               "std": float(np.std(returns)), "returns": returns}
    if args.record:
        summary["gif"] = str(record_gif(policy_actor(policy), args.env, args.record, args.seed, stats))
    return summary


def main(argv=None) -> int:
    s = run(build_parser().parse_args(argv))
    print(f"{s['env']}: mean return {s['mean']:.2f} +- {s['std']:.2f} over {s['episodes']} episodes"
          + (f"; GIF {s['gif']}" if "gif" in s else ""))
    return 0 if math.isfinite(s["mean"]) else 1


if __name__ == "__main__":
    sys.exit(main())
