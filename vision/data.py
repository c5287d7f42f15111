"""Image datasets for the vision recipes.

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, ships with the
  package, so the main recipe runs offline), upsampled to ``img_size`` and split into a fixed
  stratified train / test set.
- an image folder (``root/class_x/*.png``), torchvision style; with ``train/`` and ``val/`` (or
  ``test/``) sub-folders those are the splits, otherwise a fixed 80/20 stratified split.
- a Hugging Face ``datasets`` dataset: a hub name written ``hf:uoft-cs/cifar10``, a
  ``save_to_disk`` directory, or a local directory of parquet / arrow files. The image and label
  columns are found from the features (``Image`` / ``ClassLabel``) or named explicitly.

:func:`data_kind` says which of these a ``--data`` value is; anything else (a typo'd path) is a
``DatasetError`` at once, never a hub lookup. :meth:`ImageData.pretrained_cfg` is how an image
becomes the model's input (size, channels, mean/std, crop), saved with a trained model so that
``zoo predict`` prepares images the same way.

Training-time augmentation is torchvision transforms v2: random-resized-crop and flip for
photographs, plus an optional RandAugment or TrivialAugment policy (``augment=``). Digits get
the policy alone, since flipping or cropping a digit can change its class.

Data that cannot be used (a missing folder, an image whose pixels do not decode, a single class, too
few images, a dataset without the needed split or columns) is a ``DatasetError`` naming what and
where, raised before training; an option out of its range (``augment``, ``classes``) is an
``InvalidConfigError``.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from zoo.shared.data_paths import find_data_dir
from zoo.shared.errors import DatasetError, InvalidConfigError

DIGITS_TEST_FRACTION = 0.25
VAL_FRACTION = 0.1
SPLIT_SEED = 0
AUGMENTS = ("none", "randaugment", "trivialaugment")
DATASETS = ("digits",)  # the names --data knows besides folders and hf:NAME
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # photographs (folders, hub data)
FOLDER_CROP_PCT = 0.875  # evaluation: resize to img_size / 0.875, centre crop img_size


@dataclass
class ImageData:
    train: Dataset
    val: Dataset  # for monitoring / model selection; carved from the training images
    test: Dataset  # touched once, at the end
    classes: list[str]
    in_chans: int
    img_size: int
    name: str
    # how an evaluation image becomes the model's input: [0, 1] pixels normalised with mean/std
    # after resizing to img_size / crop_pct and centre-cropping img_size
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = FOLDER_CROP_PCT
    interpolation: str = "bilinear"

    def pretrained_cfg(self) -> dict:
        """The data config a model trained on this data is saved with (``config.json``'s
        ``pretrained_cfg``, the fields ``zoo predict`` reads), naming the dataset."""
        return {"input_size": [self.in_chans, self.img_size, self.img_size], "mean": [float(m) for m in self.mean],
                "std": [float(s) for s in self.std], "interpolation": self.interpolation, "crop_pct": self.crop_pct,
                "dataset": self.name}

    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.classes))


def find_data(spec: str) -> str:
    """``--data`` as given when it is a dataset name, ``hf:NAME`` or an existing path; a bare name
    (``imagenette``) is looked up by the zoo's data rule, in ``$ZOO_DATA/<name>`` and then the
    cache's ``data/<name>``; otherwise ``spec`` unchanged (and :func:`data_kind` refuses it)."""
    if spec in DATASETS or spec.startswith(("hf:", "hf-hub:")) or Path(spec).expanduser().exists():
        return spec
    if spec and "/" not in spec and os.sep not in spec:
        found = find_data_dir(spec)
        if found is not None:
            return str(found)
    return spec


def data_kind(spec: str) -> str:
    """What a ``--data`` value names: ``"digits"``, ``"hf"`` (``hf:NAME``, a ``save_to_disk`` or
    parquet/arrow directory) or ``"folder"``. Anything else is refused at once with a DatasetError
    naming the path and what is accepted: a typo'd path never becomes a hub lookup with retries."""
    if spec in DATASETS:
        return spec
    if spec.startswith(("hf:", "hf-hub:")):
        if not spec.partition(":")[2].strip():
            raise DatasetError(f"--data {spec!r} names no dataset; write hf:ORG/NAME, e.g. hf:uoft-cs/cifar10")
        return "hf"
    path = Path(spec).expanduser()
    if path.is_dir():
        return "hf" if is_hf_dataset_dir(path) else "folder"
    accepted = ("--data takes 'digits', an image folder (root/class_x/*.png), a Hugging Face save_to_disk or "
                "parquet/arrow directory, or hf:NAME for a Hugging Face hub dataset")
    if path.exists():
        raise DatasetError(f"--data {spec}: {path} is a file, not a folder; {accepted}.")
    hints = [f"Did you mean {c!r}?" for c in difflib.get_close_matches(spec.lower(), DATASETS, n=1, cutoff=0.6)]
    if not hints and spec.count("/") == 1 and not spec.startswith(("/", ".", "~")):
        hints.append(f"For the hub dataset, write hf:{spec}.")
    raise DatasetError(f"--data {spec}: {path} does not exist and is not a dataset name; {accepted}"
                       + (". " + " ".join(hints) if hints else "."))


def _require_classes(targets, classes: list[str], where: str) -> None:
    """A classifier needs two classes with images: one class (or none) is refused, naming ``where``."""
    present = sorted(set(int(t) for t in targets))
    if len(present) < 2:
        found = ", ".join(repr(classes[t] if 0 <= t < len(classes) else str(t)) for t in present) or "none"
        raise DatasetError(f"{where} has images of {len(present)} class ({found}); a classifier needs at least two "
                           "classes: add a sub-folder of images for each class")


def _stratified_split(labels: list[int], test_fraction: float, seed: int = SPLIT_SEED):
    """Fixed stratified split of ``range(len(labels))``; every class gets a held-out sample."""
    import math

    from sklearn.model_selection import train_test_split

    n, n_classes = len(labels), len(set(labels))
    n_test = max(math.ceil(test_fraction * n), n_classes)
    if n - n_test < n_classes:
        raise DatasetError(f"{n} images in {n_classes} classes are too few to split into train / held-out sets; "
                         "add images or provide train/ and val/ folders")
    return train_test_split(list(range(n)), test_size=n_test, random_state=seed, stratify=labels)


def _carve_val(targets, indices) -> tuple[list[int], list[int]]:
    """Split ``indices`` (into a dataset labelled ``targets``) into fit and validation indices: the
    fixed stratified ``VAL_FRACTION`` split of those examples."""
    indices = list(indices)
    fit_pos, val_pos = _stratified_split([targets[i] for i in indices], VAL_FRACTION)
    return [indices[i] for i in fit_pos], [indices[i] for i in val_pos]


def _policy(augment: str | None):
    """The RandAugment / TrivialAugment transform for ``augment`` (None for "none")."""
    from torchvision.transforms import v2

    augment = augment or "none"
    if augment not in AUGMENTS:
        raise InvalidConfigError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    return {"none": None, "randaugment": v2.RandAugment(), "trivialaugment": v2.TrivialAugmentWide()}[augment]


def load_digits(img_size: int = 32, test_fraction: float = DIGITS_TEST_FRACTION,
                classes: list[int] | None = None, augment: str | None = None) -> ImageData:
    """scikit-learn's digits as (1, img_size, img_size) tensors, normalised to zero mean / unit std.

    ``classes`` keeps only those digits, renumbered 0..k-1 in the given order (the split is made
    after selection, so it is fixed for each selection). With ``augment`` the training images are
    kept as uint8 and pass through the policy each time they are drawn.
    """
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = torch.nn.functional.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False)
    labels = torch.tensor(digits.target, dtype=torch.long)
    names = [str(i) for i in range(10)]
    if classes is not None:
        bad = [c for c in classes if not 0 <= c <= 9]
        if bad or len(set(classes)) < 2:
            raise InvalidConfigError(f"digits classes must be a non-empty selection of 0..9 with at least two "
                                     f"digits (a classifier needs two classes), got {classes}")
        keep = torch.isin(labels, torch.tensor(classes))
        remap = torch.full((10,), -1, dtype=torch.long)
        remap[torch.tensor(classes)] = torch.arange(len(classes))
        images, labels, names = images[keep], remap[labels[keep]], [str(c) for c in classes]
    train_idx, test_idx = _stratified_split(labels.tolist(), test_fraction)
    fit_idx, val_idx = _carve_val(labels.tolist(), train_idx)
    mean, std = images[fit_idx].mean(), images[fit_idx].std()
    policy = _policy(augment)
    train = Subset(TensorDataset((images - mean) / std, labels), fit_idx)
    if policy is not None:
        from torchvision.transforms import v2

        uint8 = (images[fit_idx] * 255).round().clamp(0, 255).to(torch.uint8)
        train = _Transformed(TensorDataset(uint8, labels[fit_idx]), v2.Compose([
            policy, v2.ToDtype(torch.float32, scale=True), v2.Normalize([float(mean)], [float(std)])]))
    data = TensorDataset((images - mean) / std, labels)
    name = "digits" if classes is None else "digits[" + ",".join(names) + "]"
    # the 8x8 images are upscaled to img_size (bilinear), pixels in [0, 1], normalised with the
    # training images' own statistics: what zoo predict repeats on a PNG of a digit
    return ImageData(train, Subset(data, val_idx), Subset(data, test_idx), names, 1, img_size, name,
                     mean=(float(mean),), std=(float(std),), crop_pct=1.0, interpolation="bilinear")


def label_subset(dataset: Dataset, fraction: float, seed: int) -> Subset:
    """A stratified ``fraction`` of ``dataset``'s examples (at least one per class), drawn with
    ``seed``: the few labelled examples of a semi-supervised comparison, the same for every arm of
    that comparison run with the same seed. Labels are read by indexing the dataset once."""
    import math

    from sklearn.model_selection import train_test_split

    if not 0.0 < fraction <= 1.0:
        raise InvalidConfigError(f"--label-fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return Subset(dataset, list(range(len(dataset))))
    labels = [int(dataset[i][1]) for i in range(len(dataset))]
    n_keep = max(math.ceil(fraction * len(labels)), len(set(labels)))
    if n_keep >= len(labels):
        return Subset(dataset, list(range(len(dataset))))
    keep, _ = train_test_split(list(range(len(labels))), train_size=n_keep, random_state=seed, stratify=labels)
    return Subset(dataset, sorted(keep))


class _Transformed(Dataset):
    def __init__(self, base: Dataset, transform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        image, label = self.base[i]
        return self.transform(image), label


def _folder_transforms(img_size: int, train: bool, augment: str | None = None):
    from torchvision.transforms import v2

    steps = [v2.ToImage()]
    if train:
        policy = _policy(augment)
        steps += [v2.RandomResizedCrop(img_size, antialias=True), v2.RandomHorizontalFlip()]
        steps += [policy] if policy is not None else []
    else:
        steps += [v2.Resize(int(img_size / FOLDER_CROP_PCT), antialias=True), v2.CenterCrop(img_size)]
    return v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def _decode_problem(path: str) -> str | None:
    """Why the image at ``path`` cannot be used, or None. ``verify`` checks the file's structure and
    checksums; only decoding the pixels (``convert``, as training will) finds a PNG whose chunks
    are intact but whose compressed pixel data is broken or short."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            img.convert("RGB")
    except Exception as exc:  # PIL raises many kinds (OSError, SyntaxError, ValueError, zlib.error...)
        return f"{path} ({type(exc).__name__}: {exc})"
    return None


def _refuse_unreadable(samples: list[tuple[str, int]]) -> None:
    """Decode every image before training (in threads: PIL releases the GIL while decoding); any
    that fails refuses the run, named, rather than training silently on fewer images."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        bad = [p for p in pool.map(_decode_problem, [path for path, _ in samples]) if p]
    if bad:
        raise DatasetError(
            f"unreadable image {bad[0]}" + (f" and {len(bad) - 1} more: {bad[1:6]}" if len(bad) > 1 else "")
            + "; remove or fix them (the run is refused rather than silently training on fewer images)"
        )


def _image_folder(root: Path, loader):
    """torchvision's ImageFolder, its "no class folder" / "no image in a class" errors as DatasetErrors."""
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(root, loader=loader)
    except FileNotFoundError as exc:
        raise DatasetError(f"image folder {root}: {exc}. Expected one sub-folder of images per class "
                           "(root/class_x/*.png).") from None


def load_image_folder(root: str | Path, img_size: int = 224, augment: str | None = None) -> ImageData:
    """An image folder; unreadable files refuse the run, with their names (never a silent skip)."""
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist; pass --data <folder of class sub-folders>")

    def checked_loader(path: str):
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except Exception as exc:
            raise DatasetError(f"unreadable image {path} ({type(exc).__name__}: {exc}); remove or fix it") from None

    split_dirs = {d.name for d in root.iterdir() if d.is_dir()}
    test_name = "val" if "val" in split_dirs else "test" if "test" in split_dirs else None
    if "train" in split_dirs and test_name:
        train = _image_folder(root / "train", checked_loader)
        test = _image_folder(root / test_name, checked_loader)
        if test.classes != train.classes:
            raise DatasetError(f"{root}/train and {root}/{test_name} have different class folders")
        _require_classes(train.targets, train.classes, f"image folder {root / 'train'}")
        _refuse_unreadable(train.samples + test.samples)
        fit_idx, val_idx = _carve_val(train.targets, range(len(train)))
        val = Subset(train, val_idx)
        train = Subset(train, fit_idx)
    else:
        full = _image_folder(root, checked_loader)
        _require_classes(full.targets, full.classes, f"image folder {root}")
        _refuse_unreadable(full.samples)
        train_idx, test_idx = _stratified_split(full.targets, 0.2)
        fit_idx, val_idx = _carve_val(full.targets, train_idx)
        train, val, test = Subset(full, fit_idx), Subset(full, val_idx), Subset(full, test_idx)
    classes = (test.dataset if isinstance(test, Subset) else test).classes
    evaluate = _folder_transforms(img_size, False)
    return ImageData(_Transformed(train, _folder_transforms(img_size, True, augment)), _Transformed(val, evaluate),
                     _Transformed(test, evaluate), classes, 3, img_size, root.name)


# ---------------------------------------------------------------- Hugging Face datasets
HF_VAL_SPLITS = ("validation", "val", "valid")


def _is_saved_dataset(path: Path) -> bool:
    """A directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def is_hf_dataset_dir(path: str | Path) -> bool:
    """A ``save_to_disk`` directory, or a directory with parquet / arrow files (at the top or in
    ``data/``) that ``load_dataset`` reads."""
    path = Path(path)
    if not path.is_dir():
        return False
    if _is_saved_dataset(path):
        return True
    # the top level or data/ (the hub's layout); never a walk through a large image folder
    return any(any(folder.glob(f"*.{ext}")) for folder in (path, path / "data") for ext in ("parquet", "arrow"))


def _open_hf(spec: str):
    import datasets

    name = spec.removeprefix("hf:").removeprefix("hf-hub:")
    path = Path(name)
    try:
        if path.is_dir() and _is_saved_dataset(path):
            ds = datasets.load_from_disk(str(path))
        else:
            ds = datasets.load_dataset(str(path) if path.is_dir() else name)
    except Exception as exc:
        raise DatasetError(
            f"--data {spec}: not a folder, and loading it as a Hugging Face dataset failed "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Pass an image folder, 'digits', "
            "a save_to_disk directory, or a hub name with network access (or a filled HF datasets cache)."
        ) from None
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    return ds


def _hf_columns(split, image_column: str | None, label_column: str | None) -> tuple[str, str, list[str]]:
    import datasets

    features = split.features
    if image_column is None:
        found = [k for k, f in features.items() if isinstance(f, datasets.Image)]
        if not found:
            raise DatasetError(f"no Image column among {list(features)}; name it with --image-column")
        image_column = found[0]
    if label_column is None:
        found = [k for k, f in features.items() if isinstance(f, datasets.ClassLabel)]
        found = found or [k for k in ("label", "labels") if k in features]
        if not found:
            raise DatasetError(f"no ClassLabel column among {list(features)}; name it with --label-column")
        label_column = found[0]
    for kind, column in (("image", image_column), ("label", label_column)):
        if column not in features:
            raise DatasetError(f"{kind} column {column!r} is not in the dataset; columns: {list(features)}")
    feature = features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        classes = list(feature.names)
    else:
        classes = [str(c) for c in sorted(set(split[label_column]))]
    return image_column, label_column, classes


class _HFImages(Dataset):
    """(RGB PIL image, int label) pairs from one split of a Hugging Face dataset."""

    def __init__(self, split, image_column: str, label_column: str):
        self.split, self.image_column = split, image_column
        self.targets = [int(t) for t in split[label_column]]
        bad = sorted({t for t in self.targets if t < 0})
        if bad:
            raise DatasetError(f"split has unlabelled examples (label {bad[0]}); use a labelled split for training "
                             "and evaluation")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        image = self.split[int(i)][self.image_column]
        return image.convert("RGB"), self.targets[i]


def load_hf_dataset(spec: str, img_size: int = 224, augment: str | None = None, image_column: str | None = None,
                    label_column: str | None = None) -> ImageData:
    """A Hugging Face image-classification dataset: ``train`` is required, ``validation`` (or
    ``val``/``valid``) and ``test`` are used when present, otherwise carved from ``train`` with the
    same fixed stratified split as image folders."""
    ds = _open_hf(spec)
    if "train" not in ds:
        raise DatasetError(f"--data {spec} has splits {list(ds)}; a 'train' split is needed")
    image_column, label_column, classes = _hf_columns(ds["train"], image_column, label_column)
    full = _HFImages(ds["train"], image_column, label_column)
    _require_classes(full.targets, classes, f"--data {spec} (train split)")
    test_name = "test" if "test" in ds else None
    val_name = next((n for n in HF_VAL_SPLITS if n in ds), None)
    if test_name is None and val_name is not None:  # a (train, validation) dataset: validation is the test set
        test_name, val_name = val_name, None
    if test_name is None:
        train_idx, test_idx = _stratified_split(full.targets, 0.2)
        test = Subset(full, test_idx)
    else:
        train_idx = list(range(len(full)))
        test = _HFImages(ds[test_name], image_column, label_column)
    if val_name is None:
        fit_idx, val_idx = _carve_val(full.targets, train_idx)
        train, val = Subset(full, fit_idx), Subset(full, val_idx)
    else:
        train, val = Subset(full, train_idx), _HFImages(ds[val_name], image_column, label_column)
    evaluate = _folder_transforms(img_size, False)
    name = Path(spec.removeprefix("hf:")).name or spec
    return ImageData(_Transformed(train, _folder_transforms(img_size, True, augment)), _Transformed(val, evaluate),
                     _Transformed(test, evaluate), classes, 3, img_size, name)
