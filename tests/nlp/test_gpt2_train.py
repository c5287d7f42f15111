"""The character-level GPT recipe (zoo.nlp.train_gpt): data split and windows, a smoke run that
learns, writes its results and a sample, resumes where it stopped, and a clear error without data."""

import json
from pathlib import Path

import pytest
import torch

from zoo.nlp import train_gpt
from zoo.shared.errors import DatasetError

SHAKESPEARE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tinyshakespeare"
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 40

TINY = ["--block-size", "16", "--num-layers", "1", "--num-heads", "2", "--embed-dim", "16", "--batch-size", "4",
        "--warmup-steps", "2", "--eval-windows", "50", "--no-progress", "--threads", "1"]


@pytest.fixture
def data(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "input.txt").write_text(TEXT)
    return tmp_path / "data"


def test_split_windows_and_vocabulary():
    vocab, train, val = train_gpt.build_data(TEXT, 16, eval_windows=0)
    cut = int(0.9 * len(TEXT))
    assert len(train) == cut - 16 and len(val) == len(TEXT) - cut - 16
    x, y = train[5]
    assert vocab.decode(x) == TEXT[5:21] and vocab.decode(y) == TEXT[6:22]
    assert vocab.chars == sorted(set(TEXT))
    _, _, sample = train_gpt.build_data(TEXT, 16, eval_windows=30)
    _, _, again = train_gpt.build_data(TEXT, 16, eval_windows=30)
    assert len(sample) == 30 and sample.indices == again.indices  # a fixed evaluation sample


def test_dev_split_holds_out_the_end_of_the_training_text_and_never_reads_validation():
    _, train, dev = train_gpt.build_data(TEXT, 16, eval_windows=0, dev=True)
    cut = int(0.9 * len(TEXT))
    held = len(TEXT) - cut  # the dev text is as long as the validation text
    assert len(train) == cut - held - 16 and len(dev) == held - 16
    assert dev.ids.tolist() == train_gpt.CharVocab(TEXT).encode(TEXT[cut - held:cut]).tolist()
    assert len(train.ids) + len(dev.ids) == cut  # nothing of TEXT[cut:] (validation) in either


def test_smoke_run_learns_writes_results_and_resumes(data, tmp_path, capsys):
    out = tmp_path / "run"
    first = train_gpt.run(train_gpt.build_parser().parse_args(
        ["--data", str(data), "--max-steps", "30", "--lr", "1e-2", "--output-dir", str(out), "--sample-chars", "40",
         "--save-model", str(tmp_path / "model"), *TINY]))
    assert first["steps"] == 30 and first["val_loss"] < 3.0  # from ln(25) = 3.2 at random
    assert len(first["sample"]) == 40 and set(first["sample"]) <= set(TEXT)
    saved = json.loads((out / "results.json").read_text())
    assert saved["val_loss"] == first["val_loss"]
    assert json.loads((tmp_path / "model" / "vocab.json").read_text()) == sorted(set(TEXT))
    # the run continues from its last checkpoint to the longer end
    resumed = train_gpt.run(train_gpt.build_parser().parse_args(
        ["--data", str(data), "--max-steps", "40", "--lr", "1e-2", "--output-dir", str(out), "--resume",
         "--sample-chars", "0", *TINY]))
    assert resumed["steps"] == 40 and "at step 30" in capsys.readouterr().out


def test_a_rank_other_than_0_writes_no_results_or_model(data, tmp_path, monkeypatch):
    """Under torchrun every rank ends with the same summary; rank 0 alone writes it and the model."""
    monkeypatch.setattr(train_gpt, "is_main_process", lambda: False)
    summary = train_gpt.run(train_gpt.build_parser().parse_args(
        ["--data", str(data), "--max-steps", "3", "--output-dir", str(tmp_path / "run"), "--sample-chars", "0",
         "--save-model", str(tmp_path / "model"), *TINY]))
    assert summary["steps"] == 3 and not (tmp_path / "run" / "results.json").exists()
    assert not (tmp_path / "model").exists()


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="input.txt"):
        train_gpt.main(["--data", str(tmp_path), *TINY])


@pytest.mark.skipif(not (SHAKESPEARE / "input.txt").is_file(), reason=f"no Tiny Shakespeare at {SHAKESPEARE}")
def test_a_few_steps_on_tiny_shakespeare():
    result = train_gpt.run(train_gpt.build_parser().parse_args(
        ["--data", str(SHAKESPEARE), "--max-steps", "5", "--eval-windows", "64", "--sample-chars", "20",
         "--no-progress", "--threads", "1"]))
    assert result["params"] == sum(p.numel() for p in train_gpt.build_model(
        train_gpt.build_parser().parse_args([]), 65).parameters())
    assert result["val_loss"] < torch.log(torch.tensor(65.0)).item() + 0.3
