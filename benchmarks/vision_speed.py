"""Speed of our vision models against their references, measured in the same process, interleaved.

    .venv/bin/python benchmarks/vision_speed.py --models resnet18 vit_small_patch16_224 --repeats 5
    .venv/bin/python benchmarks/vision_speed.py --variants eager channels_last compile --repeats 20

References: torchvision for resnet18 / resnet50 / mobilenet_v3_large, timm for the ViTs. The
reference is built without weights and then loads *our* state dict (strict), so both compute
the same function; a check before timing says so (max |ours - ref| on one batch).

Per model and variant (``--variants``: eager; ``channels_last``, CNNs only; ``compile``, i.e.
``torch.compile`` of both models; ``compile+channels_last``, CNNs only) two measurements:

* infer: eval mode, ``torch.inference_mode``, fp32, ``--batch`` images of ``--size`` px, images/s.
* train: train mode, forward + cross-entropy + backward + SGD (momentum) step, images/s.

Each repeat times ``--iters`` steps of ours, then the same of the reference (ours, ref, ours,
ref, ...), after ``--warmup`` untimed steps of each, so machine load hits both alike. The table
gives the median images/s of each, the ratio ours / reference of the medians (> 1: ours faster)
and the interquartile range of the per-repeat ratios, i.e. how much that ratio moves with noise.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402

CNNS = {"resnet18", "resnet50", "mobilenet_v3_large"}
REFERENCES = {
    "resnet18": "torchvision",
    "resnet50": "torchvision",
    "mobilenet_v3_large": "torchvision",
    "vit_small_patch16_224": "timm",
    "vit_base_patch16_224": "timm",
}


def build_pair(name: str, size: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Ours (random init) and the reference carrying the very same weights."""
    torch.manual_seed(0)
    kwargs = {} if REFERENCES[name] == "torchvision" or size == 224 else {"img_size": size}
    ours = zoo.create(name, **kwargs)
    if REFERENCES[name] == "torchvision":
        import torchvision

        ref = getattr(torchvision.models, name)(weights=None)
    else:
        import timm

        ref = timm.create_model(name, pretrained=False, **kwargs)
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ours, ref


def check_same(ours, ref, x) -> float:
    ours.eval(), ref.eval()
    with torch.inference_mode():
        return (ours(x) - ref(x)).abs().max().item()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_step(model, mode: str, x: torch.Tensor, y: torch.Tensor, compile_: bool):
    """A zero-argument callable doing one measured step of ``mode`` on ``model``."""
    if mode == "infer":
        model.eval()
        fn = torch.compile(model) if compile_ else model

        def step():
            with torch.inference_mode():
                fn(x)

        return step
    model.train()
    fn = torch.compile(model) if compile_ else model
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(fn(x), y).backward()
        opt.step()

    return step


def time_steps(step, iters: int, device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return (time.perf_counter() - t) / iters


def bench(name: str, variant: str, mode: str, args, device: torch.device) -> dict:
    channels_last, compile_ = "channels_last" in variant, "compile" in variant
    ours, ref = build_pair(name, args.size)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ours.to(device, memory_format=fmt), ref.to(device, memory_format=fmt)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device, memory_format=fmt)
    y = torch.randint(0, 1000, (args.batch,), generator=g).to(device)
    diff = check_same(ours, ref, x)

    steps = {"ours": make_step(ours, mode, x, y, compile_), "ref": make_step(ref, mode, x, y, compile_)}
    t0 = time.perf_counter()
    for _ in range(args.warmup):  # compiles here, when asked to
        for s in steps.values():
            s()
    warm_s = time.perf_counter() - t0
    times = {"ours": [], "ref": []}
    for _ in range(args.repeats):
        for who in ("ours", "ref"):
            times[who].append(time_steps(steps[who], args.iters, device))
    med = {who: statistics.median(ts) for who, ts in times.items()}
    # each repeat's (ours, ref) pair ran back to back: the spread of their ratios shows the noise
    paired = [r / o for o, r in zip(times["ours"], times["ref"])]
    q1, _, q3 = statistics.quantiles(paired, n=4) if len(paired) > 1 else (paired[0],) * 3
    return {
        "model": name, "variant": variant, "mode": mode, "diff": diff, "warmup_s": warm_s,
        "ours": args.batch / med["ours"], "ref": args.batch / med["ref"], "ratio": med["ref"] / med["ours"],
        "paired_iqr": (q1, q3),
    }


VARIANTS = ("eager", "channels_last", "compile", "compile+channels_last")


def variants_for(name: str, args) -> list[str]:
    """The requested variants that apply to ``name`` (channels_last only changes the CNNs)."""
    return [v for v in args.variants if name in CNNS or "channels_last" not in v]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(REFERENCES), choices=list(REFERENCES))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=10, help="timed (ours, ref) pairs per measurement")
    p.add_argument("--iters", type=int, default=1, help="steps per timed repeat")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps of each model first")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--variants", nargs="+", default=["eager", "channels_last"], choices=VARIANTS,
                   help="compile variants take minutes to compile on CPU")
    p.add_argument("--modes", nargs="+", default=["infer", "train"], choices=["infer", "train"])
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"{args.size} px, fp32, {args.repeats} repeats x {args.iters} step(s), warmup {args.warmup}\n")
    print("| model | reference | variant | mode | ours img/s | ref img/s | ours/ref | paired ratios, IQR | max abs diff |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for name in args.models:
        for variant in variants_for(name, args):
            for mode in args.modes:
                r = bench(name, variant, mode, args, device)
                print(f"| {name} | {REFERENCES[name]} | {variant} | {mode} | {r['ours']:.1f} | {r['ref']:.1f} "
                      f"| {r['ratio']:.3f} | {r['paired_iqr'][0]:.2f}-{r['paired_iqr'][1]:.2f} | {r['diff']:.1e} |",
                      flush=True)
                torch._dynamo.reset()


if __name__ == "__main__":
    main()
