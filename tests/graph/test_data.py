"""Planetoid loader (real files when present, a tiny file set written here), karate club, recipe smoke."""

import json
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from zoo.graph.data import DatasetError, karate_club, load_planetoid, read_planetoid_file


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
    from zoo.graph import train

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


def _replay(rule: str, curve: list[tuple[float, float]], patience: int) -> tuple[int, int]:
    """Feed (val acc, val loss) per epoch to zoo.graph.train's selection rule; (kept epoch, last epoch run)."""
    from zoo.graph.train import selection

    sel = selection(rule, patience)
    for epoch, (acc, loss) in enumerate(curve, 1):
        sel.update({"val/acc": acc, "val/loss": loss}, epoch=epoch)
        if sel.stop:
            break
    return sel.best["epoch"], epoch


# epoch:   1          2           3           4           5           6           7
CURVE = [(0.5, 1.0), (0.7, 0.9), (0.7, 0.8), (0.8, 0.85), (0.6, 0.7), (0.6, 0.95), (0.5, 0.99)]


def test_selection_rules_keep_the_epochs_their_authors_keep():
    # "acc": best accuracy, ties broken by loss -> epoch 4 (0.8); patience 2 ends after 5 (loss
    # improved), 6, 7 -> runs to 7.
    assert _replay("acc", CURVE, patience=2) == (4, 7)
    # "gat": accuracy AND loss at least as good as the best so far: epoch 3 (0.7 >= 0.7, 0.8 <= 0.9);
    # epoch 4 has a worse loss than 0.8 and is not kept although its accuracy is best; epoch 5's
    # loss 0.7 resets patience, then 6 and 7 are bad -> stops at 7.
    assert _replay("gat", CURVE, patience=2) == (3, 7)
    # "gat_acc" (GAT on CiteSeer): accuracy alone, ties kept -> epoch 4; epochs 5, 6 are bad and
    # patience 2 stops the run at 6 even though epoch 5 had the lowest loss.
    assert _replay("gat_acc", CURVE, patience=2) == (4, 6)
    # ties in accuracy move "gat_acc" to the later epoch, as the authors' >= does
    assert _replay("gat_acc", [(0.7, 1.0), (0.7, 2.0)], patience=0) == (2, 2)
    with pytest.raises(ValueError, match="gat_acc"):
        _replay("loss", CURVE, patience=2)


def test_gat_on_pubmed_trains_with_the_papers_pubmed_recipe(tmp_path):
    from zoo.graph import train

    assert train.recipe_for("gat", "cora") == (train.RECIPES["gat"], {})
    assert train.recipe_for("gcn", "pubmed") == (train.RECIPES["gcn"], {})
    _write_tiny_planetoid(tmp_path / "data", "pubmed")
    argv = ["--model", "gat", "--dataset", "PubMed", "--data-dir", str(tmp_path / "data"), "--epochs", "2",
            "--no-progress", "--device", "cpu", "--save-model", str(tmp_path / "model")]
    s = train.run(train.build_parser().parse_args(argv))
    assert (s["recipe"]["lr"], s["recipe"]["weight_decay"], s["model_kwargs"]) == (0.01, 1e-3, {"out_heads": 8})
    import zoo

    model = zoo.from_pretrained(tmp_path / "model")
    assert model.conv2.heads == 8 and not model.conv2.concat
    # an explicit flag still wins over the dataset's recipe
    s = train.run(train.build_parser().parse_args([*argv, "--lr", "0.003", "--heads", "2"]))
    assert s["recipe"]["lr"] == 0.003 and s["model_kwargs"] == {"out_heads": 8, "heads": 2}
