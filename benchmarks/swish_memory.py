"""Activation memory of Swish / SiLU: custom autograd Function vs ``x * sigmoid(x)`` vs ``F.silu``.

A stack of N Swish layers is run forward on an input of the given size, and for each variant we
report what autograd keeps for backward:

* saved tensors / saved MiB: the tensors packed through ``torch.autograd.graph.saved_tensors_hooks``,
  counted once per storage (``x * sigmoid(x)`` saves sigmoid(x) twice: for sigmoid and for mul;
  "MiB per save" counts every save); the leaf input x is one of them for every variant;
* RSS held: process RSS after the forward (graph alive) minus before it;
* peak RSS: peak process RSS during forward + backward minus RSS before the forward;
* CUDA peak: ``torch.cuda.max_memory_allocated`` during forward + backward (``--device cuda``);
* fwd+bwd ms: median wall time of one forward + backward.

Every variant runs in a fresh subprocess with glibc's mmap threshold pinned, so freed tensors go
back to the OS at once and RSS numbers are comparable.

    python benchmarks/swish_memory.py --size 1024 1024 --layers 16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from shared.layers import swish

VARIANTS = {
    "custom swish (SwishFunction)": swish,
    "x * sigmoid(x)": lambda x: x * torch.sigmoid(x),
    "F.silu": F.silu,
}
MiB = 2**20


def _rss_bytes() -> int:
    """Current resident set size (Linux /proc); 0 where unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _stack(fn, x: torch.Tensor, layers: int) -> torch.Tensor:
    for _ in range(layers):
        x = fn(x)
    return x


def measure(variant: str, size: list[int], layers: int, device: str, dtype: torch.dtype, repeats: int) -> dict:
    """Memory and time of one variant; meant to run in its own process."""
    fn = VARIANTS[variant]
    cuda = device.startswith("cuda")
    x = torch.randn(*size, device=device, dtype=dtype, requires_grad=True)

    # 1. process memory during a plain forward + backward (first: ru_maxrss is a lifetime peak)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated()
    result = {}
    rss_before = _rss_bytes()
    y = _stack(fn, x, layers)
    result["rss_held_bytes"] = _rss_bytes() - rss_before
    y.sum().backward()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    result["peak_rss_bytes"] = max(0, peak_rss - rss_before)
    if cuda:
        torch.cuda.synchronize()
        result["cuda_peak_bytes"] = torch.cuda.max_memory_allocated() - cuda_before
    del y
    x.grad = None

    # 2. what autograd saves, via pack hooks (kept alive exactly as autograd keeps them)
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = _stack(fn, x, layers)
    unique = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in saved}
    result["saved_count"] = len(unique)
    result["saved_bytes"] = sum(unique.values())
    result["saved_bytes_per_save"] = sum(t.nbytes for t in saved)
    y.sum().backward()
    del y, saved, unique
    x.grad = None

    # 3. time
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _stack(fn, x, layers).sum().backward()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        x.grad = None
    result["ms"] = 1e3 * statistics.median(times)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs="+", default=[1024, 1024], help="input shape (default 1024 1024)")
    parser.add_argument("--layers", type=int, default=16, help="number of stacked Swish layers (default 16)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "float64"])
    parser.add_argument("--repeats", type=int, default=5, help="timed forward+backward runs (default 5)")
    parser.add_argument("--in-process", action="store_true", help="skip the per-variant subprocesses (RSS less reliable)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.layers < 1 or any(s < 1 for s in args.size):
        parser.error("--layers and every --size entry must be positive")
    dtype = getattr(torch, args.dtype)

    if args.worker:  # child process: measure one variant, print JSON
        print(json.dumps(measure(args.worker, args.size, args.layers, args.device, dtype, args.repeats)))
        return 0

    results = {}
    for variant in VARIANTS:
        if args.in_process:
            results[variant] = measure(variant, args.size, args.layers, args.device, dtype, args.repeats)
            continue
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", variant, "--size", *map(str, args.size),
               "--layers", str(args.layers), "--device", args.device, "--dtype", args.dtype,
               "--repeats", str(args.repeats)]
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")  # big buffers are mmapped, freed at once
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])

    numel = torch.Size(args.size).numel()
    x_mib = numel * dtype.itemsize / MiB
    print(f"input {tuple(args.size)} {args.dtype} on {args.device} ({x_mib:.2f} MiB), {args.layers} Swish layers, "
          f"torch {torch.__version__}")
    base = results["custom swish (SwishFunction)"]["saved_bytes"]
    cuda = args.device.startswith("cuda")
    header = ["variant", "saved tensors", "saved MiB", "vs custom", "MiB per save", "RSS held MiB", "peak RSS MiB"]
    header += ["CUDA peak MiB"] if cuda else []
    header += ["fwd+bwd ms"]
    rows = []
    for variant, r in results.items():
        row = [variant, str(r["saved_count"]), f"{r['saved_bytes'] / MiB:.1f}", f"{r['saved_bytes'] / base:.2f}x",
               f"{r['saved_bytes_per_save'] / MiB:.1f}",
               f"{r['rss_held_bytes'] / MiB:.1f}", f"{r['peak_rss_bytes'] / MiB:.1f}"]
        row += [f"{r['cuda_peak_bytes'] / MiB:.1f}"] if cuda else []
        row += [f"{r['ms']:.1f}"]
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
