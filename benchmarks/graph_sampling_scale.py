"""GraphSAGE with neighbour sampling on a synthetic 1M-node / 10M-edge graph: time per epoch, peak memory.

    .venv/bin/python benchmarks/graph_sampling_scale.py                      # 100 batches, extrapolated
    .venv/bin/python benchmarks/graph_sampling_scale.py --full-epoch         # every node a seed, once
    .venv/bin/python benchmarks/graph_sampling_scale.py --nodes 100000 --edges 1000000 --batches 20

The graph: ``--edges`` directed edges with endpoints drawn uniformly at random (torch, seed 0;
self-loops and duplicates kept, as drawn), ``--features``-dim Gaussian node features and labels
that depend on a node's own and its in-neighbours' features (argmax of a random projection of
``x_i + mean_j x_j``), so the loss has something to learn. The model is the registry's
``graphsage`` (2 x SAGEConv, mean aggregator, hidden 256, dropout 0.5), Adam lr 0.003; every node is
a training seed. An epoch is ``ceil(nodes / batch_size)`` mini-batches; unless ``--full-epoch``,
``--batches`` of them (after ``--warmup`` untimed ones) are timed and the epoch time is
extrapolated linearly. Peak memory is the process's maximum RSS (``resource.getrusage``), which
includes the graph, the CSR adjacency, features and every transient of the run.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402
from zoo.graph.sampling import CSRAdjacency, NeighborSampler  # noqa: E402


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def current_rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**30


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=1_000_000)
    p.add_argument("--edges", type=int, default=10_000_000)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--classes", type=int, default=16)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--fanouts", type=int, nargs="+", default=[15, 10])
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--batches", type=int, default=100, help="timed mini-batches (ignored with --full-epoch)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--full-epoch", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n, e = args.nodes, args.edges
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {n:,} nodes, {e:,} edges, "
          f"{args.features} features, fanouts {args.fanouts}, batch {args.batch_size}")

    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, n, (2, e), generator=g)
    x = torch.randn(n, args.features, generator=g)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    adj = CSRAdjacency.from_edge_index(edge_index, n)
    t_csr = time.perf_counter() - t0
    # labels from own + mean in-neighbour features (one sparse product over the CSR adjacency)
    with torch.no_grad():
        deg = adj.degree().clamp(min=1).unsqueeze(1).float()
        a = torch.sparse_csr_tensor(adj.rowptr, adj.col, torch.ones(e), (n, n))
        proj = torch.randn(args.features, args.classes, generator=g)
        y = ((x + (a @ x) / deg) @ proj).argmax(1)
        del a, deg
    del edge_index  # the sampler only needs the CSR adjacency
    print(f"setup: generate {t_gen:.1f} s, CSR {t_csr:.1f} s; RSS now {current_rss_gib():.2f} GiB")

    torch.manual_seed(0)
    model = zoo.create("graphsage", in_channels=args.features, hidden_channels=args.hidden,
                       num_classes=args.classes, num_layers=len(args.fanouts))
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    sampler = NeighborSampler(adj, fanouts=args.fanouts, batch_size=args.batch_size,
                              generator=torch.Generator().manual_seed(1))
    per_epoch = len(sampler)
    timed = per_epoch if args.full_epoch else min(args.batches, per_epoch - args.warmup)
    warmup = 0 if args.full_epoch else args.warmup
    model.train()
    t_sample = t_step = 0.0
    losses, correct, seen, nodes_touched, edges_touched = [], 0, 0, 0, 0
    it = iter(sampler)
    for k in range(warmup + timed):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(x[batch.n_id], batch.blocks)
        target = y[batch.seeds]
        loss = F.cross_entropy(out, target)
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if k >= warmup:
            t_sample += t1 - t0
            t_step += t2 - t1
            losses.append(loss.item())
            correct += int((out.argmax(1) == target).sum())
            seen += target.numel()
            nodes_touched += batch.n_id.numel()
            edges_touched += sum(b.edge_index.size(1) for b in batch.blocks)
    total = t_sample + t_step
    epoch_s = total if args.full_epoch else total / timed * per_epoch
    what = (f"full epoch: {timed} mini-batches, every node a seed once" if args.full_epoch else
            f"{timed} timed mini-batches (after {warmup} warm-up), extrapolated x{per_epoch / timed:.2f} "
            f"to {per_epoch} batches")
    print(f"\nmeasured: {what}")
    print(f"loss first 10 batches {sum(losses[:10]) / len(losses[:10]):.3f} -> last 10 "
          f"{sum(losses[-10:]) / len(losses[-10:]):.3f}; train acc over timed batches {100 * correct / seen:.1f}%")
    print("\n| measurement | value |")
    print("|---|---|")
    print(f"| graph | {n:,} nodes, {e:,} edges, {args.features}-dim features |")
    print(f"| GraphSAGE | {len(args.fanouts)} layers, hidden {args.hidden}, fanouts {args.fanouts}, "
          f"batch {args.batch_size} |")
    print(f"| per mini-batch (mean) | {1e3 * total / timed:.1f} ms (sampling {1e3 * t_sample / timed:.1f} ms, "
          f"fwd+bwd+step {1e3 * t_step / timed:.1f} ms) |")
    print(f"| sampled per batch (mean) | {nodes_touched / timed:,.0f} nodes, {edges_touched / timed:,.0f} edges |")
    print(f"| time per epoch ({per_epoch} batches) | {epoch_s:.1f} s{'' if args.full_epoch else ' (extrapolated)'} |")
    print(f"| peak RSS (ru_maxrss) | {rss_gib():.2f} GiB (limit 24 GiB) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
