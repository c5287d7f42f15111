"""Bad data and bad option values for the vision recipes (issue 11, sections 1 and 3): each is
written out and refused before any training, with an error that names the problem.

- image folders: every image is decoded up front (a PNG with intact checksums but broken pixel data
  names the file), one class is not a classifier, empty folders and stray files are DatasetErrors;
- ``--data``: a value that is neither a folder, a known dataset name nor ``hf:NAME`` fails at once,
  without touching the hub;
- option values that make no sense are argparse usage errors (exit 2, the option named).
"""

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from zoo.shared.errors import DatasetError
from zoo.vision import data as vdata
from zoo.vision import finetune
from zoo.vision.train import build_parser, main

# -- PNGs whose chunks and CRCs are valid but whose pixel data is not ----------------------------------------


def _png_chunks(data: bytes):
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        yield data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length


def _png(chunks) -> bytes:
    """A PNG of these (type, body) chunks, every CRC correct."""
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return out


def broken_png(how: str, size: int = 20) -> bytes:
    """An RGB PNG that PIL opens and ``verify()`` accepts, but whose pixels do not decode."""
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), 200, np.uint8)).save(buf, "PNG")
    chunks = list(_png_chunks(buf.getvalue()))
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    idat = {
        "cut": zlib.compress(raw)[: len(zlib.compress(raw)) // 2],  # the compressed stream stops midway
        "garbage": b"\x78\x9c" + bytes(range(7, 250)),  # a zlib header, then bytes that are no deflate stream
        "filter": zlib.compress(bytes([9]) + raw[1:]),  # scanline filter type 9 does not exist (0..4)
    }[how]
    data = _png([(kind, idat if kind == b"IDAT" else body) for kind, body in chunks])
    with Image.open(io.BytesIO(data)) as img:
        img.verify()  # the point: the check that reads only structure and checksums passes
    return data


def _write_folder(root, classes=("red", "green"), n_per_class=10, size=20):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True)
        for i in range(n_per_class):
            img = np.zeros((size, size, 3), np.uint8)
            img[..., c % 3] = rng.integers(128, 255)
            Image.fromarray(img).save(d / f"{i}.png")
    return root


def _train(data, *extra):
    return main(["--model", "resnet18", "--data", str(data), "--img-size", "16", "--epochs", "1", "--batch-size", "4",
                 "--no-progress", *extra])


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if training starts: every refusal below must come first."""
    from zoo.vision import train

    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(train, "Trainer", refuse)


@pytest.mark.parametrize("how", ["cut", "garbage", "filter"])
def test_png_with_valid_checksums_and_broken_pixels_refuses_the_run(tmp_path, how, no_training):
    root = _write_folder(tmp_path / "imgs")
    (root / "green" / "broken.png").write_bytes(broken_png(how))
    with pytest.raises(DatasetError, match=r"unreadable image .*green/broken\.png \(OSError") as err:
        _train(root)
    assert "refused rather than silently training on fewer images" in str(err.value)


def test_broken_images_in_train_and_val_folders_are_all_counted(tmp_path, no_training):
    for split in ("train", "val"):
        _write_folder(tmp_path / "imgs" / split)
    (tmp_path / "imgs" / "train" / "red" / "a.png").write_bytes(broken_png("cut"))
    (tmp_path / "imgs" / "val" / "green" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(DatasetError, match=r"unreadable image .*(a|b)\.png .* and 1 more"):
        _train(tmp_path / "imgs")


def test_single_class_folder_is_refused(tmp_path, no_training):
    root = _write_folder(tmp_path / "imgs", classes=("cats",))
    with pytest.raises(DatasetError, match=r"image folder .*imgs has images of 1 class \('cats'\); a classifier "
                                           "needs at least two classes"):
        _train(root)


def test_single_class_train_val_folders_are_refused(tmp_path, no_training):
    for split in ("train", "val"):
        _write_folder(tmp_path / "imgs" / split, classes=("only",))
    with pytest.raises(DatasetError, match=r"imgs/train has images of 1 class \('only'\)"):
        _train(tmp_path / "imgs")


def test_folder_without_class_folders_or_with_an_empty_class_is_a_dataset_error(tmp_path, no_training):
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(DatasetError, match=r"image folder .*flat: .*class folder.*one sub-folder of images per class"):
        _train(tmp_path / "flat")
    root = _write_folder(tmp_path / "imgs")
    (root / "blue").mkdir()
    with pytest.raises(DatasetError, match=r"image folder .*imgs: .*no valid file for the classes blue"):
        _train(root)


def test_single_class_hf_dataset_is_refused(tmp_path, no_training):
    datasets = pytest.importorskip("datasets")
    images = [Image.new("RGB", (8, 8), (i, 0, 0)) for i in range(12)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    datasets.Dataset.from_dict({"image": images, "label": [1] * 12}, features=features).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(DatasetError, match=r"ds \(train split\) has images of 1 class \('b'\)"):
        _train(tmp_path / "ds")


def test_digits_selection_of_one_digit_is_refused():
    with pytest.raises(vdata.InvalidConfigError, match="at least two digits"):
        vdata.load_digits(8, classes=[3])


# -- --data that names nothing --------------------------------------------------------------------------------


@pytest.fixture
def no_hub(monkeypatch):
    """Any attempt to load a Hugging Face dataset fails the test (a typo must not reach the hub)."""
    datasets = pytest.importorskip("datasets")

    def refuse(*args, **kwargs):
        raise AssertionError(f"load_dataset{args} was called")

    monkeypatch.setattr(datasets, "load_dataset", refuse)


@pytest.mark.parametrize("spec, hint", [
    ("digts", "Did you mean 'digits'?"),
    ("Digits", "Did you mean 'digits'?"),
    ("./imgs_typo", None),
    ("~/no/such/folder", None),
    ("data/cifar", None),
    ("uoft-cs/cifar10", "For the hub dataset, write hf:uoft-cs/cifar10."),
])
def test_data_that_is_neither_folder_name_nor_hf_fails_at_once(spec, hint, tmp_path, monkeypatch, no_hub,
                                                               no_training):
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    with pytest.raises(DatasetError) as err:
        _train(spec)
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert message.startswith(f"--data {spec}: ") and "does not exist and is not a dataset name" in message
    assert "'digits'" in message and "hf:NAME" in message and "image folder" in message
    if hint:
        assert hint in message


def test_data_that_is_a_file_or_an_empty_hf_name_is_refused(tmp_path, no_hub, no_training):
    (tmp_path / "images.zip").write_bytes(b"PK")
    with pytest.raises(DatasetError, match=r"images\.zip is a file, not a folder; --data takes"):
        _train(tmp_path / "images.zip")
    with pytest.raises(DatasetError, match="--data 'hf:' names no dataset"):
        _train("hf:")


def test_data_kind_of_what_is_accepted(tmp_path):
    assert vdata.data_kind("digits") == "digits"
    assert vdata.data_kind("hf:uoft-cs/cifar10") == vdata.data_kind("hf-hub:org/name") == "hf"
    assert vdata.data_kind(str(_write_folder(tmp_path / "imgs"))) == "folder"
    (tmp_path / "pq").mkdir()
    (tmp_path / "pq" / "train.parquet").write_bytes(b"")
    assert vdata.data_kind(str(tmp_path / "pq")) == "hf"


# -- option values that make no sense: usage errors before any work ---------------------------------------------

BAD_VALUES = [
    ("--epochs", "0", "must be >= 1"), ("--epochs", "-3", "must be >= 1"), ("--epochs", "1.5", "invalid int value"),
    ("--batch-size", "0", "must be >= 1"), ("--max-steps", "0", "must be >= 1"),
    ("--img-size", "0", "must be >= 1"), ("--grad-accum-steps", "0", "must be >= 1"),
    ("--lr", "-1", "must be > 0"), ("--lr", "0", "must be > 0"), ("--lr", "nan", "finite"), ("--lr", "inf", "finite"),
    ("--weight-decay", "-0.1", "must be >= 0"), ("--warmup-epochs", "-1", "must be >= 0"),
    ("--label-smoothing", "-0.1", "must be >= 0 and <= 1"), ("--label-smoothing", "1.5", "must be >= 0 and <= 1"),
    ("--mixup", "-1", "must be >= 0"), ("--cutmix", "-0.5", "must be >= 0"),
    ("--ema-decay", "1.1", "must be >= 0 and <= 1"), ("--clip-grad-norm", "0", "must be > 0"),
    ("--patience", "-1", "must be >= 0"), ("--seed", "-1", "must be >= 0"), ("--seed", str(2**32), "<= 4294967295"),
    ("--classes", "a-b", "expected two or more digits 0..9"), ("--classes", "3-12", "expected two or more digits"),
    ("--classes", "4", "expected two or more digits"),
]


@pytest.mark.parametrize("option, value, words", BAD_VALUES, ids=[f"{o}={v}" for o, v, _ in BAD_VALUES])
def test_bad_option_value_is_a_usage_error(option, value, words, capsys, monkeypatch):
    from zoo.vision import train

    monkeypatch.setattr(train, "load_data", lambda *a: pytest.fail("work started"))
    with pytest.raises(SystemExit) as exit_:
        main([f"{option}={value}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: " in err and words in err, err


@pytest.mark.parametrize("option, value, words", [
    ("--num-classes", "0", "must be >= 1"), ("--layer-decay", "0", "must be > 0 and <= 1"),
    ("--layer-decay", "1.5", "must be > 0 and <= 1"), ("--unfreeze-every", "0", "must be >= 1"),
    ("--epochs", "0", "must be >= 1"),
])
def test_bad_finetune_option_value_is_a_usage_error(option, value, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        finetune.build_parser().parse_args(["--pretrained", "x", f"{option}={value}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: " in err and words in err, err


def test_sensible_edge_values_are_accepted():
    args = build_parser().parse_args(["--epochs", "1", "--lr", "1e-6", "--label-smoothing", "0", "--mixup", "0",
                                      "--patience", "0", "--ema-decay", "0.999", "--seed", "0", "--classes", "0,9"])
    assert (args.epochs, args.lr, args.patience, args.classes) == (1, 1e-6, 0, "0,9")


def test_num_classes_below_the_data_classes_is_refused(tmp_path, no_training):
    from zoo.shared.errors import InvalidConfigError
    from zoo.vision.train import setup

    args = finetune.build_parser().parse_args(["--pretrained", "x", "--classes", "0-4", "--num-classes", "3"])
    with pytest.raises(InvalidConfigError, match="--num-classes 3 is fewer than the 5 classes"):
        setup(args, num_classes=args.num_classes)
