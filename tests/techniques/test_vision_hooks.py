"""The vision recipe's hooks the techniques use: --label-fraction and headless checkpoints."""

import pytest
import torch
from torch.utils.data import TensorDataset

import zoo
from zoo.shared.errors import InvalidConfigError
from zoo.vision.data import label_subset
from zoo.vision.train import _create_model


def test_label_subset_is_stratified_seeded_and_keeps_every_class():
    labels = torch.arange(200) % 4
    data = TensorDataset(torch.zeros(200, 1), labels)
    a, b, c = (label_subset(data, 0.1, seed) for seed in (0, 0, 1))
    assert a.indices == b.indices and a.indices != c.indices  # the same few labels for every arm of a seed
    assert len(a) == 20 and torch.bincount(labels[a.indices]).tolist() == [5, 5, 5, 5]
    assert len(set(labels[label_subset(data, 0.001, 0).indices].tolist())) == 4  # at least one per class
    assert len(label_subset(data, 1.0, 0)) == 200
    with pytest.raises(InvalidConfigError, match="--label-fraction"):
        label_subset(data, 0.0, 0)


def test_label_fraction_option_is_checked_while_parsing():
    from zoo.vision.train import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--label-fraction", "0"])
    assert build_parser().parse_args(["--label-fraction", "0.1"]).label_fraction == 0.1


def test_headless_checkpoint_gets_a_new_classifier(tmp_path):
    torch.manual_seed(0)
    encoder = zoo.create("resnet18", base_channels=8, num_classes=0, in_chans=1)
    zoo.save_pretrained(encoder, tmp_path / "enc")
    model = _create_model("resnet18", str(tmp_path / "enc"), 7, 1, {})
    assert model.num_classes == 7 and model.fc.out_features == 7 and model.zoo_config["num_classes"] == 7
    torch.testing.assert_close(model.conv1.weight, encoder.conv1.weight)  # the encoder was loaded
    assert "fc.weight" in model.load_report.reinitialized
    assert any("no classifier" in n for n in model.load_report.notes)
