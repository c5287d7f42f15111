"""GAE, n-step returns, the PPO loss, the replay buffer and the schedules against hand computations."""

import math

import numpy as np
import pytest
import torch

from zoo.rl.common import NStep, ReplayBuffer, gae, linear_schedule
from zoo.rl.ppo import ppo_loss
from zoo.shared.errors import InvalidConfigError


def test_gae_with_a_termination_and_a_truncation_inside_the_rollout():
    # one env, 4 steps, gamma 0.5, lambda 0.5. Episode A: steps 0-1, truncated after step 1 (V(final) = 8);
    # episode B: steps 2-3, terminated after step 2; step 3 starts episode C, bootstrap V = 6 after it.
    r = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    v = torch.tensor([[10.0], [20.0], [30.0], [40.0]])
    next_v = torch.tensor([[20.0], [8.0], [999.0], [6.0]])  # 999: after a termination, never read
    term = torch.tensor([[0.0], [0.0], [1.0], [0.0]])
    ended = torch.tensor([[0.0], [1.0], [1.0], [0.0]])
    adv, ret = gae(r, v, next_v, term, ended, gamma=0.5, lam=0.5)
    # deltas: 1 + .5*20 - 10 = 1;  2 + .5*8 - 20 = -14;  3 - 30 = -27;  4 + .5*6 - 40 = -33
    # A3 = -33; A2 = -27 (ended); A1 = -14 (ended); A0 = 1 + .25 * (-14) = -2.5
    torch.testing.assert_close(adv[:, 0], torch.tensor([-2.5, -14.0, -27.0, -33.0]))
    torch.testing.assert_close(ret, adv + v)


def test_gae_with_lambda_one_is_the_discounted_return_minus_the_value():
    r = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
    v = torch.tensor([[0.5, 0.1], [0.2, 0.3], [0.7, 0.4]])
    next_v = torch.cat([v[1:], torch.tensor([[2.0, 3.0]])])
    zeros = torch.zeros_like(r)
    _, ret = gae(r, v, next_v, zeros, zeros, gamma=0.9, lam=1.0)
    expected0 = torch.tensor([1 + 0.9 + 0.81 + 0.729 * 2.0, 0 + 0.9 + 0.81 * 2 + 0.729 * 3.0])
    torch.testing.assert_close(ret[0], expected0)


def test_nstep_returns_with_a_termination_and_a_truncation():
    ns = NStep(num_envs=1, n=3, gamma=0.5)
    out = []
    # episode 1: rewards 1, 2, 4, 8 then terminated; episode 2: reward 16 then truncated
    steps = [(1, False, False), (2, False, False), (4, False, False), (8, True, False), (16, False, True)]
    for t, (rew, term, trunc) in enumerate(steps):
        out += ns.push(np.array([[t]]), np.array([t]), np.array([rew]), np.array([[t + 100]]), [term], [trunc])
    got = [(int(o[0]), g, int(nxt[0]), d) for o, _, g, nxt, d in out]
    assert got == [
        (0, 1 + 0.5 * 2 + 0.25 * 4, 102, 0.125),  # a full window: bootstrap gamma^3 from s_3
        (1, 2 + 0.5 * 4 + 0.25 * 8, 103, 0.0),  # ends in the termination: no bootstrap
        (2, 4 + 0.5 * 8, 103, 0.0),
        (3, 8.0, 103, 0.0),
        (4, 16.0, 104, 0.5),  # truncated: bootstrap gamma^1 from the final observation
    ]


def test_nstep_refuses_n_below_one():
    with pytest.raises(InvalidConfigError, match="n >= 1"):
        NStep(1, 0, 0.9)


def test_ppo_loss_terms_against_a_hand_computation():
    new_lp = torch.tensor([math.log(0.5), math.log(0.9), math.log(0.1)])
    old_lp = torch.tensor([math.log(0.25), math.log(0.9), math.log(0.2)])
    adv = torch.tensor([1.0, -1.0, 2.0])
    new_v, old_v, ret = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([0.0, 2.0, 0.5]), torch.tensor([2.0, 2.0, 1.0])
    ent = torch.tensor([0.3, 0.6, 0.9])
    loss, s = ppo_loss(new_lp, old_lp, adv, new_v, old_v, ret, ent, clip_coef=0.2, clip_vloss=0.25, ent_coef=0.1,
                       vf_coef=0.5, norm_adv=False)
    # ratios 2, 1, 0.5. sample 0: max(-1*2, -1*1.2) = -1.2; sample 1: max(1, 1) = 1; sample 2: max(-1, -2*0.8) = -1
    assert s["pg_loss"].item() == pytest.approx((-1.2 + 1 - 1) / 3)
    # value: unclipped (1-2)^2 = 1, clipped V = 0 + 0.25 -> (0.25-2)^2 = 3.0625 -> 3.0625;
    # sample 1: 0, 0; sample 2: unclipped 1, clipped 0.25 -> (0.25-1)^2 = 0.5625 -> 1
    assert s["v_loss"].item() == pytest.approx((3.0625 + 0 + 1) / 3)
    assert s["entropy"].item() == pytest.approx(0.6)
    assert loss.item() == pytest.approx(s["pg_loss"].item() - 0.1 * 0.6 + 0.5 * s["v_loss"].item())
    assert s["clip_frac"].item() == pytest.approx(2 / 3)
    # approx KL: mean((r - 1) - log r) over r = 2, 1, 0.5
    assert s["approx_kl"].item() == pytest.approx(((1 - math.log(2)) + 0 + (-0.5 + math.log(2))) / 3)
    # without value clipping: mean squared error
    _, s2 = ppo_loss(new_lp, old_lp, adv, new_v, old_v, ret, ent, clip_coef=0.2, clip_vloss=None, ent_coef=0.0,
                     vf_coef=0.5, norm_adv=False)
    assert s2["v_loss"].item() == pytest.approx((1 + 0 + 1) / 3)


def test_ppo_loss_normalises_advantages():
    lp = torch.zeros(4)
    adv = torch.tensor([1.0, 2.0, 3.0, 4.0])
    _, s = ppo_loss(lp, lp, adv, torch.zeros(4), torch.zeros(4), torch.zeros(4), torch.zeros(4), clip_coef=0.2,
                    clip_vloss=None, ent_coef=0.0, vf_coef=0.5, norm_adv=True)
    assert abs(s["pg_loss"].item()) < 1e-6  # ratio 1: -mean(normalised A) = 0


def test_replay_buffer_wraps_around_and_samples_only_what_it_holds():
    rb = ReplayBuffer(3, obs_shape=(2,), obs_dtype=np.float32, seed=0)
    for i in range(5):
        rb.add(np.array([i, -i]), i, float(i), np.array([i + 1, 0]), 0.9)
    assert len(rb) == 3 and rb.pos == 2
    assert rb.actions.tolist() == [3, 4, 2]  # 3 and 4 overwrote 0 and 1
    seen = set()
    for _ in range(20):
        b = rb.sample(8)
        assert b["obs"].shape == (8, 2) and b["actions"].dtype == torch.int64 and b["obs"].device.type == "cpu"
        torch.testing.assert_close(b["obs"][:, 0], b["returns"])  # rows stay aligned
        torch.testing.assert_close(b["next_obs"][:, 0], b["returns"] + 1)
        seen |= set(b["actions"].tolist())
    assert seen == {2, 3, 4}


def test_replay_buffer_state_round_trip_continues_the_same_samples():
    a = ReplayBuffer(4, obs_shape=(1,), obs_dtype=np.float32, seed=3)
    for i in range(6):
        a.add(np.array([i]), i, float(i), np.array([i]), 1.0)
    a.sample(5)
    b = ReplayBuffer(4, obs_shape=(1,), obs_dtype=np.float32, seed=99)
    b.load_state_dict(a.state_dict())
    assert (b.pos, b.size) == (a.pos, a.size)
    x, y = a.sample(7), b.sample(7)
    assert all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_replay_buffer_samples_onto_the_device():
    rb = ReplayBuffer(2, obs_shape=(1,), obs_dtype=np.float32, device="cuda")
    rb.add(np.array([1.0]), 0, 0.0, np.array([1.0]), 1.0)
    assert rb.sample(2)["obs"].device.type == "cuda"


def test_replay_buffer_refuses_a_smaller_capacity_on_resume():
    a = ReplayBuffer(4, obs_shape=(1,), obs_dtype=np.float32)
    for i in range(4):
        a.add(np.array([i]), i, 0.0, np.array([i]), 1.0)
    with pytest.raises(InvalidConfigError, match="capacity"):
        ReplayBuffer(2, obs_shape=(1,), obs_dtype=np.float32).load_state_dict(a.state_dict())


def test_linear_schedule():
    eps = linear_schedule(1.0, 0.1, 100)
    assert [eps(0), eps(50), eps(100), eps(1000)] == pytest.approx([1.0, 0.55, 0.1, 0.1])
    assert linear_schedule(1.0, 0.05, 0)(0) == 0.05
