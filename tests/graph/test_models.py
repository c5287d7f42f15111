"""Registered graph models: parity with the same model built from PyG layers, inputs, errors."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.shared.errors import InputError, InvalidConfigError

ALL = ["gcn", "gat", "gatv2", "graphsage"]


def _graph(n=30, feats=16, edges=90, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, feats, generator=g), torch.randint(0, n, (2, edges), generator=g)


def _pyg_models():
    pytest.importorskip("torch_geometric.nn", reason="torch_geometric is the parity reference")
    from tests.reference import pyg_models

    return pyg_models()


def _cora_or_random(shared_data_dir):
    from zoo.graph.data import load_planetoid

    if shared_data_dir is not None and (shared_data_dir / "ind.cora.x").is_file():
        data = load_planetoid("cora", shared_data_dir, download=False)
        return data.x, data.edge_index
    return _graph(n=2708, feats=1433, edges=10556)


@pytest.mark.parametrize("name", ["gat", "gcn"])
def test_model_parity_with_pyg_on_cora(name):
    from tests.conftest import SHARED_DATA

    ref_cls = _pyg_models()[name]
    x, ei = _cora_or_random(SHARED_DATA / "planetoid" if SHARED_DATA.is_dir() else None)
    ours = zoo.create(name, in_channels=1433, num_classes=7).eval()
    ref = ref_cls(1433, 7).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    ours.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, ei), ref(x, ei), atol=1e-5, rtol=1e-5)


def test_gat_is_the_papers_cora_model():
    model = zoo.create("gat", in_channels=1433, num_classes=7)
    c1, c2 = model.conv1, model.conv2
    assert (c1.heads, c1.out_channels, c1.concat, c1.dropout) == (8, 8, True, 0.6)
    assert (c2.heads, c2.out_channels, c2.concat, c2.dropout) == (1, 7, False, 0.6)
    assert model.dropout == 0.6 and c1.negative_slope == 0.2
    # trained like the authors' code: per-head input masks in the first layer, aggregated values dropped
    assert c1.message_dropout == c2.message_dropout == 0.6
    assert model.per_head_input_dropout and (c1.input_dropout, c2.input_dropout) == (0.6, 0.0)
    pyg_like = zoo.create("gat", message_dropout=0.0, per_head_input_dropout=False)  # PyG-example training
    assert (pyg_like.conv1.message_dropout, pyg_like.conv1.input_dropout) == (0.0, 0.0)
    assert sum(p.numel() for p in model.parameters()) == 1433 * 64 + 64 * 2 + 64 + 64 * 7 + 7 * 2 + 7


@pytest.mark.parametrize("name, params", [("gat", ("att_src", "att_dst")), ("gatv2", ("att",))])
def test_attention_vectors_initialised_per_head(name, params):
    """The authors' code scores each head with its own 1x1 convolution from F' features to one value,
    Glorot bound sqrt(6 / (F' + 1)); PyG's layers use sqrt(6 / (heads + F')) for all heads at once."""
    torch.manual_seed(0)
    authors, layer = zoo.create(name), zoo.create(name, attention_init="layer")
    for p in params:
        att = getattr(authors.conv1, p)  # (1, 8 heads, 8 features)
        per_head, pyg = math.sqrt(6 / (8 + 1)), math.sqrt(6 / (8 + 8))
        assert att.abs().max() <= per_head and att.abs().max() > pyg  # 128 draws: P(all below pyg) ~ 1e-16
        assert getattr(layer.conv1, p).abs().max() <= pyg
        out = getattr(authors.conv2, p)  # one head of 7 classes: both rules give sqrt(6 / 8)
        assert out.abs().max() <= math.sqrt(6 / 8)
    with pytest.raises(InvalidConfigError, match="attention_init"):
        zoo.create(name, attention_init="xavier")


@pytest.mark.parametrize("name", ALL)
def test_data_object_input(name):
    x, ei = _graph()
    model = zoo.create(name, in_channels=16, num_classes=3).eval()
    with torch.no_grad():
        expected = model(x, ei)
        torch.testing.assert_close(model(SimpleNamespace(x=x, edge_index=ei)), expected)
    geometric = pytest.importorskip("torch_geometric.data")
    with torch.no_grad():
        torch.testing.assert_close(model(geometric.Data(x=x, edge_index=ei)), expected)


@pytest.mark.parametrize("name", ALL)
def test_no_edges_and_isolated_nodes(name):
    x, _ = _graph(n=6)
    model = zoo.create(name, in_channels=16, num_classes=3)
    for ei in (torch.empty(2, 0, dtype=torch.long), torch.tensor([[0, 1], [1, 0]])):
        out = model(x, ei)
        assert out.shape == (6, 3) and torch.isfinite(out).all()
        out.sum().backward()


@pytest.mark.parametrize("name", ALL)
def test_bad_inputs_raise_input_error(name):
    x, ei = _graph()
    model = zoo.create(name, in_channels=16, num_classes=3)
    cases = {
        "out of range": (x, torch.tensor([[0, 30], [1, 2]])),
        "negative": (x, torch.tensor([[0, -1], [1, 2]])),
        "float edge_index": (x, ei.float()),
        "transposed": (x, ei.t().contiguous()),
        "1-d edge_index": (x, ei[0]),
        "wrong width": (torch.randn(30, 15), ei),
        "integer features": (x.long(), ei),
        "3-d features": (x[None], ei),
    }
    for what, args in cases.items():
        with pytest.raises(InputError):
            model(*args)
    with pytest.raises(InputError, match="edge_index"):
        model(x)
    with pytest.raises(InputError, match="num_edges"):
        model(x, ei.t().contiguous())
    with pytest.raises(InputError, match="30 nodes"):
        model(x, torch.tensor([[0, 30], [1, 2]]))
    with pytest.raises(InputError, match="16 input features"):
        model(torch.randn(30, 15), ei)


def test_gin_graph_classification():
    from zoo.graph.examples import random_graph_batch

    cfg = dict(in_channels=5, hidden_channels=8, num_classes=3, num_layers=2)
    model = zoo.create("gin", **cfg).eval()
    x, ei, batch = random_graph_batch(cfg, 4)
    with torch.no_grad():
        out = model(x, ei, batch)
        assert out.shape == (4, 3)
        torch.testing.assert_close(model(SimpleNamespace(x=x, edge_index=ei, batch=batch)), out)
        # each graph is scored on its own: graph 1 alone gives its row
        mask = batch == 1
        offset = int(mask.nonzero()[0])
        sub_ei = ei[:, mask[ei[0]]] - offset
        torch.testing.assert_close(model(x[mask], sub_ei), out[1:2], atol=1e-5, rtol=1e-4)
        assert model(x, torch.empty(2, 0, dtype=torch.long), batch).shape == (4, 3)
    with pytest.raises(InputError, match="batch"):
        model(x, ei, batch[:-1])
    with pytest.raises(InputError, match="batch"):
        model(x, ei, batch.float())


def test_gin_state_dict_matches_pyg_gin_conv_layout():
    pyg_nn = pytest.importorskip("torch_geometric.nn")
    model = zoo.create("gin", in_channels=5, hidden_channels=8, num_layers=2)
    ref = pyg_nn.GINConv(torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                             torch.nn.Linear(8, 8), torch.nn.ReLU()))
    mine = {k[len("convs.0."):]: v.shape for k, v in model.state_dict().items() if k.startswith("convs.0.")}
    assert mine == {k: v.shape for k, v in ref.state_dict().items()}


def test_input_dropout_keeps_the_distribution():
    from zoo.graph.fast import NonzeroMemo, sparse_dropout

    x = (torch.rand(200, 300) < 0.02).float() * 3.0
    memo = NonzeroMemo()
    torch.manual_seed(0)
    out = sparse_dropout(x, 0.6, True, memo)
    kept = out[x != 0]
    assert set(kept.unique().tolist()) <= {0.0, 3.0 / 0.4}
    assert abs((kept != 0).float().mean().item() - 0.4) < 0.05
    assert (out[x == 0] == 0).all()
    assert torch.equal(sparse_dropout(x, 0.6, False, memo), x)
