"""Message passing in plain PyTorch: the reference path of every graph layer.

A graph is ``x`` (``num_nodes x features``) and ``edge_index`` (``2 x num_edges``, int64): edge
``e`` carries a message from node ``edge_index[0, e]`` (the source, ``j``) to node
``edge_index[1, e]`` (the target, ``i``), as in PyG's default ``source_to_target`` flow. One
layer of message passing is

    h_i' = update(h_i, aggregate_{j -> i} message(h_i, h_j, e_ji))

and :class:`MessagePassing` writes that sentence in PyG's manner: a layer says what one edge's
``message`` is (an argument named ``x_j`` is ``x`` at the edge's source, ``x_i`` at its target),
and :meth:`MessagePassing.propagate` gathers those arguments for every edge at once
(``index_select``), calls ``message`` on whole edge lists and aggregates the messages at their
targets (``index_add_`` / ``scatter_reduce_``). Per-edge coefficients such as attention are an
``edge_update`` gathered the same way. Nothing here imports ``torch_geometric``.

This is the code to read and the oracle of the tests. At run time the layers take the fast path
of :mod:`zoo.graph.fast` (the same sums as sparse CSR products, preprocessing remembered per graph,
sparse dropout); ``with zoo.graph.fast.plain():`` runs them on this path instead.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from zoo.shared.errors import InputError, InvalidConfigError

REDUCTIONS = ("sum", "add", "mean", "max", "min")


# ------------------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------------------


def check_features(x: Any, in_channels: int | None, where: str, dtype: torch.dtype | None = None) -> Tensor:
    """``x`` must be a floating ``(num_nodes, in_channels)`` tensor, of the model's ``dtype`` when given.

    A dtype other than the weights' (float64 features from numpy, float16 ones) is refused rather
    than cast: casting would silently change the user's numbers or the model's precision. Under
    autocast the mix is autocast's to resolve.
    """
    if not isinstance(x, Tensor):
        raise InputError(f"{where} expects node features as a torch.Tensor, got {type(x).__name__}.")
    if x.dim() != 2:
        raise InputError(f"{where} expects node features of shape (num_nodes, {in_channels or 'features'}), "
                         f"got a {x.dim()}-d tensor of shape {tuple(x.shape)}.")
    if not x.is_floating_point():
        raise InputError(f"{where} expects floating-point node features, got {x.dtype}; use x.float().")
    if in_channels is not None and in_channels > 0 and x.size(1) != in_channels:
        raise InputError(f"{where} was built for {in_channels} input features per node, but x has {x.size(1)} "
                         f"(shape {tuple(x.shape)}); build it with in_channels={x.size(1)}.")
    if dtype is not None and x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise InputError(f"{where} has {dtype} weights but the node features are {x.dtype}; pass x.to({dtype}) "
                         f"(or convert the model with model.to({x.dtype})).")
    return x


def check_edge_index(edge_index: Any, num_nodes: int, where: str = "graph layer") -> Tensor:
    """``edge_index`` must be an integer ``(2, num_edges)`` tensor with entries in ``[0, num_nodes)``.

    Returns it as int64 (int32 is accepted and widened).
    """
    if not isinstance(edge_index, Tensor):
        raise InputError(f"{where} expects edge_index as a torch.Tensor of shape (2, num_edges), "
                         f"got {type(edge_index).__name__}.")
    if edge_index.dtype not in (torch.int64, torch.int32):
        raise InputError(f"{where} expects an integer edge_index (torch.long), got {edge_index.dtype}; "
                         "use edge_index.long().")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        hint = " (it looks transposed: use edge_index.t())" if edge_index.dim() == 2 and edge_index.size(1) == 2 else ""
        raise InputError(f"{where} expects edge_index of shape (2, num_edges), got {tuple(edge_index.shape)}{hint}.")
    if edge_index.numel() > 0:
        lo, hi = int(edge_index.min()), int(edge_index.max())
        if lo < 0 or hi >= num_nodes:
            valid = f"valid node ids are 0..{num_nodes - 1}" if num_nodes else "it has no node an edge could name"
            raise InputError(f"{where}: edge_index refers to node {lo if lo < 0 else hi}, but the graph has "
                             f"{num_nodes} nodes (x has {num_nodes} rows); {valid}.")
    return edge_index.long()


def unpack_graph(x: Any, edge_index: Any = None, *extra: Any, fields: tuple[str, ...] = (),
                 where: str = "model") -> tuple:
    """Accept ``(x, edge_index, ...)`` or one object with ``.x``, ``.edge_index`` (a PyG ``Data``).

    ``fields`` names the optional attributes to read from such an object (``"batch"``,
    ``"edge_attr"``); they come back in that order after ``x`` and ``edge_index``.
    """
    if not isinstance(x, Tensor) and edge_index is None:
        missing = [name for name in ("x", "edge_index") if not hasattr(x, name)]
        if missing:
            what = " and ".join(f".{name}" for name in missing)
            raise InputError(f"{where} got a {type(x).__name__} without {what}: call {where}(x, edge_index) "
                             "with tensors, or pass an object with .x (node features) and .edge_index "
                             "(such as torch_geometric.data.Data).")
        return (x.x, x.edge_index, *(getattr(x, f, None) for f in fields))
    if not isinstance(x, Tensor) and hasattr(x, "x") and hasattr(x, "edge_index"):
        raise InputError(f"{where}: pass either a graph object with .x/.edge_index or (x, edge_index), not both.")
    if edge_index is None:
        raise InputError(f"{where} is missing edge_index: call {where}(x, edge_index) or {where}(data) "
                         "with data.x, data.edge_index.")
    values = list(extra) + [None] * (len(fields) - len(extra))
    return (x, edge_index, *values)


# ------------------------------------------------------------------------------------------------
# Gather / scatter
# ------------------------------------------------------------------------------------------------


def _broadcast(index: Tensor, src: Tensor) -> Tensor:
    return index.view(-1, *([1] * (src.dim() - 1))).expand_as(src)


def scatter(src: Tensor, index: Tensor, num_nodes: int, reduce: str = "sum") -> Tensor:
    """Reduce the rows of ``src`` into ``num_nodes`` rows: ``out[index[e]] (+)= src[e]``.

    ``sum`` uses ``index_add_``; ``mean`` divides by the in-degree (empty rows stay 0);
    ``max`` / ``min`` use ``scatter_reduce_`` and leave empty rows at 0.
    """
    shape = (num_nodes, *src.shape[1:])
    if reduce in ("sum", "add"):
        return src.new_zeros(shape).index_add_(0, index, src)
    if reduce == "mean":
        total = src.new_zeros(shape).index_add_(0, index, src)
        count = src.new_zeros(num_nodes).index_add_(0, index, src.new_ones(index.numel())).clamp_(min=1)
        return total / count.view(-1, *([1] * (src.dim() - 1)))
    if reduce in ("max", "min"):
        op = "amax" if reduce == "max" else "amin"
        return src.new_zeros(shape).scatter_reduce_(0, _broadcast(index, src), src, op, include_self=False)
    raise ValueError(f"unknown reduction {reduce!r}; use one of {', '.join(REDUCTIONS)}")


def degree(index: Tensor, num_nodes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """How many times each node appears in ``index`` (in-degree for ``edge_index[1]``)."""
    return torch.zeros(num_nodes, dtype=dtype, device=index.device).index_add_(
        0, index, torch.ones(index.numel(), dtype=dtype, device=index.device))


def edge_softmax(src: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """Softmax of edge scores over the edges that share a target: ``softmax_{j in N(i)} src_ji``.

    Numerically stable: each group's maximum is subtracted before ``exp``. ``src`` is
    ``(num_edges, ...)``; each trailing position (e.g. each attention head) is its own softmax.
    """
    group_max = scatter(src.detach(), index, num_nodes, "max")
    out = (src - group_max.index_select(0, index)).exp()
    denom = scatter(out, index, num_nodes, "sum").index_select(0, index)
    return out / (denom + 1e-16)


# ------------------------------------------------------------------------------------------------
# Self-loops and normalisation
# ------------------------------------------------------------------------------------------------


def remove_self_loops(edge_index: Tensor, edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    keep = edge_index[0] != edge_index[1]
    return edge_index[:, keep], (None if edge_attr is None else edge_attr[keep])


def add_self_loops(edge_index: Tensor, num_nodes: int, edge_attr: Tensor | None = None,
                   fill_value: float | str = 1.0) -> tuple[Tensor, Tensor | None]:
    """Append one loop ``i -> i`` per node. Loop attributes: a constant, or ``"mean"`` / ``"add"`` /
    ``"max"`` of the node's incoming edge attributes."""
    loops = torch.arange(num_nodes, device=edge_index.device).repeat(2, 1)
    edge_index = torch.cat([edge_index, loops], dim=1)
    if edge_attr is None:
        return edge_index, None
    if isinstance(fill_value, str):
        loop_attr = scatter(edge_attr, edge_index[1, : edge_attr.size(0)], num_nodes, fill_value)
    else:
        loop_attr = edge_attr.new_full((num_nodes, *edge_attr.shape[1:]), fill_value)
    return edge_index, torch.cat([edge_attr, loop_attr], dim=0)


def add_remaining_self_loops(edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None = None,
                             fill_value: float = 1.0) -> tuple[Tensor, Tensor | None]:
    """Give every node exactly one self-loop: existing loops keep their weight, the others get
    ``fill_value``. The loops go last, in node order."""
    is_loop = edge_index[0] == edge_index[1]
    loops = torch.arange(num_nodes, device=edge_index.device)
    new_index = torch.cat([edge_index[:, ~is_loop], loops.repeat(2, 1)], dim=1)
    if edge_weight is None:
        return new_index, None
    loop_weight = edge_weight.new_full((num_nodes,), fill_value)
    loop_weight = loop_weight.index_put((edge_index[0, is_loop],), edge_weight[is_loop])
    return new_index, torch.cat([edge_weight[~is_loop], loop_weight])


def gcn_norm(edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None = None, *, add_loops: bool = True,
             improved: bool = False, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Kipf & Welling's propagation weights ``D^-1/2 (A + I) D^-1/2`` as per-edge weights.

    The degree is counted at the target; ``improved`` puts weight 2 on the added self-loops.
    Like PyG's ``gcn_norm`` (whose outputs these must equal), ``improved`` only acts when edge
    weights are given: without them every edge, loops included, weighs 1.
    """
    if edge_weight is None:
        if add_loops:
            edge_index, _ = add_remaining_self_loops(edge_index, num_nodes)
        edge_weight = torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device)
    elif add_loops:
        edge_index, edge_weight = add_remaining_self_loops(edge_index, num_nodes, edge_weight,
                                                           2.0 if improved else 1.0)
    row, col = edge_index[0], edge_index[1]
    deg = edge_weight.new_zeros(num_nodes).index_add_(0, col, edge_weight)
    inv_sqrt = deg.pow(-0.5).masked_fill_(deg == 0, 0.0)
    return edge_index, inv_sqrt[row] * edge_weight * inv_sqrt[col]


# ------------------------------------------------------------------------------------------------
# The layer: gather -> message -> aggregate -> update
# ------------------------------------------------------------------------------------------------


@dataclass
class Graph:
    """Edges ready for :meth:`MessagePassing.propagate`, after the input checks and the layer's
    ``preprocess`` (self-loops, normalisation).

    ``edge_index`` is ``(2, E)`` with sources in ``[0, num_src)`` and targets in ``[0, num_dst)``
    (``num_src == num_dst`` except for a sampled bipartite block); ``edge_attr`` holds per-edge
    values (weights or features) in the same edge order, or None. ``csr`` is set only on the fast
    path: the CSR structure of the same, target-sorted, edges (:class:`zoo.graph.fast.CSRGraph`).
    """

    edge_index: Tensor
    edge_attr: Tensor | None
    num_src: int
    num_dst: int
    csr: Any = None


@functools.lru_cache(maxsize=None)
def _argument_names(fn: Callable) -> tuple[str, ...]:
    return tuple(name for name in inspect.signature(fn).parameters if name != "self")


class MessagePassing(nn.Module):
    """Base class of the graph layers: ``h_i' = update(aggregate_{j -> i} message(...))``.

    A layer writes

    * ``preprocess(edge_index, num_nodes, edge_attr)``: the edges it aggregates over (self-loops,
      normalisation weights); the identity by default;
    * ``message(...)``: every edge's message, on whole edge lists. An argument named ``<name>_j``
      is the tensor passed to ``propagate`` as ``<name>`` gathered at each edge's source,
      ``<name>_i`` at its target; ``index`` is the target of each edge, ``num_nodes`` the number
      of targets; any other name is passed through (a per-edge tensor in the graph's edge order);
    * optionally ``edge_update(...)`` (per-edge coefficients, called through ``edge_updater``,
      arguments gathered as for ``message``), ``update(out)``, and ``message_and_aggregate(graph,
      ...)``: the same sum computed in one step by the fast path (:mod:`zoo.graph.fast`).

    ``forward`` prepares the graph (``zoo.graph.fast.prepare(self, ...)``, which remembers it per
    ``edge_index``; ``self.prepare`` on the plain path) and calls ``propagate``.
    """

    # attributes preprocess() reads: a graph the fast path remembered is prepared again when one changes
    preprocess_options: tuple[str, ...] = ()

    def __init__(self, aggr: str = "sum"):
        super().__init__()
        if aggr not in REDUCTIONS:
            raise InvalidConfigError(f"{type(self).__name__}: aggr must be one of {', '.join(REDUCTIONS)}, "
                                     f"got {aggr!r}")
        self.aggr = aggr

    def preprocess(self, edge_index: Tensor, num_nodes: int, edge_attr: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return edge_index, edge_attr

    def prepare(self, edge_index: Any, num_nodes: int, edge_attr: Tensor | None = None,
                num_src: int | None = None) -> Graph:
        """Check ``edge_index`` (and ``edge_attr``) and ``preprocess`` it. ``num_src``: a bipartite
        block whose ``num_nodes`` targets are the first rows of its ``num_src`` sources."""
        name = type(self).__name__
        num_src = num_nodes if num_src is None else num_src
        edge_index = check_edge_index(edge_index, num_src, name)
        if num_nodes < num_src and edge_index.numel() and int(edge_index[1].max()) >= num_nodes:
            raise InputError(f"{name}: edge_index targets node {int(edge_index[1].max())}, but the block has "
                             f"{num_nodes} target nodes.")
        if edge_attr is not None and not (isinstance(edge_attr, Tensor) and edge_attr.is_floating_point()
                                          and edge_attr.dim() > 0 and edge_attr.size(0) == edge_index.size(1)):
            got = (f"{edge_attr.dtype} of shape {tuple(edge_attr.shape)}" if isinstance(edge_attr, Tensor)
                   else type(edge_attr).__name__)
            raise InputError(f"{name}: per-edge values (edge_weight / edge_attr) must be a floating tensor with one "
                             f"row per edge ({edge_index.size(1)}), got {got}.")
        edge_index, edge_attr = self.preprocess(edge_index, num_nodes, edge_attr)
        return Graph(edge_index, edge_attr, num_src, num_nodes)

    def propagate(self, graph: Graph, **kwargs: Any) -> Tensor:
        if graph.csr is not None:  # the fast path: zoo.graph.fast.prepare sorted the edges into CSR order
            out = self.message_and_aggregate(graph, **kwargs)
        else:
            messages = self.message(**self._gather(type(self).message, graph, kwargs))
            out = self.aggregate(messages, graph.edge_index[1], graph.num_dst)
        return self.update(out)

    def edge_updater(self, graph: Graph, **kwargs: Any) -> Tensor:
        return self.edge_update(**self._gather(type(self).edge_update, graph, kwargs))

    def message(self, x_j: Tensor) -> Tensor:
        return x_j

    def aggregate(self, messages: Tensor, index: Tensor, num_nodes: int) -> Tensor:
        return scatter(messages, index, num_nodes, self.aggr)

    def update(self, out: Tensor) -> Tensor:
        return out

    def edge_update(self, *args: Any, **kwargs: Any) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} defines no edge_update")

    def message_and_aggregate(self, graph: Graph, **kwargs: Any) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no fused message_and_aggregate")

    @staticmethod
    def _gather(fn: Callable, graph: Graph, kwargs: dict[str, Any]) -> dict[str, Any]:
        src, dst = graph.edge_index[0], graph.edge_index[1]
        args = {}
        for name in _argument_names(fn):
            if name.endswith("_j"):
                args[name] = kwargs[name[:-2]].index_select(0, src)
            elif name.endswith("_i"):
                args[name] = kwargs[name[:-2]].index_select(0, dst)
            elif name == "index":
                args[name] = dst
            elif name == "num_nodes":
                args[name] = graph.num_dst
            else:
                args[name] = kwargs[name]
        return args


# ------------------------------------------------------------------------------------------------
# Readout
# ------------------------------------------------------------------------------------------------


def _num_graphs(batch: Tensor | None, size: int | None) -> int:
    if size is not None:
        return size
    return int(batch.max()) + 1 if batch is not None and batch.numel() > 0 else 1


def global_add_pool(x: Tensor, batch: Tensor | None = None, size: int | None = None) -> Tensor:
    """Sum of node features per graph (``batch[i]`` is node ``i``'s graph)."""
    if batch is None:
        return x.sum(dim=0, keepdim=True)
    return scatter(x, batch, _num_graphs(batch, size), "sum")


def global_mean_pool(x: Tensor, batch: Tensor | None = None, size: int | None = None) -> Tensor:
    if batch is None:
        return x.mean(dim=0, keepdim=True)
    return scatter(x, batch, _num_graphs(batch, size), "mean")


def global_max_pool(x: Tensor, batch: Tensor | None = None, size: int | None = None) -> Tensor:
    if batch is None:
        return x.amax(dim=0, keepdim=True)
    return scatter(x, batch, _num_graphs(batch, size), "max")


def check_batch(batch: Any, num_nodes: int, where: str) -> Tensor | None:
    if batch is None:
        return None
    if not isinstance(batch, Tensor) or batch.dtype not in (torch.int64, torch.int32) or batch.dim() != 1:
        got = f"{batch.dtype} tensor of shape {tuple(batch.shape)}" if isinstance(batch, Tensor) else type(batch).__name__
        raise InputError(f"{where} expects batch as a 1-d integer tensor (graph id of each node), got {got}.")
    if batch.numel() != num_nodes:
        raise InputError(f"{where}: batch has {batch.numel()} entries but x has {num_nodes} nodes.")
    if batch.numel() and int(batch.min()) < 0:
        raise InputError(f"{where}: batch holds negative graph ids.")
    return batch.long()
