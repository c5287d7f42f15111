"""Images for the generative recipes, as one tensor in memory.

- ``digits``: scikit-learn's 8x8 digits upsampled (bilinear) to ``img_size``, with the vision
  recipe's fixed train / test split (:func:`zoo.vision.data.load_digits`), so the quality benchmark's
  classifier never saw the held-out images.
- an image folder: every image under it (class sub-folders or flat), read as they are. All must
  share one size and one channel count (a generator makes one shape): a folder that mixes them is
  refused with the sizes found and an example of each.
- a Hugging Face dataset's Image column (``hf:ORG/NAME`` or a ``save_to_disk`` directory), with the
  same one-shape rule; its ``test`` split is the held-out set when it has one.

Pixels are in [0, 1] (``images``); :func:`to_model_range` maps them to [-1, 1] for the GANs and
diffusion, whose outputs use tanh / the clipped x_0 range.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from zoo.shared.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


@dataclass
class GenImages:
    train: Tensor  # (N, C, H, W) in [0, 1]
    test: Tensor  # held-out images (for the quality benchmark and the VAE's test likelihood)
    train_labels: Tensor | None
    test_labels: Tensor | None
    name: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])


def to_model_range(x: Tensor) -> Tensor:
    return x * 2 - 1


def to_pixels(x: Tensor) -> Tensor:
    return ((x + 1) / 2).clamp(0, 1)


def load_digits(img_size: int = 32) -> GenImages:
    """The vision recipe's digits split (fit + validation images for training, its test split held
    out), with the normalisation undone: pixels in [0, 1]."""
    from zoo.vision.data import load_digits as vision_digits

    data = vision_digits(img_size=img_size)

    def unpack(*subsets):
        xs, ys = zip(*(subset[i] for subset in subsets for i in range(len(subset))))
        x = torch.stack(xs) * data.std[0] + data.mean[0]
        return x.clamp(0, 1), torch.tensor(ys)

    train, train_labels = unpack(data.train, data.val)
    test, test_labels = unpack(data.test)
    return GenImages(train, test, train_labels, test_labels, "digits")


def _stack(images, where: str) -> Tensor:
    """``(PIL image, name)`` pairs as one (N, C, H, W) tensor in [0, 1]; one size and channel count for
    all, else a DatasetError naming the shapes found with an example of each."""
    import numpy as np

    arrays, shapes, examples = [], Counter(), {}
    for img, name in images:
        mode = img.mode if img.mode in MODES else "RGB"
        array = np.asarray(img.convert(mode))
        array = array[:, :, None] if array.ndim == 2 else array
        shape = (array.shape[2], array.shape[0], array.shape[1])  # (C, H, W)
        shapes[shape] += 1
        examples.setdefault(shape, name)
        arrays.append(array)
    if len(shapes) > 1:
        found = "; ".join(f"{n} images of {c} channel{'s' * (c > 1)} {h}x{w} (e.g. {examples[(c, h, w)]})"
                          for (c, h, w), n in shapes.most_common())
        raise DatasetError(f"{where} mixes image sizes or channel counts: {found}. A generator makes one "
                           "shape: resize / convert the images to one size and mode first.")
    (c, h, w), = shapes
    if h != w:
        raise DatasetError(f"{where}: the images are {h}x{w}; the generators make square images: crop or resize "
                           "them to a square")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def _split(images: Tensor, labels: Tensor | None, name: str, test_fraction: float, seed: int) -> GenImages:
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    n_test = max(1, int(len(images) * test_fraction))
    test_idx, train_idx = order[:n_test], order[n_test:]
    return GenImages(images[train_idx], images[test_idx], None if labels is None else labels[train_idx],
                     None if labels is None else labels[test_idx], name)


def load_image_folder(root: str | Path, test_fraction: float = 0.1, seed: int = 0) -> GenImages:
    """Every image under ``root``; one shape for all, else a DatasetError naming the shapes found."""
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist; pass --data digits or a folder of images")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(paths) < 2:
        raise DatasetError(f"image folder {root} holds {len(paths)} images ({', '.join(IMAGE_SUFFIXES)}); a generator "
                           "needs a training set: add images")

    def read():
        for path in paths:
            try:
                with Image.open(path) as img:
                    img.load()
            except Exception as exc:  # PIL raises many kinds
                raise DatasetError(f"unreadable image {path} ({type(exc).__name__}: {exc}); remove or fix it") from None
            yield img, path

    images = _stack(read(), f"image folder {root}")
    labels = None
    parents = [p.parent for p in paths]
    if len(set(parents)) > 1:  # class sub-folders: keep their names as labels
        names = sorted(set(parents))
        labels = torch.tensor([names.index(p) for p in parents])
    return _split(images, labels, root.name, test_fraction, seed)


def load_hf_images(spec: str, test_fraction: float = 0.1, seed: int = 0) -> GenImages:
    """The Image column of a Hugging Face dataset (``hf:ORG/NAME`` from the hub or its cache, or a
    ``save_to_disk`` directory): its ``train`` split, and ``test`` when present (else a held-out part)."""
    import datasets

    name = spec.removeprefix("hf:").removeprefix("hf-hub:")
    try:
        path = Path(name)
        ds = datasets.load_from_disk(str(path)) if path.is_dir() else datasets.load_dataset(name)
    except Exception as exc:
        raise DatasetError(f"--data {spec}: loading it as a Hugging Face dataset failed ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); pass 'digits', an image folder, a "
                           "save_to_disk directory, or a hub name with network access") from None
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    if "train" not in ds:
        raise DatasetError(f"--data {spec} has splits {list(ds)}; a 'train' split is needed")
    columns = [k for k, f in ds["train"].features.items() if isinstance(f, datasets.Image)]
    if not columns:
        raise DatasetError(f"--data {spec} has no Image column (columns: {list(ds['train'].features)})")

    def read(split):
        return ((row[columns[0]], f"{split}[{i}]") for i, row in enumerate(ds[split]))

    train = _stack(read("train"), f"--data {spec}")
    if "test" in ds:
        return GenImages(train, _stack(read("test"), f"--data {spec} (test)"), None, None, name)
    return _split(train, None, name, test_fraction, seed)


def load_images(spec: str, img_size: int = 32) -> GenImages:
    """``--data``: ``digits`` or an image folder (its images' own size; ``img_size`` must match)."""
    if spec == "digits":
        return load_digits(img_size)
    path = Path(spec).expanduser()
    if spec.startswith(("hf:", "hf-hub:")) or (path.is_dir() and ((path / "dataset_dict.json").is_file()
                                                                   or (path / "state.json").is_file())):
        data = load_hf_images(spec)
        _check_size(data, spec, img_size)
        return data
    if not path.exists():
        from zoo.shared.data_paths import find_data_dir

        found = find_data_dir(spec) if "/" not in spec else None
        if found is None:
            raise DatasetError(f"--data {spec}: no such folder and not a dataset name; --data takes 'digits' or a "
                               "folder of images")
        path = Path(found)
    data = load_image_folder(path)
    _check_size(data, spec, img_size)
    return data


def _check_size(data: GenImages, spec: str, img_size: int) -> None:
    if data.shape[1] != img_size:
        raise DatasetError(f"--data {spec}: the images are {data.shape[1]}x{data.shape[2]} but --img-size is "
                           f"{img_size}; pass --img-size {data.shape[1]} or resize the images")
