"""Smoke runs of the FSDD recipe (zoo.audio.train) per model on a small folder the test writes:
outputs, `zoo train NAME` dispatch, resume, the speaker-held-out loop, seeds."""

import csv
import json

import pytest

import zoo
from zoo.audio import train
from zoo.cli import main as zoo_main

from .test_fsdd import fsdd_folder

FAST = ["--epochs", "1", "--batch-size", "16", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return fsdd_folder(tmp_path_factory.mktemp("fsdd"), indexes=(0, 5, 10, 11))


SMALL = {"m5": ["--model-arg", "channels=[16,16,32,32]"], "mel_cnn": [], "mel_ctc": ["--model-arg", "hidden_dim=32"]}


@pytest.mark.parametrize("model", sorted(SMALL))
def test_recipe_smoke_run_per_model(model, data, tmp_path):
    out = tmp_path / "run"
    summary = train.run(train.build_parser().parse_args(
        ["--model", model, "--data", str(data), "--output-dir", str(out), "--save-model", str(tmp_path / "saved"),
         "--limit", "20", *SMALL[model], *FAST]))
    metric = "cer" if model == "mel_ctc" else "acc"
    assert summary["metric"] == metric and len(summary["runs"]) == 1
    assert 0.0 <= summary[f"test_{metric}_mean"] <= 100.0 or metric == "cer"  # CER may pass 100%
    for name in ("metrics.csv", "curves.png", "last.pt", "best.pt", "results.json"):
        assert (out / name).is_file(), name
    assert (out / "confusion_matrix.png").is_file() == (model != "mel_ctc")
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 1 and f"val/{metric}" in rows[0]
    assert json.loads((out / "results.json").read_text())["model"] == model
    again = zoo.from_pretrained(tmp_path / "saved")
    assert again.zoo_name == model and again.num_classes == (27 if model == "mel_ctc" else 10)
    if model == "m5":
        assert again.zoo_config["channels"] == [16, 16, 32, 32]  # --model-arg reached the model


def test_zoo_train_dispatches_to_the_audio_recipe(data, tmp_path, capsys):
    assert zoo_main(["train", "m5", "--data", str(data), "--output-dir", str(tmp_path / "r"), "--limit", "20",
                     *SMALL["m5"], *FAST]) == 0
    assert "m5: test acc" in capsys.readouterr().out
    assert (tmp_path / "r" / "results.json").is_file()


def test_resume_continues_exactly(data, tmp_path, monkeypatch):
    """A run stopped after epoch 1 and resumed ends with the uninterrupted run's metrics: the weights,
    optimizer and the RNG the augmentation draws from all come back from last.pt."""
    base = ["--model", "mel_cnn", "--data", str(data), "--epochs", "2", "--batch-size", "16", "--no-progress",
            "--threads", "1"]
    full = train.run(train.build_parser().parse_args([*base, "--output-dir", str(tmp_path / "a")]))

    class StopAfterOneEpoch(train.Trainer):
        def _end_epoch(self):
            super()._end_epoch()
            self.should_stop = True

    monkeypatch.setattr(train, "Trainer", StopAfterOneEpoch)
    train.run(train.build_parser().parse_args([*base, "--output-dir", str(tmp_path / "b")]))
    assert len(list(csv.DictReader(open(tmp_path / "b" / "metrics.csv")))) == 1
    monkeypatch.undo()
    resumed = train.run(train.build_parser().parse_args([*base, "--output-dir", str(tmp_path / "b"), "--resume"]))
    a = list(csv.DictReader(open(tmp_path / "a" / "metrics.csv")))
    b = list(csv.DictReader(open(tmp_path / "b" / "metrics.csv")))
    assert a == b and len(a) == 2
    assert resumed["runs"][0]["test_acc"] == full["runs"][0]["test_acc"]


def test_speaker_split_runs_each_held_out_speaker_and_seeds(data, tmp_path):
    summary = train.run(train.build_parser().parse_args(
        ["--model", "mel_cnn", "--data", str(data), "--split", "speaker", "--seeds", "2", "--output-dir",
         str(tmp_path / "s"), "--limit", "20", *FAST]))
    assert [(r["split"], r["seed"]) for r in summary["runs"]] == [("ana", 0), ("ana", 1), ("bob", 0), ("bob", 1)]
    assert set(summary["per_split"]) == {"ana", "bob"}
    assert (tmp_path / "s" / "bob" / "seed1" / "confusion_matrix.png").is_file()


def test_bad_options_are_named(data):
    with pytest.raises(SystemExit):
        train.build_parser().parse_args(["--model-arg", "channels"])
    with pytest.raises(zoo.InvalidConfigError, match="m5 does not take 'widht'"):
        train.run(train.build_parser().parse_args(["--model", "m5", "--data", str(data), "--model-arg", "widht=3",
                                                   *FAST]))
    with pytest.raises(zoo.InvalidConfigError, match="--held-out goes with --split speaker"):
        train.run(train.build_parser().parse_args(["--data", str(data), "--held-out", "ana", *FAST]))
    with pytest.raises(zoo.DatasetError, match="'carl' is not in the data"):
        train.run(train.build_parser().parse_args(["--data", str(data), "--split", "speaker", "--held-out", "carl",
                                                   *FAST]))
