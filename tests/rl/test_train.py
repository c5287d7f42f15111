"""The recipe: a short run per algorithm (metrics.csv, curves.png, last.pt, the saved policy and its
evaluation), --resume, --seeds, --record, and the errors a user can run into."""

import csv
import json

import pytest
import torch

import zoo
from zoo.rl import evaluate as rl_eval
from zoo.rl import train
from zoo.shared.errors import InvalidConfigError


def _run(tmp_path, *extra):
    args = train.build_parser().parse_args(["--output-dir", str(tmp_path / "out"), "--no-progress", *extra])
    return train.run(args)


@pytest.mark.parametrize("algo, env, extra", [
    ("ppo", "CartPole-v1", ["--hp", "num_steps=16", "--hp", "num_envs=4", "--hp", "update_epochs=2"]),
    ("a2c", "Pendulum-v1", ["--hp", "normalize_obs=true", "--hp", "normalize_reward=true"]),
    ("dqn", "CartPole-v1", ["--hp", "learning_starts=100", "--hp", "train_freq=50", "--hp", "gradient_steps=2",
                            "--hp", "net_arch=16,16", "--hp", "n_step=3", "--hp", "double_dqn=true"]),
])
def test_recipe_smoke_run_writes_its_outputs_and_the_policy_plays_back(tmp_path, algo, env, extra):
    s = _run(tmp_path, "--algo", algo, "--env", env, "--total-steps", "400", "--eval-every", "200",
             "--eval-episodes", "2", *extra)
    run = s["runs"][0]
    out = tmp_path / "out" / "seed0"
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [200, 400] or len(rows) == 2
    assert (out / "curves.png").stat().st_size > 0 and (out / "last.pt").is_file()
    policy = zoo.from_pretrained(run["policy_dir"])
    assert policy.zoo_name == ("dqn_mlp" if algo == "dqn" else "ppo_mlp")
    if algo == "a2c":
        assert (out / "policy" / rl_eval.NORMALIZATION_FILE).is_file()
    # the saved policy (with its normalisation) plays back to the recipe's last evaluation
    again = rl_eval.run(rl_eval.build_parser().parse_args(
        ["--pretrained", run["policy_dir"], "--env", env, "--episodes", "2", "--seed", "10000"]))
    assert again["mean"] == pytest.approx(run["eval_mean"])
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["algo"] == algo


def test_recipe_resume_continues_to_the_same_policy(tmp_path):
    common = ["--algo", "ppo", "--env", "CartPole-v1", "--eval-every", "256", "--eval-episodes", "1",
              "--hp", "num_envs=2", "--hp", "num_steps=32", "--hp", "update_epochs=1", "--hp", "batch_size=32"]
    straight = _run(tmp_path / "a", *common, "--total-steps", "512")
    _run(tmp_path / "b", *common, "--total-steps", "512", "--hp", "total_timesteps=512", "--stop-at-target",
         "--target", "-1")  # stops after the first evaluation (256 steps) with last.pt written
    resumed = _run(tmp_path / "b", *common, "--total-steps", "512", "--resume")
    a = zoo.from_pretrained(straight["runs"][0]["policy_dir"]).state_dict()
    b = zoo.from_pretrained(resumed["runs"][0]["policy_dir"]).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = list(csv.DictReader(open(tmp_path / "b" / "out" / "seed0" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [256, 512]


def test_recipe_seeds_and_record(tmp_path):
    s = _run(tmp_path, "--algo", "ppo", "--env", "CartPole-v1", "--total-steps", "256", "--eval-every", "256",
             "--eval-episodes", "1", "--seeds", "2", "--record", "--target", "1000")
    assert [r["seed"] for r in s["runs"]] == [0, 1] and s["reached"] == "0/2"
    gif = tmp_path / "out" / "seed1" / "eval.gif"
    assert gif.is_file() and gif.read_bytes()[:3] == b"GIF"


def test_unknown_environment_names_close_ids(tmp_path):
    with pytest.raises(InvalidConfigError, match="CartPole-v1"):
        _run(tmp_path, "--env", "CartPole-v2")


def test_dqn_on_continuous_actions_is_refused(tmp_path):
    with pytest.raises(InvalidConfigError, match="DQN needs a discrete action space"):
        _run(tmp_path, "--algo", "dqn", "--env", "Pendulum-v1", "--total-steps", "10")
    with pytest.raises(InvalidConfigError, match="discrete action space"):
        zoo.create("dqn_mlp", env="MountainCarContinuous-v0")


def test_observations_the_network_cannot_take_are_refused():
    import gymnasium as gym

    with pytest.raises(InvalidConfigError, match="Nature CNN takes stacked square frames"):
        zoo.create("ppo_nature_cnn", env="CartPole-v1")
    with pytest.raises(InvalidConfigError, match="flat observation vectors"):
        zoo.create("dqn_mlp", observation_space=gym.spaces.Box(0, 255, (4, 84, 84)),
                   action_space=gym.spaces.Discrete(3))
    with pytest.raises(InvalidConfigError, match="Box observations"):
        zoo.create("ppo_mlp", env="FrozenLake-v1")


def test_model_and_algo_must_agree(tmp_path):
    with pytest.raises(InvalidConfigError, match="trained by dqn"):
        _run(tmp_path, "--model", "dqn_mlp", "--algo", "ppo")
    with pytest.raises(InvalidConfigError, match="did you mean"):
        _run(tmp_path, "--model", "ppo_mpl")


def test_bad_hyper_parameter_names_and_values(tmp_path):
    with pytest.raises(InvalidConfigError, match="did you mean gae_lambda"):
        _run(tmp_path, "--algo", "ppo", "--hp", "gae_lamda=0.9")
    with pytest.raises(InvalidConfigError, match="not a valid"):
        _run(tmp_path, "--algo", "ppo", "--hp", "normalize_obs=maybe")


def test_resume_of_another_run_is_refused(tmp_path):
    _run(tmp_path, "--algo", "a2c", "--env", "CartPole-v1", "--total-steps", "80", "--eval-every", "80",
         "--eval-episodes", "1")
    with pytest.raises(InvalidConfigError, match="a2c run on CartPole-v1"):
        _run(tmp_path, "--algo", "ppo", "--env", "CartPole-v1", "--total-steps", "80", "--resume")


def test_observation_shape_errors_name_the_expected_shape():
    from zoo.shared.errors import InputError

    policy = zoo.create("ppo_mlp", env="CartPole-v1")
    with pytest.raises(InputError, match=r"\(batch, 4\)"):
        policy(torch.zeros(2, 3))


def test_evaluate_checks_the_policy_name(tmp_path):
    policy = zoo.create("dqn_mlp", env="CartPole-v1", net_arch=(8,))
    zoo.save_pretrained(policy, tmp_path / "p")
    args = ["--pretrained", str(tmp_path / "p"), "--env", "CartPole-v1", "--episodes", "2"]
    for name in ("dqn", "dqn_mlp"):
        assert rl_eval.run(rl_eval.build_parser().parse_args([*args, "--model", name]))["episodes"] == 2
    with pytest.raises(InvalidConfigError, match="holds a dqn_mlp policy, not ppo"):
        rl_eval.run(rl_eval.build_parser().parse_args([*args, "--model", "ppo"]))
    with pytest.raises(InvalidConfigError, match="episodes"):
        rl_eval.run(rl_eval.build_parser().parse_args([*args[:-1], "0"]))
