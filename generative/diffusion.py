"""Noise schedules and samplers of denoising diffusion.

Papers:
  Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models", 2020 (arXiv:2006.11239): the
  forward process q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), the epsilon-prediction loss and
  the ancestral sampler (Algorithm 2) with the posterior variance beta~_t.
  Song, Meng & Ermon, "Denoising Diffusion Implicit Models", 2021 (arXiv:2010.02502): the DDIM step
  (eq. 12) on a sub-sequence of the timesteps, sigma_t = eta * sqrt(beta~) (eta 0: deterministic).
  Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", 2021 (arXiv:2102.09672):
  the cosine schedule abar(t) = cos^2((t/T + s) / (1 + s) * pi / 2), betas capped at 0.999.
  Salimans & Ho, "Progressive Distillation", 2022 (arXiv:2202.00512): v-prediction,
  v = sqrt(abar) eps - sqrt(1 - abar) x_0.

With the same schedule, model output and noise each step equals diffusers' ``DDPMScheduler.step``
(variance "fixed_small") and ``DDIMScheduler.step`` (the "leading" timestep spacing,
``set_alpha_to_one``), and the schedule is described by the same ``scheduler_config.json`` keys.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import Tensor

from zoo.shared.atomic import atomic_open
from zoo.shared.errors import InputError, InvalidConfigError

BETA_SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "v_prediction")
SCHEDULER_CONFIG = "scheduler_config.json"
# diffusers' name of the cosine schedule (beta_schedule="squaredcos_cap_v2")
_DIFFUSERS_NAMES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM's schedule: betas evenly spaced from ``beta_start`` to ``beta_end``."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float32)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Improved DDPM's schedule: beta_t = 1 - abar(t+1) / abar(t) for abar(t) = cos^2((t/T + s)/(1 + s) pi/2),
    capped at ``max_beta`` so the last steps do not divide by zero."""
    def abar(t: float) -> float:
        return math.cos((t + s) / (1 + s) * math.pi / 2) ** 2

    return torch.tensor([min(1 - abar((i + 1) / num_steps) / abar(i / num_steps), max_beta)
                         for i in range(num_steps)], dtype=torch.float32)


@dataclass(frozen=True)
class ScheduleConfig:
    num_train_timesteps: int = 1000  # T
    beta_schedule: Literal["linear", "cosine"] = "linear"
    beta_start: float = 1e-4  # linear schedule only
    beta_end: float = 0.02
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"  # what the network predicts
    clip_sample: bool = True  # clamp the predicted x_0 to [-clip_sample_range, clip_sample_range]
    clip_sample_range: float = 1.0


class NoiseSchedule:
    """The forward process and what a network's prediction means, for one beta schedule.

    ``alphas_cumprod[t]`` is abar_t; ``add_noise`` draws x_t from x_0; ``target`` is what the network
    is trained to output (eps, or v); ``predict_x0`` / ``predict_eps`` read a prediction back."""

    def __init__(self, config: ScheduleConfig | None = None, **kwargs):
        config = config or ScheduleConfig(**kwargs)
        if config.beta_schedule not in BETA_SCHEDULES:
            raise InvalidConfigError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {config.beta_schedule!r}")
        if config.prediction_type not in PREDICTIONS:
            raise InvalidConfigError(f"prediction_type must be one of {PREDICTIONS}, got {config.prediction_type!r}")
        if config.num_train_timesteps < 1:
            raise InvalidConfigError(f"num_train_timesteps must be at least 1, got {config.num_train_timesteps}")
        self.config = config
        self.num_train_timesteps = config.num_train_timesteps
        if config.beta_schedule == "linear":
            self.betas = linear_betas(config.num_train_timesteps, config.beta_start, config.beta_end)
        else:
            self.betas = cosine_betas(config.num_train_timesteps)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    def _abar(self, t: Tensor, like: Tensor) -> Tensor:
        """abar_t for a batch of timesteps, shaped to broadcast over ``like``."""
        abar = self.alphas_cumprod.to(like.device)[t.to(like.device)].to(like.dtype)
        return abar.reshape(-1, *([1] * (like.dim() - 1)))

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
        abar = self._abar(t, x0)
        return abar ** 0.5 * x0 + (1 - abar) ** 0.5 * noise

    def target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """The regression target: eps, or v = sqrt(abar) eps - sqrt(1 - abar) x_0."""
        if self.config.prediction_type == "epsilon":
            return noise
        abar = self._abar(t, x0)
        return abar ** 0.5 * noise - (1 - abar) ** 0.5 * x0

    def predict_x0(self, model_output: Tensor, x_t: Tensor, abar: Tensor) -> Tensor:
        if self.config.prediction_type == "epsilon":
            return (x_t - (1 - abar) ** 0.5 * model_output) / abar ** 0.5
        return abar ** 0.5 * x_t - (1 - abar) ** 0.5 * model_output

    def predict_eps(self, model_output: Tensor, x_t: Tensor, abar: Tensor) -> Tensor:
        if self.config.prediction_type == "epsilon":
            return model_output
        return abar ** 0.5 * model_output + (1 - abar) ** 0.5 * x_t

    def clip(self, x0: Tensor) -> Tensor:
        r = self.config.clip_sample_range
        return x0.clamp(-r, r) if self.config.clip_sample else x0

    # -- saving ------------------------------------------------------------------------------
    def to_diffusers(self) -> dict:
        """The ``scheduler_config.json`` diffusers' DDPMScheduler / DDIMScheduler read."""
        cfg = asdict(self.config)
        return {**cfg, "beta_schedule": _DIFFUSERS_NAMES[cfg["beta_schedule"]], "variance_type": "fixed_small",
                "timestep_spacing": "leading", "steps_offset": 0, "set_alpha_to_one": True, "thresholding": False}

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / SCHEDULER_CONFIG
        with atomic_open(path) as f:
            f.write(json.dumps({"_class_name": "DDPMScheduler", **self.to_diffusers()}, indent=2).encode())
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "NoiseSchedule":
        """Read ``scheduler_config.json`` (ours, or a diffusers DDPM/DDIM scheduler's)."""
        path = Path(directory)
        path = path / SCHEDULER_CONFIG if path.is_dir() else path
        if not path.is_file():
            raise InvalidConfigError(f"no {SCHEDULER_CONFIG} in {path.parent}: a diffusion model is saved with its "
                                     "noise schedule; pass the directory the ddpm recipe wrote")
        raw = json.loads(path.read_text())
        names = {v: k for k, v in _DIFFUSERS_NAMES.items()}
        if raw.get("beta_schedule") not in names:
            raise InvalidConfigError(f"{path}: beta_schedule {raw.get('beta_schedule')!r} is not one of "
                                     f"{list(names)}")
        for key, value in (("variance_type", "fixed_small"), ("timestep_spacing", "leading"), ("steps_offset", 0),
                           ("thresholding", False), ("set_alpha_to_one", True)):
            if raw.get(key, value) != value:
                raise InvalidConfigError(f"{path}: {key}={raw[key]!r} is not supported (only {value!r})")
        fields = {k: raw[k] for k in ScheduleConfig.__dataclass_fields__ if k in raw}
        return cls(ScheduleConfig(**{**fields, "beta_schedule": names[raw["beta_schedule"]]}))


def inference_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """The "leading" sub-sequence: 0, T//n, 2T//n, ... in descending order (DDIM section 4.2)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"the number of sampling steps must be a positive integer, got {steps!r}")
    if steps > num_train_timesteps:
        raise InputError(f"{steps} sampling steps is more than the {num_train_timesteps} steps the model was trained "
                         f"with; use --steps {num_train_timesteps} or fewer")
    ratio = num_train_timesteps // steps
    return [i * ratio for i in reversed(range(steps))]


class DDPMSampler:
    """The ancestral sampler (DDPM Algorithm 2) on ``steps`` timesteps (all T by default):
    x_{t'} = c0 * x0_hat + ct * x_t + sqrt(beta~_t) z, with t' the next timestep, beta_t = 1 - abar_t / abar_t',
    beta~_t = (1 - abar_t') / (1 - abar_t) beta_t and z = 0 at the last step."""

    def __init__(self, schedule: NoiseSchedule, steps: int | None = None):
        self.schedule = schedule
        self.timesteps = inference_timesteps(schedule.num_train_timesteps, steps or schedule.num_train_timesteps)

    def previous(self, t: int) -> int:
        i = self.timesteps.index(t)
        return self.timesteps[i + 1] if i + 1 < len(self.timesteps) else -1

    def step(self, model_output: Tensor, t: int, x_t: Tensor, noise: Tensor | None = None) -> Tensor:
        s, prev = self.schedule, self.previous(t)
        abar = s.alphas_cumprod[t]
        abar_prev = s.alphas_cumprod[prev] if prev >= 0 else torch.tensor(1.0)
        alpha = abar / abar_prev
        beta = 1 - alpha
        x0 = s.clip(s.predict_x0(model_output, x_t, abar))
        # the posterior mean of q(x_{t'} | x_t, x_0), DDPM eq. 7
        mean = (abar_prev ** 0.5 * beta) / (1 - abar) * x0 + alpha ** 0.5 * (1 - abar_prev) / (1 - abar) * x_t
        if t == 0:
            return mean
        if noise is None:
            raise InputError("DDPMSampler.step needs the noise z for t > 0")
        variance = torch.clamp((1 - abar_prev) / (1 - abar) * beta, min=1e-20)
        return mean + variance ** 0.5 * noise


class DDIMSampler:
    """DDIM on ``steps`` evenly spaced timesteps: x_{t'} = sqrt(abar_t') x0_hat
    + sqrt(1 - abar_t' - sigma^2) eps_hat + sigma z, sigma = eta sqrt((1 - abar_t')/(1 - abar_t) (1 - abar_t/abar_t'));
    abar of the step after the last is 1."""

    def __init__(self, schedule: NoiseSchedule, steps: int = 50, eta: float = 0.0):
        if not 0.0 <= eta <= 1.0:
            raise InputError(f"DDIM eta must be in [0, 1] (0: deterministic, 1: DDPM-like), got {eta}")
        self.schedule, self.eta = schedule, eta
        self.timesteps = inference_timesteps(schedule.num_train_timesteps, steps)
        self.stride = schedule.num_train_timesteps // steps

    def step(self, model_output: Tensor, t: int, x_t: Tensor, noise: Tensor | None = None) -> Tensor:
        s, prev = self.schedule, t - self.stride
        abar = s.alphas_cumprod[t]
        abar_prev = s.alphas_cumprod[prev] if prev >= 0 else torch.tensor(1.0)
        x0 = s.clip(s.predict_x0(model_output, x_t, abar))
        eps = s.predict_eps(model_output, x_t, abar)
        sigma = self.eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)) ** 0.5
        x = abar_prev ** 0.5 * x0 + (1 - abar_prev - sigma ** 2) ** 0.5 * eps
        if self.eta > 0:
            if noise is None:
                raise InputError("DDIMSampler.step with eta > 0 needs the noise z")
            x = x + sigma * noise
        return x


@torch.no_grad()
def generate(model: Callable[[Tensor, Tensor], Tensor], schedule: NoiseSchedule, shape: tuple[int, ...], *,
             sampler: str = "ddim", steps: int | None = None, eta: float = 0.0, generator: torch.Generator | None = None,
             device: torch.device | str = "cpu", x_T: Tensor | None = None, progress: bool = False) -> Tensor:
    """Images in [-1, 1] from pure noise: ``sampler`` "ddpm" (ancestral; ``steps`` defaults to T) or
    "ddim" (``steps`` defaults to 50, ``eta``). ``x_T`` gives the starting noise; the step noise is
    drawn from ``generator``."""
    if sampler == "ddpm":
        runner = DDPMSampler(schedule, steps)
    elif sampler == "ddim":
        runner = DDIMSampler(schedule, steps or 50, eta)
    else:
        raise InvalidConfigError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
    if shape[0] < 1:
        raise InputError(f"the number of images to sample must be at least 1, got {shape[0]}")
    x = torch.randn(shape, generator=generator, device=device) if x_T is None else x_T.to(device)
    timesteps = runner.timesteps
    if progress:
        from tqdm.auto import tqdm

        timesteps = tqdm(timesteps, desc=f"{sampler} sampling", leave=False)
    for t in timesteps:
        out = model(x, torch.full((x.shape[0],), t, device=device, dtype=torch.long))
        noisy = sampler == "ddpm" and t > 0 or sampler == "ddim" and eta > 0
        noise = torch.randn(x.shape, generator=generator, device=device) if noisy else None
        x = runner.step(out, t, x, noise)
    return x
