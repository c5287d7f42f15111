"""Noise schedules and samplers: every step equals diffusers' DDPMScheduler / DDIMScheduler step."""

import pytest
import torch

from zoo.generative.diffusion import (
    DDIMSampler,
    DDPMSampler,
    NoiseSchedule,
    ScheduleConfig,
    generate,
    inference_timesteps,
)
from zoo.shared.errors import InputError, InvalidConfigError

diffusers = pytest.importorskip("diffusers")

SCHEDULES = [("linear", "epsilon"), ("linear", "v_prediction"), ("cosine", "epsilon"), ("cosine", "v_prediction")]


def _ours_and_theirs(schedule: str, prediction: str, kind: str, T: int = 1000):
    ours = NoiseSchedule(ScheduleConfig(num_train_timesteps=T, beta_schedule=schedule, prediction_type=prediction))
    cls = diffusers.DDPMScheduler if kind == "ddpm" else diffusers.DDIMScheduler
    theirs = cls.from_config(ours.to_diffusers())
    return ours, theirs


@pytest.mark.parametrize("schedule,prediction", SCHEDULES)
def test_betas_and_alphas_cumprod_equal_diffusers(schedule, prediction):
    ours, theirs = _ours_and_theirs(schedule, prediction, "ddpm")
    torch.testing.assert_close(ours.betas, theirs.betas, rtol=0, atol=0)
    torch.testing.assert_close(ours.alphas_cumprod, theirs.alphas_cumprod, rtol=0, atol=0)


@pytest.mark.parametrize("schedule,prediction", SCHEDULES)
def test_add_noise_and_v_target_equal_diffusers(schedule, prediction):
    ours, theirs = _ours_and_theirs(schedule, prediction, "ddpm")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(5, 3, 8, 8, generator=g), torch.randn(5, 3, 8, 8, generator=g)
    t = torch.tensor([0, 1, 500, 998, 999])
    torch.testing.assert_close(ours.add_noise(x0, noise, t), theirs.add_noise(x0, noise, t), rtol=0, atol=1e-6)
    expected = noise if prediction == "epsilon" else theirs.get_velocity(x0, noise, t)
    torch.testing.assert_close(ours.target(x0, noise, t), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("steps", [None, 10])
@pytest.mark.parametrize("schedule,prediction", SCHEDULES)
def test_ddpm_step_equals_diffusers(schedule, prediction, steps):
    ours, theirs = _ours_and_theirs(schedule, prediction, "ddpm")
    sampler = DDPMSampler(ours, steps)
    if steps:
        theirs.set_timesteps(steps)
    assert sampler.timesteps == theirs.timesteps.tolist()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 8, generator=g)
    for t in sampler.timesteps[:3] + sampler.timesteps[len(sampler.timesteps) // 2:][:2] + sampler.timesteps[-3:]:
        out, noise = torch.randn(x.shape, generator=g) * 1.5, torch.randn(x.shape, generator=g)
        expected = theirs.step(out, t, x, generator=torch.Generator().manual_seed(t)).prev_sample
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(t))  # the noise diffusers drew
        got = sampler.step(out, t, x, z if t > 0 else None)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("steps", [1, 7, 50, 1000])
@pytest.mark.parametrize("schedule,prediction", SCHEDULES)
def test_ddim_step_equals_diffusers(schedule, prediction, steps, eta):
    ours, theirs = _ours_and_theirs(schedule, prediction, "ddim")
    sampler = DDIMSampler(ours, steps, eta)
    theirs.set_timesteps(steps)
    assert sampler.timesteps == theirs.timesteps.tolist()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 8, 8, generator=g)
    chosen = sorted(set(sampler.timesteps[:3] + sampler.timesteps[-3:]), reverse=True)
    for t in chosen:
        out, noise = torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g)
        expected = theirs.step(out, t, x, eta=eta, variance_noise=noise if eta > 0 else None).prev_sample
        torch.testing.assert_close(sampler.step(out, t, x, noise), expected, rtol=0, atol=1e-6)
        x = expected


def test_a_whole_ddim_chain_equals_diffusers_loop():
    """Chained steps with a toy model: the error does not build up past 1e-6 per value."""
    ours, theirs = _ours_and_theirs("linear", "epsilon", "ddim")
    sampler = DDIMSampler(ours, 20, 0.0)
    theirs.set_timesteps(20)

    def model(x, t):
        return torch.tanh(x) * (t.float()[:, None, None, None] / 1000)

    x0 = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    ref = x0.clone()
    for t in theirs.timesteps:
        ref = theirs.step(model(ref, t.expand(2)), t, ref).prev_sample
    got = generate(model, ours, (2, 1, 4, 4), sampler="ddim", steps=20, x_T=x0)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_bad_step_counts_and_settings_are_refused():
    schedule = NoiseSchedule(ScheduleConfig(num_train_timesteps=100))
    with pytest.raises(InputError, match="more than the 100 steps"):
        DDIMSampler(schedule, 101)
    with pytest.raises(InputError, match="positive integer"):
        inference_timesteps(100, 0)
    with pytest.raises(InputError, match="eta"):
        DDIMSampler(schedule, 10, eta=1.5)
    with pytest.raises(InvalidConfigError, match="beta_schedule"):
        NoiseSchedule(ScheduleConfig(beta_schedule="quadratic"))
    with pytest.raises(InvalidConfigError, match="prediction_type"):
        NoiseSchedule(ScheduleConfig(prediction_type="sample"))
    with pytest.raises(InputError, match="at least 1"):
        generate(lambda x, t: x, schedule, (0, 1, 4, 4))


def test_schedule_config_round_trips_and_loads_in_diffusers(tmp_path):
    schedule = NoiseSchedule(ScheduleConfig(num_train_timesteps=200, beta_schedule="cosine",
                                            prediction_type="v_prediction"))
    schedule.save(tmp_path)
    again = NoiseSchedule.load(tmp_path)
    assert again.config == schedule.config
    theirs = diffusers.DDIMScheduler.from_pretrained(tmp_path)
    torch.testing.assert_close(theirs.alphas_cumprod, schedule.alphas_cumprod, rtol=0, atol=0)
    assert theirs.config.prediction_type == "v_prediction"
