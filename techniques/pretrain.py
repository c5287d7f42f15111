"""Self-supervised pretraining: ``zoo pretrain simclr NAME``.

    zoo pretrain simclr resnet18 --data digits --epochs 60 --save-model runs/simclr_r18
    zoo finetune resnet18 --pretrained runs/simclr_r18 --label-fraction 0.1     # then use the encoder
    zoo pretrain simclr resnet18 --batch-size 1024 --chunk-size 256            # big batches, bounded memory

The encoder is the registered model NAME built without its classifier (``num_classes=0``); the
projection head and the NT-Xent loss are :mod:`zoo.techniques.simclr`. Pretraining reads the
training images of the vision recipe's digits split and never their labels. At the end the
encoder is written with ``save_pretrained`` (``--save-model``; headless, so ``zoo finetune`` /
``zoo train --pretrained`` give it a new classifier) and, unless ``--no-probe``, scored by a linear
probe: logistic regression on its frozen features of the training images (labels used here, for
the evaluation only), C chosen on the validation images, accuracy on the test images.

Large batches: ``--chunk-size`` runs at most that many views through the model at once and keeps
the loss exact through a gradient cache (see :mod:`zoo.techniques.simclr`); the trainer's plain
gradient accumulation is refused, since NT-Xent does not split over micro-batches.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from zoo.shared.errors import InvalidConfigError
from zoo.shared.factory import create
from zoo.shared.training import TrainConfig, Trainer, seed_everything

from .simclr import SimCLR, SimCLRTask, TwoViews, linear_probe, simclr_augment

METHODS = ("simclr",)


def build_parser() -> argparse.ArgumentParser:
    from zoo.vision.train import bounded

    count, positive, non_negative = bounded(int, 1), bounded(float, 0, above=True), bounded(float, 0)
    p = argparse.ArgumentParser(prog="zoo pretrain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", choices=METHODS, help="the self-supervised method")
    p.add_argument("model", help="registered image model whose encoder is pretrained (zoo list --domain vision)")
    p.add_argument("--data", default="digits", choices=["digits"], help="the unlabelled images")
    p.add_argument("--base-channels", type=count, default=None,
                   help="a thinner ResNet: its base_channels (64 in the paper's); other families refuse it")
    p.add_argument("--img-size", type=count, default=32)
    p.add_argument("--epochs", type=count, default=60)
    p.add_argument("--max-steps", type=count, default=None)
    p.add_argument("--batch-size", type=count, default=256, help="images per step (2x as many views)")
    p.add_argument("--chunk-size", type=count, default=None,
                   help="at most this many views per forward pass (gradient cache); default: the whole batch")
    p.add_argument("--grad-accum-steps", type=count, default=1, help=argparse.SUPPRESS)
    p.add_argument("--temperature", type=positive, default=0.5, help="tau of NT-Xent")
    p.add_argument("--proj-dim", type=count, default=128, help="output size of the projection head")
    p.add_argument("--proj-hidden", type=count, default=512, help="hidden size of the projection head")
    p.add_argument("--lr", type=positive, default=2e-3)
    p.add_argument("--weight-decay", type=non_negative, default=1e-4)
    p.add_argument("--warmup-epochs", type=non_negative, default=3.0)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=bounded(int, 0, 2**32 - 1), default=0)
    p.add_argument("--deterministic", action="store_true")
    p.add_argument("--output-dir", default=None)
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last.pt")
    p.add_argument("--save-model", default=None, help="save the encoder (no head) with save_pretrained here")
    p.add_argument("--no-probe", action="store_true", help="skip the linear probe at the end")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace) -> dict:
    """Pretrain ``args.model``'s encoder with SimCLR; returns the summary (final losses, probe)."""
    from zoo.vision.data import load_digits

    if args.grad_accum_steps != 1:
        raise InvalidConfigError(
            "NT-Xent takes its negatives from the whole batch, so gradients of separate micro-batch losses do not "
            "add up to the batch's: use --chunk-size N (exact gradient cache) instead of --grad-accum-steps")
    data = load_digits(args.img_size)
    seed_everything(args.seed, args.deterministic)
    width = {} if args.base_channels is None else {"base_channels": args.base_channels}
    encoder = create(args.model, num_classes=0, in_chans=data.in_chans, **width)
    encoder.pretrained_cfg = data.pretrained_cfg()
    with torch.no_grad():
        encoder.eval()
        feature_dim = encoder(data.train[0][0].unsqueeze(0)).flatten(1).shape[1]
        encoder.train()
    model = SimCLR(encoder, feature_dim, args.proj_hidden, args.proj_dim)
    background = -data.mean[0] / data.std[0]  # a blank pixel after normalisation
    augment = simclr_augment(args.img_size, background=background)
    train, val = TwoViews(data.train, augment), TwoViews(data.val, augment)
    config = TrainConfig(
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size,
        drop_last=len(train) > args.batch_size, lr=args.lr, weight_decay=args.weight_decay, optimizer="adamw",
        scheduler="cosine", warmup_epochs=args.warmup_epochs, amp=args.amp or "auto", device=args.device,
        seed=args.seed, deterministic=args.deterministic, output_dir=args.output_dir,
        resume=True if args.resume else None, progress=not args.no_progress)
    task = SimCLRTask(args.temperature, args.chunk_size)
    trainer = Trainer(model, task, train, val, config)
    task.grad_scaler = trainer.scaler
    if trainer.is_main:
        print(f"SimCLR, {args.model} encoder ({feature_dim}-d features, "
              f"{sum(p.numel() for p in encoder.parameters()):,} params) on {len(train)} unlabelled {data.name} "
              "images, "
              f"batch {args.batch_size} (2x views), tau {args.temperature}"
              + (f", chunks of {args.chunk_size} views" if args.chunk_size else ""))
    start = time.perf_counter()
    result = trainer.fit()
    elapsed = time.perf_counter() - start
    last = result["history"][-1] if result["history"] else {}
    summary = {"method": "simclr", "model": args.model, "data": data.name, "epochs": args.epochs,
               **{k: round(v, 4) for k, v in last.items() if "/" in k}, "train_seconds": round(elapsed, 1)}
    if not args.no_probe:
        summary.update({k: round(v, 4) if isinstance(v, float) else v
                        for k, v in linear_probe(encoder, data, trainer.device).items()})
    if trainer.is_main:
        if "probe/test_acc" in summary:
            print(f"linear probe on the frozen encoder: test accuracy {100 * summary['probe/test_acc']:.2f}% "
                  f"(C={summary['probe/C']} chosen on validation)")
        print(json.dumps(summary))
        if args.save_model:
            from zoo.shared.weights import save_pretrained

            save_pretrained(encoder, args.save_model)
            print(f"saved the encoder to {args.save_model} (no classifier: zoo finetune {args.model} "
                  f"--pretrained {args.save_model} adds one)")
    return summary


def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
