"""RL domain: DQN, PPO and A2C on gymnasium, each readable top to bottom, and their policies.

Importing the package registers ``ppo_mlp``, ``ppo_nature_cnn``, ``dqn_mlp`` and ``dqn_nature_cnn``
(:mod:`zoo.rl.policies`). The algorithms live in :mod:`zoo.rl.dqn`, :mod:`zoo.rl.ppo` and
:mod:`zoo.rl.a2c`, their shared pieces (GAE, n-step returns, replay buffer, schedules, vector envs)
in :mod:`zoo.rl.common`, rl-baselines3-zoo's hyper-parameters per environment in
:mod:`zoo.rl.hyperparams`; the recipe is ``python -m zoo.rl.train``. gymnasium is imported only when
a policy is built from an environment or an algorithm runs.
"""

from . import policies  # noqa: F401  (register the policies)
from .policies import ActorCritic, NatureCNN, QNetwork

__all__ = ["ActorCritic", "NatureCNN", "QNetwork"]
