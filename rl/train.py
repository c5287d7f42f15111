"""Train DQN, PPO or A2C on a gymnasium environment.

    python -m zoo.rl.train --algo ppo --env CartPole-v1
    python -m zoo.rl.train --algo dqn --env CartPole-v1 --seeds 5 --output-dir runs/dqn
    zoo train ppo_mlp --env Pendulum-v1 --hp normalize_obs=true --hp gamma=0.9 --record

Every ``--eval-every`` environment steps the policy plays ``--eval-episodes`` deterministic episodes
on a separate environment (seeded apart from training); ``metrics.csv`` and ``curves.png`` get a row,
``last.pt`` the whole run state (``--resume`` continues it exactly), ``policy/`` the policy
(``save_pretrained`` + ``normalization.json``; ``python -m zoo.rl.evaluate --pretrained DIR`` plays
it). ``--hp field=value`` sets any field of the algorithm's config dataclass; the defaults are
rl-baselines3-zoo's hyper-parameters for the environment (:mod:`zoo.rl.hyperparams`; an Atari id
also gets the Nature CNN and the Atari wrappers), else its CartPole-v1 ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import typing
from pathlib import Path

import numpy as np

ALGOS = ("ppo", "dqn", "a2c")
# registry name -> the algorithms that train it
POLICIES = {"ppo_mlp": ("ppo", "a2c"), "ppo_nature_cnn": ("ppo", "a2c"), "dqn_mlp": ("dqn",),
            "dqn_nature_cnn": ("dqn",)}


def _algorithm(algo: str):
    if algo == "ppo":
        from .ppo import PPO, PPOConfig
        return PPO, PPOConfig
    if algo == "a2c":
        from .a2c import A2C, A2CConfig
        return A2C, A2CConfig
    from .dqn import DQN, DQNConfig
    return DQN, DQNConfig


def _parse_hp(config_cls, items: list[str]) -> dict:
    """``["gamma=0.9", "net_arch=128,128", "target_kl=none"]`` -> typed values of the config's fields."""
    from zoo.shared.errors import InvalidConfigError

    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            import difflib

            close = difflib.get_close_matches(key, list(fields), n=3)
            raise InvalidConfigError(
                f"--hp {item!r}: expected field=value with a field of {config_cls.__name__}"
                + (f" (did you mean {', '.join(close)}?)" if close else f" ({', '.join(fields)})"))
        hint, text = hints[key], text.strip()
        try:
            if text.lower() == "none" and type(None) in typing.get_args(hint):
                value = None
            elif hint is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                value = text.lower() in ("true", "1")
            elif "tuple" in str(hint):
                value = tuple(int(x) for x in text.split(",") if x)
            elif hint in (int, float, str):
                value = hint(float(text)) if hint is int else hint(text)
            else:  # float | None and the like
                value = float(text)
        except ValueError:
            raise InvalidConfigError(f"--hp {item!r}: {text!r} is not a valid {hint}.") from None
        out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zoo.rl.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--algo", choices=ALGOS, default=None, help="default: from --model, else ppo")
    p.add_argument("--model", default=None,
                   help=f"the policy ({', '.join(POLICIES)}) or an algorithm ({', '.join(ALGOS)}); default from --algo "
                        "and the observation space")
    p.add_argument("--env", default="CartPole-v1", help="gymnasium id")
    p.add_argument("--total-steps", type=int, default=None, help="environment steps (default: the config's)")
    p.add_argument("--hp", action="append", default=[], metavar="FIELD=VALUE",
                   help="any field of the algorithm's config (repeatable), e.g. --hp gamma=0.99 --hp net_arch=64,64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="runs with seeds seed, seed+1, ...; mean +- std reported")
    p.add_argument("--eval-every", type=int, default=5000, help="environment steps between evaluations")
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--target", type=float, default=None,
                   help="report the steps and time to the first evaluation >= this (e.g. 475 on CartPole-v1)")
    p.add_argument("--stop-at-target", action="store_true", help="stop a run when --target is reached")
    p.add_argument("--output-dir", default="runs/rl",
                   help="one folder per seed: metrics.csv, curves.png, last.pt, policy/")
    p.add_argument("--resume", action="store_true", help="continue each seed's run from its last.pt")
    p.add_argument("--record", nargs="?", const="eval.gif", default=None,
                   help="write a GIF of one evaluation episode of the trained policy (file name in the seed folder)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    return p


def _resolve(args) -> tuple[str, str | None]:
    """(algorithm, registry name or None: pick by observation space) from --algo / --model."""
    from zoo.shared.errors import InvalidConfigError

    model = args.model
    if model in ALGOS:
        if args.algo not in (None, model):
            raise InvalidConfigError(f"--model {model} and --algo {args.algo} disagree; pass one of them.")
        return model, None
    if model is None:
        return args.algo or "ppo", None
    if model not in POLICIES:
        import difflib

        close = difflib.get_close_matches(model, [*POLICIES, *ALGOS], n=3)
        raise InvalidConfigError(f"--model {model!r} is not an RL policy or algorithm"
                                 + (f"; did you mean {', '.join(close)}?" if close else
                                    f"; choose from {', '.join([*POLICIES, *ALGOS])}."))
    algos = POLICIES[model]
    algo = args.algo or algos[0]
    if algo not in algos:
        raise InvalidConfigError(f"{model} is trained by {' or '.join(algos)}, not {algo}; "
                                 f"use {'dqn_mlp' if algo == 'dqn' else 'ppo_mlp'} with --algo {algo}.")
    return algo, model


class _Progress:
    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", unit_scale=True, leave=False, dynamic_ncols=True)

    def update(self, step: int, **postfix) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def make_config(args, algo_name: str, seed: int):
    """(algorithm class, its config): the table's row for the environment (:mod:`zoo.rl.hyperparams`),
    then ``--hp`` and ``--total-steps`` on top."""
    from .hyperparams import default_hyperparams

    Algo, Config = _algorithm(algo_name)
    overrides = {**default_hyperparams(algo_name, args.env), **_parse_hp(Config, args.hp)}
    if args.total_steps is not None:
        overrides["total_timesteps"] = args.total_steps
    return Algo, Config(**{**overrides, "env_id": args.env, "seed": seed, "device": args.device})


def train_one(args, algo_name: str, model_name: str | None, seed: int, out_dir: Path) -> dict:
    """One seed: build, (resume,) learn with periodic evaluation and checkpoints, save, record."""
    from zoo.shared.errors import InvalidConfigError
    from zoo.shared.factory import create
    from zoo.shared.training import RunLogger, load_checkpoint, plot_curves, save_checkpoint, seed_everything
    from zoo.shared.weights import save_pretrained

    from .common import make_env, merged_obs_stats
    from .evaluate import evaluate, record_gif, save_obs_stats
    from .policies import spaces_config

    Algo, cfg = make_config(args, algo_name, seed)
    env = make_env(args.env)
    policy_kind = "ppo" if algo_name in ("ppo", "a2c") else "dqn"
    spaces = spaces_config(env.observation_space, env.action_space, policy_kind)
    env.close()
    image = len(spaces["obs_shape"]) == 3
    name = model_name or f"{policy_kind}_{'nature_cnn' if image else 'mlp'}"
    if image != name.endswith("nature_cnn"):
        raise InvalidConfigError(
            f"{name} cannot take {args.env}'s observations of shape {spaces['obs_shape']}: use "
            f"{policy_kind}_{'nature_cnn' if image else 'mlp'}.")
    arch = {"net_arch": tuple(cfg.net_arch), "activation": cfg.activation}
    if policy_kind == "ppo":
        arch.update(shared_trunk=cfg.shared_trunk, log_std_init=cfg.log_std_init, squash=cfg.squash)
    else:
        arch.update(dueling=cfg.dueling)
    seed_everything(seed)  # the policy's initialisation is part of the seeded run
    policy = create(name, **spaces, **arch)
    algo = Algo(cfg, policy)

    out_dir.mkdir(parents=True, exist_ok=True)
    logger = RunLogger(out_dir, tensorboard=False, plot=False)  # curves.png once at the end: a plot costs seconds
    ckpt = out_dir / "last.pt"
    history, reached, wall_before = [], None, 0.0
    if args.resume and ckpt.is_file():
        state = load_checkpoint(ckpt)
        if state.get("algo") != algo_name or state["config"]["env_id"] != args.env:
            raise InvalidConfigError(f"{ckpt} is a {state.get('algo')} run on {state['config']['env_id']}, not "
                                     f"{algo_name} on {args.env}; use another --output-dir or drop --resume.")
        algo.load_state_dict(state["algo_state"])
        history, reached, wall_before = state["history"], state["reached"], state["wall_s"]
    logger.start(history)
    obs_stats = lambda: merged_obs_stats(algo.envs)  # noqa: E731
    bar = _Progress(cfg.total_timesteps, f"{algo_name} {args.env} seed {seed}", not args.no_progress)
    start = time.perf_counter()
    next_eval = (algo.global_step // args.eval_every + 1) * args.eval_every

    def on_progress(a, stats) -> bool:
        wall = wall_before + time.perf_counter() - start
        recent = a.recent_returns[-20:]
        train_return = float(np.mean(recent)) if recent else float("nan")
        bar.update(a.global_step, sps=f"{a.global_step / max(wall, 1e-9):.0f}", ret=f"{train_return:.1f}")
        if a.global_step < next_eval and a.global_step < cfg.total_timesteps:
            return False
        return evaluate_and_save(a, stats, wall, train_return)

    def evaluate_and_save(a, stats, wall, train_return) -> bool:
        nonlocal next_eval, reached
        next_eval = (a.global_step // args.eval_every + 1) * args.eval_every
        returns = evaluate(a.act, args.env, args.eval_episodes, seed=10_000 + 1000 * seed, obs_stats=obs_stats())
        record = {"step": a.global_step, "wall_s": round(wall, 3), "train/return": train_return,
                  "eval/return": float(np.mean(returns)), "eval/return_std": float(np.std(returns))}
        record.update({f"train/{k}": v for k, v in stats.items() if k in ("loss", "pg_loss", "v_loss", "entropy")})
        logger.log_record(record)
        if args.target is not None and reached is None and record["eval/return"] >= args.target:
            reached = {"step": a.global_step, "wall_s": wall}
        save_checkpoint(ckpt, {"format": 1, "algo": algo_name, "config": dataclasses.asdict(cfg),
                               "algo_state": a.state_dict(), "history": logger.history, "reached": reached,
                               "wall_s": wall})
        return bool(args.stop_at_target and reached is not None)

    try:
        if algo_name == "dqn":
            algo.learn(callback=on_progress, every=min(args.eval_every, 500))
        else:
            algo.learn(callback=on_progress)
        if not logger.history or logger.history[-1]["step"] != algo.global_step:  # the run's last evaluation
            recent = algo.recent_returns[-20:]
            evaluate_and_save(algo, {}, wall_before + time.perf_counter() - start,
                              float(np.mean(recent)) if recent else float("nan"))
    finally:
        bar.close()
        logger.close()
        if logger.history:
            plot_curves(logger.history, out_dir / "curves.png", x="step")
    wall = wall_before + time.perf_counter() - start
    policy_dir = out_dir / "policy"
    save_pretrained(algo.policy, policy_dir)
    save_obs_stats(policy_dir, obs_stats())
    last = logger.history[-1] if logger.history else {}
    result = {"seed": seed, "steps": algo.global_step, "wall_s": round(wall, 2),
              "steps_per_s": round(algo.global_step / max(wall, 1e-9), 1),
              "eval_mean": last.get("eval/return", float("nan")), "eval_std": last.get("eval/return_std", float("nan")),
              "reached": reached, "output_dir": str(out_dir), "policy_dir": str(policy_dir)}
    if args.record:
        from .evaluate import policy_actor

        result["gif"] = str(record_gif(policy_actor(algo.policy), args.env, out_dir / args.record,
                                       seed=10_000 + 1000 * seed, obs_stats=obs_stats()))
    algo.envs.close()
    return result


def run(args: argparse.Namespace) -> dict:
    from zoo.shared.errors import InvalidConfigError

    from .common import check_env_id

    check_env_id(args.env)
    for flag in ("seeds", "eval_every", "eval_episodes"):
        if getattr(args, flag) < 1:
            raise InvalidConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}.")
    if args.total_steps is not None and args.total_steps < 1:
        raise InvalidConfigError(f"--total-steps must be >= 1, got {args.total_steps}.")
    algo_name, model_name = _resolve(args)
    root = Path(args.output_dir)
    runs = [train_one(args, algo_name, model_name, args.seed + i, root / f"seed{args.seed + i}")
            for i in range(args.seeds)]
    finals = [r["eval_mean"] for r in runs]
    summary = {"algo": algo_name, "env": args.env, "runs": runs, "eval_mean": float(np.mean(finals)),
               "eval_std": float(np.std(finals))}
    if args.target is not None:
        hit = [r["reached"] for r in runs if r["reached"]]
        summary["reached"] = f"{len(hit)}/{len(runs)}"
        if hit:
            summary["steps_to_target"] = float(np.mean([h["step"] for h in hit]))
            summary["wall_to_target"] = float(np.mean([h["wall_s"] for h in hit]))
    root.mkdir(parents=True, exist_ok=True)
    (root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv=None) -> int:
    s = run(build_parser().parse_args(argv))
    for r in s["runs"]:
        hit = (f", reached target at {r['reached']['step']} steps / {r['reached']['wall_s']:.1f} s"
               if r["reached"] else "")
        print(f"seed {r['seed']}: eval return {r['eval_mean']:.2f} +- {r['eval_std']:.2f} after {r['steps']} steps, "
              f"{r['wall_s']:.1f} s ({r['steps_per_s']:.0f} steps/s){hit}; policy in {r['policy_dir']}")
    print(f"{s['algo']} on {s['env']}: final eval return {s['eval_mean']:.2f} +- {s['eval_std']:.2f} over "
          f"{len(s['runs'])} seed(s)" + (f"; target reached {s['reached']}" if "reached" in s else ""))
    return 0 if math.isfinite(s["eval_mean"]) else 1


if __name__ == "__main__":
    sys.exit(main())
