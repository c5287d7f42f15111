"""Tiny deterministic graphs for the registry-wide suite's TestSpecs."""

from __future__ import annotations

import torch


def node_count(batch: int) -> int:
    return 5 + 3 * batch


def random_graph(cfg: dict, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, edge_index)`` of a random graph with ``5 + 3 * batch`` nodes, the last one isolated."""
    g = torch.Generator().manual_seed(1000 + batch)
    n = node_count(batch)
    x = torch.randn(n, cfg["in_channels"], generator=g)
    edge_index = torch.randint(0, n - 1, (2, 3 * n), generator=g)
    return x, edge_index


def random_graph_batch(cfg: dict, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, edge_index, batch_vector)`` of ``batch`` disjoint random graphs of 4..7 nodes."""
    g = torch.Generator().manual_seed(2000 + batch)
    xs, edges, ids, offset = [], [], [], 0
    for b in range(batch):
        n = 4 + b % 4
        xs.append(torch.randn(n, cfg["in_channels"], generator=g))
        edges.append(torch.randint(0, n, (2, 2 * n), generator=g) + offset)
        ids.append(torch.full((n,), b, dtype=torch.long))
        offset += n
    return torch.cat(xs), torch.cat(edges, dim=1), torch.cat(ids)
