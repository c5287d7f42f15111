"""Image datasets for the vision recipes.

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, ships with the
  package, so the main recipe runs offline), upsampled to ``img_size`` and split into a fixed
  stratified train / test set.
- an image folder (``root/class_x/*.png``), torchvision style; with ``train/`` and ``val/`` (or
  ``test/``) sub-folders those are the splits, otherwise a fixed 80/20 stratified split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

DIGITS_TEST_FRACTION = 0.25
VAL_FRACTION = 0.1
SPLIT_SEED = 0


@dataclass
class ImageData:
    train: Dataset
    val: Dataset  # for monitoring / model selection; carved from the training images
    test: Dataset  # touched once, at the end
    classes: list[str]
    in_chans: int
    img_size: int
    name: str


def _stratified_split(labels: list[int], test_fraction: float, seed: int = SPLIT_SEED):
    """Fixed stratified split of ``range(len(labels))``; every class gets a held-out sample."""
    import math

    from sklearn.model_selection import train_test_split

    n, n_classes = len(labels), len(set(labels))
    n_test = max(math.ceil(test_fraction * n), n_classes)
    if n - n_test < n_classes:
        raise ValueError(f"{n} images in {n_classes} classes are too few to split into train / held-out sets; "
                         "add images or provide train/ and val/ folders")
    return train_test_split(list(range(n)), test_size=n_test, random_state=seed, stratify=labels)


def load_digits(img_size: int = 32, test_fraction: float = DIGITS_TEST_FRACTION,
                classes: list[int] | None = None) -> ImageData:
    """scikit-learn's digits as (1, img_size, img_size) tensors, normalised to zero mean / unit std.

    ``classes`` keeps only those digits, renumbered 0..k-1 in the given order (the split is made
    after selection, so it is fixed for each selection).
    """
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = torch.nn.functional.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False)
    labels = torch.tensor(digits.target, dtype=torch.long)
    names = [str(i) for i in range(10)]
    if classes is not None:
        bad = [c for c in classes if not 0 <= c <= 9]
        if bad or not classes:
            raise ValueError(f"digits classes must be a non-empty selection of 0..9, got {classes}")
        keep = torch.isin(labels, torch.tensor(classes))
        remap = torch.full((10,), -1, dtype=torch.long)
        remap[torch.tensor(classes)] = torch.arange(len(classes))
        images, labels, names = images[keep], remap[labels[keep]], [str(c) for c in classes]
    train_idx, test_idx = _stratified_split(labels.tolist(), test_fraction)
    fit_pos, val_pos = _stratified_split(labels[train_idx].tolist(), VAL_FRACTION)
    fit_idx, val_idx = [train_idx[i] for i in fit_pos], [train_idx[i] for i in val_pos]
    mean, std = images[fit_idx].mean(), images[fit_idx].std()
    images = (images - mean) / std
    data = TensorDataset(images, labels)
    name = "digits" if classes is None else "digits[" + ",".join(names) + "]"
    return ImageData(Subset(data, fit_idx), Subset(data, val_idx), Subset(data, test_idx), names, 1, img_size, name)


class _Transformed(Dataset):
    def __init__(self, base: Dataset, transform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        image, label = self.base[i]
        return self.transform(image), label


def _folder_transforms(img_size: int, train: bool):
    from torchvision.transforms import v2

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    steps = [v2.ToImage()]
    if train:
        steps += [v2.RandomResizedCrop(img_size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        steps += [v2.Resize(int(img_size / 0.875), antialias=True), v2.CenterCrop(img_size)]
    return v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def load_image_folder(root: str | Path, img_size: int = 224) -> ImageData:
    """An image folder; unreadable files refuse the run, with their names (never a silent skip)."""
    from PIL import Image
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist; pass --data <folder of class sub-folders>")

    def checked_loader(path: str):
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except Exception as exc:
            raise ValueError(f"unreadable image {path} ({type(exc).__name__}: {exc}); remove or fix it") from None

    def refuse_unreadable(folder: "ImageFolder") -> None:
        bad = []
        for path, _ in folder.samples:
            try:
                with Image.open(path) as img:
                    img.verify()
            except Exception as exc:
                bad.append(f"{path} ({type(exc).__name__})")
        if bad:
            raise ValueError(
                f"unreadable image {bad[0]}" + (f" and {len(bad) - 1} more: {bad[1:6]}" if len(bad) > 1 else "")
                + "; remove or fix them (the run is refused rather than silently training on fewer images)"
            )

    split_dirs = {d.name for d in root.iterdir() if d.is_dir()}
    test_name = "val" if "val" in split_dirs else "test" if "test" in split_dirs else None
    if "train" in split_dirs and test_name:
        train = ImageFolder(root / "train", loader=checked_loader)
        test = ImageFolder(root / test_name, loader=checked_loader)
        if test.classes != train.classes:
            raise ValueError(f"{root}/train and {root}/{test_name} have different class folders")
        refuse_unreadable(train)
        refuse_unreadable(test)
        fit_idx, val_idx = _stratified_split(train.targets, VAL_FRACTION)
        val = Subset(train, val_idx)
        train = Subset(train, fit_idx)
    else:
        full = ImageFolder(root, loader=checked_loader)
        refuse_unreadable(full)
        train_idx, test_idx = _stratified_split(full.targets, 0.2)
        fit_pos, val_pos = _stratified_split([full.targets[i] for i in train_idx], VAL_FRACTION)
        train = Subset(full, [train_idx[i] for i in fit_pos])
        val = Subset(full, [train_idx[i] for i in val_pos])
        test = Subset(full, test_idx)
    classes = (test.dataset if isinstance(test, Subset) else test).classes
    evaluate = _folder_transforms(img_size, False)
    return ImageData(_Transformed(train, _folder_transforms(img_size, True)), _Transformed(val, evaluate),
                     _Transformed(test, evaluate), classes, 3, img_size, root.name)
