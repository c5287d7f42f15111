"""Seconds per training step of each generative recipe on this machine, and of one U-Net sampling
forward: what a run of N steps costs here (the README's CPU wall times come from this).

    OMP_NUM_THREADS=2 python benchmarks/generative_step_time.py --threads 2

Each recipe's own update (``zoo.generative.train.UPDATES``: both GAN updates, the WGAN-GP critic with
its every-n_critic generator step, the VAE's ELBO, the DDPM loss; the EMA update, which the loop does,
is not timed) runs on a random batch of 32x32 one-channel images at the recipe's batch size, one
warm-up step, then the mean of ``--steps`` timed steps. Measured 2026-11-30, 2 threads, quiet
machine: DDPM (batch 128) 5.24 s, DCGAN 0.175 s, WGAN-GP 0.176 s, VAE 0.032 s a step; a sampling
forward of 250 images 3.34 s; again later that day: 5.65, 0.184, 0.189, 0.039 s and 3.54 s.
"""

from __future__ import annotations

import argparse
import time

import torch

from zoo.generative import train
from zoo.shared.factory import create


def step_seconds(model: str, batch: int, steps: int) -> float:
    args = train.build_parser().parse_args(["--model", model, "--batch-size", str(batch), "--no-progress"])
    name, recipe, models = train.recipe_of(model)
    run = train.Run(args, name, recipe, models, (1, 32, 32), torch.device("cpu"))
    x = torch.rand(batch, 1, 32, 32) * 2 - 1
    update = train.UPDATES[name]
    update(run, x)
    start = time.perf_counter()
    for _ in range(steps):
        update(run, x)
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for model, batch in [("ddpm", 128), ("dcgan", 64), ("wgan_gp", 64), ("vae", 64)]:
        print(f"{model}, batch {batch}: {step_seconds(model, batch, args.steps):.3f} s a step", flush=True)
    unet = create("unet2d_small").eval()
    x, t = torch.randn(250, 1, 32, 32), torch.full((250,), 10)
    with torch.no_grad():
        unet(x, t)
        start = time.perf_counter()
        unet(x, t)
    print(f"unet2d_small sampling forward, 250 images: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
