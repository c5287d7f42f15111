"""Smoke runs of the vision recipe; the accuracy target is checked by the README's main command."""

import json

import numpy as np
import pytest
from PIL import Image

from vision import data as vdata
from vision.train import main


def test_digits_split_is_fixed_and_stratified():
    a, b = vdata.load_digits(16), vdata.load_digits(16)
    assert a.train.indices == b.train.indices and a.test.indices == b.test.indices
    assert (len(a.train), len(a.val), len(a.test)) == (1212, 135, 450)
    assert a.train.dataset.tensors[0].shape[1:] == (1, 16, 16)
    parts = [set(a.train.indices), set(a.val.indices), set(a.test.indices)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    labels = a.train.dataset.tensors[1]
    assert set(labels[a.val.indices].tolist()) == set(range(10))  # stratified


@pytest.mark.slow
def test_digits_recipe_runs_and_saves(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--model", "resnet18", "--max-steps", "3", "--epochs", "1", "--img-size", "16", "--no-progress",
                 "--output-dir", str(out), "--save-model", str(tmp_path / "model")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-2])
    assert summary["model"] == "resnet18" and 0.0 <= summary["test/acc"] <= 1.0
    assert (out / "last.pt").is_file() and (out / "metrics.csv").is_file()
    assert (tmp_path / "model" / "model.safetensors").is_file()


def _write_folder(root, n_per_class=10, size=20, bad=None):
    rng = np.random.default_rng(0)
    for c, colour in enumerate(["red", "green"]):
        d = root / colour
        d.mkdir(parents=True)
        for i in range(n_per_class):
            img = np.zeros((size, size, 3), np.uint8)
            img[..., c] = rng.integers(128, 255)
            Image.fromarray(img).save(d / f"{i}.png")
    if bad:
        (root / "red" / bad).write_bytes(b"not an image")


def test_image_folder_recipe(tmp_path, capsys):
    _write_folder(tmp_path / "imgs")
    assert main(["--model", "resnet18", "--data", str(tmp_path / "imgs"), "--img-size", "32", "--epochs", "1",
                 "--batch-size", "4", "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_unreadable_image_is_named(tmp_path):
    _write_folder(tmp_path / "imgs", bad="broken.png")
    with pytest.raises(ValueError, match="unreadable image .*broken.png"):
        main(["--model", "resnet18", "--data", str(tmp_path / "imgs"), "--img-size", "32", "--epochs", "1",
              "--batch-size", "4", "--no-progress"])


def test_too_small_folder_is_refused(tmp_path):
    _write_folder(tmp_path / "imgs", n_per_class=2)
    with pytest.raises(ValueError, match="too few to split"):
        main(["--data", str(tmp_path / "imgs"), "--img-size", "32", "--epochs", "1", "--no-progress"])


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["--data", str(tmp_path / "nope")])
