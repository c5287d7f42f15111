"""Graph models under bad or unusual input: empty graphs, other dtypes, objects that are not graphs,
graphs and features edited in place after a forward pass."""

from types import SimpleNamespace

import pytest
import torch

import zoo
from zoo.graph import conv, fast
from zoo.shared.errors import InputError

NODE_MODELS = ["gcn", "gat", "gatv2", "graphsage"]


def _graph(n=30, feats=16, edges=90, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, feats, generator=g), torch.randint(0, n, (2, edges), generator=g)


def _model(name, **kw):
    torch.manual_seed(0)
    if name == "gin":
        return zoo.create("gin", in_channels=16, hidden_channels=8, num_classes=3, num_layers=2, **kw)
    return zoo.create(name, in_channels=16, num_classes=3, **kw)


@pytest.mark.parametrize("name", NODE_MODELS)
@pytest.mark.parametrize("training", [False, True])
def test_zero_nodes_give_an_empty_output(name, training):
    model = _model(name).train(training)
    out = model(torch.empty(0, 16), torch.empty(2, 0, dtype=torch.long))
    assert out.shape == (0, 3)
    out.sum().backward()  # still a graph autograd can walk


def test_gin_refuses_a_graph_without_nodes():
    with pytest.raises(InputError, match="no nodes"):
        _model("gin")(torch.empty(0, 16), torch.empty(2, 0, dtype=torch.long))


def test_edges_into_an_empty_graph_are_named():
    with pytest.raises(InputError, match="0 nodes"):
        _model("gcn")(torch.empty(0, 16), torch.tensor([[0], [0]]))


@pytest.mark.parametrize("name", NODE_MODELS + ["gin"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_features_of_another_dtype_are_refused_clearly(name, dtype):
    x, ei = _graph()
    expected = rf"float32 weights but the node features are {dtype}.*x\.to\(torch\.float32\)"
    with pytest.raises(InputError, match=expected):
        _model(name)(x.to(dtype), ei)


@pytest.mark.parametrize("name", NODE_MODELS)
def test_a_float64_model_takes_float64_features(name):
    x, ei = _graph()
    model = _model(name).eval()
    with torch.no_grad():
        expected = model(x, ei)
        out = model.double()(x.double(), ei)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cls", [conv.GCNConv, conv.GATConv, conv.GATv2Conv, conv.SAGEConv])
def test_layers_refuse_features_of_another_dtype(cls):
    x, ei = _graph()
    with pytest.raises(InputError, match="torch.float64"):
        cls(16, 4)(x.double(), ei)


@pytest.mark.parametrize("name", NODE_MODELS + ["gin"])
def test_an_object_without_x_is_reported_as_such(name):
    x, ei = _graph()
    model = _model(name)
    with pytest.raises(InputError, match=r"SimpleNamespace without \.x:"):
        model(SimpleNamespace(edge_index=ei))
    with pytest.raises(InputError, match=r"without \.edge_index"):
        model(SimpleNamespace(x=x))
    with pytest.raises(InputError, match=r"dict without \.x and \.edge_index"):
        model({"x": x, "edge_index": ei})
    with pytest.raises(InputError, match="missing edge_index"):
        model(x)


def _edit_in_place(edge_index, how):
    """Point every edge at node 0 without autograd's version counter noticing (except "index")."""
    if how == "index":
        edge_index[0] = 0
    elif how == "data":
        edge_index.data[0] = 0
    else:
        edge_index.numpy()[0] = 0


@pytest.mark.parametrize("name", NODE_MODELS + ["gin"])
@pytest.mark.parametrize("how", ["index", "data", "numpy"])
def test_a_graph_edited_in_place_is_not_served_from_the_cache(name, how):
    x, ei = _graph()
    model = _model(name).eval()
    ei = ei.clone()
    with torch.no_grad():
        before = model(x, ei)
        _edit_in_place(ei, how)
        after = model(x, ei)
        fresh = _model(name).eval()(x, ei.clone())  # same weights, never saw the old graph
    assert not torch.allclose(before, fresh)  # the edit matters
    torch.testing.assert_close(after, fresh)


def test_features_edited_in_place_are_not_served_from_the_dropout_memo():
    """The sparse dropout remembers where x is nonzero, and its values; an in-place edit, or another
    tensor of the same shape, must reach the output."""
    x = torch.zeros(50, 40)
    x[::3, ::7] = 1.0
    memo = fast.NonzeroMemo()
    fast.sparse_dropout(x, 1e-6, True, memo)  # remembers the nonzeros
    x[1, 1] = 5.0  # was zero
    x[0, 0] = 2.0  # was nonzero: a new value
    out = fast.sparse_dropout(x, 1e-6, True, memo)
    assert out[1, 1].item() == pytest.approx(5.0) and out[0, 0].item() == pytest.approx(2.0)
    x[0, 0] = 0.0  # a nonzero gone
    assert fast.sparse_dropout(x, 1e-6, True, memo)[0, 0].item() == 0.0
    other = torch.zeros(50, 40)
    other[2, 3] = 7.0
    assert fast.sparse_dropout(other, 1e-6, True, memo)[2, 3].item() == pytest.approx(7.0)


def test_gat_training_sees_features_edited_in_place():
    """The same through the model: GAT's per-head input dropout also remembers the nonzeros."""
    torch.manual_seed(0)
    model = zoo.create("gat", in_channels=16, num_classes=3, dropout=1e-6).train()
    x = torch.zeros(30, 16)
    x[::3, ::8] = 1.0  # under 10% nonzero: the sparse path
    _, ei = _graph()
    model(x, ei)
    x[1, 1] = 4.0
    torch.manual_seed(1)
    out = model(x, ei)
    torch.manual_seed(1)
    fresh = zoo.create("gat", in_channels=16, num_classes=3, dropout=1e-6).train()
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(out, fresh(x.clone(), ei))


@pytest.mark.parametrize("bad", [torch.rand(89), torch.ones(90, dtype=torch.long), [0.5] * 90],
                         ids=["one row short", "integer", "a list"])
def test_per_edge_values_that_do_not_fit_are_named(bad):
    x, ei = _graph()
    with pytest.raises(InputError, match=r"per-edge values \(edge_weight / edge_attr\) must be a floating tensor "
                                         r"with one row per edge \(90\)"):
        conv.GCNConv(16, 4)(x, ei, bad)
    with pytest.raises(InputError, match="one row per edge"):
        conv.GATConv(16, 4, edge_dim=1)(x, ei, bad)
