"""Train an image classifier from the registry.

    python -m zoo.vision.train --model resnet18                     # scikit-learn digits, offline
    python -m zoo.vision.train --model resnet50 --data ~/imagenette --img-size 160 --epochs 20
    python -m zoo.vision.train --model vit_small_patch16_224 --data hf:uoft-cs/cifar10 --img-size 32 \
        --augment trivialaugment --mixup 0.8 --cutmix 1.0 --label-smoothing 0.1 --ema-decay 0.999
    zoo train resnet18 --epochs 5 --output-dir runs/r18        # the same, through the zoo CLI

Data + model + task + config; the loop itself is ``zoo.shared.training.Trainer``. Like every recipe:
``build_parser()`` (the options), ``run(args)`` (does the work, returns the summary dict),
``main(argv)`` (the command line). ``zoo.vision.finetune`` reuses ``setup`` and ``train_and_test``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from zoo.shared.errors import InvalidConfigError
from zoo.shared.factory import create
from zoo.shared.registry import get_entry, reset_classifier
from zoo.shared.training import ClassificationTask, TrainConfig, Trainer, seed_everything

from . import data as vdata

# Defaults tuned on digits (fixed held-out split); see the README for the measured accuracy.
DIGITS_DEFAULTS = dict(epochs=12, batch_size=64, lr=2e-3, weight_decay=0.05, img_size=32)


def bounded(kind: type, low: float | None = None, high: float | None = None, *, above: bool = False):
    """An argparse ``type=`` that reads an int or a finite float and refuses a value outside
    ``[low, high]`` (``(low, high]`` with ``above``): ``--epochs 0`` or ``--lr -1`` is a usage
    error naming the option before any work."""
    rule = " and ".join(
        ([f"> {low}" if above else f">= {low}"] if low is not None else []) + ([f"<= {high}"] if high is not None else []))

    def parse(text: str):
        value = kind(text)  # a ValueError is argparse's own "invalid int value: 'x'"
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        too_low = low is not None and (value <= low if above else value < low)
        if too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some of its own messages
    return parse


def _classes_option(text: str) -> str:
    """``--classes`` is checked while parsing (digits and ranges of 0..9, at least two); the
    selection is applied to the data later."""
    try:
        digits = _parse_classes(text)
    except InvalidConfigError:
        digits = None
    if digits is None or not set(digits) <= set(range(10)) or len(digits) < 2:
        raise argparse.ArgumentTypeError(
            f"expected two or more digits 0..9 as digits and ranges, such as '0-4' or '5,6,7', got {text!r}")
    return text


def build_parser(prog: str = "python -m zoo.vision.train", doc: str | None = __doc__) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    count, positive, non_negative = bounded(int, 1), bounded(float, 0, above=True), bounded(float, 0)
    p.add_argument("--model", default="resnet18", help="registered model name (zoo list --domain vision)")
    p.add_argument("--data", default="digits",
                   help="'digits' (bundled with scikit-learn), an image-folder path, or a Hugging Face dataset: "
                        "hf:NAME (hub), a save_to_disk directory or a directory of parquet/arrow files")
    p.add_argument("--image-column", default=None, help="Hugging Face data: the image column (default: the Image feature)")
    p.add_argument("--label-column", default=None,
                   help="Hugging Face data: the label column (default: the ClassLabel feature)")
    p.add_argument("--augment", default="none", choices=vdata.AUGMENTS,
                   help="augmentation policy on training images (after crop/flip for photographs)")
    p.add_argument("--mixup", type=non_negative, default=0.0, help="MixUp alpha on training batches (0: off)")
    p.add_argument("--cutmix", type=non_negative, default=0.0,
                   help="CutMix alpha on training batches (0: off); with --mixup, each batch picks one at random")
    p.add_argument("--classes", type=_classes_option, default=None,
                   help="digits only: keep these digits, e.g. '0-4' or '5,6,7' (labels renumbered from 0)")
    p.add_argument("--label-fraction", type=bounded(float, 0, 1, above=True), default=1.0,
                   help="train on this stratified fraction of the training images (at least one per class), "
                        "drawn with --seed; validation and test sets stay whole")
    p.add_argument("--img-size", type=count, default=None, help="input size (digits: 32, folders: 224)")
    p.add_argument("--pretrained", default=None, help="weights file / directory / hf-hub:org/name to start from")
    p.add_argument("--epochs", type=count, default=None)
    p.add_argument("--max-steps", type=count, default=None, help="stop after this many optimizer steps")
    p.add_argument("--batch-size", type=count, default=None)
    p.add_argument("--lr", type=positive, default=None)
    p.add_argument("--weight-decay", type=non_negative, default=None)
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd", "adam"])
    p.add_argument("--warmup-epochs", type=non_negative, default=1.0)
    p.add_argument("--label-smoothing", type=bounded(float, 0, 1), default=0.0)
    p.add_argument("--ema-decay", type=bounded(float, 0, 1), default=None)
    p.add_argument("--clip-grad-norm", type=positive, default=None)
    p.add_argument("--grad-accum-steps", type=count, default=1)
    p.add_argument("--patience", type=bounded(int, 0), default=None,
                   help="stop after this many epochs without a better val/acc (default: train every epoch)")
    p.add_argument("--amp", action="store_true", help="mixed precision (bf16 on CPU, fp16 on CUDA)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=bounded(int, 0, 2**32 - 1), default=0)
    p.add_argument("--deterministic", action="store_true")
    p.add_argument("--output-dir", default=None,
                   help="checkpoints, metrics.csv, TensorBoard, curves.png and the test set's confusion_matrix.png")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last.pt")
    p.add_argument("--save-model", default=None, help="save the final model with save_pretrained here")
    p.add_argument("--no-progress", action="store_true")
    return p


def _parse_classes(spec: str | None) -> list[int] | None:
    if spec is None:
        return None
    out = []
    try:
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise InvalidConfigError(f"--classes {spec!r}: expected digits and ranges such as '0-4' or '5,6,7'") from None
    return sorted(set(out))


def load_data(args: argparse.Namespace, img_size: int) -> vdata.ImageData:
    """``--data``: digits, an image folder, or a Hugging Face dataset (hf:NAME, a save_to_disk or
    parquet directory); anything else is a DatasetError before any loading (:func:`vdata.data_kind`)."""
    spec = vdata.find_data(args.data)  # a bare name may live in $ZOO_DATA or the zoo cache
    kind = vdata.data_kind(spec)  # a typo'd path fails here, at once
    if kind == "digits":
        return vdata.load_digits(img_size, classes=_parse_classes(args.classes), augment=args.augment)
    path = Path(spec).expanduser()
    if kind == "hf":
        return vdata.load_hf_dataset(str(path) if path.exists() else spec, img_size, augment=args.augment,
                                     image_column=args.image_column, label_column=args.label_column)
    return vdata.load_image_folder(path, img_size, augment=args.augment)


def batch_mixing(mixup: float, cutmix: float, num_classes: int):
    """MixUp and/or CutMix (torchvision transforms v2) on a training batch; None when both are off."""
    from torchvision.transforms import v2

    if mixup < 0 or cutmix < 0:
        raise InvalidConfigError(f"--mixup and --cutmix are Beta(alpha, alpha) parameters >= 0, got {mixup} and {cutmix}")
    choices = ([v2.MixUp(alpha=mixup, num_classes=num_classes)] if mixup > 0 else []) + \
              ([v2.CutMix(alpha=cutmix, num_classes=num_classes)] if cutmix > 0 else [])
    if not choices:
        return None
    return choices[0] if len(choices) == 1 else v2.RandomChoice(choices)


@torch.no_grad()
def predict(model: torch.nn.Module, dataset, device, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class, target) for every sample of ``dataset``, in order."""
    from torch.utils.data import DataLoader

    was_training = model.training
    model.eval()
    preds, targets = [], []
    for inputs, labels in DataLoader(dataset, batch_size=batch_size):
        preds.append(model(inputs.to(device)).argmax(-1).cpu())
        targets.append(torch.as_tensor(labels))
    model.train(was_training)
    return torch.cat(preds), torch.cat(targets)


def save_confusion_matrix(preds, targets, classes: list[str], path: str | Path, title: str = "") -> Path:
    """A confusion-matrix PNG (rows: true class, columns: predicted), counts written in each cell
    for up to 30 classes."""
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    size = min(4 + 0.45 * len(classes), 30)
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    ConfusionMatrixDisplay.from_predictions(
        targets.numpy(), preds.numpy(), labels=list(range(len(classes))), display_labels=classes, ax=ax,
        colorbar=False, include_values=len(classes) <= 30, xticks_rotation="vertical" if len(classes) > 10 else "horizontal")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def _headless(pretrained) -> bool:
    """True for a save_pretrained directory of a model without classifier (``num_classes`` 0), such
    as the encoder ``zoo pretrain simclr`` writes."""
    if not pretrained or not isinstance(pretrained, str) or not (Path(pretrained) / "config.json").is_file():
        return False
    try:
        config = json.loads((Path(pretrained) / "config.json").read_text())
    except (OSError, ValueError):
        return False  # create() reports an unreadable config with its own message
    return isinstance(config, dict) and isinstance(config.get("config"), dict) \
        and config["config"].get("num_classes") == 0


def _create_model(name: str, pretrained, num_classes: int, in_chans: int, size_kw: dict):
    """``create`` with the data's classes; a headless checkpoint (an encoder saved with ``num_classes``
    0) is loaded as saved, strictly, and given a fresh classifier for ``num_classes``."""
    if not _headless(pretrained):
        return create(name, pretrained=pretrained or False, num_classes=num_classes, in_chans=in_chans, **size_kw)
    model = create(name, pretrained=pretrained, num_classes=0, in_chans=in_chans, **size_kw)
    reset_classifier(model, num_classes)
    model.load_report.reinitialized += [k for k in model.state_dict()
                                        if any(k.startswith(h + ".") for h in get_entry(name).classifier)]
    model.load_report.notes.append(f"the checkpoint has no classifier; a new one initialised for "
                                   f"num_classes={num_classes}")
    return model


def setup(args: argparse.Namespace, num_classes: int | None = None):
    """Data, model (seeded; pretrained weights adapted to the data) and TrainConfig from the arguments."""
    digits = args.data == "digits"
    defaults = DIGITS_DEFAULTS if digits else dict(epochs=30, batch_size=64, lr=1e-3, weight_decay=0.05, img_size=224)
    pick = lambda value, key: defaults[key] if value is None else value  # noqa: E731
    img_size = pick(args.img_size, "img_size")
    if args.classes is not None and not digits:
        raise InvalidConfigError("--classes selects digits; for an image folder, keep only the class folders you want")
    data = load_data(args, img_size)
    if getattr(args, "label_fraction", 1.0) < 1.0:
        data.train = vdata.label_subset(data.train, args.label_fraction, args.seed)
    if num_classes is not None and num_classes < len(data.classes):
        raise InvalidConfigError(f"--num-classes {num_classes} is fewer than the {len(data.classes)} classes of "
                                 f"{data.name}; leave it out to use the data's")
    seed_everything(args.seed, args.deterministic)  # the model's initial weights depend on it
    size_kw = {"img_size": img_size} if "img_size" in get_entry(args.model).config else {}  # ViT: pos-embed grid
    model = _create_model(args.model, args.pretrained, num_classes or len(data.classes), data.in_chans, size_kw)
    # what a saved model needs to be used: its class names and how its images were prepared
    model.pretrained_cfg = data.pretrained_cfg()
    if model.num_classes == len(data.classes):
        model.id2label = data.id2label()
    elif hasattr(model, "id2label"):  # more outputs than the data has classes: the saved names no longer fit
        del model.id2label
    batch_size = pick(args.batch_size, "batch_size")
    config = TrainConfig(
        epochs=pick(args.epochs, "epochs"), max_steps=args.max_steps, batch_size=batch_size,
        drop_last=len(data.train) > batch_size,  # a batch of 1 breaks BatchNorm at 1x1 resolution
        lr=pick(args.lr, "lr"), weight_decay=pick(args.weight_decay, "weight_decay"), optimizer=args.optimizer,
        scheduler="cosine", warmup_epochs=args.warmup_epochs, ema_decay=args.ema_decay,
        clip_grad_norm=args.clip_grad_norm, grad_accum_steps=args.grad_accum_steps, amp=args.amp or "auto",
        device=args.device, seed=args.seed, deterministic=args.deterministic, output_dir=args.output_dir,
        resume=True if args.resume else None, progress=not args.no_progress, monitor="val/acc",
        early_stopping_patience=getattr(args, "patience", None),
    )
    return data, model, config


def train_and_test(args: argparse.Namespace, data, model, config, *, optimizer=None, callbacks=()) -> dict:
    """Train, evaluate once on the test set, print and return the summary (rank 0 prints)."""
    mixing = batch_mixing(args.mixup, args.cutmix, model.num_classes)
    task = ClassificationTask(label_smoothing=args.label_smoothing, batch_transform=mixing)
    trainer = Trainer(model, task, data.train, data.val, config, optimizer=optimizer, callbacks=callbacks)
    if trainer.is_main:
        print(f"{args.model} on {data.name}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test "
              f"images, {len(data.classes)} classes, {data.img_size}px, "
              f"{sum(p.numel() for p in model.parameters()):,} params")
    start = time.perf_counter()
    trainer.fit()
    metrics = trainer.evaluate(data.test, prefix="test")
    elapsed = time.perf_counter() - start
    summary = {"model": args.model, "data": data.name, **{k: round(v, 4) for k, v in metrics.items()},
               "train_seconds": round(elapsed, 1)}
    if trainer.is_main:
        top5 = f", top-5 {100 * metrics['test/top5']:.2f}%" if "test/top5" in metrics else ""
        print(f"test accuracy: {100 * metrics['test/acc']:.2f}%{top5}  ({elapsed:.0f}s)")
        print(json.dumps(summary))
        if config.output_dir:
            preds, targets = predict(trainer.eval_model, data.test, trainer.device)
            path = save_confusion_matrix(preds, targets, data.classes, Path(config.output_dir) / "confusion_matrix.png",
                                         f"{args.model} on {data.name} (test, {len(targets)} images)")
            print(f"confusion matrix: {path}")
        if args.save_model:
            from zoo.shared.weights import save_pretrained

            # the weights the test accuracy above was measured with (the EMA copy when EMA evaluates),
            # with the class names and data config set up in setup()
            save_pretrained(trainer.eval_model, args.save_model)
            print(f"saved to {args.save_model}")
    return summary


def run(args: argparse.Namespace) -> dict:
    """Train ``args.model`` on ``args.data``; returns the summary (test metrics, time) it printed."""
    data, model, config = setup(args)
    return train_and_test(args, data, model, config)


def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
