"""GAT and GATv2.

Papers:
  Velickovic et al., "Graph Attention Networks", ICLR 2018 (arXiv:1710.10903).
  Brody, Alon & Yahav, "How Attentive are Graph Attention Networks?", ICLR 2022 (arXiv:2105.14491).

The paper's Cora model: dropout 0.6 -> GATConv(in, 8, heads=8) (concatenated, 64 features) ->
ELU -> dropout 0.6 -> GATConv(64, classes, heads=1, mean); attention dropout 0.6 in both layers.
``gatv2`` is the same model with GATv2's dynamic attention.

By default it trains and initialises as the authors' reference code (github.com/PetarV-/GAT)
does, which is what the paper's numbers come from: that code builds each attention head on its
own, so each first-layer head draws its own dropout mask over the input
(``per_head_input_dropout``), each layer also drops the features it aggregates
(``message_dropout``), and each head's attention vector is initialised as a separate 1x1
convolution (``attention_init="per_head"``). ``per_head_input_dropout=False, message_dropout=0,
attention_init="layer"`` gives PyG's example model. Evaluation outputs do not depend on these
options: with the same weights they equal PyG's either way.

Checkpoint layout: a model built the same way from PyG's ``GATConv`` / ``GATv2Conv`` —
``conv1.lin.weight``, ``conv1.att_src``, ``conv1.att_dst``, ``conv1.bias``, ``conv2.*`` (GATv2:
``lin_l``, ``lin_r``, ``att``) — loads strictly and gives the same output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.shared.errors import InvalidConfigError
from zoo.shared.registry import register_model

from .conv import GATConv, GATv2Conv
from .examples import NODE_INPUTS, node_test_spec
from .fast import NonzeroMemo, sparse_dropout
from .message_passing import check_features, unpack_graph


class GAT(nn.Module):
    conv_cls = GATConv
    name = "gat"

    def __init__(self, in_channels: int = 1433, hidden_channels: int = 8, num_classes: int = 7, heads: int = 8,
                 out_heads: int = 1, dropout: float = 0.6, attention_dropout: float | None = None,
                 message_dropout: float | None = None, per_head_input_dropout: bool = True,
                 negative_slope: float = 0.2, edge_dim: int | None = None, attention_init: str = "per_head"):
        super().__init__()
        if attention_init not in ("per_head", "layer"):
            raise InvalidConfigError(f"{self.name}: attention_init must be 'per_head' or 'layer', "
                                     f"got {attention_init!r}")
        self._input_memo = NonzeroMemo()  # where the (bag-of-words) input features are nonzero
        self.in_channels, self.num_classes, self.dropout = in_channels, num_classes, dropout
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        message_dropout = dropout if message_dropout is None else message_dropout
        common = dict(dropout=attention_dropout, message_dropout=message_dropout, negative_slope=negative_slope,
                      edge_dim=edge_dim)
        # with per-head masks the first layer drops its own input; otherwise forward() drops it once
        self.per_head_input_dropout = per_head_input_dropout and heads > 1
        self.conv1 = self.conv_cls(in_channels, hidden_channels, heads=heads, concat=True,
                                   input_dropout=dropout if self.per_head_input_dropout else 0.0, **common)
        self.conv2 = self.conv_cls(hidden_channels * heads, num_classes, heads=out_heads, concat=False, **common)
        if attention_init == "per_head":
            self.init_attention_per_head()

    @torch.no_grad()
    def init_attention_per_head(self) -> None:
        """Initialise every head's attention vector as the authors' code does: a 1x1 convolution from
        the head's ``F'`` features to one score, Glorot-uniform with bound ``sqrt(6 / (F' + 1))``. (PyG's
        layers draw all heads' vectors as one ``(heads, F')`` matrix, bound ``sqrt(6 / (heads + F'))``.)"""
        for conv in (self.conv1, self.conv2):
            for name in ("att_src", "att_dst", "att"):
                att = getattr(conv, name, None)
                if att is not None:
                    bound = math.sqrt(6.0 / (att.size(-1) + 1))
                    att.uniform_(-bound, bound)

    def forward(self, x, edge_index: Tensor | None = None, edge_attr: Tensor | None = None) -> Tensor:
        """``model(x, edge_index[, edge_attr])`` or ``model(data)``; returns ``(num_nodes, num_classes)`` logits."""
        x, edge_index, edge_attr = unpack_graph(x, edge_index, edge_attr, fields=("edge_attr",), where=self.name)
        x = check_features(x, self.in_channels, self.name, next(self.conv1.parameters()).dtype)
        if not self.per_head_input_dropout:
            x = sparse_dropout(x, self.dropout, self.training, self._input_memo)  # F.dropout, drawn for nonzeros only
        x = F.elu(self.conv1(x, edge_index, edge_attr))
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index, edge_attr)


class GATv2(GAT):
    conv_cls = GATv2Conv
    name = "gatv2"


_TEST = node_test_spec(in_channels=6, hidden_channels=4, heads=2, num_classes=3)
_CONFIG = dict(in_channels=1433, hidden_channels=8, num_classes=7, heads=8, out_heads=1, dropout=0.6)

register_model(
    "gat", GAT, _CONFIG, domain="graph", task="node-classification",
    paper="Velickovic et al. 2018, Graph Attention Networks (arXiv:1710.10903)",
    inputs=NODE_INPUTS, classifier="conv2", test=_TEST,
)
register_model(
    "gatv2", GATv2, _CONFIG, domain="graph", task="node-classification",
    paper="Brody et al. 2022, How Attentive are Graph Attention Networks? (arXiv:2105.14491)",
    inputs=NODE_INPUTS, classifier="conv2", test=_TEST,
)
