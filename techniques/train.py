"""Domain-adversarial training (DANN) on digits -> shifted digits.

    zoo train dann                                        # resnet18, target: digits rotated by 45 degrees
    zoo train dann --base-channels 16 --shift invert_noise   # a thin resnet18, another shift
    zoo train dann --source-only                          # the baseline: the same run without adaptation
    python -m zoo.techniques.train --model dann --help

Source: scikit-learn's digits with their labels, on the vision recipe's split (``zoo.vision.data``).
Target: the same split's images after ``--shift`` (``zoo.techniques.dann.shift_images``), normalised
with the source's statistics as a deployed model would see them. Training reads the target's
training images without labels; the target's test images and labels score the result once, at the
end. Nothing is selected on the target: the run trains for ``--epochs`` and keeps the last model
(the source validation accuracy is logged).

SGD with the paper's learning-rate annealing mu_0 / (1 + 10 p)^0.75 and the gradient-reversal
factor 2 / (1 + exp(-10 p)) - 1 (``zoo.techniques.dann``), p the fraction of steps done. The loop
is the shared Trainer with :class:`~zoo.techniques.dann.DANNTask` and the
:class:`~zoo.techniques.dann.DANNSchedule` callback.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.data import Subset, TensorDataset

from zoo.shared.errors import InvalidConfigError
from zoo.shared.factory import create
from zoo.shared.training import Trainer, TrainConfig, seed_everything
from zoo.shared.training.optim import optimizer_from_config

from .dann import DANN, SHIFTS, DANNSchedule, DANNTask, DomainPairs, annealed_lr_factor, shift_images

METHODS = ("dann",)


def build_parser(prog: str = "zoo train dann / python -m zoo.techniques.train") -> argparse.ArgumentParser:
    from zoo.vision.train import bounded

    count, positive, non_negative = bounded(int, 1), bounded(float, 0, above=True), bounded(float, 0)
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="dann", choices=METHODS, help="the method (zoo train dann sets it)")
    p.add_argument("--backbone", default="resnet18", help="registered image classifier whose features are adapted")
    p.add_argument("--data", default="digits", choices=["digits"], help="the source domain")
    p.add_argument("--base-channels", type=count, default=None,
                   help="a thinner ResNet: its base_channels (64 in the paper's); other families refuse it")
    p.add_argument("--shift", default="rotate", choices=SHIFTS,
                   help="how the target domain is made from the source (rotate: every image turned by 45 degrees)")
    p.add_argument("--source-only", action="store_true", help="train on the source alone (the baseline)")
    p.add_argument("--img-size", type=count, default=32)
    p.add_argument("--epochs", type=count, default=15)
    p.add_argument("--max-steps", type=count, default=None)
    p.add_argument("--batch-size", type=count, default=64, help="source images per batch (and as many target images)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw", "adam"])
    p.add_argument("--lr", type=positive, default=0.01, help="mu_0, annealed as mu_0 / (1 + 10 p)^0.75")
    p.add_argument("--momentum", type=bounded(float, 0, 1), default=0.9)
    p.add_argument("--weight-decay", type=non_negative, default=5e-4)
    p.add_argument("--gamma", type=positive, default=10.0, help="lambda_p = 2 / (1 + exp(-gamma p)) - 1")
    p.add_argument("--domain-weight", type=non_negative, default=1.0, help="weight of the domain loss")
    p.add_argument("--domain-hidden", type=count, default=1024,
                   help="width of the domain classifier's two hidden layers")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--seed", type=bounded(int, 0, 2**32 - 1), default=0)
    p.add_argument("--deterministic", action="store_true")
    p.add_argument("--output-dir", default=None)
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last.pt")
    p.add_argument("--save-model", default=None, help="save the adapted classifier (the backbone) with save_pretrained")
    p.add_argument("--no-progress", action="store_true")
    return p


def _stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs), torch.as_tensor(ys)


def build_domains(img_size: int, shift: str, seed: int = 0):
    """(source ImageData, target training images, target test set) on the vision recipe's digits split."""
    from zoo.vision.data import load_digits

    data = load_digits(img_size)
    mean, std = data.mean[0], data.std[0]
    shifted = lambda x, s: (shift_images(x * std + mean, shift, seed=s) - mean) / std  # noqa: E731
    fit_x, _ = _stack(data.train)
    test_x, test_y = _stack(data.test)
    target_train = shifted(fit_x, seed)  # labels are not kept
    target_test = TensorDataset(shifted(test_x, seed + 1), test_y)
    return data, target_train, target_test


def run(args: argparse.Namespace) -> dict:
    """Train DANN (or the source-only baseline); returns the summary with the source and target test accuracy."""
    if args.model != "dann":
        raise InvalidConfigError(f"zoo.techniques.train runs dann, not {args.model!r}")
    data, target_train, target_test = build_domains(args.img_size, args.shift)
    seed_everything(args.seed, args.deterministic)
    width = {} if args.base_channels is None else {"base_channels": args.base_channels}
    net = create(args.backbone, num_classes=len(data.classes), in_chans=data.in_chans, **width)
    if not callable(getattr(net, "get_classifier", None)) or not isinstance(net.get_classifier(), torch.nn.Linear):
        raise InvalidConfigError(f"--backbone {args.backbone}: DANN needs an image classifier whose last layer is a "
                                 "Linear (get_classifier()), such as resnet18 or mobilenet_v3_small")
    net.pretrained_cfg, net.id2label = data.pretrained_cfg(), data.id2label()
    model = DANN(net, args.domain_hidden)
    config = TrainConfig(
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, drop_last=True,
        optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        amp=args.amp or "auto", device=args.device, seed=args.seed, deterministic=args.deterministic,
        output_dir=args.output_dir, resume=True if args.resume else None, progress=not args.no_progress,
        monitor="val/acc")
    train = DomainPairs(data.train, target_train, seed=args.seed)
    optimizer = optimizer_from_config(model, config)
    total = [1]  # the schedule's length, known once the trainer has sized the run
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: annealed_lr_factor(min(step / total[0], 1.0)))
    task = DANNTask(adapt=not args.source_only, domain_weight=args.domain_weight)
    trainer = Trainer(model, task, train, data.val, config, optimizer=optimizer, scheduler=scheduler,
                      callbacks=[DANNSchedule(args.gamma)])
    total[0] = trainer.total_steps
    what = "source only" if args.source_only else "DANN"
    if trainer.is_main:
        print(f"{what}, {args.backbone}: digits ({len(data.train)} labelled) -> digits shifted by {args.shift} "
              f"({len(target_train)} unlabelled; {len(target_test)} test)")
    start = time.perf_counter()
    trainer.fit()
    elapsed = time.perf_counter() - start
    metrics = {**trainer.evaluate(data.test, prefix="source"), **trainer.evaluate(target_test, prefix="target")}
    summary = {"method": "source_only" if args.source_only else "dann", "backbone": args.backbone, "shift": args.shift,
               "seed": args.seed, **{k: round(v, 4) for k, v in metrics.items() if k.endswith("acc")},
               "train_seconds": round(elapsed, 1)}
    if trainer.is_main:
        print(f"{what}: source test accuracy {100 * metrics['source/acc']:.2f}%, "
              f"target test accuracy {100 * metrics['target/acc']:.2f}%")
        print(json.dumps(summary))
        if args.save_model:
            from zoo.shared.weights import save_pretrained

            save_pretrained(trainer.eval_model.net, args.save_model)
            print(f"saved the classifier to {args.save_model}")
    return summary


def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
