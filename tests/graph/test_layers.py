"""Layer parity with PyG: same state-dict keys and shapes, same outputs (1e-5) with the same weights."""

import pytest
import torch

pyg_nn = pytest.importorskip("torch_geometric.nn", reason="torch_geometric is the reference for the parity tests")

from zoo.graph import conv as ours  # noqa: E402
from zoo.graph import fast  # noqa: E402
from zoo.graph import message_passing as mp  # noqa: E402

N, F_IN, E = 40, 12, 160


@pytest.fixture
def graph():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, F_IN, generator=g)
    edge_index = torch.randint(0, N - 2, (2, E), generator=g)  # nodes N-2, N-1 are isolated
    edge_index[:, :5] = torch.arange(5).repeat(2, 1)  # a few existing self-loops
    edge_attr = torch.randn(E, 3, generator=g)
    return x, edge_index, edge_attr


def _copy_and_compare(mine, ref, *args, **kwargs):
    a, b = mine.state_dict(), ref.state_dict()
    assert sorted(a) == sorted(b)
    assert all(a[k].shape == b[k].shape for k in a)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_()
    mine.load_state_dict(ref.state_dict(), strict=True)
    mine.eval(), ref.eval()
    with torch.no_grad():
        out_mine, out_ref = mine(*args, **kwargs), ref(*args, **kwargs)
    if isinstance(out_ref, tuple):
        torch.testing.assert_close(out_mine[0], out_ref[0], atol=1e-5, rtol=1e-5)
        # the same (edge, attention) pairs; ours come sorted by target
        def by_edge(ei, alpha):
            order = torch.argsort(ei[1] * N + ei[0])
            return ei[:, order], alpha[order]

        (ei_a, al_a), (ei_b, al_b) = by_edge(*out_mine[1]), by_edge(*out_ref[1])
        torch.testing.assert_close(ei_a, ei_b)
        torch.testing.assert_close(al_a, al_b, atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(out_mine, out_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("loops", [True, False])
@pytest.mark.parametrize("improved", [False, True])
def test_gcn_conv(graph, loops, improved):
    x, ei, _ = graph
    kw = dict(add_self_loops=loops, improved=improved)
    _copy_and_compare(ours.GCNConv(F_IN, 7, **kw), pyg_nn.GCNConv(F_IN, 7, **kw), x, ei)
    weight = torch.rand(E)
    _copy_and_compare(ours.GCNConv(F_IN, 7, **kw), pyg_nn.GCNConv(F_IN, 7, **kw), x, ei, weight)


def test_gcn_conv_cached_and_unnormalized(graph):
    x, ei, _ = graph
    mine, ref = ours.GCNConv(F_IN, 7, cached=True), pyg_nn.GCNConv(F_IN, 7, cached=True)
    _copy_and_compare(mine, ref, x, ei)
    torch.testing.assert_close(mine(x, ei), ref(x, ei), atol=1e-5, rtol=1e-5)
    _copy_and_compare(ours.GCNConv(F_IN, 7, normalize=False), pyg_nn.GCNConv(F_IN, 7, normalize=False), x, ei)


@pytest.mark.parametrize("cls", ["GATConv", "GATv2Conv"])
@pytest.mark.parametrize("loops", [True, False])
@pytest.mark.parametrize("heads,concat", [(1, True), (4, True), (4, False)])
def test_attention_convs(graph, cls, loops, heads, concat):
    x, ei, _ = graph
    kw = dict(heads=heads, concat=concat, add_self_loops=loops)
    _copy_and_compare(getattr(ours, cls)(F_IN, 5, **kw), getattr(pyg_nn, cls)(F_IN, 5, **kw), x, ei)


@pytest.mark.parametrize("cls", ["GATConv", "GATv2Conv"])
@pytest.mark.parametrize("fill_value", ["mean", 0.5])
def test_attention_convs_with_edge_features(graph, cls, fill_value):
    x, ei, ea = graph
    kw = dict(heads=3, edge_dim=3, fill_value=fill_value, residual=True)
    _copy_and_compare(getattr(ours, cls)(F_IN, 5, **kw), getattr(pyg_nn, cls)(F_IN, 5, **kw), x, ei, ea)


def test_attention_weights_and_options(graph):
    x, ei, _ = graph
    _copy_and_compare(ours.GATConv(F_IN, 5, heads=2), pyg_nn.GATConv(F_IN, 5, heads=2), x, ei,
                      return_attention_weights=True)
    kw = dict(heads=2, share_weights=True, negative_slope=0.1, bias=False)
    _copy_and_compare(ours.GATv2Conv(F_IN, 5, **kw), pyg_nn.GATv2Conv(F_IN, 5, **kw), x, ei)


def test_attention_dropout_only_in_training(graph):
    x, ei, _ = graph
    conv = ours.GATConv(F_IN, 5, heads=2, dropout=0.6)
    conv.eval()
    torch.testing.assert_close(conv(x, ei), conv(x, ei))
    conv.train()
    torch.manual_seed(0)
    a = conv(x, ei)
    torch.manual_seed(1)
    assert not torch.allclose(a, conv(x, ei))


def test_message_dropout_drops_aggregated_values_not_scores(graph):
    x, ei, _ = graph
    n = x.size(0)
    conv = ours.GATConv(F_IN, 5, heads=2, dropout=0.0, message_dropout=0.5)
    conv.eval()
    with torch.no_grad():
        _, (loops, alpha) = conv(x, ei, return_attention_weights=True)
    conv.train()
    torch.manual_seed(3)
    with torch.no_grad():
        out, (_, alpha_train) = conv(x, ei, return_attention_weights=True)
    torch.testing.assert_close(alpha_train, alpha)  # the scores see the undropped features
    torch.manual_seed(3)
    mask = torch.nn.functional.dropout(torch.ones(n, 2, 5), 0.5, True)  # the same draw as inside the layer
    with torch.no_grad():
        h = conv.lin(x).view(n, 2, 5) * mask
        expected = torch.zeros(n, 2, 5).index_add_(0, loops[1], alpha.unsqueeze(-1) * h[loops[0]])
    torch.testing.assert_close(out, expected.reshape(n, 10) + conv.bias)


@pytest.mark.parametrize("density", ["sparse", "dense"])
def test_head_dropout_linear_draws_one_mask_per_head(density):
    heads, c, p = 3, 4, 0.5
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, F_IN, generator=g)
    if density == "sparse":  # mostly zeros, as bag-of-words features: only the nonzeros are drawn
        x = torch.where(torch.rand(N, F_IN, generator=g) < 0.05, x, 0.0)
    w = torch.randn(heads * c, F_IN, generator=g)
    torch.manual_seed(5)
    (out,) = fast.head_dropout_linear(x, [w], heads, p)
    # the same draws, by hand: one mask of x per head, then head k's own weight rows
    torch.manual_seed(5)
    if density == "sparse":
        rows, cols = x.nonzero(as_tuple=True)
        keep = torch.rand(rows.numel(), heads) >= p
        masks = torch.zeros(heads, N, F_IN)
        masks[:, rows, cols] = keep.T.float()
    else:
        masks = (torch.rand(heads, N, F_IN) >= p).float()
    expected = torch.stack([(x * masks[k] / (1 - p)) @ w.view(heads, c, F_IN)[k].T for k in range(heads)], 1)
    torch.testing.assert_close(out, expected)
    assert not torch.equal(masks[0], masks[1])  # heads do not share a mask
    (no_drop,) = fast.head_dropout_linear(x, [w], heads, 0.0)
    torch.testing.assert_close(no_drop, (x @ w.T).view(N, heads, c))


@pytest.mark.parametrize("cls", [ours.GATConv, ours.GATv2Conv])
def test_per_head_input_dropout_only_in_training(graph, cls):
    x, ei, _ = graph
    conv = cls(F_IN, 5, heads=2, input_dropout=0.5)
    plain = cls(F_IN, 5, heads=2)
    plain.load_state_dict(conv.state_dict())
    conv.eval(), plain.eval()
    torch.testing.assert_close(conv(x, ei), plain(x, ei))  # evaluation: no dropout at all
    conv.train()
    out = conv(x, ei)
    out.sum().backward()
    assert not torch.allclose(out, plain(x, ei)) and all(p.grad is not None for p in conv.parameters())


@pytest.mark.parametrize("aggr", ["mean", "sum", "max"])
@pytest.mark.parametrize("root_weight,normalize", [(True, False), (False, True)])
def test_sage_conv(graph, aggr, root_weight, normalize):
    x, ei, _ = graph
    kw = dict(aggr=aggr, root_weight=root_weight, normalize=normalize)
    _copy_and_compare(ours.SAGEConv(F_IN, 7, **kw), pyg_nn.SAGEConv(F_IN, 7, **kw), x, ei)


@pytest.mark.parametrize("train_eps,eps", [(False, 0.0), (True, 0.1)])
def test_gin_conv(graph, train_eps, eps):
    x, ei, _ = graph

    def mlp():
        return torch.nn.Sequential(torch.nn.Linear(F_IN, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))

    mine, ref = ours.GINConv(mlp(), eps=eps, train_eps=train_eps), pyg_nn.GINConv(mlp(), eps=eps, train_eps=train_eps)
    assert ("eps" in dict(mine.named_parameters())) == train_eps
    _copy_and_compare(mine, ref, x, ei)


def test_pooling_matches_pyg():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 4, generator=g)
    batch = torch.tensor([0] * 5 + [1] * 7 + [3] * 8)  # graph 2 has no nodes
    for name in ("global_add_pool", "global_mean_pool", "global_max_pool"):
        torch.testing.assert_close(getattr(mp, name)(x, batch), getattr(pyg_nn, name)(x, batch))
        torch.testing.assert_close(getattr(mp, name)(x, batch, 5), getattr(pyg_nn, name)(x, batch, 5))
        torch.testing.assert_close(getattr(mp, name)(x), getattr(pyg_nn, name)(x, None))


def test_core_helpers_match_pyg():
    from torch_geometric import utils

    g = torch.Generator().manual_seed(0)
    index = torch.randint(0, 6, (30,), generator=g)
    src = torch.randn(30, 3, generator=g) * 50  # large scores: the softmax must stay finite
    torch.testing.assert_close(mp.edge_softmax(src, index, 8), utils.softmax(src, index, num_nodes=8))
    for reduce in ("sum", "mean", "max", "min"):
        torch.testing.assert_close(mp.scatter(src, index, 8, reduce), utils.scatter(src, index, 0, 8, reduce))
    ei = torch.randint(0, 6, (2, 20), generator=g)
    torch.testing.assert_close(mp.degree(ei[1], 6), utils.degree(ei[1], 6))
    w = torch.rand(20, generator=g)
    ours_ei, ours_w = mp.add_remaining_self_loops(ei, 6, w, 2.0)
    ref_ei, ref_w = utils.add_remaining_self_loops(ei, w, 2.0, 6)
    assert torch.equal(ours_ei, ref_ei) and torch.equal(ours_w, ref_w)
    assert torch.equal(mp.remove_self_loops(ei)[0], utils.remove_self_loops(ei)[0])


def test_graph_memo_sees_new_and_edited_edge_index(graph):
    x, ei, _ = graph
    conv = ours.GCNConv(F_IN, 4)
    a = conv(x, ei)
    edited = ei.clone()
    assert torch.equal(conv(x, edited), a)
    edited[0, 0] = N - 1  # in place: the version counter changes, the memo recomputes
    ref = ours.GCNConv(F_IN, 4)
    ref.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv(x, edited), ref(x, edited.clone()))
