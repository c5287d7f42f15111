"""The fast path (graph/fast.py) equals the plain gather -> message -> scatter path (graph/message_passing.py).

Each layer and model runs twice on the same weights and inputs: by default (CSR products,
remembered preprocessing, sparse dropout) and under ``fast.plain()``; outputs and the gradients of
the inputs and of every parameter must agree. A counter on ``fast.spmm`` proves that the two runs
really took different paths.
"""

import pytest
import torch

import zoo
from zoo.graph import conv, fast
from zoo.graph.examples import random_graph_batch

N, F_IN = 40, 12


@pytest.fixture
def spmm_calls(monkeypatch):
    calls = []
    real = fast.spmm

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fast, "spmm", counting)
    return calls


def _graph(n=N, e=160, seed=0, edge_dim=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, F_IN, generator=g)
    edge_index = torch.randint(0, n - 2, (2, e), generator=g)  # nodes n-2, n-1 are isolated
    edge_index[:, :5] = torch.arange(5).repeat(2, 1)  # some self-loops
    edge_index[:, 5:10] = edge_index[:, 10:15]  # and duplicate edges
    return x, edge_index, torch.rand(e, generator=g), torch.randn(e, edge_dim, generator=g)


def _run(module, inputs, seed=0):
    """Output and gradients (inputs that require grad, then parameters) of ``module(*inputs)``."""
    module.zero_grad()
    inputs = [t.detach().clone().requires_grad_(t.is_floating_point()) if isinstance(t, torch.Tensor) else t
              for t in inputs]
    torch.manual_seed(seed)
    out = module(*inputs)
    out = out[0] if isinstance(out, tuple) else out
    weights = torch.linspace(-1, 1, out.numel()).view(out.shape)  # every output element counts, differently
    (out * weights).sum().backward()
    grads = [t.grad for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    grads += [p.grad for p in module.parameters() if p.requires_grad]
    return out.detach(), grads


def _assert_paths_agree(module, inputs, spmm_calls, expect_spmm=True, seed=0):
    fast_out, fast_grads = _run(module, inputs, seed)
    used = len(spmm_calls)
    assert (used > 0) == expect_spmm, "the default run did not take the fast path"
    with fast.plain():
        plain_out, plain_grads = _run(module, inputs, seed)
    assert len(spmm_calls) == used, "the plain run called the CSR product"
    torch.testing.assert_close(fast_out, plain_out, atol=1e-5, rtol=1e-5)
    assert len(fast_grads) == len(plain_grads)
    for a, b in zip(fast_grads, plain_grads):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


LAYERS = {
    "gcn": lambda: conv.GCNConv(F_IN, 7),
    "gcn-improved-no-loops": lambda: conv.GCNConv(F_IN, 7, improved=True, add_self_loops=False),
    "gcn-unnormalized": lambda: conv.GCNConv(F_IN, 7, normalize=False),
    "gat": lambda: conv.GATConv(F_IN, 5, heads=1),
    "gat-4-heads": lambda: conv.GATConv(F_IN, 5, heads=4),
    "gat-mean-no-loops": lambda: conv.GATConv(F_IN, 5, heads=3, concat=False, add_self_loops=False),
    "gatv2": lambda: conv.GATv2Conv(F_IN, 5, heads=4),
    "gatv2-shared": lambda: conv.GATv2Conv(F_IN, 5, heads=2, share_weights=True, concat=False),
    "sage-mean": lambda: conv.SAGEConv(F_IN, 7),
    "sage-sum-normalized": lambda: conv.SAGEConv(F_IN, 7, aggr="sum", normalize=True),
    "sage-max": lambda: conv.SAGEConv(F_IN, 7, aggr="max", root_weight=False),
    "gin": lambda: conv.GINConv(torch.nn.Sequential(torch.nn.Linear(F_IN, 16), torch.nn.ReLU(),
                                                    torch.nn.Linear(16, 8))),
    "gin-eps": lambda: conv.GINConv(torch.nn.Linear(F_IN, 8), eps=0.3, train_eps=True),
}


@pytest.mark.parametrize("name", LAYERS)
def test_every_layer_same_output_and_gradients(name, spmm_calls):
    torch.manual_seed(0)
    layer = LAYERS[name]()
    x, ei, _, _ = _graph()
    _assert_paths_agree(layer.train(), (x, ei), spmm_calls, expect_spmm=not name.startswith("sage-max"))


@pytest.mark.parametrize("layer", ["gcn", "gcn-improved-no-loops"])
def test_gcn_edge_weights_and_their_gradient(layer, spmm_calls):
    torch.manual_seed(0)
    x, ei, w, _ = _graph()
    _assert_paths_agree(LAYERS[layer](), (x, ei, w), spmm_calls)  # w requires grad: its gradient is compared too


@pytest.mark.parametrize("cls", [conv.GATConv, conv.GATv2Conv])
@pytest.mark.parametrize("fill_value", ["mean", 0.5])
def test_attention_with_edge_features_and_residual(cls, fill_value, spmm_calls):
    torch.manual_seed(0)
    layer = cls(F_IN, 5, heads=3, edge_dim=3, fill_value=fill_value, residual=True)
    x, ei, _, ea = _graph()
    _assert_paths_agree(layer, (x, ei, ea), spmm_calls)


@pytest.mark.parametrize("cls", [conv.GATConv, conv.GATv2Conv])
def test_attention_weights_are_the_same_per_edge(cls):
    torch.manual_seed(0)
    layer = cls(F_IN, 5, heads=2).eval()
    x, ei, _, _ = _graph()
    with torch.no_grad():
        _, (ei_fast, alpha_fast) = layer(x, ei, return_attention_weights=True)
        with fast.plain():
            _, (ei_plain, alpha_plain) = layer(x, ei, return_attention_weights=True)
    # the fast path sorts the edges by target; match them up by (target, source, position among duplicates)
    def canonical(edge_index, alpha):
        key = edge_index[1] * N + edge_index[0]
        order = torch.argsort(key * 10_000 + torch.arange(key.numel()), stable=True)
        return edge_index[:, order], alpha[order]

    a, b = canonical(ei_fast, alpha_fast), canonical(ei_plain, alpha_plain)
    assert torch.equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cls", [conv.GATConv, conv.GATv2Conv])
def test_message_dropout_in_training_same_draws(cls, spmm_calls):
    """Message dropout draws one (nodes, heads, C) mask in both paths: equal outputs under one seed."""
    torch.manual_seed(0)
    layer = cls(F_IN, 5, heads=4, message_dropout=0.5).train()
    x, ei, _, _ = _graph()
    _assert_paths_agree(layer, (x, ei), spmm_calls, seed=3)
    out_a, _ = _run(layer, (x, ei), seed=3)
    out_b, _ = _run(layer, (x, ei), seed=4)
    assert not torch.allclose(out_a, out_b)  # the dropout is live: another seed, another output


def test_sage_on_a_sampled_block(spmm_calls):
    """A bipartite block: 30 sources, the first 12 of them targets."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, F_IN, generator=g)
    ei = torch.stack([torch.randint(0, 30, (90,), generator=g), torch.randint(0, 12, (90,), generator=g)])
    for aggr in ("mean", "sum"):
        layer = conv.SAGEConv(F_IN, 7, aggr=aggr)
        _assert_paths_agree(_Block(layer, (30, 12)), (x, ei), spmm_calls)


class _Block(torch.nn.Module):
    def __init__(self, layer, size):
        super().__init__()
        self.layer, self.size = layer, size

    def forward(self, x, edge_index):
        return self.layer(x, edge_index, size=self.size)


@pytest.mark.parametrize("name", ["gcn", "gat", "gatv2", "graphsage"])
def test_node_models_same_output_and_gradients(name, spmm_calls):
    torch.manual_seed(0)
    x, ei, _, _ = _graph()
    # evaluation: the model as registered (its dropouts draw differently on the two paths)
    model = zoo.create(name, in_channels=F_IN, num_classes=3)
    _assert_paths_agree(model.eval(), (x, ei), spmm_calls)
    # training without dropout: the backward passes through every layer of both paths
    kwargs = dict(dropout=0.0)
    model = zoo.create(name, in_channels=F_IN, num_classes=3, **kwargs)
    _assert_paths_agree(model.train(), (x, ei), spmm_calls)


def test_gin_model_same_output_and_gradients(spmm_calls):
    torch.manual_seed(0)
    cfg = dict(in_channels=5, hidden_channels=8, num_classes=3, num_layers=3, train_eps=True)
    x, ei, batch = random_graph_batch(cfg, 5)
    model = zoo.create("gin", **cfg, dropout=0.0)
    _assert_paths_agree(model.eval(), (x, ei, batch), spmm_calls)
    _assert_paths_agree(model.train(), (x, ei, batch), spmm_calls)


def test_models_in_training_with_dropout_agree_in_distribution():
    """The sparse dropout draws only for nonzero features, so its masks differ from F.dropout's;
    both keep a nonzero with probability 1 - p and scale it by 1 / (1 - p)."""
    x = (torch.rand(400, 300, generator=torch.Generator().manual_seed(0)) < 0.03).float() * 2.0
    torch.manual_seed(0)
    out = fast.sparse_dropout(x, 0.6, True, fast.NonzeroMemo())
    with fast.plain():
        plain = fast.sparse_dropout(x, 0.6, True, fast.NonzeroMemo())
    for y in (out, plain):
        kept = y[x != 0]
        assert set(kept.unique().tolist()) <= {0.0, 2.0 / 0.4}
        assert abs((kept != 0).float().mean().item() - 0.4) < 0.05
        assert (y[x == 0] == 0).all()


@pytest.mark.parametrize("path", ["fast", "plain"])
@pytest.mark.parametrize("density", [0.03, 0.5], ids=["sparse x", "dense x"])
def test_per_head_input_dropout_draws_one_mask_per_head_on_both_paths(path, density):
    """Every head sees the input through its own dropout mask, shared by GATv2's two projections;
    kept entries are scaled by 1 / (1 - p), so the mean over many draws is the undropped output."""
    heads, c, p = 3, 4, 0.5
    g = torch.Generator().manual_seed(0)
    x = torch.where(torch.rand(N, F_IN, generator=g) < density, torch.rand(N, F_IN, generator=g) + 0.5, 0.0)
    layer = conv.GATv2Conv(F_IN, c, heads=heads, input_dropout=p, bias=False).train()
    with torch.no_grad():
        block = layer.lin_l.weight[:c].clone()
        layer.lin_l.weight.copy_(block.repeat(heads, 1))  # every head the same weights...
        layer.lin_r.weight.copy_(layer.lin_l.weight)  # ...in both projections
        undropped = (x @ block.T).unsqueeze(1).expand(N, heads, c)
    context = fast.plain if path == "plain" else torch.no_grad  # (a no-op beside the no_grad below)
    torch.manual_seed(0)
    with context(), torch.no_grad():
        h_src, h_dst = layer._project(x, [layer.lin_l, layer.lin_r])
        mean = sum(layer._project(x, [layer.lin_l])[0] for _ in range(300)) / 300
    assert torch.equal(h_src, h_dst)  # one mask per head for both projections
    assert not torch.allclose(h_src[:, 0], h_src[:, 1])  # but not one mask for all heads
    torch.testing.assert_close(mean, undropped, atol=0.15, rtol=0.1)
    layer.eval()
    with context(), torch.no_grad():
        torch.testing.assert_close(layer._project(x, [layer.lin_l])[0], undropped)
