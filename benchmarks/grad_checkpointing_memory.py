"""Peak memory of one training step (forward + backward) with and without gradient checkpointing.

    .venv/bin/python benchmarks/grad_checkpointing_memory.py [--models resnet50 vit_small_patch16_224 ...]
        [--batch 8] [--size 224] [--threads N]

Each (model, checkpointing) pair runs in a fresh subprocess: the model is built (random weights,
train mode), warmed up on one image, then one ``model(x).float().mean().backward()`` on a ``(batch, 3, size, size)`` input.

What is measured, all as the increase over the memory live just before the step (weights, input):

* CUDA (when available): ``torch.cuda.max_memory_allocated``.
* CPU ``alloc peak``: the peak of live bytes of the PyTorch CPU allocator during the step, from the
  profiler's memory events (every allocation and free). This is activations + parameter gradients
  + temporaries. (``saved_tensors_hooks`` cannot see what a non-reentrant checkpoint keeps — it installs
  its own hooks — nor the recomputation in backward, so they are not used.)
* CPU ``RSS peak``: the process' peak resident set size (``VmHWM``, reset just before the step through
  ``/proc/self/clear_refs``) minus the RSS before the step, with glibc told to return large blocks to the OS (``MALLOC_MMAP_THRESHOLD_``); coarser.

``grads`` is the size of the parameter gradients, part of every peak whatever the checkpointing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MiB = 2**20


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _alloc_peak(prof) -> int:
    """Peak of the running sum of the profiler's allocation (+) and free (-) events."""
    events = prof.profiler.kineto_results.events()
    mem = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    live = peak = 0
    for _, delta in mem:
        live += delta
        peak = max(peak, live)
    return peak


def worker(name: str, ckpt: bool, batch: int, size: int, threads: int) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    import zoo

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    model = zoo.create(name).to(device).train()
    model.set_grad_checkpointing(ckpt)
    x = torch.randn(batch, 3, size, size, device=device)
    grads = sum(p.numel() * p.element_size() for p in model.parameters())
    result = {"model": name, "ckpt": ckpt, "grads": grads}
    # warm-up on one image (lazy library initialisation, kernel selection), then drop its gradients
    model(x[:1]).float().mean().backward()
    model.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        model(x).float().mean().backward()
        torch.cuda.synchronize()
        result["cuda_peak"] = torch.cuda.max_memory_allocated() - base
        return result
    import time

    from torch.profiler import ProfilerActivity, profile

    with open("/proc/self/clear_refs", "w") as f:  # reset the peak RSS (VmHWM) to the current RSS
        f.write("5")
    rss0 = _status_bytes("VmRSS")
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(x).float().mean().backward()
    result["seconds"] = time.perf_counter() - t0
    result["rss_peak"] = _status_bytes("VmHWM") - rss0
    result["alloc_peak"] = _alloc_peak(prof)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "vit_small_patch16_224", "mobilenet_v3_large"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "CKPT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, ckpt = args.worker
        print(json.dumps(worker(name, ckpt == "1", args.batch, args.size, args.threads)))
        return

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    rows = []
    for name in args.models:
        for ckpt in (False, True):
            cmd = [sys.executable, __file__, "--worker", name, "1" if ckpt else "0", "--batch", str(args.batch),
                   "--size", str(args.size), "--threads", str(args.threads)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if out.returncode:
                sys.exit(f"{name} ckpt={ckpt} failed:\n{out.stderr}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  done {name} ckpt={ckpt}", file=sys.stderr)

    import torch

    keys = ["cuda_peak"] if torch.cuda.is_available() else ["alloc_peak", "rss_peak"]
    where = f"CUDA ({torch.cuda.get_device_name()})" if "cuda_peak" in keys else f"CPU, {args.threads} threads"
    print(f"\nPeak memory of one training forward+backward, batch {args.batch}, {args.size}px, {where}, "
          f"torch {torch.__version__}; MiB above the memory live before the step\n")
    head = f"{'model':<24}{'grads':>8}" + "".join(f"{k + ' off':>16}{k + ' on':>15}{'ratio':>7}" for k in keys)
    if "seconds" in rows[0]:
        head += f"{'s off':>8}{'s on':>7}"
    print(head)
    print("-" * len(head))
    for off, on in zip(rows[::2], rows[1::2]):
        line = f"{off['model']:<24}{off['grads'] / MiB:>8.1f}"
        for k in keys:
            line += f"{off[k] / MiB:>16.1f}{on[k] / MiB:>15.1f}{on[k] / off[k]:>7.2f}"
        if "seconds" in off:
            line += f"{off['seconds']:>8.1f}{on['seconds']:>7.1f}"
        print(line)
    print("\nratio = with checkpointing / without; 'grads' (parameter gradients) is included in every peak.")


if __name__ == "__main__":
    main()
