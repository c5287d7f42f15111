"""Our PPO and DQN against Stable-Baselines3 with rl-baselines3-zoo's hyper-parameters, in the same run.

    OMP_NUM_THREADS=1 python benchmarks/rl_vs_sb3.py --algos ppo dqn --seeds 5 [--threads 1]
    OMP_NUM_THREADS=1 python benchmarks/rl_vs_sb3.py --algos dqn --hp double_dqn=true --hp n_step=3
    OMP_NUM_THREADS=1 python benchmarks/rl_vs_sb3.py --env LunarLander-v3 --algos ppo --seeds 5 --libs ours

For every seed, ours and SB3 run back to back (interleaved, so a busy machine slows both alike),
with rl-zoo's entry for the environment: written out below in SB3's names for SB3, read from
``zoo.rl.hyperparams`` (the same values in our names) for ours. ``--hp field=value`` changes ours
only, e.g. the options SB3's DQN lacks (Double DQN, n-step returns, the dueling head); the table
printed at the end names them.

Evaluation protocol (the same function for both): every ``--eval-every`` environment steps, 20
episodes on a separate set of 20 environments seeded 10_000..10_019, deterministic actions (argmax
/ mean), undiscounted return; observations normalised with the training run's statistics where
the run normalises them. A run stops at its first evaluation >= the threshold (CartPole-v1 475,
Acrobot-v1 -100, Pendulum-v1 -200, LunarLander-v3 200) or at the step budget (rl-zoo's
n_timesteps, or ``--budget-steps``); with ``--no-stop`` every run trains its whole budget, and its
final evaluation is the budget's last. Reported per library: environment steps and training wall
time (evaluation time excluded) to the threshold, the final evaluation, and training steps per
second over the run. Ratios are ours against SB3's, from this same run.
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

THRESHOLDS = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "Pendulum-v1": -200.0, "LunarLander-v3": 200.0}
# rl-baselines3-zoo hyperparams/ppo.yml and dqn.yml, in SB3's names (lin_X: linear decay to 0)
RL_ZOO = {
    ("ppo", "CartPole-v1"): dict(n_envs=8, n_timesteps=100_000, n_steps=32, batch_size=256, gae_lambda=0.8,
                                 gamma=0.98, n_epochs=20, ent_coef=0.0, learning_rate="lin_1e-3",
                                 clip_range="lin_0.2"),
    ("dqn", "CartPole-v1"): dict(n_timesteps=50_000, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
                                 learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256,
                                 gradient_steps=128, exploration_fraction=0.16, exploration_final_eps=0.04,
                                 net_arch=[256, 256]),
    ("ppo", "Acrobot-v1"): dict(normalize=True, n_envs=16, n_timesteps=1_000_000, n_steps=256, gae_lambda=0.94,
                                gamma=0.99, n_epochs=4, ent_coef=0.0),
    ("dqn", "Acrobot-v1"): dict(n_timesteps=100_000, learning_rate=6.3e-4, batch_size=128, buffer_size=50_000,
                                learning_starts=0, gamma=0.99, target_update_interval=250, train_freq=4,
                                gradient_steps=-1, exploration_fraction=0.12, exploration_final_eps=0.1,
                                net_arch=[256, 256]),
    ("ppo", "Pendulum-v1"): dict(n_envs=4, n_timesteps=100_000, n_steps=1024, gae_lambda=0.95, gamma=0.9,
                                 n_epochs=10, ent_coef=0.0, learning_rate=1e-3, clip_range=0.2, use_sde=True,
                                 sde_sample_freq=4),
    ("ppo", "LunarLander-v3"): dict(n_envs=16, n_timesteps=1_000_000, n_steps=1024, batch_size=64, gae_lambda=0.98,
                                    gamma=0.999, n_epochs=4, ent_coef=0.01),
}


VERBOSE = False  # --verbose: print every evaluation
NO_STOP = False  # --no-stop: train the whole budget; the final evaluation is then the budget's last


class Clock:
    """Training time = wall time minus the time spent evaluating; the first step >= threshold."""

    def __init__(self, eval_every: int, act, env_id: str, threshold: float, obs_stats=lambda: None):
        from zoo.rl.evaluate import evaluate

        self.evaluate, self.act, self.env_id, self.threshold = evaluate, act, env_id, threshold
        self.obs_stats = obs_stats
        self.eval_every, self.next_eval = eval_every, eval_every
        self.start, self.eval_s = time.perf_counter(), 0.0
        self.cpu_start, self.eval_cpu_s = time.process_time(), 0.0  # CPU time: what a busy machine does not inflate
        self.reached, self.history = None, []

    def train_s(self) -> float:
        return time.perf_counter() - self.start - self.eval_s

    def train_cpu_s(self) -> float:
        return time.process_time() - self.cpu_start - self.eval_cpu_s

    def wants_last_eval(self, step: int) -> bool:
        """A run that ended below the threshold is evaluated once more at its last step (not the
        throughput runs, which never evaluate)."""
        return ((self.reached is None or NO_STOP) and self.eval_every < 10**9
                and (not self.history or self.history[-1][0] != step))

    def maybe_eval(self, step: int, force: bool = False) -> bool:
        """Evaluate if due; True once the threshold is reached (stop)."""
        if step < self.next_eval and not force:
            return False
        self.next_eval = (step // self.eval_every + 1) * self.eval_every
        t, c = time.perf_counter(), time.process_time()
        train_s = self.train_s()
        returns = self.evaluate(self.act, self.env_id, 20, seed=10_000, obs_stats=self.obs_stats())
        self.eval_s += time.perf_counter() - t
        self.eval_cpu_s += time.process_time() - c
        mean = float(np.mean(returns))
        self.history.append((step, round(train_s, 2), mean))
        if VERBOSE:
            print(f"  eval at {step} steps, {train_s:.0f} s: {mean:.1f}", flush=True)
        if mean >= self.threshold and self.reached is None:
            self.reached = (step, train_s)
        return self.reached is not None and not NO_STOP


def our_config(algo: str, env_id: str, seed: int, overrides: list[str], budget: int | None):
    from zoo.rl.hyperparams import default_hyperparams
    from zoo.rl.train import _algorithm, _parse_hp

    Algo, Config = _algorithm(algo)
    fields = {**default_hyperparams(algo, env_id), **_parse_hp(Config, overrides), "env_id": env_id, "seed": seed}
    if budget:
        fields["total_timesteps"] = budget
    return Algo, Config(**fields)


def run_ours(algo: str, env_id: str, seed: int, eval_every: int, budget: int | None = None,
             overrides: list[str] = ()) -> dict:
    from zoo.rl.common import merged_obs_stats

    Algo, cfg = our_config(algo, env_id, seed, list(overrides), budget)
    agent = Algo(cfg)
    clock = Clock(eval_every, agent.act, env_id, THRESHOLDS.get(env_id, float("inf")),
                  obs_stats=lambda: merged_obs_stats(agent.envs))
    kwargs = {"every": 100} if algo == "dqn" else {}
    agent.learn(callback=lambda a, s: clock.maybe_eval(a.global_step), **kwargs)
    if clock.wants_last_eval(agent.global_step):
        clock.maybe_eval(agent.global_step, force=True)  # the run's last evaluation
    agent.envs.close()
    return _result(clock, agent.global_step)


def _schedule(value):
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


def run_sb3(algo: str, env_id: str, seed: int, eval_every: int, budget: int | None = None) -> dict:
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    hp = dict(RL_ZOO[(algo, env_id)])
    n_timesteps = budget or hp.pop("n_timesteps")
    hp.pop("n_timesteps", None)
    normalize = hp.pop("normalize", False)
    net_arch = hp.pop("net_arch", None)
    hp = {k: _schedule(v) for k, v in hp.items()}
    kwargs = dict(seed=seed, device="cpu", **({"policy_kwargs": {"net_arch": net_arch}} if net_arch else {}))
    if algo == "ppo":
        env = make_vec_env(env_id, n_envs=hp.pop("n_envs"), seed=seed)
        if normalize:
            env = VecNormalize(env, gamma=hp["gamma"])
        model = PPO("MlpPolicy", env, **hp, **kwargs)
    else:
        model = DQN("MlpPolicy", make_vec_env(env_id, n_envs=1, seed=seed), **hp, **kwargs)

    def act(obs):
        if normalize:
            obs = model.get_env().normalize_obs(obs)
        return model.predict(obs, deterministic=True)[0]

    clock = Clock(eval_every, act, env_id, THRESHOLDS.get(env_id, float("inf")))

    class Stop(BaseCallback):
        def _on_step(self) -> bool:
            return not clock.maybe_eval(self.num_timesteps)

    model.learn(n_timesteps, callback=Stop())
    if clock.wants_last_eval(model.num_timesteps):
        clock.maybe_eval(model.num_timesteps, force=True)
    return _result(clock, model.num_timesteps)


def _result(clock: Clock, steps: int) -> dict:
    train_s, cpu_s = clock.train_s(), clock.train_cpu_s()
    return {"reached_step": clock.reached[0] if clock.reached else None,
            "reached_s": round(clock.reached[1], 2) if clock.reached else None,
            "final_eval": clock.history[-1][2] if clock.history else float("nan"), "steps": steps,
            "train_s": round(train_s, 2), "steps_per_s": round(steps / train_s, 1), "cpu_s": round(cpu_s, 2),
            "steps_per_cpu_s": round(steps / cpu_s, 1), "history": clock.history}


def _mean_std(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "never"
    if len(values) == 1:
        return f"{values[0]:.0f}"
    return f"{statistics.mean(values):.0f} +- {statistics.pstdev(values):.0f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="CartPole-v1", choices=sorted({env for _, env in RL_ZOO}))
    p.add_argument("--algos", nargs="+", default=["ppo", "dqn"], choices=["ppo", "dqn"])
    p.add_argument("--libs", nargs="+", default=["ours", "sb3"], choices=["ours", "sb3"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seed-start", type=int, default=0, help="seeds seed-start .. seed-start + seeds - 1")
    p.add_argument("--hp", action="append", default=[], metavar="FIELD=VALUE",
                   help="a field of our algorithm's config (ours only), e.g. --hp double_dqn=true")
    p.add_argument("--budget-steps", type=int, default=None, help="step budget of a run (default: rl-zoo's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=None,
                   help="default: 2048 (PPO), 2500 (DQN) on CartPole-v1, 10000 elsewhere")
    p.add_argument("--throughput-seeds", type=int, default=2,
                   help="runs per library of the fixed-budget throughput phase (no evaluation; 0: none)")
    p.add_argument("--budget", type=int, nargs=2, default=[16384, 6000], metavar=("PPO", "DQN"),
                   help="environment steps of the throughput phase (DQN: 1000 warm-up steps included)")
    p.add_argument("--skip-threshold", action="store_true", help="only the throughput phase")
    p.add_argument("--out", default="/tmp/rl_vs_sb3.json")
    p.add_argument("--verbose", action="store_true", help="print every evaluation")
    p.add_argument("--no-stop", action="store_true",
                   help="do not stop at the threshold: train the whole budget and report its last evaluation")
    args = p.parse_args(argv)
    global VERBOSE, NO_STOP
    VERBOSE, NO_STOP = args.verbose, args.no_stop
    torch.set_num_threads(args.threads)
    env_id = args.env
    print(f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
          f"{env_id}; ours {' '.join(args.hp) or 'rl-zoo hyper-parameters'}", flush=True)
    libs = {"ours": lambda algo, seed, every, budget: run_ours(algo, env_id, seed, every, budget, args.hp),
            "sb3": lambda algo, seed, every, budget: run_sb3(algo, env_id, seed, every, budget)}
    libs = {k: v for k, v in libs.items() if k in args.libs}
    results = {}
    for algo in args.algos:
        if (algo, env_id) not in RL_ZOO:
            print(f"no rl-zoo entry for {algo} on {env_id} here; skipped")
            continue
        every = args.eval_every or ((2048 if algo == "ppo" else 2500) if env_id == "CartPole-v1" else 10_000)
        rows = {lib: [] for lib in libs}
        seeds = range(args.seed_start, args.seed_start + (0 if args.skip_threshold else args.seeds))
        for seed in seeds:
            for lib, fn in libs.items():
                r = fn(algo, seed, every, args.budget_steps)
                rows[lib].append(r)
                print(f"{algo} seed {seed} {lib:4s}: reached {r['reached_step']} steps / {r['reached_s']} s, final "
                      f"eval {r['final_eval']:.1f}, {r['steps']} steps in {r['train_s']} s "
                      f"({r['steps_per_s']} steps/s)", flush=True)
        results[algo] = rows
        threshold = THRESHOLDS[env_id]
        print(f"\n{algo.upper()} on {env_id}, seeds {list(seeds)}, eval every {every} steps (20 episodes, "
              f"deterministic); ours: {' '.join(args.hp) or 'rl-zoo hyper-parameters'}")
        print(f"{'':6s} {'reached':>8s} {f'steps to {threshold:g}':>16s} {f'train s to {threshold:g}':>16s} "
              f"{'final eval':>14s} {'steps/s':>14s}")
        for lib, rs in rows.items():
            if not rs:
                continue
            hit = sum(r["reached_step"] is not None for r in rs)
            print(f"{lib:6s} {hit}/{len(rs):<6d} {_mean_std([r['reached_step'] for r in rs]):>16s} "
                  f"{_mean_std([r['reached_s'] for r in rs]):>16s} {_mean_std([r['final_eval'] for r in rs]):>14s} "
                  f"{_mean_std([r['steps_per_s'] for r in rs]):>14s}")
        if len(libs) == 2 and rows["ours"]:
            ratio = statistics.mean(r["steps_per_s"] for r in rows["ours"]) / statistics.mean(
                r["steps_per_s"] for r in rows["sb3"])
            print(f"steps/s ratio ours / SB3 over the runs above: {ratio:.2f}x\n", flush=True)
        if args.throughput_seeds < 1 or len(libs) < 2:
            continue
        # throughput: the same fixed budget for both, no evaluation, interleaved
        budget = args.budget[0 if algo == "ppo" else 1]
        speed, cpu_speed = {"ours": [], "sb3": []}, {"ours": [], "sb3": []}
        for fn in libs.values():  # warm-up: the first run in a process pays one-time initialisation
            fn(algo, 99, 10**9, 1536 if algo == "dqn" else 512)
        for seed in range(args.throughput_seeds):
            for lib, fn in libs.items():
                r = fn(algo, 100 + seed, 10**9, budget)
                speed[lib].append(r["steps_per_s"])
                cpu_speed[lib].append(r["steps_per_cpu_s"])
                print(f"{algo} throughput seed {100 + seed} {lib:4s}: {r['steps']} steps in {r['train_s']} s "
                      f"({r['steps_per_s']} steps/s; {r['cpu_s']} s of CPU, {r['steps_per_cpu_s']} steps/CPU-s)",
                      flush=True)
        results[algo + "_throughput"] = speed
        results[algo + "_throughput_cpu"] = cpu_speed
        ours, theirs = statistics.mean(speed["ours"]), statistics.mean(speed["sb3"])
        ratios = [o / t for o, t in zip(speed["ours"], speed["sb3"])]
        print(f"{algo.upper()} throughput over {budget} steps: ours {ours:.0f}, SB3 {theirs:.0f} steps/s, "
              f"ratio {ours / theirs:.2f}x (per pair {min(ratios):.2f}x..{max(ratios):.2f}x, median "
              f"{statistics.median(ratios):.2f}x)", flush=True)
        cpu_ratios = [o / t for o, t in zip(cpu_speed["ours"], cpu_speed["sb3"])]
        ours, theirs = statistics.mean(cpu_speed["ours"]), statistics.mean(cpu_speed["sb3"])
        print(f"{algo.upper()} per CPU second: ours {ours:.0f}, SB3 {theirs:.0f} steps/CPU-s, ratio {ours / theirs:.2f}x "
              f"(per pair {min(cpu_ratios):.2f}x..{max(cpu_ratios):.2f}x)\n", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
