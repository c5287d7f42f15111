"""Train a generator: DCGAN, WGAN-GP, a VAE or a DDPM, and watch a sample grid after every epoch.

    python -m zoo.generative.train --model dcgan --epochs 20                 # digits, 32x32, offline
    python -m zoo.generative.train --model wgan_gp --epochs 40
    python -m zoo.generative.train --model vae --epochs 30                   # test NLL (IWAE, k=100) at the end
    python -m zoo.generative.train --model ddpm --epochs 100 --grid-steps 50  # EMA U-Net, DDIM grids
    python -m zoo.generative.train --model dcgan --data path/to/images --img-size 64
    python -m zoo.generative.train --model ddpm --epochs 1000 --repeats 20 --max-minutes 30 --device cuda
    python -m zoo.generative.train --model ddpm --img-size 8 --width 32 --batch-size 128 --repeats 20 --epochs 46
    zoo train dcgan_generator --epochs 5                                     # the same, through the zoo CLI

``--model`` is a recipe (``dcgan``, ``wgan_gp``, ``vae``, ``ddpm``) or a registered model it trains
(``dcgan_generator``, ``wgan_gp_critic``, ``vae_conv``, ``vae_mlp``, ``unet2d_small``, ...). Data: scikit-learn's
digits upsampled to ``--img-size`` (the offline default; ``--img-size 8`` is their native size, where the last
line above trains the README's DDPM in about 40 minutes on two CPU cores) or an image folder of one image size.

The loops are written out below, one update function per method, on the training core's parts:
``optimizer_step`` for every update (both GAN optimizers), ``ModelEMA`` with warm-up for the
diffusion model, seeding, atomic checkpoints (``OUTPUT_DIR/last.pt`` after every epoch and at
``--max-steps``; ``--resume`` continues bitwise identically, mid-epoch too), ``RunLogger``
(``metrics.csv``, ``curves.png``). After every epoch ``samples/epoch_NNN.png`` shows samples from one
fixed noise batch. The final sampling model is saved with ``save_pretrained`` to
``OUTPUT_DIR/model`` (the DDPM's EMA U-Net with its ``scheduler_config.json``), the GAN's
discriminator / critic to ``OUTPUT_DIR/discriminator``; ``zoo sample`` (:func:`zoo.generative.sample.sample`)
draws grids from them.

``build_parser()`` (the options), ``run(args)`` (does the work, returns the summary), ``main(argv)``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from zoo.shared.cli_types import fraction, positive_float, positive_int
from zoo.shared.errors import InvalidConfigError
from zoo.shared.factory import create
from zoo.shared.training import (
    ModelEMA,
    RunLogger,
    get_rng_state,
    load_checkpoint,
    optimizer_step,
    resolve_device,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from zoo.shared.weights import save_pretrained

from .data import load_images, to_model_range, to_pixels
from .diffusion import NoiseSchedule, ScheduleConfig, generate, inference_timesteps
from .grid import save_grid
from .wgan_gp import critic_loss, generator_loss


@dataclass(frozen=True)
class Recipe:
    """A method's paper hyper-parameters and the registered models it trains."""

    models: tuple[str, ...]  # the sampling model first (generator, VAE, U-Net), then the discriminator
    lr: float
    betas: tuple[float, float]
    epochs: int
    batch_size: int = 64
    ema_decay: float = 0.0  # 0: no EMA
    clip_grad_norm: float | None = None


RECIPES = {
    # Radford et al.: Adam(2e-4, beta1 0.5), batch 128 (64 here: 1,347 digit images)
    "dcgan": Recipe(("dcgan_generator", "dcgan_discriminator"), 2e-4, (0.5, 0.999), epochs=20),
    # Gulrajani et al., Algorithm 1: Adam(1e-4, (0, 0.9)), n_critic 5, lambda 10
    "wgan_gp": Recipe(("dcgan_generator", "wgan_gp_critic"), 1e-4, (0.0, 0.9), epochs=100),
    "vae": Recipe(("vae_conv",), 1e-3, (0.9, 0.999), epochs=30),
    # Ho et al.: Adam 2e-4, gradient norm clipped at 1, EMA 0.9999 (0.999 for a short run), T = 1000
    "ddpm": Recipe(("unet2d_small",), 2e-4, (0.9, 0.999), epochs=100, ema_decay=0.999, clip_grad_norm=1.0),
}
# a registered model name given as --model trains with the recipe that trains it
MODEL_RECIPES = {"dcgan_generator": "dcgan", "dcgan_discriminator": "dcgan", "wgan_gp_critic": "wgan_gp",
                 "vae_conv": "vae", "vae_mlp": "vae", "unet2d_small": "ddpm", "unet2d_ddpm_cifar10": "ddpm"}
CHECKPOINT_FORMAT = 1


def recipe_of(model: str) -> tuple[str, Recipe, tuple[str, ...]]:
    """``--model`` -> (recipe name, recipe, the registered models to build)."""
    name = MODEL_RECIPES.get(model, model)
    if name not in RECIPES:
        known = ", ".join([*RECIPES, *MODEL_RECIPES])
        raise InvalidConfigError(f"--model {model!r} is not a generative recipe or model; use one of: {known}")
    recipe = RECIPES[name]
    if name in ("vae", "ddpm") and model in MODEL_RECIPES:  # vae_mlp, unet2d_ddpm_cifar10: that model
        return name, recipe, (model,)
    return name, recipe, recipe.models


# -------------------------------------------------------------------------------------------------
# the updates, one per method
# -------------------------------------------------------------------------------------------------


def dcgan_update(run: "Run", real: torch.Tensor) -> dict[str, float]:
    """Goodfellow et al.'s alternation with the non-saturating generator loss: D maximises
    log D(x) + log(1 - D(G(z))), then G maximises log D(G(z))."""
    G, D = run.nets["generator"], run.nets["discriminator"]
    z = G.sample_noise(real.shape[0], device=real.device)
    fake = G(z)
    p_real, p_fake = D(real), D(fake.detach())
    loss_d = F.binary_cross_entropy(p_real, torch.ones_like(p_real)) + \
        F.binary_cross_entropy(p_fake, torch.zeros_like(p_fake))
    loss_d.backward()
    optimizer_step(run.optims["discriminator"], loss_d.detach(), where=run.where)
    p_fake = D(fake)
    loss_g = F.binary_cross_entropy(p_fake, torch.ones_like(p_fake))
    loss_g.backward()
    run.optims["discriminator"].zero_grad(set_to_none=True)  # G's loss also reached D's weights
    optimizer_step(run.optims["generator"], loss_g.detach(), where=run.where)
    return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "d_real": p_real.mean().item(),
            "d_fake": p_fake.mean().item()}


def wgan_gp_update(run: "Run", real: torch.Tensor) -> dict[str, float]:
    """Algorithm 1: one critic update per batch; every ``n_critic``-th batch also one generator update."""
    G, D = run.nets["generator"], run.nets["discriminator"]
    z = G.sample_noise(real.shape[0], device=real.device)
    with torch.no_grad():
        fake = G(z)
    loss_d, logs = critic_loss(D, real, fake, run.args.gp_lambda)
    loss_d.backward()
    optimizer_step(run.optims["discriminator"], loss_d.detach(), where=run.where)
    out = {"loss_d": loss_d.item(), "wasserstein": logs["wasserstein"].item(), "gp": logs["gp"].item()}
    run.critic_steps += 1
    if run.critic_steps % run.args.n_critic == 0:
        loss_g = generator_loss(D, G(G.sample_noise(real.shape[0], device=real.device)))
        loss_g.backward()
        run.optims["discriminator"].zero_grad(set_to_none=True)
        optimizer_step(run.optims["generator"], loss_g.detach(), where=run.where)
        out["loss_g"] = loss_g.item()
    return out


def vae_update(run: "Run", real: torch.Tensor) -> dict[str, float]:
    """Minimise -ELBO (with beta on the KL) on pixels in [0, 1]."""
    terms = run.nets["model"].elbo(to_pixels(real))
    terms["loss"].backward()
    optimizer_step(run.optims["model"], terms["loss"].detach(), where=run.where)
    return {k: v.item() for k, v in terms.items()}


def ddpm_update(run: "Run", real: torch.Tensor) -> dict[str, float]:
    """DDPM Algorithm 1: t ~ U{0..T-1}, eps ~ N(0, I), regress the network on eps (or v) at x_t."""
    model, schedule = run.nets["model"], run.schedule
    t = torch.randint(0, schedule.num_train_timesteps, (real.shape[0],), device=real.device)
    noise = torch.randn_like(real)
    loss = F.mse_loss(model(schedule.add_noise(real, noise, t), t), schedule.target(real, noise, t))
    loss.backward()
    optimizer_step(run.optims["model"], loss.detach(), clip_grad_norm=run.recipe.clip_grad_norm, where=run.where)
    return {"loss": loss.item()}


UPDATES = {"dcgan": dcgan_update, "wgan_gp": wgan_gp_update, "vae": vae_update, "ddpm": ddpm_update}


# -------------------------------------------------------------------------------------------------
# setup, sampling for the grids, checkpoints
# -------------------------------------------------------------------------------------------------


class Run:
    """What the loop carries: the nets, their optimizers, the EMA, the counters."""

    def __init__(self, args, name: str, recipe: Recipe, models: tuple[str, ...], shape: tuple[int, int, int],
                 device: torch.device):
        self.args, self.name, self.recipe, self.device = args, name, recipe, device
        c, size, _ = shape
        self.schedule = None
        if name in ("dcgan", "wgan_gp"):
            width = args.width or 64
            self.nets = {"generator": create(models[0], nz=args.nz, ngf=width, nc=c, image_size=size),
                         "discriminator": create(models[1], ndf=width, nc=c, image_size=size)}
        elif name == "vae":
            extra = {"likelihood": args.likelihood, "beta": args.beta, "latent_dim": args.latent_dim}
            if args.width:
                extra["base_channels" if models[0] == "vae_conv" else "hidden_dim"] = args.width
            self.nets = {"model": create(models[0], in_chans=c, img_size=size, **extra)}
        else:
            extra = {}
            if args.width and models[0] == "unet2d_small":
                extra["block_out_channels"] = (args.width, 2 * args.width, 2 * args.width)
                extra["norm_num_groups"] = min(32, args.width // 2)
            self.nets = {"model": create(models[0], sample_size=size, in_channels=c, out_channels=c, **extra)}
            self.schedule = NoiseSchedule(ScheduleConfig(num_train_timesteps=args.timesteps,
                                                         beta_schedule=args.beta_schedule,
                                                         prediction_type=args.prediction))
        for net in self.nets.values():
            net.to(device).train()
        lr = args.lr or recipe.lr
        self.optims = {k: torch.optim.Adam(net.parameters(), lr=lr, betas=recipe.betas) for k, net in self.nets.items()}
        decay = recipe.ema_decay if args.ema_decay is None else args.ema_decay
        self.sampler_key = "generator" if "generator" in self.nets else "model"
        self.ema = ModelEMA(self.nets[self.sampler_key], decay, warmup=True) if decay > 0 else None
        self.epoch, self.batch, self.step, self.critic_steps = 0, 0, 0, 0
        self.history: list[dict] = []
        self.sums: dict[str, list[float]] = {}  # the current epoch's losses so far (kept by a mid-epoch checkpoint)

    def where(self) -> str:
        return f"at step {self.step} (epoch {self.epoch + 1}, batch {self.batch + 1})"

    def sampling_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.nets[self.sampler_key]

    def state(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "recipe": self.name, "epoch": self.epoch, "batch": self.batch,
                "step": self.step, "critic_steps": self.critic_steps, "sums": self.sums,
                "nets": {k: v.state_dict() for k, v in self.nets.items()},
                "optimizers": {k: v.state_dict() for k, v in self.optims.items()},
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": get_rng_state(), "history": self.history, "args": _jsonable(vars(self.args))}

    def restore(self, state: dict, path: Path) -> None:
        if state.get("recipe") != self.name:
            raise InvalidConfigError(f"{path} is a checkpoint of the {state.get('recipe')!r} recipe, not {self.name!r}; "
                                     "resume with the same --model, or use another --output-dir")
        for k, net in self.nets.items():
            net.load_state_dict(state["nets"][k])
        for k, opt in self.optims.items():
            opt.load_state_dict(state["optimizers"][k])
        if self.ema is not None:
            if state["ema"] is None:
                raise InvalidConfigError(f"{path} was trained without EMA; resume with --ema-decay 0")
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.critic_steps, self.sums = state["critic_steps"], {k: list(v) for k, v in state["sums"].items()}
        self.history = list(state["history"])
        set_rng_state(state["rng"])


def _jsonable(values: dict) -> dict:
    return {k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v) for k, v in values.items()}


@torch.no_grad()
def grid_samples(run: Run, n: int, seed: int) -> torch.Tensor:
    """``n`` samples from a fixed noise batch (its own generator: the training RNG is untouched), as
    pixels in [0, 1]."""
    model = run.sampling_model()
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    if run.name in ("dcgan", "wgan_gp"):
        images = to_pixels(model(model.sample_noise(n, generator=g).to(run.device)))
    elif run.name == "vae":
        images = model.mean_image(torch.randn(n, model.latent_dim, generator=g).to(run.device))
    else:
        c, s = model.in_channels, model.sample_size
        x_T = torch.randn(n, c, s, s, generator=g)
        images = to_pixels(generate(model, run.schedule, (n, c, s, s), sampler="ddim", steps=run.args.grid_steps,
                                    x_T=x_T, device=run.device))
    model.train(was_training)
    return images.cpu()


def _batches(n: int, batch_size: int, seed: int, epoch: int, drop_last: bool, repeats: int = 1) -> list[torch.Tensor]:
    """The epoch's shuffled index batches, a function of (seed, epoch) alone, so a resumed run sees
    the same batches. ``repeats`` shuffled passes over the images make one epoch."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.cat([torch.randperm(n, generator=g) for _ in range(repeats)])
    batches = list(order.split(batch_size))
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()  # batch norm on a batch of one or two is noise
    return batches


# -------------------------------------------------------------------------------------------------
# the command line
# -------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zoo.generative.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="dcgan", help=f"recipe ({', '.join(RECIPES)}) or model it trains")
    p.add_argument("--data", default="digits", help="'digits' (scikit-learn's, offline) or a folder of images")
    p.add_argument("--img-size", type=positive_int, default=32, help="image size (digits are upsampled to it)")
    p.add_argument("--epochs", type=positive_int, default=None, help="default: the recipe's")
    p.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many batches")
    p.add_argument("--max-minutes", type=positive_float, default=None,
                   help="stop at the end of the first epoch that ends after this much training time, and finish "
                        "as after the last epoch (the summary gives the epochs reached)")
    p.add_argument("--repeats", type=positive_int, default=1,
                   help="shuffled passes over the images per epoch: fewer, longer epochs between grids, log rows "
                        "and checkpoints on a small dataset")
    p.add_argument("--max-images", type=positive_int, default=None, help="train on the first N images only (smoke runs)")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--lr", type=positive_float, default=None, help="default: the paper's")
    p.add_argument("--width", type=positive_int, default=None,
                   help="ngf = ndf (GANs, default 64), the conv VAE's base channels, the U-Net's first width")
    p.add_argument("--nz", type=positive_int, default=100, help="GAN noise size")
    p.add_argument("--n-critic", type=positive_int, default=5, help="WGAN-GP: critic updates per generator update")
    p.add_argument("--gp-lambda", type=float, default=10.0, help="WGAN-GP: gradient-penalty weight")
    p.add_argument("--latent-dim", type=positive_int, default=16, help="VAE latent size")
    p.add_argument("--likelihood", default="bernoulli", choices=["bernoulli", "gaussian"], help="VAE p(x|z)")
    p.add_argument("--beta", type=float, default=1.0, help="VAE: weight of the KL term (beta-VAE)")
    p.add_argument("--iwae-k", type=positive_int, default=100, help="VAE: samples of the test log-likelihood bound")
    p.add_argument("--timesteps", type=positive_int, default=1000, help="DDPM: training timesteps T")
    p.add_argument("--beta-schedule", default="linear", choices=["linear", "cosine"])
    p.add_argument("--prediction", default="epsilon", choices=["epsilon", "v_prediction"])
    p.add_argument("--ema-decay", type=fraction, default=None, help="EMA of the sampling model (0: off; "
                   "default 0.999 for ddpm, off for the others), with warm-up")
    p.add_argument("--grid-n", type=positive_int, default=64, help="images in each epoch's sample grid")
    p.add_argument("--grid-steps", type=positive_int, default=50, help="DDPM: DDIM steps for the epoch grids")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--output-dir", default=None, help="default: runs/generative/<model>")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last.pt")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace) -> dict:
    name, recipe, models = recipe_of(args.model)
    if name == "ddpm":
        inference_timesteps(args.timesteps, args.grid_steps)  # a DDIM step count above T fails now, not after an epoch
    out = Path(args.output_dir or f"runs/generative/{name}")
    seed_everything(args.seed)
    device = resolve_device(args.device)
    data = load_images(args.data, args.img_size)
    images = to_model_range(data.train[:args.max_images]).to(device)
    r = Run(args, name, recipe, models, data.shape, device)
    checkpoint = out / "last.pt"
    if args.resume:
        if not checkpoint.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint}; start without --resume")
        r.restore(load_checkpoint(checkpoint, expected_format=CHECKPOINT_FORMAT), checkpoint)
    elif checkpoint.exists():
        raise InvalidConfigError(f"{out} already holds a run (last.pt); pass --resume to continue it or another "
                                 "--output-dir")
    logger = RunLogger(out, tensorboard=False)
    logger.start(r.history)
    epochs = args.epochs or recipe.epochs
    batch_size = args.batch_size or recipe.batch_size
    update = UPDATES[name]
    grids = sorted(str(p) for p in (out / "samples").glob("epoch_*.png")) if args.resume else []
    start = time.perf_counter()
    progress = not args.no_progress and sys.stderr.isatty()
    stopped = timed_out = False
    while r.epoch < epochs and not stopped:
        batches = _batches(len(images), batch_size, args.seed, r.epoch, drop_last=name != "vae", repeats=args.repeats)
        if r.batch == 0:
            r.sums = {}
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(batches), initial=r.batch, desc=f"epoch {r.epoch + 1}/{epochs}", leave=False)
        while r.batch < len(batches):
            logs = update(r, images[batches[r.batch]])
            if r.ema is not None:
                r.ema.update(r.nets[r.sampler_key])
            for k, v in logs.items():
                r.sums.setdefault(k, []).append(v)
            r.batch += 1
            r.step += 1
            if progress:
                bar.update(1)
            if args.max_steps and r.step >= args.max_steps:
                stopped = r.batch < len(batches)
                break
        if progress:
            bar.close()
        if stopped:  # mid-epoch: the checkpoint holds the position in the epoch
            save_checkpoint(checkpoint, r.state())
            break
        record = {"epoch": r.epoch + 1, "step": r.step, **{f"train/{k}": sum(v) / len(v) for k, v in r.sums.items()},
                  "time": round(time.perf_counter() - start, 2)}
        r.epoch, r.batch = r.epoch + 1, 0
        grid = save_grid(grid_samples(r, args.grid_n, args.seed + 1), out / "samples" / f"epoch_{r.epoch:03d}.png")
        grids.append(str(grid))
        r.history.append(record)
        logger.log_record(record)
        save_checkpoint(checkpoint, r.state())
        if args.max_steps and r.step >= args.max_steps:
            break
        if args.max_minutes and time.perf_counter() - start >= 60 * args.max_minutes:
            timed_out = True
            break
    logger.close()
    summary = {"model": name, "models": list(models), "epochs": r.epoch, "steps": r.step, "output_dir": str(out),
               "grids": grids, "seconds": round(time.perf_counter() - start, 2), "device": str(device),
               "stopped_by_time": timed_out, "last": r.history[-1] if r.history else {}}
    if r.epoch >= epochs or timed_out or (args.max_steps and r.step >= args.max_steps and not stopped):
        summary.update(_finish(r, data, out, args))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _finish(r: Run, data, out: Path, args) -> dict:
    """Save the sampling model (and the discriminator), the VAE's test likelihood and reconstructions."""
    model = r.sampling_model().eval()
    result = {"model_dir": str(save_pretrained(model, out / "model"))}
    if r.schedule is not None:
        r.schedule.save(out / "model")
    if "discriminator" in r.nets:
        result["discriminator_dir"] = str(save_pretrained(r.nets["discriminator"], out / "discriminator"))
    if r.name == "vae":
        result["test_nll_iwae"] = round(model.test_nll(data.test, args.iwae_k, seed=args.seed), 3)
        result["iwae_k"] = args.iwae_k
        with torch.no_grad():
            originals = data.test[:32].to(r.device)
            recon = model.mean_image(model.encode(originals)[0])
        pairs = torch.stack([originals.cpu(), recon.cpu()], dim=1).flatten(0, 1)  # original, reconstruction, ...
        result["reconstructions"] = str(save_grid(pairs, out / "reconstructions.png", nrow=8))
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary = run(args)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
