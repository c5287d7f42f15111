"""Our PPO and DQN against Stable-Baselines3 with rl-baselines3-zoo's hyper-parameters, in the same run.

    OMP_NUM_THREADS=1 python benchmarks/rl_vs_sb3.py --algos ppo dqn --seeds 5 [--threads 1]

For every seed, ours and SB3 run back to back (interleaved, so a busy machine slows both alike),
with the same hyper-parameters and network sizes (rl-zoo's CartPole-v1 entries, written out below).

Evaluation protocol (the same function for both): every ``--eval-every`` environment steps, 20
episodes on a separate set of 20 environments seeded 10_000..10_019, deterministic actions (argmax
/ mean), undiscounted return. A run stops at its first evaluation >= the threshold (475 on
CartPole-v1) or at the step budget (rl-zoo's n_timesteps). Reported per library: environment steps
and training wall time (evaluation time excluded) to the threshold, the final evaluation, and
training steps per second over the run. Ratios are ours against SB3's, from this same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ENV = "CartPole-v1"
THRESHOLD = 475.0
# rl-baselines3-zoo hyperparams/ppo.yml and dqn.yml, CartPole-v1
RL_ZOO = {
    "ppo": dict(n_envs=8, n_timesteps=100_000, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                ent_coef=0.0, learning_rate=1e-3, clip_range=0.2),  # learning_rate / clip_range: lin_
    "dqn": dict(n_timesteps=50_000, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000,
                gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
                exploration_final_eps=0.04, net_arch=[256, 256]),
}


class Clock:
    """Training time = wall time minus the time spent evaluating; the first step >= threshold."""

    def __init__(self, eval_every: int, act, env_id: str = ENV):
        from zoo.rl.evaluate import evaluate

        self.evaluate, self.act, self.env_id = evaluate, act, env_id
        self.eval_every, self.next_eval = eval_every, eval_every
        self.start, self.eval_s = time.perf_counter(), 0.0
        self.reached, self.history = None, []

    def train_s(self) -> float:
        return time.perf_counter() - self.start - self.eval_s

    def maybe_eval(self, step: int) -> bool:
        """Evaluate if due; True once the threshold is reached (stop)."""
        if step < self.next_eval:
            return False
        self.next_eval = (step // self.eval_every + 1) * self.eval_every
        t = time.perf_counter()
        train_s = self.train_s()
        returns = self.evaluate(self.act, self.env_id, 20, seed=10_000)
        self.eval_s += time.perf_counter() - t
        mean = float(np.mean(returns))
        self.history.append((step, round(train_s, 2), mean))
        if mean >= THRESHOLD and self.reached is None:
            self.reached = (step, train_s)
        return self.reached is not None


def run_ours(algo: str, seed: int, eval_every: int, budget: int | None = None) -> dict:
    hp = {**RL_ZOO[algo], **({"n_timesteps": budget} if budget else {})}
    if algo == "ppo":
        from zoo.rl.ppo import PPO, PPOConfig

        agent = PPO(PPOConfig(env_id=ENV, seed=seed, num_envs=hp["n_envs"], num_steps=hp["n_steps"],
                              total_timesteps=hp["n_timesteps"], batch_size=hp["batch_size"], gamma=hp["gamma"],
                              gae_lambda=hp["gae_lambda"], update_epochs=hp["n_epochs"], ent_coef=hp["ent_coef"],
                              learning_rate=hp["learning_rate"], clip_coef=hp["clip_range"], anneal_lr=True,
                              anneal_clip=True))
    else:
        from zoo.rl.dqn import DQN, DQNConfig

        agent = DQN(DQNConfig(env_id=ENV, seed=seed, total_timesteps=hp["n_timesteps"],
                              learning_rate=hp["learning_rate"], batch_size=hp["batch_size"],
                              buffer_size=hp["buffer_size"], learning_starts=hp["learning_starts"], gamma=hp["gamma"],
                              target_update_interval=hp["target_update_interval"], train_freq=hp["train_freq"],
                              gradient_steps=hp["gradient_steps"], exploration_fraction=hp["exploration_fraction"],
                              exploration_final_eps=hp["exploration_final_eps"], net_arch=tuple(hp["net_arch"])))
    clock = Clock(eval_every, agent.act)
    if algo == "ppo":
        agent.learn(callback=lambda a, s: clock.maybe_eval(a.global_step))
    else:
        agent.learn(callback=lambda a, s: clock.maybe_eval(a.global_step), every=100)
    return _result(clock, agent.global_step)


def run_sb3(algo: str, seed: int, eval_every: int, budget: int | None = None) -> dict:
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    hp = {**RL_ZOO[algo], **({"n_timesteps": budget} if budget else {})}
    if algo == "ppo":
        lr, clip = hp["learning_rate"], hp["clip_range"]
        model = PPO("MlpPolicy", make_vec_env(ENV, n_envs=hp["n_envs"], seed=seed), n_steps=hp["n_steps"],
                    batch_size=hp["batch_size"], gae_lambda=hp["gae_lambda"], gamma=hp["gamma"],
                    n_epochs=hp["n_epochs"], ent_coef=hp["ent_coef"], learning_rate=lambda p: p * lr,
                    clip_range=lambda p: p * clip, seed=seed, device="cpu")
    else:
        model = DQN("MlpPolicy", ENV, learning_rate=hp["learning_rate"], batch_size=hp["batch_size"],
                    buffer_size=hp["buffer_size"], learning_starts=hp["learning_starts"], gamma=hp["gamma"],
                    target_update_interval=hp["target_update_interval"], train_freq=hp["train_freq"],
                    gradient_steps=hp["gradient_steps"], exploration_fraction=hp["exploration_fraction"],
                    exploration_final_eps=hp["exploration_final_eps"],
                    policy_kwargs={"net_arch": hp["net_arch"]}, seed=seed, device="cpu")
    clock = Clock(eval_every, lambda obs: model.predict(obs, deterministic=True)[0])

    class Stop(BaseCallback):
        def _on_step(self) -> bool:
            return not clock.maybe_eval(self.num_timesteps)

    model.learn(hp["n_timesteps"], callback=Stop())
    return _result(clock, model.num_timesteps)


def _result(clock: Clock, steps: int) -> dict:
    train_s = clock.train_s()
    return {"reached_step": clock.reached[0] if clock.reached else None,
            "reached_s": round(clock.reached[1], 2) if clock.reached else None,
            "final_eval": clock.history[-1][2] if clock.history else float("nan"), "steps": steps,
            "train_s": round(train_s, 2), "steps_per_s": round(steps / train_s, 1), "history": clock.history}


def _mean_std(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "never"
    if len(values) == 1:
        return f"{values[0]:.0f}"
    return f"{statistics.mean(values):.0f} +- {statistics.pstdev(values):.0f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algos", nargs="+", default=["ppo", "dqn"], choices=["ppo", "dqn"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=None, help="default: 2048 (PPO), 2500 (DQN)")
    p.add_argument("--throughput-seeds", type=int, default=2,
                   help="runs per library of the fixed-budget throughput phase (no evaluation)")
    p.add_argument("--budget", type=int, nargs=2, default=[16384, 6000], metavar=("PPO", "DQN"),
                   help="environment steps of the throughput phase (DQN: 1000 warm-up steps included)")
    p.add_argument("--skip-threshold", action="store_true", help="only the throughput phase")
    p.add_argument("--out", default="/tmp/rl_vs_sb3.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}", flush=True)
    results = {}
    for algo in args.algos:
        every = args.eval_every or (2048 if algo == "ppo" else 2500)
        rows = {"ours": [], "sb3": []}
        for seed in range(0 if args.skip_threshold else args.seeds):
            for lib, fn in (("ours", run_ours), ("sb3", run_sb3)):
                r = fn(algo, seed, every)
                rows[lib].append(r)
                print(f"{algo} seed {seed} {lib:4s}: reached {r['reached_step']} steps / {r['reached_s']} s, final "
                      f"eval {r['final_eval']:.1f}, {r['steps']} steps in {r['train_s']} s "
                      f"({r['steps_per_s']} steps/s)",
                      flush=True)
        results[algo] = rows
        print(f"\n{algo.upper()} on {ENV}, {args.seeds} seeds, eval every {every} steps (20 episodes, deterministic)")
        print(f"{'':6s} {'reached':>8s} {'steps to 475':>16s} {'train s to 475':>16s} {'final eval':>14s} "
              f"{'steps/s':>14s}")
        for lib, rs in rows.items():
            hit = sum(r["reached_step"] is not None for r in rs)
            print(f"{lib:6s} {hit}/{len(rs):<6d} {_mean_std([r['reached_step'] for r in rs]):>16s} "
                  f"{_mean_std([r['reached_s'] for r in rs]):>16s} {_mean_std([r['final_eval'] for r in rs]):>14s} "
                  f"{_mean_std([r['steps_per_s'] for r in rs]):>14s}")
        if rows["ours"]:
            ratio = statistics.mean(r["steps_per_s"] for r in rows["ours"]) / statistics.mean(
                r["steps_per_s"] for r in rows["sb3"])
            print(f"steps/s ratio ours / SB3 over the runs above: {ratio:.2f}x\n", flush=True)
        # throughput: the same fixed budget for both, no evaluation, interleaved
        budget = args.budget[0 if algo == "ppo" else 1]
        speed = {"ours": [], "sb3": []}
        for fn in (run_ours, run_sb3):  # warm-up: the first run in a process pays one-time initialisation
            fn(algo, 99, 10**9, 1536 if algo == "dqn" else 512)
        for seed in range(args.throughput_seeds):
            for lib, fn in (("ours", run_ours), ("sb3", run_sb3)):
                r = fn(algo, 100 + seed, 10**9, budget)
                speed[lib].append(r["steps_per_s"])
                print(f"{algo} throughput seed {100 + seed} {lib:4s}: {r['steps']} steps in {r['train_s']} s "
                      f"({r['steps_per_s']} steps/s)", flush=True)
        results[algo + "_throughput"] = speed
        ours, theirs = statistics.mean(speed["ours"]), statistics.mean(speed["sb3"])
        print(f"{algo.upper()} throughput over {budget} steps: ours {ours:.0f}, SB3 {theirs:.0f} steps/s, "
              f"ratio {ours / theirs:.2f}x\n", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
