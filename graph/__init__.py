"""Graph domain: message passing in plain PyTorch, GCN, GAT, GATv2, GraphSAGE, GIN, Planetoid recipes.

Importing the package registers ``gcn``, ``gat``, ``gatv2``, ``graphsage`` and ``gin``. The layers
read as the papers in :mod:`zoo.graph.message_passing` / :mod:`zoo.graph.conv` and run on the equal, faster
path of :mod:`zoo.graph.fast`. Nothing here imports ``torch_geometric``; PyG is the reference the layers
are tested against.
"""

from . import gat, gcn, gin, sage  # noqa: F401  (register the models)
from .conv import GATConv, GATv2Conv, GCNConv, GINConv, SAGEConv
from .gat import GAT, GATv2
from .gcn import GCN
from .gin import GIN
from .message_passing import MessagePassing, global_add_pool, global_max_pool, global_mean_pool
from .sage import GraphSAGE

__all__ = ["GCN", "GAT", "GATv2", "GraphSAGE", "GIN", "GCNConv", "GATConv", "GATv2Conv", "SAGEConv", "GINConv",
           "MessagePassing", "global_add_pool", "global_mean_pool", "global_max_pool"]
