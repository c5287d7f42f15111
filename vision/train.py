"""Train an image classifier from the registry.

    python -m vision.train --model resnet18                     # scikit-learn digits, offline
    python -m vision.train --model resnet50 --data ~/imagenette --img-size 160 --epochs 20
    zoo train resnet18 --epochs 5 --output-dir runs/r18        # the same, through the zoo CLI

Data + model + task + config; the loop itself is ``shared.training.Trainer``.
"""

from __future__ import annotations

import argparse
import json
import time

from shared.factory import create
from shared.training import ClassificationTask, TrainConfig, Trainer, seed_everything

from . import data as vdata

# Defaults tuned on digits (fixed held-out split); see the README for the measured accuracy.
DIGITS_DEFAULTS = dict(epochs=12, batch_size=64, lr=2e-3, weight_decay=0.05, img_size=32)


def build_parser(prog: str = "python -m vision.train", doc: str | None = __doc__) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18", help="registered model name (zoo list --domain vision)")
    p.add_argument("--data", default="digits", help="'digits' (bundled with scikit-learn) or an image-folder path")
    p.add_argument("--classes", default=None,
                   help="digits only: keep these digits, e.g. '0-4' or '5,6,7' (labels renumbered from 0)")
    p.add_argument("--img-size", type=int, default=None, help="input size (digits: 32, folders: 224)")
    p.add_argument("--pretrained", default=None, help="weights file / directory / hf-hub:org/name to start from")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd", "adam"])
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--ema-decay", type=float, default=None)
    p.add_argument("--clip-grad-norm", type=float, default=None)
    p.add_argument("--grad-accum-steps", type=int, default=1)
    p.add_argument("--amp", action="store_true", help="mixed precision (bf16 on CPU, fp16 on CUDA)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deterministic", action="store_true")
    p.add_argument("--output-dir", default=None, help="checkpoints, metrics.csv, TensorBoard, curves.png")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last.pt")
    p.add_argument("--save-model", default=None, help="save the final model with save_pretrained here")
    p.add_argument("--no-progress", action="store_true")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _parse_classes(spec: str | None) -> list[int] | None:
    if spec is None:
        return None
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return sorted(set(out))


def setup(args: argparse.Namespace, num_classes: int | None = None):
    """Data, model (seeded; pretrained weights adapted to the data) and TrainConfig from the arguments."""
    digits = args.data == "digits"
    defaults = DIGITS_DEFAULTS if digits else dict(epochs=30, batch_size=64, lr=1e-3, weight_decay=0.05, img_size=224)
    pick = lambda value, key: defaults[key] if value is None else value  # noqa: E731
    img_size = pick(args.img_size, "img_size")
    if args.classes is not None and not digits:
        raise ValueError("--classes selects digits; for an image folder, keep only the class folders you want")
    data = (vdata.load_digits(img_size, classes=_parse_classes(args.classes)) if digits
            else vdata.load_image_folder(args.data, img_size))
    seed_everything(args.seed, args.deterministic)  # the model's initial weights depend on it
    model = create(args.model, pretrained=args.pretrained or False,
                   num_classes=num_classes or len(data.classes), in_chans=data.in_chans)
    batch_size = pick(args.batch_size, "batch_size")
    config = TrainConfig(
        epochs=pick(args.epochs, "epochs"), max_steps=args.max_steps, batch_size=batch_size,
        drop_last=len(data.train) > batch_size,  # a batch of 1 breaks BatchNorm at 1x1 resolution
        lr=pick(args.lr, "lr"), weight_decay=pick(args.weight_decay, "weight_decay"), optimizer=args.optimizer,
        scheduler="cosine", warmup_epochs=args.warmup_epochs, ema_decay=args.ema_decay,
        clip_grad_norm=args.clip_grad_norm, grad_accum_steps=args.grad_accum_steps, amp=args.amp or "auto",
        device=args.device, seed=args.seed, deterministic=args.deterministic, output_dir=args.output_dir,
        resume=True if args.resume else None, progress=not args.no_progress, monitor="val/acc",
    )
    return data, model, config


def run(args: argparse.Namespace, data, model, config, *, optimizer=None, callbacks=()) -> dict:
    """Train, evaluate once on the test set, print and return the summary (rank 0 prints)."""
    trainer = Trainer(model, ClassificationTask(label_smoothing=args.label_smoothing), data.train, data.val, config,
                      optimizer=optimizer, callbacks=callbacks)
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
        print(f"test accuracy: {100 * metrics['test/acc']:.2f}%  ({elapsed:.0f}s)")
        print(json.dumps(summary))
        if args.save_model:
            from shared.weights import save_pretrained

            save_pretrained(trainer.model, args.save_model)
            print(f"saved to {args.save_model}")
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    data, model, config = setup(args)
    run(args, data, model, config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
