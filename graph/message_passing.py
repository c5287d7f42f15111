"""Message passing in plain PyTorch: gather, scatter, edge softmax, self-loops, normalisation.

A graph is ``x`` (``num_nodes x features``) and ``edge_index`` (``2 x num_edges``, int64): edge
``e`` carries a message from node ``edge_index[0, e]`` (the source, ``j``) to node
``edge_index[1, e]`` (the target, ``i``), as in PyG's default ``source_to_target`` flow. One
layer of message passing is

    h_i' = update(h_i, aggregate_{j -> i} message(h_i, h_j, e_ji))

and each piece is a tensor op on whole edge lists: ``gather`` is ``index_select`` on the source
(or target) column, ``aggregate`` is ``index_add_`` / ``scatter_reduce_`` on the target column.
Nothing here imports ``torch_geometric``.

:class:`GraphMemo` remembers a layer's preprocessing of the last ``edge_index`` it saw (input
checks, self-loops, degree normalisation): full-batch training calls every layer on the same
graph hundreds of times, and the memo turns that repeated work into one identity check. It is
keyed on the tensor object (a weak reference) and its in-place version counter, so a new or
edited ``edge_index`` is always preprocessed again.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from shared.errors import InputError

REDUCTIONS = ("sum", "add", "mean", "max", "min")


# ------------------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------------------


def check_features(x: Any, in_channels: int | None, where: str) -> Tensor:
    """``x`` must be a floating ``(num_nodes, in_channels)`` tensor."""
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
            raise InputError(f"{where}: edge_index refers to node {lo if lo < 0 else hi}, but the graph has "
                             f"{num_nodes} nodes (x has {num_nodes} rows); valid node ids are 0..{num_nodes - 1}.")
    return edge_index.long()


def unpack_graph(x: Any, edge_index: Any = None, *extra: Any, fields: tuple[str, ...] = ()) -> tuple:
    """Accept ``(x, edge_index, ...)`` or one object with ``.x``, ``.edge_index`` (a PyG ``Data``).

    ``fields`` names the optional attributes to read from such an object (``"batch"``,
    ``"edge_attr"``); they come back in that order after ``x`` and ``edge_index``.
    """
    if not isinstance(x, Tensor) and hasattr(x, "x") and hasattr(x, "edge_index"):
        if edge_index is not None:
            raise InputError("pass either a graph object with .x/.edge_index or (x, edge_index), not both.")
        data = x
        return (data.x, data.edge_index, *(getattr(data, f, None) for f in fields))
    if edge_index is None:
        raise InputError("missing edge_index: call model(x, edge_index) or model(data) with data.x, data.edge_index.")
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


def propagate_weighted(x: Tensor, edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int) -> Tensor:
    """``out_i = sum_{j -> i} w_ji x_j`` (``w = 1`` when ``edge_weight`` is None)."""
    msg = x.index_select(0, edge_index[0])
    if edge_weight is not None:
        msg = msg * edge_weight.view(-1, *([1] * (x.dim() - 1)))
    return scatter(msg, edge_index[1], num_nodes, "sum")


class GraphMemo:
    """The result of ``fn()`` for the last ``(edge_index, key)`` seen; see the module docstring."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._ref: weakref.ref | None = None
        self._key: Any = None
        self._value: Any = None

    def get(self, edge_index: Tensor, key: Any, fn: Callable[[], Any]) -> Any:
        try:
            full_key = (edge_index._version, edge_index.device, key)
        except (RuntimeError, AttributeError):  # inference tensors have no version counter
            return fn()
        if self._ref is not None and self._ref() is edge_index and self._key == full_key:
            return self._value
        value = fn()
        self._ref, self._key, self._value = weakref.ref(edge_index), full_key, value
        return value

    # a model with a memo stays picklable / deep-copyable; the memo starts empty again
    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.clear()

    def __deepcopy__(self, memo: dict) -> "GraphMemo":
        return GraphMemo()


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


# ------------------------------------------------------------------------------------------------
# Dropout on sparse input features
# ------------------------------------------------------------------------------------------------


def _sparse_entries(x: Tensor, memo: GraphMemo | None):
    """``(rows, cols, values)`` of the nonzeros of a mostly-zero ``x`` (None when over 10% are
    nonzero), remembered in ``memo`` across calls with the same tensor."""

    def find():
        if (x != 0).sum().item() > 0.1 * x.numel():
            return None
        rows, cols = x.nonzero(as_tuple=True)
        return rows, cols, x[rows, cols]

    return memo.get(x, x.shape, find) if memo is not None else find()


def input_dropout(x: Tensor, p: float, training: bool, memo: GraphMemo | None = None) -> Tensor:
    """``F.dropout(x, p)`` with the same output distribution, drawing random numbers only for the
    nonzero entries of ``x`` when it is mostly zeros (bag-of-words features such as Cora's are
    ~99% zeros; a zero stays zero whether it is dropped or not). The nonzero positions of a
    feature tensor are remembered in ``memo`` across calls."""
    if not training or p == 0.0 or x.requires_grad or x.numel() == 0:
        return F.dropout(x, p, training)
    sparse = _sparse_entries(x, memo)
    if sparse is None:
        return F.dropout(x, p, training)
    if p >= 1.0:
        return torch.zeros_like(x)
    rows, cols, values = sparse
    keep = torch.rand(values.numel(), device=x.device) >= p
    out = torch.zeros_like(x)
    out.view(-1).index_copy_(0, rows * x.size(1) + cols, values * keep * (1.0 / (1.0 - p)))
    return out


def head_dropout_linear(x: Tensor, weights: list[Tensor], heads: int, p: float,
                        memo: GraphMemo | None = None) -> list[Tensor]:
    """``x @ W.T`` viewed as ``(n, heads, C)`` for each ``W`` of shape ``(heads * C, F)``, where head
    ``k`` sees ``x`` through its own dropout mask (the same masks for every ``W``).

    This is how the GAT authors' code drops a layer's input: each attention head is built
    separately and draws its own mask. For a mostly-zero ``x`` only its nonzeros are drawn and
    multiplied (a gather of weight columns and a scatter-add per row), otherwise the masked copies
    go through one batched matmul.
    """
    n, f = x.shape
    scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
    sparse = None if x.requires_grad else _sparse_entries(x, memo)
    outs = []
    if sparse is not None:
        rows, cols, values = sparse
        kept = values.unsqueeze(1) * ((torch.rand(values.numel(), heads, device=x.device) >= p) * scale)
        for w in weights:
            per_col = w.view(heads, -1, f).permute(2, 0, 1)  # (F, heads, C)
            contrib = per_col.index_select(0, cols) * kept.unsqueeze(-1)  # (nnz, heads, C)
            outs.append(x.new_zeros(n, heads, per_col.size(-1)).index_add_(0, rows, contrib))
        return outs
    masked = x.unsqueeze(0) * ((torch.rand(heads, n, f, device=x.device) >= p) * scale)  # (heads, n, F)
    return [torch.bmm(masked, w.view(heads, -1, f).transpose(1, 2)).transpose(0, 1) for w in weights]


# ------------------------------------------------------------------------------------------------
# Fused gather-scatter: sparse CSR matrix products
# ------------------------------------------------------------------------------------------------


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class CSRGraph:
    """An edge list sorted by target with CSR pointers for ``A`` (rows: targets) and ``A^T``.

    ``edge_index`` is the sorted list; ``perm_t`` reorders its edges by source (for ``A^T``).
    ``num_src`` (default ``num_nodes``) makes it bipartite: sources in ``[0, num_src)``, targets
    in ``[0, num_nodes)`` (a sampled block, see :mod:`graph.sampling`).
    """

    def __init__(self, edge_index: Tensor, num_nodes: int, num_src: int | None = None):
        n = num_nodes
        m = n if num_src is None else num_src
        order = torch.argsort(edge_index[1] * m + edge_index[0])
        self.order = order  # position in the input -> sorted position
        self.edge_index = edge_index[:, order]
        src, dst = self.edge_index[0], self.edge_index[1]
        self.num_nodes, self.num_src = n, m
        self.crow = torch.zeros(n + 1, dtype=torch.long, device=src.device)
        self.crow[1:] = torch.bincount(dst, minlength=n).cumsum(0)
        self.perm_t = torch.argsort(src * n + dst)
        self.col_t = dst[self.perm_t]
        self.crow_t = torch.zeros(m + 1, dtype=torch.long, device=src.device)
        self.crow_t[1:] = torch.bincount(src, minlength=m).cumsum(0)
        self._heads: dict[int, tuple] = {}

    def heads(self, h: int) -> tuple:
        """CSR structure of the ``h``-head block-diagonal operator (built once per ``h``).

        Head ``k`` of node ``i`` becomes row ``i * h + k``, so ``out[:, k] = A_k @ x[:, k]`` for
        all heads is one sparse product of an ``(n h) x (m h)`` matrix with ``x.view(m h, C)``.
        Returns ``(crow, col, perm)`` for ``A`` and the same for ``A^T``; ``perm`` picks the
        values, in CSR order, out of the flattened ``(num_edges, h)`` value tensor.
        """
        if h not in self._heads:
            src, dst = self.edge_index
            fwd = _expand_heads(self.crow, src, None, h)
            bwd = _expand_heads(self.crow_t, self.col_t, self.perm_t, h)
            self._heads[h] = fwd + bwd
        return self._heads[h]


def _expand_heads(crow: Tensor, col: Tensor, order: Tensor | None, h: int) -> tuple[Tensor, Tensor, Tensor]:
    n, e, dev = crow.numel() - 1, col.numel(), col.device
    deg = crow.diff()
    seg = torch.repeat_interleave(torch.arange(n, device=dev), deg, output_size=e)
    start = crow[:-1].index_select(0, seg)
    heads = torch.arange(h, device=dev)
    slot = ((start * h + torch.arange(e, device=dev) - start).unsqueeze(1)
            + heads.unsqueeze(0) * deg.index_select(0, seg).unsqueeze(1))  # (e, h): expanded CSR position
    inv = torch.empty(e * h, dtype=torch.long, device=dev)
    inv[slot.view(-1)] = torch.arange(e * h, device=dev)
    new_col = (col.unsqueeze(1) * h + heads).view(-1).index_select(0, inv)
    edge = torch.arange(e, device=dev) if order is None else order
    perm = (edge.unsqueeze(1) * h + heads).view(-1).index_select(0, inv)
    new_crow = torch.zeros(n * h + 1, dtype=torch.long, device=dev)
    new_crow[1:] = deg.repeat_interleave(h).cumsum(0)
    return new_crow, new_col, perm


def _spmm_heads(crow: Tensor, col: Tensor, perm: Tensor, values: Tensor, x: Tensor, rows: int) -> Tensor:
    h, c = x.size(1), x.size(2)
    a = _csr(crow, col, values.reshape(-1).index_select(0, perm), (rows * h, x.size(0) * h))
    return (a @ x.reshape(-1, c)).view(rows, h, c)


class _CSRAggregate(torch.autograd.Function):
    """``out[:, h] = A_h @ x[:, h]`` with ``A_h[i, j] = values[e, h]`` for edge ``e: j -> i``:
    one sparse product for all heads (see :meth:`CSRGraph.heads`)."""

    @staticmethod
    def forward(ctx, values: Tensor, x: Tensor, graph: CSRGraph) -> Tensor:
        values, x = values.contiguous(), x.contiguous()
        if values.size(1) == 1:
            out = (_csr(graph.crow, graph.edge_index[0], values.view(-1), (graph.num_nodes, graph.num_src))
                   @ x.view(x.size(0), -1)).view(graph.num_nodes, 1, -1)
        else:
            crow, col, perm = graph.heads(values.size(1))[:3]
            out = _spmm_heads(crow, col, perm, values, x, graph.num_nodes)
        ctx.save_for_backward(values, x)
        ctx.graph = graph
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        values, x = ctx.saved_tensors
        graph = ctx.graph
        grad = grad.contiguous()
        grad_values = grad_x = None
        if ctx.needs_input_grad[0]:
            src, dst = graph.edge_index[0], graph.edge_index[1]
            grad_values = (grad.index_select(0, dst) * x.index_select(0, src)).sum(-1)
        if ctx.needs_input_grad[1]:
            if values.size(1) == 1:
                vt = values.view(-1).index_select(0, graph.perm_t)
                grad_x = (_csr(graph.crow_t, graph.col_t, vt, (graph.num_src, graph.num_nodes))
                          @ grad.view(grad.size(0), -1)).view(graph.num_src, 1, -1)
            else:
                crow, col, perm = graph.heads(values.size(1))[3:]
                grad_x = _spmm_heads(crow, col, perm, values, grad, graph.num_src)
        return grad_values, grad_x, None


def csr_aggregate(values: Tensor | None, x: Tensor, graph: CSRGraph) -> Tensor:
    """``out_i = sum_{e: j -> i} values_e * x_j`` without materialising per-edge messages.

    ``values``: ``(E,)`` with ``x`` ``(N, C)``, or ``(E, H)`` with ``x`` ``(N, H, C)``; ``None``
    means all ones. Edges are in ``graph.edge_index`` (sorted) order.
    """
    if x.dtype not in (torch.float32, torch.float64) or x.device.type != "cpu":
        # half precision / accelerators: the plain gather + index_add_ path
        ei = graph.edge_index
        msg = x.index_select(0, ei[0])
        if values is not None:
            msg = msg * values.view(*values.shape, *([1] * (x.dim() - values.dim())))
        return scatter(msg, ei[1], graph.num_nodes, "sum")
    if values is None:
        values = x.new_ones(graph.edge_index.size(1))
    if values.dim() == 1:
        return _CSRAggregate.apply(values.unsqueeze(1), x.unsqueeze(1), graph).squeeze(1)
    return _CSRAggregate.apply(values, x, graph)
