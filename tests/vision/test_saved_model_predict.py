"""A model saved by the vision recipe can be used (issue 12, section 4): its config.json carries the
class names (``id2label``), the data config it was trained with (``pretrained_cfg``: digits are 8x8
greyscale upscaled to ``--img-size`` and normalised with the training images' own statistics, not
ImageNet's 224 px defaults) and the dataset name; ``zoo predict`` on PNGs of digits prints digit
names, and its top-1 is the model's own on the recipe's input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.vision import data as vdata
from zoo.vision.train import build_parser, run
from zoo.cli import main as zoo_main

IMG_SIZE = 16


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """resnet18 trained one epoch on digits (thin, 16 px) by zoo.vision.train's run(), saved with --save-model."""
    out = tmp_path_factory.mktemp("digits") / "model"
    args = build_parser().parse_args(["--model", "resnet18", "--epochs", "1", "--img-size", str(IMG_SIZE),
                                      "--batch-size", "32", "--lr", "3e-3", "--no-progress", "--save-model", str(out)])
    summary = run(args)
    return out, summary


def test_saved_config_carries_class_names_data_config_and_dataset(trained):
    out, _ = trained
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {str(i): str(i) for i in range(10)}
    cfg = config["pretrained_cfg"]
    data = vdata.load_digits(IMG_SIZE)
    assert cfg["input_size"] == [1, IMG_SIZE, IMG_SIZE] and cfg["dataset"] == "digits"
    assert cfg["mean"] == pytest.approx([data.mean[0]]) and cfg["std"] == pytest.approx([data.std[0]])
    assert cfg["mean"] != [0.485, 0.456, 0.406] and cfg["crop_pct"] == 1.0 and cfg["interpolation"] == "bilinear"


def test_from_pretrained_restores_the_class_names_and_data_config(trained):
    out, _ = trained
    model = zoo.from_pretrained(out)
    assert model.id2label == {str(i): str(i) for i in range(10)}
    assert model.pretrained_cfg["dataset"] == "digits" and model.load_report.source.endswith("model.safetensors")
    # a new head no longer fits the saved names; a new input no longer fits the data config
    assert not hasattr(zoo.create("resnet18", pretrained=out, num_classes=4), "id2label")
    assert not hasattr(zoo.create("resnet18", pretrained=out, in_chans=3), "pretrained_cfg")


def test_zoo_predict_on_digit_pngs_prints_digit_names_matching_a_direct_forward(trained, tmp_path, capsys):
    from sklearn.datasets import load_digits

    out, summary = trained
    digits = load_digits()
    picks = [int(np.flatnonzero(digits.target == d)[-1]) for d in range(10)]  # one image of each digit
    files = []
    for i in picks:
        path = tmp_path / f"digit{digits.target[i]}_{i}.png"
        Image.fromarray(np.round(digits.images[i] * 255 / 16).astype(np.uint8), "L").save(path)  # 8x8, 0..16 -> 0..255
        files.append(path)
    capsys.readouterr()
    assert zoo_main(["predict", "--pretrained", str(out), "--topk", "3", *map(str, files)]) == 0
    printed = capsys.readouterr().out
    shown = {}
    for line in printed.splitlines():
        if not line.startswith("  "):
            current = shown.setdefault(line, [])
        else:
            prob, label = line.split()
            current.append((float(prob), label))
    assert list(shown) == [str(f) for f in files]
    assert all(label in [str(d) for d in range(10)] for rows in shown.values() for _, label in rows)

    # the direct forward: the recipe's own input (8x8 / 16, bilinear to 16 px, the saved mean/std)
    model = zoo.from_pretrained(out).eval()
    cfg = model.pretrained_cfg
    x = torch.tensor(digits.images[picks], dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=(IMG_SIZE, IMG_SIZE), mode="bilinear", align_corners=False)
    x = (x - cfg["mean"][0]) / cfg["std"][0]
    recipe_input = vdata.load_digits(IMG_SIZE).test.dataset.tensors[0][picks]  # what the model was trained on
    torch.testing.assert_close(x, recipe_input, atol=1e-5, rtol=0)
    with torch.no_grad():
        probs = model(x).softmax(-1)
    for f, p in zip(files, probs):
        rows = shown[str(f)]
        assert rows[0][1] == str(int(p.argmax())), (f, rows, p)
        assert rows[0][0] == pytest.approx(float(p.max()), abs=0.02)  # the PNG's uint8 rounding and resize
    assert 0 <= summary["test/acc"] <= 1
