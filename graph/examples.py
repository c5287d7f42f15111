"""Example inputs of the graph models: small random graphs, as each model registers them.

Every registered model declares a tiny config and example inputs (its ``TestSpec``), which the
registry-wide suite runs; these are the graph models' ones. A "batch" of ``b`` samples is the
disjoint union of ``b`` small random graphs: graph ``k`` has ``graph_size(k)`` nodes (the last
one isolated) and its node ids follow those of graphs ``0..k-1``. Sizes depend only on ``k``, so
:func:`select_node_graph` / :func:`select_graph` can cut graph ``i`` back out of any batch
without being told the batch size, and "one sample alone gives the same output as inside a
batch" can be checked on graphs too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from zoo.shared.registry import TestSpec


def graph_size(k: int) -> int:
    """Nodes of the ``k``-th graph of a batch: 4..7."""
    return 4 + k % 4


def graph_offset(k: int) -> int:
    return sum(graph_size(j) for j in range(k))


def node_count(batch: int) -> int:
    """Total nodes of a batch of ``batch`` graphs."""
    return graph_offset(batch)


def _union(cfg: dict, batch: int, seed: int, isolated_last: bool) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed + batch)
    xs, edges, ids, offset = [], [], [], 0
    for k in range(batch):
        n = graph_size(k)
        xs.append(torch.randn(n, cfg["in_channels"], generator=g))
        hi = n - 1 if isolated_last else n
        edges.append(torch.randint(0, hi, (2, 2 * n), generator=g) + offset)
        ids.append(torch.full((n,), k, dtype=torch.long))
        offset += n
    return torch.cat(xs), torch.cat(edges, dim=1), torch.cat(ids)


def random_graph(cfg: dict, batch: int) -> tuple[Tensor, Tensor]:
    """``(x, edge_index)``: ``batch`` disjoint random graphs of 4..7 nodes (each with an isolated
    last node, self-loops and duplicate edges possible), for node-level models."""
    x, edge_index, _ = _union(cfg, batch, 1000, isolated_last=True)
    return x, edge_index


def random_graph_batch(cfg: dict, batch: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(x, edge_index, batch_vector)`` of ``batch`` disjoint random graphs of 4..7 nodes."""
    return _union(cfg, batch, 2000, isolated_last=False)


def _subgraph(x: Tensor, edge_index: Tensor, i: int) -> tuple[Tensor, Tensor, slice]:
    lo, n = graph_offset(i), graph_size(i)
    rows = slice(lo, lo + n)
    keep = (edge_index[0] >= lo) & (edge_index[0] < lo + n)
    return x[rows], edge_index[:, keep] - lo, rows


def select_node_graph(inputs: tuple, output: Tensor, i: int) -> tuple[tuple, Tensor]:
    """TestSpec.select for node-level models: graph ``i`` alone, and its rows of the union's output."""
    x, edge_index = inputs[:2]
    sub_x, sub_ei, rows = _subgraph(x, edge_index, i)
    return (sub_x, sub_ei), output[rows]


def select_graph(inputs: tuple, output: Tensor, i: int) -> tuple[tuple, Tensor]:
    """TestSpec.select for graph classification: graph ``i`` alone (batch vector of zeros), output row ``i``."""
    x, edge_index, _ = inputs
    sub_x, sub_ei, _ = _subgraph(x, edge_index, i)
    return (sub_x, sub_ei, torch.zeros(sub_x.size(0), dtype=torch.long)), output[i:i + 1]


NODE_INPUTS = "x (num_nodes, in_channels) float, edge_index (2, num_edges) long; or a Data-like object with .x, .edge_index"


def node_test_spec(**config) -> TestSpec:
    """TestSpec of a node-classification model: ``config`` on a disjoint union of random graphs,
    one output row per node, graph ``i`` checked alone against its rows in the union."""
    return TestSpec(config=config, inputs=random_graph, select=select_node_graph,
                    output_shape=lambda cfg, b: (node_count(b), cfg["num_classes"]))
