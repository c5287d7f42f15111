"""Reference implementations the tests and benchmarks compare against (never imported by model code).

The PyG models are the Cora GAT and GCN of the papers, written with PyG's layers the way PyG's own
examples write them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pyg_models() -> dict[str, type[torch.nn.Module]]:
    """``{"gat": PygGAT, "gcn": PygGCN}``; imports torch_geometric when called."""
    import torch_geometric.nn as pyg_nn

    class PygGAT(torch.nn.Module):
        def __init__(self, cin, classes):
            super().__init__()
            self.conv1 = pyg_nn.GATConv(cin, 8, heads=8, dropout=0.6)
            self.conv2 = pyg_nn.GATConv(64, classes, heads=1, concat=False, dropout=0.6)

        def forward(self, x, edge_index):
            x = F.dropout(x, 0.6, self.training)
            x = F.elu(self.conv1(x, edge_index))
            return self.conv2(F.dropout(x, 0.6, self.training), edge_index)

    class PygGCN(torch.nn.Module):
        def __init__(self, cin, classes):
            super().__init__()
            self.conv1 = pyg_nn.GCNConv(cin, 16)
            self.conv2 = pyg_nn.GCNConv(16, classes)

        def forward(self, x, edge_index):
            x = F.relu(self.conv1(F.dropout(x, 0.5, self.training), edge_index))
            return self.conv2(F.dropout(x, 0.5, self.training), edge_index)

    return {"gat": PygGAT, "gcn": PygGCN}
