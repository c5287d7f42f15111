"""GCN: Kipf & Welling, "Semi-Supervised Classification with Graph Convolutional Networks", ICLR 2017
(arXiv:1609.02907).

The paper's two-layer node classifier: dropout -> GCNConv(in, 16) -> ReLU -> dropout ->
GCNConv(16, classes); the output is logits per node (softmax / cross-entropy in the loss).

Checkpoint layout: a model built the same way from PyG's ``GCNConv`` — ``conv1.lin.weight``,
``conv1.bias``, ``conv2.lin.weight``, ``conv2.bias`` — loads strictly and gives the same output.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from zoo.shared.registry import register_model

from .conv import GCNConv
from .examples import NODE_INPUTS, node_test_spec
from .fast import NonzeroMemo, sparse_dropout
from .message_passing import check_features, unpack_graph


class GCN(nn.Module):
    def __init__(self, in_channels: int = 1433, hidden_channels: int = 16, num_classes: int = 7,
                 dropout: float = 0.5, improved: bool = False, cached: bool = False):
        super().__init__()
        self._input_memo = NonzeroMemo()  # where the (bag-of-words) input features are nonzero
        self.in_channels, self.num_classes, self.dropout = in_channels, num_classes, dropout
        self.conv1 = GCNConv(in_channels, hidden_channels, improved=improved, cached=cached)
        self.conv2 = GCNConv(hidden_channels, num_classes, improved=improved, cached=cached)

    def forward(self, x, edge_index: Tensor | None = None, edge_weight: Tensor | None = None) -> Tensor:
        """``model(x, edge_index[, edge_weight])`` or ``model(data)``; returns ``(num_nodes, num_classes)`` logits."""
        x, edge_index, edge_weight = unpack_graph(x, edge_index, edge_weight, fields=("edge_weight",), where="gcn")
        x = check_features(x, self.in_channels, "gcn", self.conv1.lin.weight.dtype)
        x = sparse_dropout(x, self.dropout, self.training, self._input_memo)  # F.dropout, drawn for nonzeros only
        x = F.relu(self.conv1(x, edge_index, edge_weight))
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index, edge_weight)


register_model(
    "gcn",
    GCN,
    dict(in_channels=1433, hidden_channels=16, num_classes=7, dropout=0.5),
    domain="graph",
    task="node-classification",
    paper="Kipf & Welling 2017, Semi-Supervised Classification with Graph Convolutional Networks (arXiv:1609.02907)",
    inputs=NODE_INPUTS,
    classifier="conv2",
    test=node_test_spec(in_channels=6, hidden_channels=8, num_classes=3),
)
