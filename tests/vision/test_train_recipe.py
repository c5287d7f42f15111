"""Smoke runs of the vision recipe; the accuracy target is checked by the README's main command."""

import json

import numpy as np
import pytest
from PIL import Image

from zoo.shared.errors import DatasetError, InvalidConfigError
from zoo.vision import data as vdata
from zoo.vision.train import build_parser, main, run


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
    summary = _summary(capsys.readouterr().out)
    assert summary["model"] == "resnet18" and 0.0 <= summary["test/acc"] <= 1.0
    assert (out / "last.pt").is_file() and (out / "metrics.csv").is_file()
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "model" / "model.safetensors").is_file()


def _summary(out: str) -> dict:
    return json.loads(next(line for line in out.splitlines() if line.startswith("{")))


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


def test_image_folder_recipe_returns_what_it_prints(tmp_path, capsys):
    _write_folder(tmp_path / "imgs")
    summary = run(build_parser().parse_args(["--model", "resnet18", "--data", str(tmp_path / "imgs"), "--img-size",
                                             "32", "--epochs", "1", "--batch-size", "4", "--no-progress"]))
    out = capsys.readouterr().out
    assert "test accuracy" in out
    assert summary == _summary(out) and summary["data"] == "imgs" and 0.0 <= summary["test/acc"] <= 1.0


def test_bad_classes_option_is_a_usage_error_and_a_config_error_in_code(capsys):
    for value in ("a-b", "3-12"):
        with pytest.raises(SystemExit):
            main(["--classes", value, "--no-progress"])
        assert "argument --classes: expected two or more digits 0..9" in capsys.readouterr().err
    with pytest.raises(InvalidConfigError, match="non-empty selection of 0..9"):
        vdata.load_digits(8, classes=[3, 12])


def test_unreadable_image_is_named(tmp_path):
    _write_folder(tmp_path / "imgs", bad="broken.png")
    with pytest.raises(DatasetError, match="unreadable image .*broken.png"):
        main(["--model", "resnet18", "--data", str(tmp_path / "imgs"), "--img-size", "32", "--epochs", "1",
              "--batch-size", "4", "--no-progress"])


def test_too_small_folder_is_refused(tmp_path):
    _write_folder(tmp_path / "imgs", n_per_class=2)
    with pytest.raises(DatasetError, match="too few to split"):
        main(["--data", str(tmp_path / "imgs"), "--img-size", "32", "--epochs", "1", "--no-progress"])


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        main(["--data", str(tmp_path / "nope")])


# ---------------------------------------------------------------- augmentation and batch mixing
def test_digits_augment_policy_varies_training_images_only():
    import torch

    plain, aug = vdata.load_digits(16), vdata.load_digits(16, augment="randaugment")
    assert len(aug.train) == len(plain.train)
    torch.manual_seed(0)
    draws = [aug.train[5][0] for _ in range(8)]
    assert draws[0].shape == (1, 16, 16) and draws[0].dtype == torch.float32
    assert any(not torch.equal(draws[0], d) for d in draws[1:])  # a new policy sample per draw
    assert int(aug.train[5][1]) == int(plain.train[5][1])  # same sample, same label
    assert torch.equal(aug.val.dataset.tensors[0], plain.val.dataset.tensors[0])  # evaluation is untouched
    with pytest.raises(InvalidConfigError, match="augment must be one of"):
        vdata.load_digits(16, augment="autoaugment")


def test_batch_mixing_gives_soft_targets():
    import torch

    from zoo.vision.train import batch_mixing

    assert batch_mixing(0.0, 0.0, 10) is None
    mix = batch_mixing(0.8, 1.0, 10)
    torch.manual_seed(0)
    images, labels = torch.randn(6, 1, 8, 8), torch.arange(6)
    mixed, soft = mix(images, labels)
    assert mixed.shape == images.shape and soft.shape == (6, 10)
    torch.testing.assert_close(soft.sum(-1), torch.ones(6))
    assert (soft.max(-1).values < 1).all()  # two classes share each target
    with pytest.raises(InvalidConfigError, match="alpha"):
        batch_mixing(-1.0, 0.0, 10)


def test_recipe_with_trivialaugment_mixup_cutmix(tmp_path, capsys):
    assert main(["--model", "resnet18", "--max-steps", "2", "--epochs", "1", "--img-size", "16", "--no-progress",
                 "--augment", "trivialaugment", "--mixup", "0.2", "--cutmix", "1.0", "--label-smoothing", "0.1"]) == 0
    summary = _summary(capsys.readouterr().out)
    assert 0.0 <= summary["test/acc"] <= 1.0 and 0.0 <= summary["test/top5"] <= 1.0


def test_confusion_matrix_counts_the_predictions(tmp_path):
    import torch

    from zoo.vision.train import predict, save_confusion_matrix

    data = vdata.load_digits(8)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    preds, targets = predict(model, data.test, torch.device("cpu"), batch_size=100)
    assert len(preds) == len(targets) == 450
    assert torch.equal(targets, data.test.dataset.tensors[1][data.test.indices])
    with torch.no_grad():
        expected = model(data.test.dataset.tensors[0][data.test.indices]).argmax(-1)
    assert torch.equal(preds, expected)
    path = save_confusion_matrix(preds, targets, data.classes, tmp_path / "cm.png", "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- Hugging Face datasets
def _hf_dataset(splits=("train", "test"), n=30, image="img", label="fine"):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)

    def split(count):
        images, labels = [], []
        for i in range(count):
            a = np.zeros((12, 12, 3), np.uint8)
            a[..., i % 3] = rng.integers(128, 255)
            images.append(Image.fromarray(a))
            labels.append(i % 3)
        features = datasets.Features({image: datasets.Image(), label: datasets.ClassLabel(names=["r", "g", "b"])})
        return datasets.Dataset.from_dict({image: images, label: labels}, features=features)

    return datasets.DatasetDict({name: split(n if name == "train" else 9) for name in splits})


def test_hf_save_to_disk_dataset(tmp_path, capsys):
    _hf_dataset().save_to_disk(str(tmp_path / "ds"))
    out = tmp_path / "run"
    assert main(["--model", "resnet18", "--data", str(tmp_path / "ds"), "--img-size", "32", "--epochs", "1",
                 "--batch-size", "4", "--no-progress", "--output-dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "27 train / 3 val / 9 test images, 3 classes" in text  # val carved from train, test split used
    assert (out / "confusion_matrix.png").is_file()


def test_hf_parquet_directory_and_splits(tmp_path):
    ds = _hf_dataset(splits=("train", "validation"))
    (tmp_path / "pq").mkdir()
    for name, split in ds.items():
        split.to_parquet(str(tmp_path / "pq" / f"{name}.parquet"))
    data = vdata.load_hf_dataset(str(tmp_path / "pq"), img_size=16)
    # (train, validation) only: validation is the held-out test set, val is carved from train
    assert (len(data.train), len(data.val), len(data.test)) == (27, 3, 9)
    assert data.classes == ["r", "g", "b"] and data.in_chans == 3
    image, label = data.test[0]
    assert image.shape == (3, 16, 16) and label == 0


def test_hf_dataset_errors(tmp_path):
    _hf_dataset(image="picture", label="y").save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(DatasetError, match=r"image column 'img' is not in the dataset; columns: \['picture', 'y'\]"):
        vdata.load_hf_dataset(str(tmp_path / "ds"), image_column="img")
    assert vdata.load_hf_dataset(str(tmp_path / "ds"), img_size=16, image_column="picture", label_column="y").classes
    _hf_dataset(splits=("test",)).save_to_disk(str(tmp_path / "only_test"))
    with pytest.raises(DatasetError, match="a 'train' split is needed"):
        vdata.load_hf_dataset(str(tmp_path / "only_test"))
    # offline (conftest sets HF_HUB_OFFLINE), a hub name fails with a message that says what to pass instead
    with pytest.raises(DatasetError, match="loading it as a Hugging Face dataset failed.*save_to_disk"):
        main(["--data", "hf:zoo-tests/no-such-dataset", "--no-progress"])
