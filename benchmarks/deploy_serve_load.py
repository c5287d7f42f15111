"""Load on ``zoo serve``: requests/s and p50 / p99 latency with and without dynamic batching, on
torch and on ONNX Runtime, measured in one run.

    .venv/bin/python benchmarks/deploy_serve_load.py                       # resnet18, 224 px, 1 model thread
    .venv/bin/python benchmarks/deploy_serve_load.py --size 32 --num-classes 10 --requests 400   # digits-sized
    .venv/bin/python benchmarks/deploy_serve_load.py --backends torch --max-batch 1 16

The model is ``resnet18`` with random weights (the timing does not depend on them) saved with an
ImageNet-style ``pretrained_cfg`` (``--size`` px, crop_pct 0.875), and for the ONNX rows exported
by ``zoo.deploy.export`` (what ``zoo export --format onnx`` runs: the file and its sidecar JSON). Each server
is ``python -m zoo serve ... --threads T`` in its own process (the model computes on T threads; its
event loop and request parsing are its own); the clients are ``--clients`` concurrent httpx
requests on one asyncio loop in this process, each sending one JPEG (``--size / 0.875`` px, so the
server resizes and crops it) as the raw body and waiting for the answer, until ``--requests``
requests are done, after ``--warmup`` untimed ones. Latency is from sending to the full answer.
Every answer is checked (HTTP 200, ``top`` present).

Rows: one per backend x ``--max-batch`` (1 = no batching), all servers up at once and visited in
turn for ``--repeats`` rounds (medians; the range of requests/s in brackets), since a shared machine's
load drifts. The last column is requests/s against the same backend's ``--max-batch 1`` row. The line above the table is the model called
directly in this process (same thread count, batch 1 and each ``--max-batch``): the ceiling that
HTTP, JPEG decoding and resizing bring the server down from.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def save_model(directory: Path, size: int, num_classes: int) -> None:
    import zoo

    torch.manual_seed(0)
    model = zoo.create("resnet18", num_classes=num_classes).eval()
    model.pretrained_cfg = {"input_size": [3, size, size], "mean": [0.485, 0.456, 0.406],
                            "std": [0.229, 0.224, 0.225], "interpolation": "bilinear", "crop_pct": 0.875}
    zoo.save_pretrained(model, directory)


def images(n: int, side: int) -> list[bytes]:
    """Smooth random colour images (JPEG), ``side`` px square."""
    from PIL import Image

    rng, out = np.random.default_rng(0), []
    for _ in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((side, side), Image.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


class Server:
    """``python -m zoo serve`` in a subprocess; its URL read from the line it prints."""

    def __init__(self, args: list[str], threads: int):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "zoo", "serve", "--port", "0", "--threads", str(threads),
                                      *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        if " on http://" not in line:
            self.proc.kill()
            raise RuntimeError(f"zoo serve did not start: {line}{self.proc.stderr.read()}")
        self.url = line.split(" on ")[1].split()[0]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def load(url: str, bodies: list[bytes], requests: int, clients: int, warmup: int) -> dict:
    import httpx

    latencies: list[float] = []
    counter = iter(range(requests))  # shared by the clients: each takes the next request to send
    async with httpx.AsyncClient(base_url=url, timeout=120,
                                 limits=httpx.Limits(max_connections=clients, max_keepalive_connections=clients)) as c:
        async def one(i: int) -> float:
            start = time.perf_counter()
            r = await c.post("/predict", content=bodies[i % len(bodies)], headers={"content-type": "image/jpeg"})
            if r.status_code != 200 or "top" not in r.json():
                raise RuntimeError(f"request {i}: {r.status_code} {r.text[:200]}")
            return time.perf_counter() - start

        await asyncio.gather(*(one(i) for i in range(warmup)))
        before = (await c.get("/metrics")).json()

        async def client() -> None:
            for i in counter:
                latencies.append(await one(i))

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
        after = (await c.get("/metrics")).json()
    ms = sorted(1000 * t for t in latencies)
    batches = after["batches"] - before["batches"]
    return {"requests": len(ms), "rps": len(ms) / elapsed, "p50": statistics.median(ms),
            "p99": ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))],
            "mean_batch": (after["batched_requests"] - before["batched_requests"]) / max(batches, 1),
            "max_batch": after["max_batch_seen"]}


def direct(directory: Path, onnx: Path | None, batch: int, size: int, seconds: float = 3.0) -> dict[str, float]:
    """Images/s of the model called directly (no HTTP, no decoding) at ``batch``: the ceiling a server
    approaches, per backend, timed over about ``seconds`` after one warm-up call."""
    import zoo

    x = torch.randn(batch, 3, size, size)
    calls = {}
    model = zoo.from_pretrained(directory).eval()
    calls["torch"] = lambda: model(x)
    if onnx is not None:
        from zoo.deploy.serve import OnnxBackend

        names = [i["name"] for i in json.loads(Path(f"{onnx}.json").read_text())["inputs"]]
        session = OnnxBackend(onnx, names, threads=torch.get_num_threads())
        array = x.numpy()
        calls["onnxruntime"] = lambda: session(array)
    out = {}
    with torch.inference_mode():
        for name, call in calls.items():
            call()
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                call()
                n += 1
            out[name] = n * batch / (time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224, help="model input side (px)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=160, help="timed requests per row")
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--clients", type=int, default=16, help="concurrent requests in flight")
    parser.add_argument("--threads", type=int, default=1, help="model threads in the server")
    parser.add_argument("--max-batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the configurations; medians reported")
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"], choices=["torch", "onnxruntime"])
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        directory, onnx = Path(tmp) / "resnet18", Path(tmp) / "resnet18.onnx"
        save_model(directory, args.size, args.num_classes)
        if "onnxruntime" in args.backends:
            from zoo.deploy.export import export  # what `zoo export --format onnx` runs

            export(str(directory), "onnx", onnx)
        bodies = images(32, round(args.size / 0.875))
        print(f"zoo serve load: resnet18 ({args.num_classes} classes) on {args.size} px JPEG uploads "
              f"({len(bodies[0]) // 1024} KB), {args.clients} concurrent clients, {args.requests} timed requests "
              f"per row, {args.threads} model thread(s), wait {args.max_wait_ms:g} ms; {platform.processor() or ''} "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}")
        onnx_or_none = onnx if "onnxruntime" in args.backends else None
        ceiling = {b: direct(directory, onnx_or_none, b, args.size) for b in sorted({1, *args.max_batch})}
        print("model alone (no HTTP, no decoding), images/s: " + "; ".join(
            f"batch {b}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()) for b, row in ceiling.items()))
        print(f"median of {args.repeats} rounds; the rounds visit the configurations in turn, so machine load "
              "drifting during the run reaches them all alike; requests/s range in brackets")
        print("| backend | max batch | requests/s | p50 ms | p99 ms | mean batch | vs no batching |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        configs = [(backend, max_batch) for backend in args.backends for max_batch in args.max_batch]
        servers, rows = {}, {c: [] for c in configs}
        try:
            for backend, max_batch in configs:  # all up at once (idle ones cost nothing) to interleave rounds
                model = ["--pretrained", str(directory)] if backend == "torch" else ["--onnx", str(onnx)]
                servers[backend, max_batch] = Server(
                    [*model, "--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms)], args.threads)
            for _ in range(args.repeats):
                for config in configs:
                    rows[config].append(asyncio.run(load(servers[config].url, bodies, args.requests, args.clients,
                                                         args.warmup)))
        finally:
            for server in servers.values():
                server.close()
        median = {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for c, rs in rows.items()}
        for backend, max_batch in configs:
            row, runs = median[backend, max_batch], [r["rps"] for r in rows[backend, max_batch]]
            base = median.get((backend, 1), {}).get("rps")
            ratio = f"{row['rps'] / base:.2f}x" if base else "-"
            print(f"| {backend} | {max_batch} | {row['rps']:.1f} [{min(runs):.1f}-{max(runs):.1f}] | {row['p50']:.0f} | "
                  f"{row['p99']:.0f} | {row['mean_batch']:.1f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
