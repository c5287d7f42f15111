"""GraphSAGE: Hamilton, Ying & Leskovec, "Inductive Representation Learning on Large Graphs",
NeurIPS 2017 (arXiv:1706.02216).

``num_layers`` SAGEConv layers (mean aggregator, root weight) with ReLU and dropout between them;
logits per node. Trained full-batch on small graphs or on sampled mini-batches
(:class:`zoo.graph.sampling.NeighborSampler`: the first ``batch_size`` rows of a sampled subgraph
are its seed nodes).

Checkpoint layout: a model built the same way from PyG's ``SAGEConv`` — ``convs.N.lin_l.weight``,
``convs.N.lin_l.bias``, ``convs.N.lin_r.weight``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from zoo.shared.errors import InputError, InvalidConfigError
from zoo.shared.registry import register_model

from .conv import SAGEConv
from .examples import NODE_INPUTS, node_test_spec
from .message_passing import check_features, unpack_graph


class GraphSAGE(nn.Module):
    def __init__(self, in_channels: int = 1433, hidden_channels: int = 256, num_classes: int = 7,
                 num_layers: int = 2, dropout: float = 0.5, aggr: str = "mean", normalize: bool = False):
        super().__init__()
        if num_layers < 1:
            raise InvalidConfigError(f"graphsage: num_layers must be >= 1, got {num_layers}")
        self.in_channels, self.num_classes, self.dropout = in_channels, num_classes, dropout
        dims = [in_channels] + [hidden_channels] * (num_layers - 1) + [num_classes]
        self.convs = nn.ModuleList(
            SAGEConv(a, b, aggr=aggr, normalize=normalize and i < num_layers - 1)
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))
        )

    def forward(self, x, edge_index=None) -> Tensor:
        """``model(x, edge_index)`` or ``model(data)``: ``(num_nodes, num_classes)`` logits.

        ``model(x[batch.n_id], batch.blocks)`` with a :class:`zoo.graph.sampling.SampledBatch`: one
        block per layer; returns the logits of the batch's seed nodes (``batch.batch_size`` rows).
        """
        if isinstance(edge_index, (list, tuple)):
            return self._forward_blocks(x, edge_index)
        x, edge_index = unpack_graph(x, edge_index, where="graphsage")
        x = check_features(x, self.in_channels, "graphsage", self.convs[0].lin_l.weight.dtype)
        for i, conv in enumerate(self.convs):
            x = conv(x, edge_index)
            if i < len(self.convs) - 1:
                x = F.dropout(F.relu(x), self.dropout, self.training)
        return x

    def _forward_blocks(self, x: Tensor, blocks) -> Tensor:
        x = check_features(x, self.in_channels, "graphsage", self.convs[0].lin_l.weight.dtype)
        if len(blocks) != len(self.convs):
            raise InputError(f"graphsage has {len(self.convs)} layers but got {len(blocks)} sampled blocks; "
                             f"sample with {len(self.convs)} fan-outs.")
        for i, (conv, block) in enumerate(zip(self.convs, blocks)):
            x = conv(x, block.edge_index, size=block.size)
            if i < len(self.convs) - 1:
                x = F.dropout(F.relu(x), self.dropout, self.training)
        return x


register_model(
    "graphsage",
    GraphSAGE,
    dict(in_channels=1433, hidden_channels=256, num_classes=7, num_layers=2, dropout=0.5, aggr="mean"),
    domain="graph",
    task="node-classification",
    paper="Hamilton et al. 2017, Inductive Representation Learning on Large Graphs (arXiv:1706.02216)",
    inputs=NODE_INPUTS,
    classifier="convs.1",
    test=node_test_spec(in_channels=6, hidden_channels=8, num_classes=3),
)
