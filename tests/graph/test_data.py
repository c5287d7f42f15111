"""Planetoid loader (real files when present, a tiny file set written here), karate club, recipe smoke."""

import json
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graph.data import DatasetError, karate_club, load_planetoid, read_planetoid_file


def _write_tiny_planetoid(root, name="cora"):
    """8 nodes, 4 features, 3 classes: x/y = nodes 0-2, allx/ally = 0-5, tx/ty = test nodes 7, 6."""
    root.mkdir(parents=True, exist_ok=True)
    feats = np.arange(32, dtype=np.float32).reshape(8, 4) % 3
    labels = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2, 0, 1]]
    test_ids = [7, 6]
    parts = {
        "x": sp.csr_matrix(feats[:3]), "allx": sp.csr_matrix(feats[:6]), "tx": sp.csr_matrix(feats[[6, 7]]),
        "y": labels[:3], "ally": labels[:6], "ty": labels[[6, 7]],
        "graph": {0: [1, 2], 1: [0], 2: [0, 3, 2], 3: [2], 4: [5], 5: [4], 6: [7], 7: [6, 6]},
    }
    for suffix, obj in parts.items():
        (root / f"ind.{name}.{suffix}").write_bytes(pickle.dumps(obj, protocol=2))
    (root / f"ind.{name}.test.index").write_text("\n".join(map(str, test_ids)) + "\n")
    return feats, labels.argmax(1)


def test_tiny_file_set(tmp_path):
    feats, labels = _write_tiny_planetoid(tmp_path)
    data = load_planetoid("cora", tmp_path, download=False, normalize_features=False)
    # tx rows are stored in sorted-id order and put back at their ids
    assert torch.equal(data.x[6], torch.from_numpy(feats[7])) and torch.equal(data.x[7], torch.from_numpy(feats[6]))
    assert torch.equal(data.x[:6], torch.from_numpy(feats[:6]))
    assert data.y[:6].tolist() == labels[:6].tolist()
    assert data.train_mask.nonzero().flatten().tolist() == [0, 1, 2]
    assert data.test_mask.nonzero().flatten().tolist() == [6, 7]
    # undirected, no self-loops, no duplicates
    pairs = set(map(tuple, data.edge_index.t().tolist()))
    assert pairs == {(0, 1), (1, 0), (0, 2), (2, 0), (2, 3), (3, 2), (4, 5), (5, 4), (6, 7), (7, 6)}
    assert data.num_edges == len(pairs)
    normed = load_planetoid("cora", tmp_path, download=False)
    rows = normed.x.sum(1)
    assert torch.allclose(rows[rows > 0], torch.ones_like(rows[rows > 0]))


def test_download_from_a_url(tmp_path):
    _write_tiny_planetoid(tmp_path / "mirror", "citeseer")
    target = tmp_path / "cache"
    data = load_planetoid("citeseer", target, base_url=(tmp_path / "mirror").as_uri())
    assert data.num_nodes == 8 and (target / "ind.citeseer.graph").is_file()
    with pytest.raises(DatasetError, match="Could not download"):
        load_planetoid("pubmed", tmp_path / "other", base_url=(tmp_path / "nowhere").as_uri())
    assert not list((tmp_path / "other").glob("*.tmp"))
    with pytest.raises(DatasetError, match="lacks"):
        load_planetoid("pubmed", tmp_path / "other", download=False)
    with pytest.raises(DatasetError, match="Unknown Planetoid"):
        load_planetoid("reddit", tmp_path)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_and_malformed_files_are_refused(tmp_path):
    evil = tmp_path / "ind.cora.x"
    evil.write_bytes(pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(DatasetError, match="not allowed"):
        read_planetoid_file(evil)
    truncated = tmp_path / "ind.cora.allx"
    truncated.write_bytes(pickle.dumps(sp.csr_matrix(np.eye(3, dtype=np.float32)), protocol=2)[:40])
    with pytest.raises(DatasetError, match="corrupted"):
        read_planetoid_file(truncated)
    wrong = tmp_path / "ind.cora.graph"
    wrong.write_bytes(pickle.dumps({0: "not a list"}, protocol=2))
    with pytest.raises(DatasetError, match="adjacency"):
        read_planetoid_file(wrong)
    index = tmp_path / "ind.cora.test.index"
    index.write_text("1\nbanana\n")
    with pytest.raises(DatasetError, match="integers"):
        read_planetoid_file(index)
    objects = tmp_path / "ind.cora.y"
    objects.write_bytes(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2))
    with pytest.raises(DatasetError):
        read_planetoid_file(objects)


def test_inconsistent_file_set(tmp_path):
    _write_tiny_planetoid(tmp_path)
    (tmp_path / "ind.cora.ty").write_bytes(pickle.dumps(np.eye(3, dtype=np.float32), protocol=2))
    with pytest.raises(DatasetError, match="do not fit"):
        load_planetoid("cora", tmp_path, download=False)


@pytest.mark.parametrize("name,nodes,edges,features,classes,split", [
    ("cora", 2708, 10556, 1433, 7, (140, 500, 1000)),
    ("citeseer", 3327, 9104, 3703, 6, (120, 500, 1000)),
])
def test_real_planetoid_files(shared_data, name, nodes, edges, features, classes, split):
    root = shared_data / "planetoid"
    if not (root / f"ind.{name}.x").is_file():
        pytest.skip(f"{root} has no {name} files")
    data = load_planetoid(name, root, download=False)
    assert (data.num_nodes, data.num_edges, data.num_features, data.num_classes) == (nodes, edges, features, classes)
    assert tuple(int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask)) == split
    assert not (data.train_mask & data.test_mask).any() and not (data.val_mask & data.test_mask).any()
    assert (data.edge_index[0] != data.edge_index[1]).all()
    rows = data.x.sum(1)
    assert torch.allclose(rows[rows > 0], torch.ones_like(rows[rows > 0]))
    planetoid = pytest.importorskip("torch_geometric.datasets.planetoid")
    ref = planetoid.read_planetoid_data(str(root), name)
    assert torch.equal(data.edge_index, ref.edge_index) and torch.equal(data.y, ref.y)
    assert torch.equal(data.x, ref.x / ref.x.sum(1, keepdim=True).clamp(min=1e-12))
    assert torch.equal(data.test_mask, ref.test_mask) and torch.equal(data.val_mask, ref.val_mask)


def test_karate_club_matches_networkx():
    data = karate_club()
    assert (data.num_nodes, data.num_edges, data.num_classes) == (34, 156, 2)
    nx = pytest.importorskip("networkx")
    g = nx.karate_club_graph()
    assert {tuple(sorted(e)) for e in data.edge_index.t().tolist()} == {tuple(sorted(e)) for e in g.edges()}
    assert data.y.tolist() == [int(g.nodes[i]["club"] != "Mr. Hi") for i in range(34)]


def test_recipe_smoke(tmp_path):
    from graph import train

    assert train.main(["--model", "gcn", "--dataset", "karate", "--epochs", "5", "--seeds", "2", "--no-progress",
                       "--output-dir", str(tmp_path / "run"), "--save-model", str(tmp_path / "model")]) == 0
    summary = json.loads((tmp_path / "run" / "results.json").read_text())
    assert summary["seeds"] == 2 and 0 <= summary["test_acc_mean"] <= 100
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0
    import zoo

    model = zoo.from_pretrained(tmp_path / "model")
    assert model.zoo_name == "gcn" and model.zoo_config["in_channels"] == 34


def test_zoo_train_cli(capsys):
    from zoo.cli import main

    assert main(["train", "gat", "--dataset", "karate", "--epochs", "3", "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out
