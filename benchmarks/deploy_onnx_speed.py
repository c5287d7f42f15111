"""ONNX Runtime (CPU, every graph optimization on) against eager PyTorch (inference mode), same run.

    OMP_NUM_THREADS=1 python benchmarks/deploy_onnx_speed.py --threads 1
    python benchmarks/deploy_onnx_speed.py --models bert_base_uncased --batches 8 --profile

For resnet50 (224 px), vit_small_patch16_224 (224 px) and bert_base_uncased (128 tokens with an
attention mask), random weights (speed does not depend on them), batch 1 and 8: each model is
exported by ``zoo.deploy.export`` (dynamic batch), the two engines run the same inputs in interleaved
repeats (torch, ORT, torch, ORT, ...) so a change in machine load hits both, and the medians give
the ratio eager / ORT (> 1: ORT faster; the target is 1.3). Outputs are compared (max |diff|, 1e-4).
ONNX Runtime's intra-op threads = torch's threads. ``--provider openvino`` runs ONNX Runtime's
OpenVINO execution provider (OpenVINO's CPU kernels at fp32; needs ``onnxruntime-openvino``) in place
of ONNX Runtime's own kernels. ``--profile`` prints the op types where each engine spends its time
(torch profiler; ORT's own profiler), for a ratio below the target.

``--roofline`` adds how close each engine comes to the core: the forward's floating-point
operations (torch's ``FlopCounterMode``: matrix products, convolutions, attention), each engine's
rate in GFLOP/s, and ``ceiling``, eager's time over the time the forward's operations would take at
the fastest fp32 rate seen in the same run (a 2048 x 2048 x 2048 matrix product in torch and in ONNX
Runtime, and every row's two engines). It is the ratio an engine running the whole forward at that
rate would reach: measured, not the hardware's peak, so a lower bound on what is possible.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import zoo
from zoo.deploy.export import ONNX_PROVIDERS, export, onnx_session

MODELS = ("resnet50", "vit_small_patch16_224", "bert_base_uncased")
TARGET = 1.3


def _inputs(name: str, model, batch: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(batch)
    if name.startswith("bert"):
        ids = torch.randint(0, model.config.vocab_size, (batch, 128), generator=g)
        mask = torch.ones_like(ids)
        mask[0, 100:] = 0  # one padded row: the mask is used, not constant
        return ids, mask
    return (torch.randn(batch, 3, 224, 224, generator=g),)


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _profile(model, session, inputs, feed) -> dict:
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:  # one call
        model(*inputs)
    torch_top = [(e.key, round(e.self_cpu_time_total / 1e3, 2)) for e in
                 sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]]
    return {"torch_top_ms": torch_top, "ort_top_ms": _ort_profile(session, feed)}


def _ort_profile(session, feed) -> list:
    import onnxruntime as ort

    path = session._model_path
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    s = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    for _ in range(3):
        s.run(None, feed)
    trace = json.loads(Path(s.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    for event in trace:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + event["dur"] / 1e3 / 3
    return sorted(((k, round(v, 2)) for k, v in by_op.items()), key=lambda kv: -kv[1])[:8]


def forward_flops(model, inputs) -> int:
    """Floating-point operations of one forward (multiply and add counted apart)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(*inputs)
    return counter.get_total_flops()


def peak_matmul_gflops(n: int = 2048, repeats: int = 5) -> dict:
    """GFLOP/s of an fp32 n x n x n matrix product in torch and in ONNX Runtime (torch's thread count;
    the best of ``repeats``)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    a, b = torch.randn(n, n), torch.randn(n, n)
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(helper.make_model(graph).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feed = {"a": a.numpy(), "b": b.numpy()}
    torch.mm(a, b), session.run(None, feed)  # warm up
    flop = 2 * n ** 3
    rates = {"torch": flop / min(_time(lambda: torch.mm(a, b), repeats)) / 1e9,
             "onnxruntime": flop / min(_time(lambda: session.run(None, feed), repeats)) / 1e9}
    return {k: round(v, 1) for k, v in rates.items()}


def run(models=MODELS, batches=(1, 8), repeats: int = 10, warmup: int = 2, profile: bool = False,
        provider: str = "cpu", roofline: bool = False) -> list[dict]:
    results = []
    peak = peak_matmul_gflops() if roofline else None
    if peak:
        print(json.dumps({"peak_matmul_gflops": peak}), flush=True)
    folder = Path(tempfile.mkdtemp(prefix="zoo-onnx-bench-"))
    for name in models:
        torch.manual_seed(0)
        model = zoo.create(name).eval()
        path = export(model, "onnx", folder / f"{name}.onnx", _inputs(name, model, 2))
        session = onnx_session(path, provider=provider)
        session._model_path = str(path)
        names = [i.name for i in session.get_inputs()]
        for batch in batches:
            inputs = _inputs(name, model, batch)
            feed = {n: t.numpy() for n, t in zip(names, inputs)}
            with torch.inference_mode():
                eager = torch.utils._pytree.tree_leaves(model(*inputs))[0]  # BERT: (hidden states, pooled)
            onnx_out = torch.from_numpy(session.run(None, feed)[0])
            diff = float((onnx_out - eager).abs().max())
            for _ in range(warmup):
                with torch.inference_mode():
                    model(*inputs)
                session.run(None, feed)
            t_torch, t_ort = [], []
            for _ in range(repeats):  # interleaved: a load change hits both
                with torch.inference_mode():
                    t_torch += _time(lambda: model(*inputs), 1)
                t_ort += _time(lambda: session.run(None, feed), 1)
            row = {"model": name, "batch": batch, "threads": torch.get_num_threads(), "provider": provider,
                   "eager_ms": round(statistics.median(t_torch) * 1e3, 2),
                   "ort_ms": round(statistics.median(t_ort) * 1e3, 2),
                   "max_abs_diff": diff, "agree_1e-4": diff <= 1e-4 * max(1.0, float(eager.abs().max()))}
            row["ratio"] = round(row["eager_ms"] / row["ort_ms"], 3)
            row["meets_target"] = row["ratio"] >= TARGET
            if profile:
                row["profile"] = _profile(model, session, inputs, feed)
            if peak:
                gflop = forward_flops(model, inputs) / 1e9
                row.update(gflop=round(gflop, 2), eager_gflops=round(gflop / row["eager_ms"] * 1e3, 1),
                           ort_gflops=round(gflop / row["ort_ms"] * 1e3, 1))
            print(json.dumps(row), flush=True)
            results.append(row)
    if peak:  # the fastest rate seen anywhere in the run
        best = max([*peak.values(), *(r[k] for r in results for k in ("eager_gflops", "ort_gflops"))])
        print(json.dumps({"fastest_gflops": best}), flush=True)
        for r in results:
            r.update(fastest_gflops=best, ceiling=round(r["eager_ms"] / (r["gflop"] / best * 1e3), 2))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--roofline", action="store_true",
                        help="FLOPs, each engine's GFLOP/s and the ratio the fastest matrix product here allows")
    parser.add_argument("--provider", default="cpu", choices=ONNX_PROVIDERS,
                        help="ONNX Runtime's execution provider (openvino: the onnxruntime-openvino build)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = run(args.models, args.batches, args.repeats, profile=args.profile, provider=args.provider,
               roofline=args.roofline)
    extra = " GFLOP | eager GFLOP/s | ORT GFLOP/s | ceiling |" if args.roofline else ""
    print("\n| model | batch | eager ms | ORT ms | eager/ORT | max diff |" + extra)
    print("|---|---|---|---|---|---|" + "---|" * extra.count("|"))
    for r in rows:
        line = f"| {r['model']} | {r['batch']} | {r['eager_ms']} | {r['ort_ms']} | {r['ratio']}x | {r['max_abs_diff']:.1e} |"
        if args.roofline:
            line += f" {r['gflop']} | {r['eager_gflops']} | {r['ort_gflops']} | {r['ceiling']}x |"
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
