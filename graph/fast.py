"""The fast path of the graph layers: remembered preprocessing, CSR sparse products, sparse dropout.

Nothing here changes what a layer computes; it changes how. ``tests/graph/test_fast_path.py``
holds every layer's outputs and gradients to the plain gather -> message -> scatter path of
:mod:`zoo.graph.message_passing`, which stays the code to read.

* **Remembered preprocessing** (:class:`GraphMemo`). Full-batch training calls every layer on the
  same graph hundreds of times; a layer checks, preprocesses (self-loops, normalisation) and sorts
  its graph once, and reuses the result while it is called with an equal ``edge_index``.
* **CSR products** (:func:`spmm`). A weighted neighbour sum ``out_i = sum_{j -> i} w_ji x_j`` —
  every aggregation of GCN, GAT, GATv2, GIN and GraphSAGE's sum / mean — is one sparse CSR matrix
  times dense matrix product, forward and backward, instead of an ``(edges x features)`` message
  tensor gathered and scattered back; the heads of an attention layer share one product of a
  block-diagonal matrix. Used for float32 / float64 on the CPU, where these products are fast;
  elsewhere the sum is the plain gather and scatter.
* **Sparse dropout** (:func:`sparse_dropout`, :func:`head_dropout_linear`). Bag-of-words features
  are mostly zeros, and a zero stays zero whether it is dropped or not, so only the nonzeros draw
  random numbers. Same distribution as ``F.dropout``, not the same draws.

The layers take this path by default. ``with zoo.graph.fast.plain(): ...`` runs them on the plain path
instead (a process-wide switch, for tests and debugging).
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .message_passing import Graph, scatter

_enabled = True


def enabled() -> bool:
    """Whether the layers take the fast path (the default)."""
    return _enabled


@contextlib.contextmanager
def plain() -> Iterator[None]:
    """Run every graph layer on the plain path of :mod:`zoo.graph.message_passing` inside the block."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


# ------------------------------------------------------------------------------------------------
# Remembered preprocessing
# ------------------------------------------------------------------------------------------------


class _Memo:
    """Something remembered across calls. A model holding memos stays picklable and deep-copyable;
    the copies start empty."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        raise NotImplementedError

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.clear()

    def __deepcopy__(self, memo: dict) -> "_Memo":
        return type(self)()


class GraphMemo(_Memo):
    """The result of ``fn()`` for the last ``(edge_index, key)`` seen.

    A hit needs an ``edge_index`` equal in value to the remembered one (a copy is kept and compared,
    O(edges)), so a graph edited in place in any way — by indexing, through ``.data``, or through a
    numpy array sharing its memory, none of which a cache keyed on the tensor object would see — is
    prepared again.
    """

    def clear(self) -> None:
        self._edges: Tensor | None = None
        self._key: Any = None
        self._value: Any = None

    def get(self, edge_index: Any, key: Any, fn: Callable[[], Any]) -> Any:
        if not isinstance(edge_index, Tensor):
            return fn()  # fn's input checks report it
        seen = self._edges
        if (seen is not None and self._key == key and seen.shape == edge_index.shape and seen.dtype == edge_index.dtype
                and seen.device == edge_index.device and torch.equal(seen, edge_index)):
            return self._value
        value = fn()
        self._edges, self._key, self._value = edge_index.detach().clone(), key, value
        return value


def prepare(layer, edge_index: Tensor, num_nodes: int, edge_attr: Tensor | None = None,
            num_src: int | None = None) -> Graph:
    """``layer.prepare(...)`` (input checks + the layer's ``preprocess``) with the edges sorted into
    CSR order, remembered per ``edge_index`` when there are no per-edge values (which may change from
    call to call). Under :func:`plain`, ``layer.prepare(...)`` itself."""
    if not _enabled:
        return layer.prepare(edge_index, num_nodes, edge_attr, num_src)

    def build() -> Graph:
        return to_csr(layer.prepare(edge_index, num_nodes, edge_attr, num_src))

    if edge_attr is not None:
        return build()
    memo = layer.__dict__.get("_graph_memo")
    if memo is None:
        memo = layer._graph_memo = GraphMemo()
    options = tuple(getattr(layer, name) for name in layer.preprocess_options)
    return memo.get(edge_index, (num_nodes, num_src, options), build)


def forget(layer) -> None:
    """Drop the graph :func:`prepare` remembers for ``layer``."""
    layer.__dict__.pop("_graph_memo", None)


# ------------------------------------------------------------------------------------------------
# CSR products
# ------------------------------------------------------------------------------------------------


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


# torch warns once per process that CSR tensors are in beta (and unchecked): say it here, silenced,
# rather than wrapping every product in catch_warnings (~0.1 ms each)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    _csr(torch.tensor([0, 1]), torch.tensor([0]), torch.ones(1), (1, 1))


class CSRGraph:
    """An edge list sorted by target with CSR pointers for ``A`` (rows: targets) and ``A^T``.

    ``edge_index`` is the sorted list; ``order`` maps sorted position -> input position;
    ``perm_t`` reorders the sorted edges by source (for ``A^T``). ``num_src`` (default
    ``num_nodes``) makes it bipartite: sources in ``[0, num_src)``, targets in ``[0, num_nodes)``
    (a sampled block, see :mod:`zoo.graph.sampling`).
    """

    def __init__(self, edge_index: Tensor, num_nodes: int, num_src: int | None = None):
        n = num_nodes
        m = n if num_src is None else num_src
        order = torch.argsort(edge_index[1] * m + edge_index[0])
        self.order = order
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

    def in_degree(self) -> Tensor:
        return self.crow.diff()

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


def to_csr(graph: Graph) -> Graph:
    """The same graph with its edges (and per-edge values) sorted by target, CSR structure attached."""
    csr = CSRGraph(graph.edge_index, graph.num_dst, graph.num_src)
    attr = None if graph.edge_attr is None else graph.edge_attr[csr.order]
    return Graph(csr.edge_index, attr, graph.num_src, graph.num_dst, csr=csr)


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


def spmm(graph: Graph, values: Tensor | None, x: Tensor) -> Tensor:
    """``out_i = sum_{e: j -> i} values_e * x_j`` for a graph from :func:`prepare`, without
    materialising per-edge messages.

    ``values``: ``(E,)`` with ``x`` ``(N, C)``, or ``(E, H)`` with ``x`` ``(N, H, C)``; ``None``
    means all ones. Edges are in ``graph.edge_index`` (sorted) order.
    """
    csr = graph.csr
    if (x.dtype not in (torch.float32, torch.float64) or x.device.type != "cpu"
            or csr.num_nodes == 0 or csr.num_src == 0):
        # half precision, accelerators, empty graphs: the plain gather and scatter
        src, dst = graph.edge_index
        msg = x.index_select(0, src)
        if values is not None:
            msg = msg * values.view(*values.shape, *([1] * (x.dim() - values.dim())))
        return scatter(msg, dst, graph.num_dst, "sum")
    if values is None:
        values = x.new_ones(graph.edge_index.size(1))
    elif values.dtype != x.dtype:  # float32 normalisation weights for a float64 model
        values = values.to(x.dtype)
    if values.dim() == 1:
        return _CSRAggregate.apply(values.unsqueeze(1), x.unsqueeze(1), csr).squeeze(1)
    return _CSRAggregate.apply(values, x, csr)


# ------------------------------------------------------------------------------------------------
# Sparse dropout
# ------------------------------------------------------------------------------------------------


class NonzeroMemo(_Memo):
    """Where the last mostly-zero feature matrix seen had its nonzeros.

    They are reused without looking at ``x`` again while it is the same tensor at the same version
    (autograd's count of in-place edits). Another tensor, or the same one edited in place by a torch
    op, costs one pass to check the positions (as many nonzeros as remembered, all still at their
    remembered positions), a search when that fails, and the values are read again. An edit that
    bypasses the version counter (through ``.data`` or a numpy array sharing the memory) is not seen,
    as autograd does not see it either: catching it would cost a pass over ``x`` on every training
    step, the work the memo exists to save.
    """

    def clear(self) -> None:
        self._ref: weakref.ref | None = None  # the tensor the positions were checked on, and its version
        self._version = -1
        self._key: Any = None
        self._found: tuple[Tensor, Tensor] | None = None  # rows, cols of the nonzeros
        self._values: Tensor | None = None


def _version(x: Tensor) -> int:
    try:
        return x._version
    except (RuntimeError, AttributeError):  # inference tensors have no version counter
        return -1


def _nonzeros(x: Tensor, memo: NonzeroMemo | None) -> tuple[Tensor, Tensor, Tensor] | None:
    """``(rows, cols, values)`` of the nonzeros of a mostly-zero 2-d ``x``; None when over 10% are nonzero."""
    if x.dim() != 2 or not x.is_contiguous():
        return None
    key, version = (x.shape, x.dtype, x.device), _version(x)
    same = memo is not None and memo._key == key and memo._ref is not None and memo._ref() is x
    if same and memo._version == version >= 0:  # the same tensor, not edited since
        return None if memo._found is None else (*memo._found, memo._values)
    found = memo._found if memo is not None and memo._key == key else None
    if found is not None:  # another tensor, or this one edited: are the nonzeros still exactly there?
        rows, cols = found
        if int(torch.count_nonzero(x)) != rows.numel() or not bool(x[rows, cols].ne(0).all()):
            found = None
    if found is None:
        if (x != 0).sum().item() > 0.1 * x.numel():
            if memo is not None:  # not sparse: remember that
                memo._key, memo._found, memo._values = key, None, None
                memo._ref, memo._version = weakref.ref(x), version
            return None
        found = x.nonzero(as_tuple=True)
    values = x[found]
    if memo is not None:
        memo._key, memo._found, memo._values = key, found, values
        memo._ref, memo._version = weakref.ref(x), version
    return (*found, values)


def sparse_dropout(x: Tensor, p: float, training: bool, memo: NonzeroMemo | None = None) -> Tensor:
    """``F.dropout(x, p, training)`` in distribution, drawing random numbers only for the nonzero
    entries of ``x`` when it is mostly zeros (bag-of-words features such as Cora's are ~99% zeros).
    ``memo`` remembers where the nonzeros were across calls. Under :func:`plain`: ``F.dropout``."""
    if not _enabled or not training or p == 0.0 or x.requires_grad or x.numel() == 0 or x.dim() != 2:
        return F.dropout(x, p, training)
    sparse = _nonzeros(x, memo)
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
                        memo: NonzeroMemo | None = None) -> list[Tensor]:
    """``x @ W.T`` viewed as ``(n, heads, C)`` for each ``W`` of shape ``(heads * C, F)``, where head
    ``k`` sees ``x`` through its own dropout mask (the same masks for every ``W``): the fast form of
    ``GATConv``'s per-head input dropout.

    For a mostly-zero ``x`` only its nonzeros are drawn and multiplied (a gather of weight columns
    and a scatter-add per row); otherwise the masked copies go through one batched matmul.
    """
    n, f = x.shape
    scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
    sparse = None if x.requires_grad or x.numel() == 0 else _nonzeros(x, memo)
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
