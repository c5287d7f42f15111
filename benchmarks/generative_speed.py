"""Speed of our U-Net and DDIM sampler against diffusers, measured in the same run.

    OMP_NUM_THREADS=1 python benchmarks/generative_speed.py                  # all, 1 thread
    python benchmarks/generative_speed.py --threads 2 --repeats 7 --json out.json

Both models are the google/ddpm-cifar10-32 configuration (35.7 M parameters) with the same
random weights (checked equal on one batch first). Timed, interleaved (ours, theirs, ours, ...)
and reported as medians and the ratio theirs / ours (above 1: ours is faster):

- U-Net forward (eval, no grad), batch 4 and 16, 32x32;
- a training step (forward, MSE to the noise, backward, Adam step), batch 4 and 16;
- DDIM, 50 steps, 16 images (starting noise in the default memory format): ``zoo.generative.diffusion.generate`` against diffusers' ``DDIMPipeline``
  with the same weights, schedule and starting noise (the images are compared too).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def build_pair():
    from diffusers import UNet2DModel

    from zoo.generative.unet import UNet2D, config_to_diffusers

    torch.manual_seed(0)
    ours = UNet2D()
    theirs = UNet2DModel(**config_to_diffusers({}))
    theirs.load_state_dict(ours.state_dict())
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([3, 700])
    with torch.no_grad():
        err = (ours.eval()(x, t) - theirs.eval()(x, t).sample).abs().max().item()
    return ours, theirs, err


def interleaved(fns: dict, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, called in turn ``repeats`` times after ``warmup`` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


MEMORY_FORMAT = torch.contiguous_format


def forward_fns(ours, theirs, batch: int):
    x, t = torch.randn(batch, 3, 32, 32).contiguous(memory_format=MEMORY_FORMAT), torch.randint(0, 1000, (batch,))
    ours.eval(), theirs.eval()

    def run_ours():
        with torch.no_grad():
            ours(x, t)

    def run_theirs():
        with torch.no_grad():
            theirs(x, t)

    return {"ours": run_ours, "diffusers": run_theirs}


def gradient_difference(ours, theirs, x, t, noise) -> float:
    """The largest difference between the two models' loss gradients (0.0: bitwise equal), one step's worth."""
    torch.manual_seed(0)  # the same dropout masks, should a configuration have dropout
    torch.nn.functional.mse_loss(ours(x, t), noise).backward()
    torch.manual_seed(0)
    torch.nn.functional.mse_loss(theirs(x, t).sample, noise).backward()
    diff = max((p.grad - q.grad).abs().max().item() for p, q in zip(ours.parameters(), theirs.parameters()))
    ours.zero_grad(set_to_none=True), theirs.zero_grad(set_to_none=True)
    return diff


def train_fns(ours, theirs, batch: int, checks: dict):
    x, t, noise = torch.randn(batch, 3, 32, 32), torch.randint(0, 1000, (batch,)), torch.randn(batch, 3, 32, 32)
    x = x.contiguous(memory_format=MEMORY_FORMAT)
    ours.train(), theirs.train()
    checks["gradient_difference"] = gradient_difference(ours, theirs, x, t, noise)  # before any step moves them
    opt_ours = torch.optim.Adam(ours.parameters(), lr=1e-9)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=1e-9)

    def run_ours():
        torch.nn.functional.mse_loss(ours(x, t), noise).backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    def run_theirs():
        torch.nn.functional.mse_loss(theirs(x, t).sample, noise).backward()
        opt_theirs.step()
        opt_theirs.zero_grad(set_to_none=True)

    return {"ours": run_ours, "diffusers": run_theirs}


def ddim_fns(ours, theirs, n: int, steps: int, results: dict):
    from diffusers import DDIMPipeline, DDIMScheduler

    from zoo.generative.diffusion import NoiseSchedule, generate

    schedule = NoiseSchedule()
    theirs.load_state_dict(ours.state_dict())  # the timed training steps moved each copy by its own Adam steps
    pipe = DDIMPipeline(unet=theirs.eval(), scheduler=DDIMScheduler.from_config(schedule.to_diffusers()))
    pipe.set_progress_bar_config(disable=True)
    ours.eval()

    def run_ours():
        x_T = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        results["ours"] = ((generate(ours, schedule, x_T.shape, sampler="ddim", steps=steps, x_T=x_T) + 1) / 2).clamp(0, 1)

    def run_theirs():
        out = pipe(batch_size=n, generator=torch.Generator().manual_seed(0), num_inference_steps=steps, eta=0.0,
                   output_type="pt")
        results["diffusers"] = out.images

    return {"ours": run_ours, "diffusers": run_theirs}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds of the forward / training step")
    p.add_argument("--ddim-repeats", type=int, default=1, help="timed rounds of the 50-step sampling")
    p.add_argument("--batches", type=int, nargs="+", default=[4, 16])
    p.add_argument("--skip-ddim", action="store_true")
    p.add_argument("--channels-last", action="store_true", help="both models and inputs in channels-last memory "
                   "format (mkldnn convolutions on CPU)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ours, theirs, err = build_pair()
    if args.channels_last:
        global MEMORY_FORMAT
        MEMORY_FORMAT = torch.channels_last
        ours.to(memory_format=MEMORY_FORMAT), theirs.to(memory_format=MEMORY_FORMAT)
    report = {"threads": args.threads, "channels_last": args.channels_last, "torch": torch.__version__, "max_abs_output_difference": err, "rows": []}
    print(f"# U-Net ddpm-cifar10-32, {args.threads} thread(s){', channels-last' if args.channels_last else ''}; "
          f"outputs differ by at most {err:.2e}")
    print("| what | ours (s) | diffusers (s) | diffusers / ours |\n|---|---|---|---|")

    def row(what, medians):
        ratio = medians["diffusers"] / medians["ours"]
        report["rows"].append({"what": what, **medians, "ratio": ratio})
        print(f"| {what} | {medians['ours']:.4f} | {medians['diffusers']:.4f} | {ratio:.2f}x |", flush=True)

    for batch in args.batches:
        row(f"forward, batch {batch}", interleaved(forward_fns(ours, theirs, batch), args.repeats))
    for batch in args.batches:
        checks: dict = {}
        fns = train_fns(ours, theirs, batch, checks)
        row(f"training step, batch {batch}", interleaved(fns, args.repeats))
        diff = checks["gradient_difference"]
        report["rows"][-1]["max_abs_gradient_difference"] = diff
        print(f"  gradients: {'bitwise equal' if diff == 0 else f'differ by at most {diff:.1e}'}")
    if not args.skip_ddim:
        images: dict = {}
        row("DDIM 50 steps, 16 images", interleaved(ddim_fns(ours, theirs, 16, 50, images), args.ddim_repeats, warmup=0))
        diff = (images["ours"] - images["diffusers"]).abs().max().item()
        report["ddim_max_abs_image_difference"] = diff
        print(f"DDIM images (pixels in [0, 1]) differ by at most {diff:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
