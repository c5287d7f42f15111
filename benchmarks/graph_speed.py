"""Speed of our graph layers against PyG's, measured in the same process, interleaved.

    .venv/bin/python benchmarks/graph_speed.py              # Cora from --data-dir or $ZOO_DATA/planetoid
    .venv/bin/python benchmarks/graph_speed.py --repeats 30 --gat-epochs 200

Reports the median forward + backward time of GCNConv(1433 -> 16) and GATConv(1433 -> 8x8 heads)
on Cora, and the wall time of a 200-epoch full-batch GAT training run (the paper's model; Adam;
one train step + one eval forward per epoch) with each library's layers, and the ratio ours / PyG.
Measurements alternate between the two implementations (the training runs epoch by epoch) so
machine load hits both alike. Our ``gat`` is the registry default, which also drops the aggregated
features (``message_dropout``, as the authors' code); PyG's example model does not.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch_geometric.nn as pyg_nn  # noqa: E402

import zoo  # noqa: E402
from zoo.graph import conv as ours  # noqa: E402
from zoo.graph.data import load_planetoid  # noqa: E402
from zoo.shared.data_paths import data_root  # noqa: E402
from tests.reference import pyg_models  # noqa: E402



PygGAT = pyg_models()["gat"]


def fwd_bwd(layer, x, edge_index):
    t = time.perf_counter()
    layer(x, edge_index).sum().backward()
    return time.perf_counter() - t


def make_epoch(model, data):
    """One training epoch of the recipe (train step + eval forward), returned as a timed callable."""
    opt = torch.optim.Adam(model.parameters(), lr=0.005, weight_decay=5e-4)

    def epoch() -> float:
        t = time.perf_counter()
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(data.x, data.edge_index)[data.train_mask], data.y[data.train_mask]).backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            model(data.x, data.edge_index)
        return time.perf_counter() - t

    return epoch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--gat-epochs", type=int, default=200)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-dir", default=None, help="Planetoid raw files (default: $ZOO_DATA/planetoid, "
                                                    "then the zoo cache)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_planetoid("cora", data_root("planetoid", args.data_dir), download=False)
    x, ei = data.x, data.edge_index
    print(f"Cora: {data.num_nodes} nodes, {data.num_edges} edges; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    rows = []
    for name, mine, ref in [("GCNConv 1433->16", ours.GCNConv(1433, 16), pyg_nn.GCNConv(1433, 16)),
                            ("GATConv 1433->8x8", ours.GATConv(1433, 8, heads=8, dropout=0.6),
                             pyg_nn.GATConv(1433, 8, heads=8, dropout=0.6))]:
        mine.load_state_dict(ref.state_dict())
        mine.train(), ref.train()
        for _ in range(3):
            fwd_bwd(mine, x, ei), fwd_bwd(ref, x, ei)
        a, b = [], []
        for _ in range(args.repeats):
            a.append(fwd_bwd(mine, x, ei))
            b.append(fwd_bwd(ref, x, ei))
        rows.append((f"{name} fwd+bwd (median of {args.repeats})", statistics.median(a) * 1e3,
                     statistics.median(b) * 1e3, "ms"))
    # the two runs advance in lockstep, one epoch of each in turn, so load hits both alike
    torch.manual_seed(0)
    mine = zoo.create("gat", in_channels=1433, num_classes=7)  # the registry default (with message dropout)
    ref = PygGAT(1433, 7)
    mine.load_state_dict(ref.state_dict())
    epochs = {"ours": make_epoch(mine, data), "ref": make_epoch(ref, data)}
    total = {"ours": 0.0, "ref": 0.0}
    for _ in range(args.gat_epochs):
        for who, epoch in epochs.items():
            total[who] += epoch()
    rows.append((f"GAT {args.gat_epochs}-epoch run (train step + eval), interleaved", total["ours"], total["ref"], "s"))
    print("\n| measurement | ours | PyG | ours / PyG |")
    print("|---|---|---|---|")
    for what, mine_t, ref_t, unit in rows:
        print(f"| {what} | {mine_t:.2f} {unit} | {ref_t:.2f} {unit} | {mine_t / ref_t:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
