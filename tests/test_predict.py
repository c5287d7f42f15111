"""``zoo predict`` on a saved digits-size classifier: written by hand, no training."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.cli import main

MEAN, STD, SIZE = 0.3, 0.4, 16
LABELS = {str(i): f"digit-{i}" for i in range(10)}


def _write_config(directory, **extra):
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.update(extra)
    path.write_text(json.dumps(config))


@pytest.fixture
def saved(tmp_path):
    """A random 1-channel resnet with 10 classes saved with save_pretrained, id2label and
    pretrained_cfg added to its config.json, and two 16x16 PNGs (one grey, one RGB)."""
    torch.manual_seed(0)
    model = zoo.create("resnet18", num_classes=10, in_chans=1, layers=[1, 1, 1, 1], base_channels=8).eval()
    directory = tmp_path / "digits-model"
    zoo.save_pretrained(model, directory)
    _write_config(directory, id2label=LABELS, pretrained_cfg={
        "input_size": [1, SIZE, SIZE], "mean": [MEAN], "std": [STD], "interpolation": "bilinear", "crop_pct": 1.0,
        "dataset": "digits"})
    rng = np.random.default_rng(0)
    files = [tmp_path / "grey.png", tmp_path / "colour.png"]
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8), "L").save(files[0])
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), "RGB").save(files[1])
    return model, directory, files


def _direct(model, files) -> torch.Tensor:
    """The model's probabilities computed by hand: grey pixels / 255, normalised."""
    grey = [np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255 for f in files]
    x = (torch.tensor(np.stack(grey)).unsqueeze(1) - MEAN) / STD
    with torch.no_grad():
        return model(x).softmax(-1)


def _parse(out: str) -> dict[str, list[tuple[float, str]]]:
    """``FILE`` then ``  PROB  LABEL`` lines -> {file: [(prob, label), ...]}."""
    result, current = {}, None
    for line in out.splitlines():
        if not line.startswith("  "):
            current = result.setdefault(line, [])
        else:
            prob, label = line.split()
            current.append((float(prob), label))
    return result


def test_predict_prints_top_k_matching_a_direct_forward(saved, capsys):
    model, directory, files = saved
    assert main(["predict", "--pretrained", str(directory), *map(str, files), "--topk", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    shown = _parse(captured.out)
    assert list(shown) == [str(f) for f in files]
    expected = _direct(model, files)
    for f, probs in zip(files, expected):
        rows = shown[str(f)]
        values, indices = probs.topk(3)
        assert [label for _, label in rows] == [LABELS[str(i)] for i in indices.tolist()]
        assert [p for p, _ in rows] == pytest.approx(values.tolist(), abs=1e-4)  # printed with 4 decimals
        assert sum(p for p, _ in rows) <= 1 and rows == sorted(rows, reverse=True)


def test_predict_json_is_the_full_distribution(saved, capsys):
    model, directory, files = saved
    assert main(["predict", "--pretrained", str(directory), *map(str, files), "--topk", "50", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    expected = _direct(model, files)
    for result, f, probs in zip(results, files, expected):
        assert result["file"] == str(f) and len(result["top"]) == 10  # topk beyond the classes: all of them
        got = torch.zeros(10)
        for row in result["top"]:
            assert row["label"] == LABELS[str(row["index"])]
            got[row["index"]] = row["prob"]
        torch.testing.assert_close(got, probs, atol=1e-6, rtol=0)
        assert float(got.sum()) == pytest.approx(1, abs=1e-5)


def test_predict_centre_crops_to_the_input_size(saved, tmp_path, capsys):
    """A 16x32 image: resized so its shorter side is 16 (unchanged), then the centre 16x16 kept."""
    model, directory, _ = saved
    wide = np.random.default_rng(1).integers(0, 256, (SIZE, 2 * SIZE), dtype=np.uint8)
    Image.fromarray(wide, "L").save(tmp_path / "wide.png")
    Image.fromarray(wide[:, SIZE // 2:SIZE // 2 + SIZE], "L").save(tmp_path / "centre.png")
    assert main(["predict", "--pretrained", str(directory), str(tmp_path / "wide.png"), "--json", "--topk", "10"]) == 0
    got = {r["index"]: r["prob"] for r in json.loads(capsys.readouterr().out)[0]["top"]}
    expected = _direct(model, [tmp_path / "centre.png"])[0]
    torch.testing.assert_close(torch.tensor([got[i] for i in range(10)]), expected, atol=1e-6, rtol=0)


def test_saved_model_without_data_config_says_so(saved, capsys):
    model, directory, files = saved
    config = json.loads((directory / "config.json").read_text())
    del config["pretrained_cfg"], config["id2label"]
    (directory / "config.json").write_text(json.dumps(config))
    assert main(["predict", "--pretrained", str(directory), str(files[0])]) == 1
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: ") and "pretrained_cfg" in err and "--img-size, --mean and --std" in err
    # the caller supplies them; without id2label the classes are their indices
    args = ["predict", "--pretrained", str(directory), "--img-size", str(SIZE), "--mean", str(MEAN), "--std",
            f"{STD},{STD}", str(files[0]), "--topk", "2"]  # a value per channel (here 2: refused) or one for all
    assert main(args) == 1
    assert "std must be one finite number per channel (1) or a single one" in capsys.readouterr().err
    args[args.index(f"{STD},{STD}")] = str(STD)
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "no id2label" in captured.err
    values, indices = _direct(model, files[:1])[0].topk(2)
    assert _parse(captured.out)[str(files[0])] == [(pytest.approx(v, abs=1e-4), str(i))
                                                  for v, i in zip(values.tolist(), indices.tolist())]


@pytest.mark.parametrize("problem, message", [
    ("bad image", "cannot read"),
    ("missing file", "no such image file"),
    ("directory", "is a directory"),
    ("wrong mean", "mean must be one finite number per channel (1)"),
    ("id2label out of range", "id2label names classes [12]"),
])
def test_predict_bad_inputs_are_one_error_line(saved, tmp_path, capsys, problem, message):
    _, directory, files = saved
    target = str(files[0])
    if problem == "bad image":
        (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
        target = str(tmp_path / "bad.png")
    elif problem == "missing file":
        target = str(tmp_path / "missing.png")
    elif problem == "directory":
        target = str(tmp_path)
    elif problem == "wrong mean":
        _write_config(directory, pretrained_cfg={"input_size": [1, SIZE, SIZE], "mean": [0.1, 0.2], "std": [STD]})
    else:
        _write_config(directory, id2label={"0": "zero", "12": "twelve"})
    assert main(["predict", "--pretrained", str(directory), target]) == 1
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_predict_refuses_a_model_that_is_not_an_image_classifier(tmp_path, capsys):
    zoo.save_pretrained(zoo.create("gcn", in_channels=4, num_classes=3), tmp_path / "gcn")
    Image.new("L", (8, 8)).save(tmp_path / "x.png")
    assert main(["predict", "--pretrained", str(tmp_path / "gcn"), str(tmp_path / "x.png")]) == 1
    assert "graph node-classification model" in capsys.readouterr().err


def test_a_missing_file_fails_before_any_image_is_run(saved, monkeypatch, capsys):
    from zoo.predict import Predictor

    _, directory, files = saved
    runs = []
    monkeypatch.setattr(Predictor, "probabilities", lambda self, chunk: runs.append(chunk))
    argv = ["predict", "--pretrained", str(directory), str(files[0]), str(files[0]) + ".typo", "--batch-size", "1"]
    assert main(argv) == 1
    assert "grey.png.typo: no such image file" in capsys.readouterr().err
    assert runs == []  # the first image was not run either
