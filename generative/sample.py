"""Draw a sample grid from a saved generator, VAE or diffusion model.

    python -m zoo.generative.sample --pretrained runs/generative/ddpm/model --n 64            # DDPM, all T steps
    python -m zoo.generative.sample --pretrained runs/generative/ddpm/model --n 64 --steps 50 # DDIM, 50 steps
    zoo sample dcgan_generator --pretrained runs/generative/dcgan/model --n 64 --out grid.png

The directory is one ``save_pretrained`` wrote (the recipes' ``OUTPUT_DIR/model``); a diffusion
model's also holds ``scheduler_config.json``. Without ``--steps`` a diffusion model samples with
the ancestral DDPM sampler over all its training steps; ``--steps N`` uses DDIM with N steps
(``--eta`` 0: deterministic). A GAN's or VAE's sample is one forward pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from zoo.shared.errors import InputError
from zoo.shared.factory import create, from_pretrained

from .data import to_pixels
from .dcgan import DCGANGenerator
from .diffusion import NoiseSchedule, generate
from .grid import save_grid
from .unet import UNet2D
from .vae import VAE

RECIPE_NAMES = {"dcgan": "dcgan_generator", "wgan_gp": "dcgan_generator", "vae": None, "ddpm": None}


@torch.no_grad()
def sample_images(model: torch.nn.Module, n: int, *, steps: int | None = None, eta: float = 0.0, seed: int = 0,
                  schedule: NoiseSchedule | None = None, device: str | torch.device = "cpu",
                  progress: bool = False) -> torch.Tensor:
    """``n`` images with pixels in [0, 1] from ``model`` (a DCGAN generator, a VAE or a U-Net with its
    ``schedule``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"the number of images to sample must be a positive integer, got {n!r}")
    g = torch.Generator().manual_seed(seed)
    model = model.to(device).eval()
    if isinstance(model, DCGANGenerator):
        return to_pixels(model(model.sample_noise(n, generator=g).to(device))).cpu()
    if isinstance(model, VAE):
        return model.mean_image(torch.randn(n, model.latent_dim, generator=g).to(device)).cpu()
    if isinstance(model, UNet2D):
        if schedule is None:
            raise InputError("a diffusion model samples with its noise schedule: pass schedule= (the "
                             "scheduler_config.json saved beside the model)")
        shape = (n, model.in_channels, model.sample_size, model.sample_size)
        x_T = torch.randn(shape, generator=g)
        sampler = "ddpm" if steps is None else "ddim"
        step_noise = torch.Generator(device=device).manual_seed(seed + 1)
        return to_pixels(generate(model, schedule, shape, sampler=sampler, steps=steps, eta=eta, x_T=x_T,
                                  generator=step_noise, device=device, progress=progress)).cpu()
    raise InputError(f"{type(model).__name__} is not a generative model this sampler knows (DCGAN generator, VAE, "
                     "U-Net)")


def sample(name: str | None, pretrained: str | Path, n: int = 64, *, steps: int | None = None, eta: float = 0.0,
           seed: int = 0, out: str | Path | None = None, device: str = "cpu", progress: bool = False) -> Path:
    """Load the model saved in ``pretrained`` (checked to be ``name`` when a registered name is given),
    draw ``n`` images and write them as one PNG grid to ``out`` (default ``<pretrained>/samples.png``).
    ``steps``: DDIM steps for a diffusion model (default: the full DDPM chain). Returns the PNG's path."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"--n must be a positive integer (the number of images), got {n!r}")
    directory = Path(pretrained).expanduser()
    arch = RECIPE_NAMES.get(name, name) if name else None
    model = create(arch, pretrained=directory) if arch else from_pretrained(directory)
    schedule = None
    if isinstance(model, UNet2D):
        schedule = NoiseSchedule.load(directory)
        if steps is not None and steps > schedule.num_train_timesteps:
            raise InputError(f"--steps {steps} is more than the {schedule.num_train_timesteps} steps the model was "
                             f"trained with; use --steps {schedule.num_train_timesteps} or fewer")
    elif steps is not None:
        raise InputError(f"--steps is for diffusion models; {getattr(model, 'zoo_name', type(model).__name__)} "
                         "samples in one pass")
    images = sample_images(model, n, steps=steps, eta=eta, seed=seed, schedule=schedule, device=device,
                           progress=progress)
    return save_grid(images, Path(out) if out else directory / "samples.png")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zoo.generative.sample", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="registered name to check the directory against (optional)")
    p.add_argument("--pretrained", required=True, help="a directory save_pretrained wrote (OUTPUT_DIR/model)")
    p.add_argument("--n", type=int, default=64, help="number of images")
    p.add_argument("--steps", type=int, default=None, help="diffusion: DDIM steps (default: the full DDPM chain)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0: deterministic, 1: DDPM-like noise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="PNG path (default: <pretrained>/samples.png)")
    p.add_argument("--device", default="cpu")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = sample(args.model, args.pretrained, args.n, steps=args.steps, eta=args.eta, seed=args.seed, out=args.out,
                  device=args.device, progress=sys.stderr.isatty())
    print(json.dumps({"grid": str(path), "n": args.n}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
