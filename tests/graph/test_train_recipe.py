"""zoo.graph.train on the training core's parts: runs that end, and usage errors before any work."""

from __future__ import annotations

import pytest
import torch

from zoo.graph import train
from zoo.graph.data import karate_club
from zoo.shared.training import NonFiniteLossError


@pytest.mark.parametrize("model", ["gcn", "gat"])
def test_nan_features_stop_the_run_with_the_epoch_named(model):
    # Before: GCN finished "successfully" at 13% and GAT's tie-resetting rule never ended.
    data = karate_club()
    data.x = data.x.clone()
    data.x[3, 0] = float("nan")
    recipe, kwargs = train.recipe_for(model, "karate")
    recipe.update(epochs=50)
    with pytest.raises(NonFiniteLossError, match=r"at epoch 1 \(seed 0\)"):
        train.train_one(model, data, seed=0, model_kwargs=kwargs, device=torch.device("cpu"), **recipe)


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "--seeds: must be a positive integer, got 0"),
    (["--epochs", "0"], "--epochs: must be a positive integer, got 0"),
    (["--patience", "-1"], "--patience: must be 0 or more, got -1"),
    (["--hidden-channels", "0"], "--hidden-channels: must be a positive integer, got 0"),
    (["--dropout", "1.5"], "--dropout: must be in [0, 1), got 1.5"),
    (["--select", "loss"], "--select: invalid choice: 'loss'"),
])
def test_senseless_values_are_usage_errors_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--dataset", "karate", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage:" in err


def test_data_is_found_by_the_one_rule(tmp_path, monkeypatch):
    from zoo.shared.data_paths import data_root

    monkeypatch.delenv("ZOO_DATA", raising=False)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "data" / "planetoid"
    assert data_root("planetoid") == cached  # nothing anywhere: the cache, where downloads go
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "data"))
    assert data_root("planetoid") == cached  # $ZOO_DATA/planetoid does not exist
    cached.mkdir(parents=True)
    (tmp_path / "data" / "planetoid").mkdir(parents=True)
    assert data_root("planetoid") == tmp_path / "data" / "planetoid"  # $ZOO_DATA before the cache
    assert data_root("planetoid", tmp_path / "mine") == tmp_path / "mine"  # --data-dir first
    # graph.train reads $ZOO_DATA/planetoid, not a folder relative to this repository
    seen = {}
    monkeypatch.setattr(train, "load_planetoid", lambda name, root: seen.setdefault("root", root))
    train.load_dataset("cora", None)
    assert seen["root"] == tmp_path / "data" / "planetoid"


def test_vision_data_follows_the_same_rule(tmp_path, monkeypatch):
    from zoo.vision import data as vdata

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "data"))
    folder = tmp_path / "cache" / "data" / "shapes"
    folder.mkdir(parents=True)
    assert vdata.find_data("shapes") == str(folder)
    (tmp_path / "data" / "shapes").mkdir(parents=True)
    assert vdata.find_data("shapes") == str(tmp_path / "data" / "shapes")
    assert vdata.find_data("digits") == "digits" and vdata.find_data("hf:org/name") == "hf:org/name"
    assert vdata.find_data("nowhere") == "nowhere"  # left for data_kind to refuse, naming it


def test_progress_bar_of_a_patience_run_shows_patience_not_a_length(monkeypatch):
    bars = []

    class Bar:
        def __init__(self, total=None, **kw):
            self.total, self.postfixes, self.disable, self.n = total, [], False, 0
            bars.append(self)

        def set_postfix(self, postfix, refresh=True):
            self.postfixes.append(dict(postfix))

        def update(self, n):
            self.n += n

        def close(self):
            pass

    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    recipe, kwargs = train.recipe_for("gat", "karate")
    recipe.update(patience=3)
    train.train_one("gat", karate_club(), seed=0, model_kwargs=kwargs, device=torch.device("cpu"),
                    progress=True, **recipe)
    assert bars[0].total is None  # not the 100,000-epoch limit
    assert bars[0].postfixes[-1]["patience"] == "3/3" and bars[0].n == len(bars[0].postfixes)
    recipe, kwargs = train.recipe_for("gcn", "karate")
    train.train_one("gcn", karate_club(), seed=0, model_kwargs=kwargs, device=torch.device("cpu"),
                    progress=True, **recipe)
    assert bars[1].total == 200 and "patience" not in bars[1].postfixes[-1]
