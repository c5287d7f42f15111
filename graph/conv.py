"""Graph convolution layers: GCNConv, GATConv, GATv2Conv, SAGEConv, GINConv.

Checkpoint layout: PyG's ``torch_geometric.nn`` conv layers, key for key and shape for shape
(``lin.weight``, ``att_src``, ``att_dst``, ``bias``; ``lin_l`` / ``lin_r``; ``nn.*`` + ``eps``), so a
PyG state dict loads strictly and gives the same outputs (tested to 1e-5 in tests/graph).

Every layer is called as ``layer(x, edge_index, ...)`` with ``x`` of shape
``(num_nodes, in_channels)`` and messages flowing ``edge_index[0] -> edge_index[1]``. Each is a
:class:`~zoo.graph.message_passing.MessagePassing`: its ``message`` (and, for attention,
``edge_update``) is the paper's formula on whole edge lists; ``message_and_aggregate`` is the
same neighbour sum as one sparse product, which :mod:`zoo.graph.fast` uses at run time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.shared.errors import InputError, InvalidConfigError

from . import fast
from .message_passing import (
    Graph,
    MessagePassing,
    add_self_loops,
    check_features,
    edge_softmax,
    gcn_norm,
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


class GCNConv(MessagePassing):
    """``X' = D^-1/2 (A + I) D^-1/2 X W + b``: ``h_i' = sum_{j -> i} w_ji W h_j + b`` with
    ``w_ji = 1 / sqrt(deg_i deg_j)`` over the graph with self-loops.

    ``cached=True`` keeps the normalised graph of the first call for every later call, whatever
    graph comes next (transductive full-batch training, as in the paper and PyG).
    """

    preprocess_options = ("normalize", "add_self_loops", "improved")

    def __init__(self, in_channels: int, out_channels: int, improved: bool = False, cached: bool = False,
                 add_self_loops: bool = True, normalize: bool = True, bias: bool = True):
        super().__init__(aggr="sum")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.improved, self.cached = improved, cached
        self.add_self_loops, self.normalize = add_self_loops, normalize
        self.lin = _linear(in_channels, out_channels, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self._cached_graph: Graph | None = None

    def reset_cache(self) -> None:
        self._cached_graph = None
        fast.forget(self)

    def preprocess(self, edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None):
        if self.normalize:  # self-loops, then the symmetric normalisation as per-edge weights
            edge_index, edge_weight = gcn_norm(edge_index, num_nodes, edge_weight, add_loops=self.add_self_loops,
                                               improved=self.improved)
        return edge_index, edge_weight

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        x = check_features(x, self.in_channels, "GCNConv", self.lin.weight.dtype)
        graph = self._cached_graph
        if graph is None:
            graph = fast.prepare(self, edge_index, x.size(0), edge_weight)
            if self.cached:
                self._cached_graph = graph
        out = self.propagate(graph, x=self.lin(x), edge_weight=graph.edge_attr)
        return out if self.bias is None else out + self.bias

    def message(self, x_j: Tensor, edge_weight: Tensor | None) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, graph: Graph, x: Tensor, edge_weight: Tensor | None) -> Tensor:
        return fast.spmm(graph, edge_weight, x)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"


# ------------------------------------------------------------------------------------------------
# GAT: Velickovic et al., "Graph Attention Networks", ICLR 2018
# GATv2: Brody et al., "How Attentive are Graph Attention Networks?", ICLR 2022
# ------------------------------------------------------------------------------------------------


class _AttentionConv(MessagePassing):
    """What GAT and GATv2 share: heads, self-loops, edge features, dropout, concat/mean.

    ``dropout`` drops attention coefficients (as PyG's). Two options, both 0 by default (PyG's
    behaviour), exist to train as the GAT authors' reference code does, where each attention head
    is built on its own: ``message_dropout`` also drops the projected features ``W h_j`` that are
    summed (after the scores are computed from them), and ``input_dropout`` drops the layer's input
    with an independent mask per head. Both act only in training.
    """

    preprocess_options = ("add_self_loops", "fill_value")

    def __init__(self, in_channels: int, out_channels: int, heads: int, concat: bool, negative_slope: float,
                 dropout: float, add_self_loops: bool, edge_dim: int | None, fill_value: float | str,
                 residual: bool, bias: bool, message_dropout: float = 0.0, input_dropout: float = 0.0):
        super().__init__(aggr="sum")
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.concat, self.negative_slope, self.dropout = concat, negative_slope, dropout
        self.message_dropout, self.input_dropout = message_dropout, input_dropout
        self._input_memo = fast.NonzeroMemo()  # where sparse input features are nonzero, for input_dropout
        self.add_self_loops, self.edge_dim, self.fill_value = add_self_loops, edge_dim, fill_value
        self.residual = residual
        self._total_out = heads * out_channels if concat else out_channels

    def _finish_init(self, bias: bool) -> None:
        # registered after the layer's own projections, in PyG's order: [lin_edge, att_edge,] res, bias
        self.res = _linear(self.in_channels, self._total_out, bias=False) if self.residual else None
        self.bias = nn.Parameter(torch.zeros(self._total_out)) if bias else None

    def preprocess(self, edge_index: Tensor, num_nodes: int, edge_attr: Tensor | None):
        if edge_attr is not None and edge_attr.dim() == 1:
            edge_attr = edge_attr.view(-1, 1)
        if self.add_self_loops:  # exactly one loop per node; its edge features: fill_value
            edge_index, edge_attr = remove_self_loops(edge_index, edge_attr)
            edge_index, edge_attr = add_self_loops(edge_index, num_nodes, edge_attr, fill_value=self.fill_value)
        return edge_index, edge_attr

    def _project(self, x: Tensor, linears: list[nn.Linear]) -> list[Tensor]:
        """Each ``linear(x)`` as ``(n, heads, C)``; in training with ``input_dropout``, every head
        sees ``x`` through its own dropout mask (shared by the linears)."""
        n, H, C = x.size(0), self.heads, self.out_channels
        if not (self.training and self.input_dropout > 0):
            return [lin(x).view(n, H, C) for lin in linears]
        if fast.enabled():
            outs = fast.head_dropout_linear(x, [lin.weight for lin in linears], H, self.input_dropout, self._input_memo)
        else:
            masked = [F.dropout(x, self.input_dropout) for _ in range(H)]  # one mask per head
            outs = [torch.stack([x_k @ lin.weight.view(H, C, -1)[k].T for k, x_k in enumerate(masked)], dim=1)
                    for lin in linears]
        return [out if lin.bias is None else out + lin.bias.view(H, C) for out, lin in zip(outs, linears)]

    def _edge_features(self, edge_attr: Tensor | None) -> Tensor | None:
        """``W_e e_ji`` as ``(E, heads, C)``."""
        if edge_attr is None:
            return None
        if self.lin_edge is None:
            raise InputError(f"{type(self).__name__} got edge_attr but was built without edge_dim; pass edge_dim=<features>.")
        if edge_attr.size(-1) != self.edge_dim:
            raise InputError(f"{type(self).__name__} was built for edge_dim={self.edge_dim}, edge_attr has {edge_attr.size(-1)}.")
        return self.lin_edge(edge_attr).view(-1, self.heads, self.out_channels)

    def _attend(self, x: Tensor, h: Tensor, scores: Tensor, graph: Graph, return_attention_weights: bool):
        """``alpha_ij = softmax_j(scores_ji)`` over each target's in-edges, then ``h_i' = sum_j alpha_ij h_j``
        per head; heads concatenated or averaged."""
        alpha = edge_softmax(scores, graph.edge_index[1], graph.num_dst)
        alpha = F.dropout(alpha, p=self.dropout, training=self.training)
        if self.message_dropout:  # after the scores are taken: only the aggregated values are dropped
            h = F.dropout(h, p=self.message_dropout, training=self.training)
        out = self.propagate(graph, x=h, alpha=alpha)
        out = out.reshape(x.size(0), self.heads * self.out_channels) if self.concat else out.mean(dim=1)
        if self.res is not None:
            out = out + self.res(x)
        if self.bias is not None:
            out = out + self.bias
        return (out, (graph.edge_index, alpha)) if return_attention_weights else out

    def message(self, x_j: Tensor, alpha: Tensor) -> Tensor:
        return alpha.unsqueeze(-1) * x_j

    def message_and_aggregate(self, graph: Graph, x: Tensor, alpha: Tensor) -> Tensor:
        return fast.spmm(graph, alpha, x)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, heads={self.heads}, concat={self.concat}"


class GATConv(_AttentionConv):
    """Graph attention: ``alpha_ij = softmax_j LeakyReLU(a_dst . W h_i + a_src . W h_j [+ a_edge . W_e e_ji])``,
    ``h_i' = ||_heads sum_j alpha_ij W h_j`` (or the mean over heads), with a self-loop per node."""

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
        x = check_features(x, self.in_channels, "GATConv", self.lin.weight.dtype)
        (h,) = self._project(x, [self.lin])  # W h: (n, heads, C)
        a_src = (h * self.att_src).sum(-1)  # a_src . W h_j, once per node rather than once per edge
        a_dst = (h * self.att_dst).sum(-1)
        graph = fast.prepare(self, edge_index, x.size(0), edge_attr)
        scores = self.edge_updater(graph, a_src=a_src, a_dst=a_dst, edge_attr=graph.edge_attr)
        return self._attend(x, h, scores, graph, return_attention_weights)

    def edge_update(self, a_src_j: Tensor, a_dst_i: Tensor, edge_attr: Tensor | None) -> Tensor:
        scores = a_src_j + a_dst_i
        if edge_attr is not None:
            scores = scores + (self._edge_features(edge_attr) * self.att_edge).sum(-1)
        return F.leaky_relu(scores, self.negative_slope)


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
        x = check_features(x, self.in_channels, "GATv2Conv", self.lin_l.weight.dtype)
        if self.share_weights:
            (h_src,) = self._project(x, [self.lin_l])
            h_dst = h_src
        else:
            h_src, h_dst = self._project(x, [self.lin_l, self.lin_r])
        graph = fast.prepare(self, edge_index, x.size(0), edge_attr)
        scores = self.edge_updater(graph, h_src=h_src, h_dst=h_dst, edge_attr=graph.edge_attr)
        return self._attend(x, h_src, scores, graph, return_attention_weights)

    def edge_update(self, h_src_j: Tensor, h_dst_i: Tensor, edge_attr: Tensor | None) -> Tensor:
        z = h_src_j + h_dst_i
        if edge_attr is not None:
            z = z + self._edge_features(edge_attr)
        return (F.leaky_relu(z, self.negative_slope) * self.att).sum(-1)


# ------------------------------------------------------------------------------------------------
# GraphSAGE: Hamilton et al., "Inductive Representation Learning on Large Graphs", NeurIPS 2017
# ------------------------------------------------------------------------------------------------


class SAGEConv(MessagePassing):
    """``h_i' = W_l aggr_{j -> i} h_j + b + W_r h_i`` (``aggr``: mean, sum or max), optionally
    L2-normalised."""

    def __init__(self, in_channels: int, out_channels: int, aggr: str = "mean", normalize: bool = False,
                 root_weight: bool = True, bias: bool = True):
        if aggr not in ("mean", "sum", "add", "max"):
            raise InvalidConfigError(f"SAGEConv aggr must be 'mean', 'sum' or 'max', got {aggr!r}")
        super().__init__(aggr=aggr)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.normalize, self.root_weight = normalize, root_weight
        self.lin_l = nn.Linear(in_channels, out_channels, bias=bias)
        self.lin_r = nn.Linear(in_channels, out_channels, bias=False) if root_weight else None

    def forward(self, x: Tensor, edge_index: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """``size=(num_src, num_dst)``: a bipartite block (:mod:`zoo.graph.sampling`) whose targets are
        the first ``num_dst`` rows of ``x``; the output then has ``num_dst`` rows."""
        x = check_features(x, self.in_channels, "SAGEConv", self.lin_l.weight.dtype)
        n_src = x.size(0)
        n_dst = n_src if size is None else int(size[1])
        if size is not None and (int(size[0]) != n_src or not 0 <= n_dst <= n_src):
            raise InputError(f"SAGEConv: block size {tuple(size)} does not fit x with {n_src} rows "
                             "(need size[0] == num rows of x >= size[1]).")
        graph = fast.prepare(self, edge_index, n_dst, num_src=n_src)
        out = self.lin_l(self.propagate(graph, x=x))
        if self.lin_r is not None:
            out = out + self.lin_r(x if n_dst == n_src else x[:n_dst])
        return F.normalize(out, p=2.0, dim=-1) if self.normalize else out

    def message_and_aggregate(self, graph: Graph, x: Tensor) -> Tensor:
        if self.aggr == "max":  # no sparse product takes a max: gather and scatter
            return scatter(x.index_select(0, graph.edge_index[0]), graph.edge_index[1], graph.num_dst, "max")
        out = fast.spmm(graph, None, x)
        if self.aggr == "mean":
            out = out / graph.csr.in_degree().clamp(min=1).to(x.dtype).unsqueeze(1)
        return out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, aggr={self.aggr!r}"


# ------------------------------------------------------------------------------------------------
# GIN: Xu et al., "How Powerful are Graph Neural Networks?", ICLR 2019
# ------------------------------------------------------------------------------------------------


class GINConv(MessagePassing):
    """``h_i' = MLP((1 + eps) h_i + sum_{j -> i} h_j)``; ``eps`` is learnt with ``train_eps=True``."""

    def __init__(self, nn: torch.nn.Module, eps: float = 0.0, train_eps: bool = False):
        super().__init__(aggr="sum")
        self.nn = nn
        self.initial_eps = eps
        if train_eps:
            self.eps = torch.nn.Parameter(torch.full((1,), float(eps)))
        else:
            self.register_buffer("eps", torch.full((1,), float(eps)))

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = check_features(x, None, "GINConv")
        graph = fast.prepare(self, edge_index, x.size(0))
        return self.nn(self.propagate(graph, x=x) + (1 + self.eps) * x)

    def message_and_aggregate(self, graph: Graph, x: Tensor) -> Tensor:
        return fast.spmm(graph, None, x)
