"""Graph convolution layers: GCNConv, GATConv, GATv2Conv, SAGEConv, GINConv.

Checkpoint layout: PyG's ``torch_geometric.nn`` conv layers, key for key and shape for shape
(``lin.weight``, ``att_src``, ``att_dst``, ``bias``; ``lin_l`` / ``lin_r``; ``nn.*`` + ``eps``), so a
PyG state dict loads strictly and gives the same outputs (tested to 1e-5 in tests/graph).

Every layer is called as ``layer(x, edge_index, ...)`` with ``x`` of shape
``(num_nodes, in_channels)`` and messages flowing ``edge_index[0] -> edge_index[1]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shared.errors import InputError

from .message_passing import (
    CSRGraph,
    GraphMemo,
    csr_aggregate,
    add_self_loops,
    check_edge_index,
    check_features,
    edge_softmax,
    gcn_norm,
    head_dropout_linear,
    remove_self_loops,
    scatter,
)


def glorot_(t: Tensor) -> Tensor:
    """Glorot/Xavier uniform over the last two dimensions (PyG's ``glorot`` for attention vectors)."""
    bound = math.sqrt(6.0 / (t.size(-2) + t.size(-1)))
    return nn.init.uniform_(t, -bound, bound)


def _linear(in_channels: int, out_channels: int, bias: bool) -> nn.Linear:
    """A linear map with Glorot weights and zero bias (the GCN / GAT papers' initialisation)."""
    lin = nn.Linear(in_channels, out_channels, bias=bias)
    nn.init.xavier_uniform_(lin.weight)
    if bias:
        nn.init.zeros_(lin.bias)
    return lin


# ------------------------------------------------------------------------------------------------
# GCN: Kipf & Welling, "Semi-Supervised Classification with Graph Convolutional Networks", ICLR 2017
# ------------------------------------------------------------------------------------------------


class GCNConv(nn.Module):
    """``X' = D^-1/2 (A + I) D^-1/2 X W + b``.

    ``cached=True`` keeps the normalised graph of the first call for every later call
    (transductive full-batch training, as in the paper). With ``cached=False`` the graph is
    still preprocessed only once per ``edge_index`` tensor (see :class:`GraphMemo`).
    """

    def __init__(self, in_channels: int, out_channels: int, improved: bool = False, cached: bool = False,
                 add_self_loops: bool = True, normalize: bool = True, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.improved, self.cached = improved, cached
        self.add_self_loops, self.normalize = add_self_loops, normalize
        self.lin = _linear(in_channels, out_channels, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self._memo = GraphMemo()
        self._cached_graph: tuple[Tensor, Tensor | None] | None = None

    def reset_cache(self) -> None:
        self._cached_graph = None
        self._memo.clear()

    def _graph(self, edge_index: Tensor, edge_weight: Tensor | None, n: int) -> tuple[CSRGraph, Tensor | None]:
        def prepare():
            ei, w = check_edge_index(edge_index, n, "GCNConv"), edge_weight
            if self.normalize:
                ei, w = gcn_norm(ei, n, w, add_loops=self.add_self_loops, improved=self.improved)
            graph = CSRGraph(ei, n)
            return graph, (None if w is None else w[graph.order])

        if self.cached and self._cached_graph is not None:
            return self._cached_graph
        if edge_weight is None:
            graph = self._memo.get(edge_index, (n, self.normalize, self.add_self_loops, self.improved), prepare)
        else:
            graph = prepare()
        if self.cached:
            self._cached_graph = graph
        return graph

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        x = check_features(x, self.in_channels, "GCNConv")
        n = x.size(0)
        graph, edge_weight = self._graph(edge_index, edge_weight, n)
        out = csr_aggregate(edge_weight, self.lin(x), graph)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"


# ------------------------------------------------------------------------------------------------
# GAT: Velickovic et al., "Graph Attention Networks", ICLR 2018
# GATv2: Brody et al., "How Attentive are Graph Attention Networks?", ICLR 2022
# ------------------------------------------------------------------------------------------------


class _AttentionConv(nn.Module):
    """What GAT and GATv2 share: heads, self-loops, edge features, attention dropout, concat/mean."""

    def __init__(self, in_channels: int, out_channels: int, heads: int, concat: bool, negative_slope: float,
                 dropout: float, add_self_loops: bool, edge_dim: int | None, fill_value: float | str,
                 residual: bool, bias: bool, message_dropout: float = 0.0, input_dropout: float = 0.0):
        super().__init__()
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.concat, self.negative_slope, self.dropout = concat, negative_slope, dropout
        self.message_dropout, self.input_dropout = message_dropout, input_dropout
        self._input_memo = GraphMemo()  # nonzeros of sparse input features, for input_dropout
        self.add_self_loops, self.edge_dim, self.fill_value = add_self_loops, edge_dim, fill_value
        self.residual = residual
        self._memo = GraphMemo()
        self._total_out = heads * out_channels if concat else out_channels

    def _finish_init(self, bias: bool) -> None:
        # registered after the layer's own projections, in PyG's order: [lin_edge, att_edge,] res, bias
        self.res = _linear(self.in_channels, self._total_out, bias=False) if self.residual else None
        self.bias = nn.Parameter(torch.zeros(self._total_out)) if bias else None

    def _graph(self, edge_index: Tensor, edge_attr: Tensor | None, n: int) -> tuple[CSRGraph, Tensor | None]:
        name = type(self).__name__

        def prepare():
            ei = check_edge_index(edge_index, n, name)
            ea = edge_attr
            if ea is not None:
                if ea.dim() == 1:
                    ea = ea.view(-1, 1)
                if ea.size(0) != ei.size(1):
                    raise InputError(f"{name}: edge_attr has {ea.size(0)} rows but edge_index has {ei.size(1)} edges.")
            if self.add_self_loops:
                ei, ea = remove_self_loops(ei, ea)
                ei, ea = add_self_loops(ei, n, ea, fill_value=self.fill_value)
            graph = CSRGraph(ei, n)  # edges sorted by target: the aggregation is a CSR product
            return graph, (None if ea is None else ea[graph.order])

        if edge_attr is None:
            return self._memo.get(edge_index, (n, self.add_self_loops), prepare)
        return prepare()

    def _project(self, x: Tensor, linears: list[nn.Linear]) -> list[Tensor]:
        """Each ``linear(x)`` as ``(n, heads, C)``; in training with ``input_dropout``, every head
        sees ``x`` through its own dropout mask (shared by the linears)."""
        n, H, C = x.size(0), self.heads, self.out_channels
        if not (self.training and self.input_dropout > 0):
            return [lin(x).view(n, H, C) for lin in linears]
        outs = head_dropout_linear(x, [lin.weight for lin in linears], H, self.input_dropout, self._input_memo)
        return [out if lin.bias is None else out + lin.bias.view(H, C) for out, lin in zip(outs, linears)]

    def _edge_scores(self, edge_attr: Tensor) -> Tensor:
        if self.lin_edge is None:
            raise InputError(f"{type(self).__name__} got edge_attr but was built without edge_dim; pass edge_dim=<features>.")
        if edge_attr.size(-1) != self.edge_dim:
            raise InputError(f"{type(self).__name__} was built for edge_dim={self.edge_dim}, edge_attr has {edge_attr.size(-1)}.")
        return self.lin_edge(edge_attr).view(-1, self.heads, self.out_channels)

    def _aggregate(self, x: Tensor, x_src: Tensor, scores: Tensor, graph: CSRGraph, n: int,
                   return_attention_weights: bool):
        """Softmax the per-edge, per-head scores over each target and sum the weighted messages."""
        edge_index = graph.edge_index
        alpha = edge_softmax(scores, edge_index[1], n)
        alpha = F.dropout(alpha, p=self.dropout, training=self.training)
        if self.message_dropout:  # after the scores are taken: only the aggregated values are dropped
            x_src = F.dropout(x_src, p=self.message_dropout, training=self.training)
        out = csr_aggregate(alpha, x_src, graph)
        out = out.reshape(n, self.heads * self.out_channels) if self.concat else out.mean(dim=1)
        if self.res is not None:
            out = out + self.res(x)
        if self.bias is not None:
            out = out + self.bias
        return (out, (edge_index, alpha)) if return_attention_weights else out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, heads={self.heads}, concat={self.concat}"


class GATConv(_AttentionConv):
    """Graph attention: ``alpha_ij = softmax_j LeakyReLU(a_dst . W h_i + a_src . W h_j [+ a_edge . W_e e_ji])``,
    ``h_i' = ||_heads sum_j alpha_ij W h_j`` (or the mean over heads), with a self-loop per node.

    ``dropout`` drops attention coefficients (as PyG's). Two options, both 0 by default (PyG's
    behaviour), reproduce how the GAT authors' reference code trains: ``message_dropout`` also
    drops the projected features ``W h_j`` that are summed, after the scores are computed, and
    ``input_dropout`` drops the layer's input with an independent mask per head. Both act only in
    training."""

    def __init__(self, in_channels: int, out_channels: int, heads: int = 1, concat: bool = True,
                 negative_slope: float = 0.2, dropout: float = 0.0, add_self_loops: bool = True,
                 edge_dim: int | None = None, fill_value: float | str = "mean", bias: bool = True,
                 residual: bool = False, message_dropout: float = 0.0, input_dropout: float = 0.0):
        super().__init__(in_channels, out_channels, heads, concat, negative_slope, dropout, add_self_loops,
                         edge_dim, fill_value, residual, bias, message_dropout, input_dropout)
        self.lin = _linear(in_channels, heads * out_channels, bias=False)
        self.att_src = nn.Parameter(glorot_(torch.empty(1, heads, out_channels)))
        self.att_dst = nn.Parameter(glorot_(torch.empty(1, heads, out_channels)))
        if edge_dim is not None:
            self.lin_edge = _linear(edge_dim, heads * out_channels, bias=False)
            self.att_edge = nn.Parameter(glorot_(torch.empty(1, heads, out_channels)))
        else:
            self.lin_edge = None
            self.register_parameter("att_edge", None)
        self._finish_init(bias)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                return_attention_weights: bool = False):
        x = check_features(x, self.in_channels, "GATConv")
        n = x.size(0)
        (h,) = self._project(x, [self.lin])
        score_src = (h * self.att_src).sum(-1)  # (n, H): a_src . W h_j, once per node, not per edge
        score_dst = (h * self.att_dst).sum(-1)
        graph, edge_attr = self._graph(edge_index, edge_attr, n)
        edge_index = graph.edge_index
        scores = score_src.index_select(0, edge_index[0]) + score_dst.index_select(0, edge_index[1])
        if edge_attr is not None:
            scores = scores + (self._edge_scores(edge_attr) * self.att_edge).sum(-1)
        scores = F.leaky_relu(scores, self.negative_slope)
        return self._aggregate(x, h, scores, graph, n, return_attention_weights)


class GATv2Conv(_AttentionConv):
    """GATv2's dynamic attention: ``alpha_ij = softmax_j a . LeakyReLU(W_r h_i + W_l h_j [+ W_e e_ji])``,
    messages ``W_l h_j``."""

    def __init__(self, in_channels: int, out_channels: int, heads: int = 1, concat: bool = True,
                 negative_slope: float = 0.2, dropout: float = 0.0, add_self_loops: bool = True,
                 edge_dim: int | None = None, fill_value: float | str = "mean", bias: bool = True,
                 share_weights: bool = False, residual: bool = False, message_dropout: float = 0.0,
                 input_dropout: float = 0.0):
        super().__init__(in_channels, out_channels, heads, concat, negative_slope, dropout, add_self_loops,
                         edge_dim, fill_value, residual, bias, message_dropout, input_dropout)
        self.share_weights = share_weights
        self.lin_l = _linear(in_channels, heads * out_channels, bias=bias)
        self.lin_r = self.lin_l if share_weights else _linear(in_channels, heads * out_channels, bias=bias)
        self.att = nn.Parameter(glorot_(torch.empty(1, heads, out_channels)))
        self.lin_edge = _linear(edge_dim, heads * out_channels, bias=False) if edge_dim is not None else None
        self._finish_init(bias)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                return_attention_weights: bool = False):
        x = check_features(x, self.in_channels, "GATv2Conv")
        n = x.size(0)
        if self.share_weights:
            (h_src,) = self._project(x, [self.lin_l])
            h_dst = h_src
        else:
            h_src, h_dst = self._project(x, [self.lin_l, self.lin_r])
        graph, edge_attr = self._graph(edge_index, edge_attr, n)
        edge_index = graph.edge_index
        z = h_src.index_select(0, edge_index[0]) + h_dst.index_select(0, edge_index[1])
        if edge_attr is not None:
            z = z + self._edge_scores(edge_attr)
        scores = (F.leaky_relu(z, self.negative_slope) * self.att).sum(-1)
        return self._aggregate(x, h_src, scores, graph, n, return_attention_weights)


# ------------------------------------------------------------------------------------------------
# GraphSAGE: Hamilton et al., "Inductive Representation Learning on Large Graphs", NeurIPS 2017
# ------------------------------------------------------------------------------------------------


class SAGEConv(nn.Module):
    """``h_i' = W_l aggr_{j -> i} h_j + b + W_r h_i`` (``aggr``: mean, sum or max), optionally
    L2-normalised."""

    def __init__(self, in_channels: int, out_channels: int, aggr: str = "mean", normalize: bool = False,
                 root_weight: bool = True, bias: bool = True):
        super().__init__()
        if aggr not in ("mean", "sum", "add", "max"):
            raise ValueError(f"SAGEConv aggr must be 'mean', 'sum' or 'max', got {aggr!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.aggr, self.normalize, self.root_weight = aggr, normalize, root_weight
        self.lin_l = nn.Linear(in_channels, out_channels, bias=bias)
        self.lin_r = nn.Linear(in_channels, out_channels, bias=False) if root_weight else None
        self._memo = GraphMemo()

    def forward(self, x: Tensor, edge_index: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """``size=(num_src, num_dst)``: a bipartite block (:mod:`graph.sampling`) whose targets are
        the first ``num_dst`` rows of ``x``; the output then has ``num_dst`` rows."""
        x = check_features(x, self.in_channels, "SAGEConv")
        n_src = x.size(0)
        n_dst = n_src if size is None else int(size[1])
        if size is not None and (int(size[0]) != n_src or not 0 <= n_dst <= n_src):
            raise InputError(f"SAGEConv: block size {tuple(size)} does not fit x with {n_src} rows "
                             "(need size[0] == num rows of x >= size[1]).")

        def prepare():
            ei = check_edge_index(edge_index, n_src, "SAGEConv")
            if n_dst < n_src and ei.numel() and int(ei[1].max()) >= n_dst:
                raise InputError(f"SAGEConv: edge_index targets node {int(ei[1].max())}, but the block has "
                                 f"{n_dst} target nodes.")
            return CSRGraph(ei, n_dst, n_src)

        graph = self._memo.get(edge_index, (n_src, n_dst), prepare)
        x_dst = x if n_dst == n_src else x[:n_dst]
        if self.aggr == "max":
            agg = scatter(x.index_select(0, graph.edge_index[0]), graph.edge_index[1], n_dst, "max")
        else:
            agg = csr_aggregate(None, x, graph)
            if self.aggr == "mean":
                agg = agg / graph.crow.diff().clamp(min=1).to(x.dtype).unsqueeze(1)
        out = self.lin_l(agg)
        if self.lin_r is not None:
            out = out + self.lin_r(x_dst)
        return F.normalize(out, p=2.0, dim=-1) if self.normalize else out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, aggr={self.aggr!r}"


# ------------------------------------------------------------------------------------------------
# GIN: Xu et al., "How Powerful are Graph Neural Networks?", ICLR 2019
# ------------------------------------------------------------------------------------------------


class GINConv(nn.Module):
    """``h_i' = MLP((1 + eps) h_i + sum_{j -> i} h_j)``; ``eps`` is learnt with ``train_eps=True``."""

    def __init__(self, nn: torch.nn.Module, eps: float = 0.0, train_eps: bool = False):
        super().__init__()
        self.nn = nn
        self.initial_eps = eps
        if train_eps:
            self.eps = torch.nn.Parameter(torch.full((1,), float(eps)))
        else:
            self.register_buffer("eps", torch.full((1,), float(eps)))
        self._memo = GraphMemo()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = check_features(x, None, "GINConv")
        n = x.size(0)
        graph = self._memo.get(edge_index, n, lambda: CSRGraph(check_edge_index(edge_index, n, "GINConv"), n))
        out = csr_aggregate(None, x, graph)
        return self.nn(out + (1 + self.eps) * x)
