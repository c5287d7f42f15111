"""Neighbour sampling for mini-batch GraphSAGE (Hamilton et al. 2017, Algorithm 2), in plain torch.

The graph is kept as a CSR adjacency over *incoming* edges (:class:`CSRAdjacency`: row ``i``
lists the sources ``j`` of the edges ``j -> i``, i.e. the nodes whose messages ``i`` receives).
For a mini-batch of seed nodes, :class:`NeighborSampler` samples, hop by hop, at most
``fanouts[k]`` incoming neighbours (uniformly, without replacement) of every node reached so far,
and returns one bipartite :class:`Block` per layer:

* ``batch.n_id``: global ids of every node the batch touches, **seeds first**
  (``n_id[:batch_size]`` are the seeds), then the nodes first reached at hop 1, hop 2, ...
* ``batch.blocks``: in the model's layer order. Block ``l`` maps ``size[0]`` source nodes
  (``n_id[:size[0]]``) to ``size[1]`` target nodes (``n_id[:size[1]]``; targets are a prefix of
  the sources, so a node's own features for the root weight are ``x[:size[1]]``). The first layer
  uses the outermost hop; the last layer's targets are the seeds.

``fanouts[0]`` is the number of neighbours sampled for the seeds (the model's last layer),
``fanouts[1]`` for their neighbours, and so on (PyG's ``num_neighbors`` order); ``-1`` takes all.
With every fan-out ``-1`` (or at least the maximum in-degree) the seeds' outputs equal the
full-batch outputs. :class:`zoo.graph.sage.GraphSAGE` takes ``model(x[batch.n_id], batch.blocks)``
and returns the seeds' logits.

Sampling cost is linear in the total in-degree of the nodes being expanded (a row with more
than ``fanout`` edges draws one random key per edge and keeps the ``fanout`` smallest), so a
graph with huge hubs pays for their degree at every visit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor

from zoo.shared.errors import InputError, InvalidConfigError

from .message_passing import check_edge_index


class CSRAdjacency:
    """Incoming-edge CSR: the sources of node ``i``'s in-edges are ``col[rowptr[i]:rowptr[i + 1]]``."""

    def __init__(self, rowptr: Tensor, col: Tensor):
        self.rowptr, self.col = rowptr, col
        self.num_nodes = rowptr.numel() - 1

    @classmethod
    def from_edge_index(cls, edge_index: Tensor, num_nodes: int) -> "CSRAdjacency":
        edge_index = check_edge_index(edge_index, num_nodes, "CSRAdjacency")
        dst, perm = torch.sort(edge_index[1], stable=True)
        col = edge_index[0].index_select(0, perm)
        rowptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=col.device)
        torch.cumsum(torch.bincount(dst, minlength=num_nodes), 0, out=rowptr[1:])
        return cls(rowptr, col)

    def degree(self) -> Tensor:
        return self.rowptr.diff()

    def neighbors(self, node: int) -> Tensor:
        return self.col[self.rowptr[node]:self.rowptr[node + 1]]


def _segment_starts(counts: Tensor) -> Tensor:
    return torch.cumsum(counts, 0) - counts


def sample_neighbors(adj: CSRAdjacency, nodes: Tensor, fanout: int,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """For each of ``nodes``, up to ``fanout`` distinct in-edges chosen uniformly (all if ``fanout < 0``).

    Returns ``(src, dst_pos)``: the global source ids of the chosen edges and, for each, the
    position in ``nodes`` of its target. Edges come grouped by target, in ``nodes`` order.
    """
    start = adj.rowptr.index_select(0, nodes)
    deg = adj.rowptr.index_select(0, nodes + 1) - start
    total = int(deg.sum())
    seg = torch.repeat_interleave(torch.arange(nodes.numel(), device=nodes.device), deg, output_size=total)
    rank = torch.arange(total, device=nodes.device) - _segment_starts(deg).index_select(0, seg)
    pos = start.index_select(0, seg) + rank  # CSR position of every candidate edge
    if fanout >= 0:
        big = deg > fanout
        if bool(big.any()):
            cand = big.index_select(0, seg)
            big_seg = seg[cand]
            # one random key per candidate edge of an over-full row; keep the `fanout` smallest keys
            keys = big_seg.to(torch.float64) + torch.rand(big_seg.numel(), dtype=torch.float64,
                                                          generator=generator, device=nodes.device)
            order = torch.argsort(keys)
            big_deg = deg[big]
            local_start = _segment_starts(big_deg)
            # segment id among the big rows of each (sorted) candidate
            big_id = torch.repeat_interleave(torch.arange(big_deg.numel(), device=nodes.device), big_deg)
            rank_in_row = torch.empty_like(order)
            rank_in_row[order] = torch.arange(order.numel(), device=nodes.device) - local_start[big_id]
            keep = torch.ones(total, dtype=torch.bool, device=nodes.device)
            keep[cand] = rank_in_row < fanout
            pos, seg = pos[keep], seg[keep]
    return adj.col.index_select(0, pos), seg


@dataclass
class Block:
    """One layer's bipartite graph: ``edge_index[0]`` in ``[0, size[0])`` (sources),
    ``edge_index[1]`` in ``[0, size[1])`` (targets, the first ``size[1]`` sources)."""

    edge_index: Tensor
    size: tuple[int, int]

    def to(self, device) -> "Block":
        return Block(self.edge_index.to(device), self.size)


@dataclass
class SampledBatch:
    n_id: Tensor
    blocks: list[Block]
    batch_size: int

    @property
    def seeds(self) -> Tensor:
        return self.n_id[: self.batch_size]

    def to(self, device) -> "SampledBatch":
        return SampledBatch(self.n_id.to(device), [b.to(device) for b in self.blocks], self.batch_size)


class NeighborSampler:
    """Mini-batches of seed nodes with sampled multi-hop neighbourhoods (see the module docstring).

    ``NeighborSampler(edge_index, num_nodes, fanouts=[15, 10], batch_size=1024, seeds=train_idx)``
    iterates over ``seeds`` (all nodes by default; shuffled each epoch when ``shuffle``) and yields
    :class:`SampledBatch` objects; ``sample(seed_ids)`` samples one batch for given seeds.
    """

    def __init__(self, edge_index: Tensor | CSRAdjacency, num_nodes: int | None = None, *,
                 fanouts: Sequence[int], batch_size: int = 1024, seeds: Tensor | None = None,
                 shuffle: bool = True, drop_last: bool = False, generator: torch.Generator | None = None):
        if isinstance(edge_index, CSRAdjacency):
            self.adj = edge_index
        else:
            if num_nodes is None:
                raise InvalidConfigError("NeighborSampler needs num_nodes with an edge_index")
            self.adj = CSRAdjacency.from_edge_index(edge_index, num_nodes)
        if not fanouts:
            raise InvalidConfigError("NeighborSampler: fanouts must name at least one hop, e.g. [15, 10]")
        if batch_size < 1:
            raise InvalidConfigError(f"NeighborSampler: batch_size must be >= 1, got {batch_size}")
        self.fanouts = [int(f) for f in fanouts]
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.generator = generator
        n = self.adj.num_nodes
        if isinstance(seeds, Tensor) and seeds.dtype == torch.bool:
            if seeds.shape != (n,):
                raise InputError(f"NeighborSampler: a boolean seed mask needs one entry per node ({n}), "
                                 f"got shape {tuple(seeds.shape)}.")
            seeds = seeds.nonzero().view(-1)
        self.seeds = torch.arange(n) if seeds is None else self._check_seeds(seeds)
        # global id -> local id of the batch being sampled; -1 elsewhere (reset after every batch)
        self._local = torch.full((n,), -1, dtype=torch.long, device=self.adj.col.device)

    def __len__(self) -> int:
        full, rest = divmod(self.seeds.numel(), self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1

    def __iter__(self) -> Iterator[SampledBatch]:
        seeds = self.seeds
        if self.shuffle:
            seeds = seeds[torch.randperm(seeds.numel(), generator=self.generator, device=seeds.device)]
        for k in range(len(self)):
            yield self.sample(seeds[k * self.batch_size:(k + 1) * self.batch_size])

    def _check_seeds(self, seeds) -> Tensor:
        if not isinstance(seeds, Tensor) or seeds.dtype not in (torch.int64, torch.int32) or seeds.dim() != 1:
            got = (f"{seeds.dtype} tensor of shape {tuple(seeds.shape)}" if isinstance(seeds, Tensor)
                   else type(seeds).__name__)
            raise InputError("NeighborSampler: seed nodes must be a 1-d integer tensor of node ids (or a boolean "
                             f"mask), got {got}.")
        n = self.adj.num_nodes
        if seeds.numel() and (int(seeds.min()) < 0 or int(seeds.max()) >= n):
            bad = int(seeds.min()) if int(seeds.min()) < 0 else int(seeds.max())
            raise InputError(f"NeighborSampler: seed node {bad} is not a node of the graph (ids 0..{n - 1}).")
        return seeds.long()

    def sample(self, seeds: Tensor) -> SampledBatch:
        seeds = self._check_seeds(seeds)
        local = self._local
        if seeds.unique().numel() != seeds.numel():
            raise InputError("NeighborSampler: the seed nodes of a batch must be distinct.")
        n_id = seeds
        local[n_id] = torch.arange(n_id.numel(), device=n_id.device)
        blocks = []
        try:
            frontier_end = n_id.numel()  # nodes 0..frontier_end-1 are expanded at this hop
            for fanout in self.fanouts:
                src, dst = sample_neighbors(self.adj, n_id[:frontier_end], fanout, self.generator)
                new = src[local.index_select(0, src) < 0].unique()
                local[new] = torch.arange(n_id.numel(), n_id.numel() + new.numel(), device=n_id.device)
                n_id = torch.cat([n_id, new])
                edge_index = torch.stack([local.index_select(0, src), dst])
                blocks.append(Block(edge_index, (n_id.numel(), frontier_end)))
                frontier_end = n_id.numel()
        finally:
            local[n_id] = -1
        return SampledBatch(n_id, blocks[::-1], seeds.numel())
