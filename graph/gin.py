"""GIN: Xu, Hu, Leskovec & Jegelka, "How Powerful are Graph Neural Networks?", ICLR 2019
(arXiv:1810.00826).

Graph classification. ``num_layers`` GINConv layers, each with a two-layer MLP
(Linear -> BatchNorm -> ReLU -> Linear -> ReLU); the readout follows the paper: every layer's
node features (the input included) are sum-pooled per graph, each pooled vector goes through its
own linear classifier (with dropout), and the scores are added. ``train_eps`` picks GIN-eps over
GIN-0. Output: ``(num_graphs, num_classes)`` logits.

Checkpoint layout: convolutions as PyG's ``GINConv`` — ``convs.N.nn.*``, ``convs.N.eps``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from zoo.shared.errors import InputError, InvalidConfigError
from zoo.shared.registry import TestSpec, register_model

from .conv import GINConv
from .examples import random_graph_batch, select_graph
from .message_passing import check_batch, check_features, global_add_pool, global_max_pool, global_mean_pool, unpack_graph

_POOLS = {"sum": global_add_pool, "mean": global_mean_pool, "max": global_max_pool}


def _mlp(in_channels: int, hidden_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_channels, hidden_channels), nn.BatchNorm1d(hidden_channels), nn.ReLU(),
                         nn.Linear(hidden_channels, hidden_channels), nn.ReLU())


class GIN(nn.Module):
    def __init__(self, in_channels: int = 7, hidden_channels: int = 64, num_classes: int = 2, num_layers: int = 5,
                 dropout: float = 0.5, train_eps: bool = False, readout: str = "sum"):
        super().__init__()
        if readout not in _POOLS:
            raise InvalidConfigError(f"gin: readout must be one of {sorted(_POOLS)}, got {readout!r}")
        self.in_channels, self.num_classes, self.dropout, self.readout = in_channels, num_classes, dropout, readout
        dims = [in_channels] + [hidden_channels] * num_layers
        self.convs = nn.ModuleList(GINConv(_mlp(a, b), train_eps=train_eps) for a, b in zip(dims[:-1], dims[1:]))
        self.heads = nn.ModuleList(nn.Linear(d, num_classes) for d in dims)

    def forward(self, x, edge_index: Tensor | None = None, batch: Tensor | None = None) -> Tensor:
        """``model(x, edge_index, batch)`` or ``model(data)`` with ``data.batch``; ``batch=None``: one graph."""
        x, edge_index, batch = unpack_graph(x, edge_index, batch, fields=("batch",), where="gin")
        x = check_features(x, self.in_channels, "gin", self.heads[0].weight.dtype)
        if x.size(0) == 0:
            raise InputError("gin got a graph with no nodes: a graph-classification model needs at least one node "
                             "per graph to score.")
        batch = check_batch(batch, x.size(0), "gin")
        num_graphs = int(batch.max()) + 1 if batch is not None and batch.numel() else 1
        pool = _POOLS[self.readout]
        hidden = [x]
        for conv in self.convs:
            hidden.append(conv(hidden[-1], edge_index))
        out = 0
        for h, head in zip(hidden, self.heads):
            out = out + F.dropout(head(pool(h, batch, num_graphs)), self.dropout, self.training)
        return out


register_model(
    "gin",
    GIN,
    dict(in_channels=7, hidden_channels=64, num_classes=2, num_layers=5, dropout=0.5, train_eps=False, readout="sum"),
    domain="graph",
    task="graph-classification",
    paper="Xu et al. 2019, How Powerful are Graph Neural Networks? (arXiv:1810.00826)",
    inputs="x (num_nodes, in_channels) float, edge_index (2, num_edges) long, batch (num_nodes,) long graph ids; "
           "or a Data/Batch-like object with .x, .edge_index, .batch",
    classifier="heads",
    test=TestSpec(config=dict(in_channels=5, hidden_channels=8, num_classes=3, num_layers=2), inputs=random_graph_batch,
                  output_shape=lambda cfg, b: (b, cfg["num_classes"]), select=select_graph),
)
