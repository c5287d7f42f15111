"""Fine-tune a pretrained vision model on new classes.

    zoo finetune resnet18 --pretrained runs/digits04/ --classes 5-9 --strategy full
    python -m zoo.vision.finetune --model vit_small_patch16_224 --pretrained vit.safetensors \\
        --data ~/flowers --num-classes 102 --strategy llrd --layer-decay 0.75

The new head comes from the registry: ``create(name, pretrained=..., num_classes=N)`` drops the
checkpoint's classifier and reports it. Strategies:

  linear   linear probe: only the new head trains; the backbone is frozen, BatchNorm statistics too
  full     every parameter trains at the same learning rate
  llrd     layer-wise learning-rate decay: the k-th group from the top trains at lr * decay**k
  gradual  gradual unfreezing: the head first, then one more stage from the top every
           --unfreeze-every epochs (frozen stages keep their BatchNorm statistics)

Groups come from the model's own depth: the stem, then each stage (ResNet ``layerN``) or block
(ViT ``blocks.N``, MobileNetV3 ``features.N``), then the head.

The recipe's shape is ``zoo.vision.train``'s: ``build_parser()``, ``run(args)`` returning the summary,
``main(argv)``.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from zoo.shared.errors import InvalidConfigError
from zoo.shared.registry import get_entry, reset_classifier
from zoo.shared.training import Callback
from zoo.shared.training.optim import build_optimizer, decay_groups

from . import train as recipe

STRATEGIES = ("linear", "full", "llrd", "gradual")
_STAGE = re.compile(r"^((?:blocks|features)\.\d+|layer\d+)\.")


def depth_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names grouped from input to output: stem, one group per stage/block, head."""
    entry = get_entry(model.zoo_name)
    head_prefixes = entry.classifier
    stem, stages, head = [], {}, []
    for name, _ in model.named_parameters():
        match = _STAGE.match(name)
        if any(name == p or name.startswith(p + ".") for p in head_prefixes):
            head.append(name)
        elif match:
            stages.setdefault(match.group(1), []).append(name)
        elif stages:
            head.append(name)  # after the last stage: final norm, classifier hidden layers
        else:
            stem.append(name)
    return [g for g in [stem, *stages.values(), head] if g]


def finetune_optimizer(model: nn.Module, groups: list[list[str]], strategy: str, lr: float, weight_decay: float,
                       layer_decay: float, optimizer: str) -> torch.optim.Optimizer:
    params = dict(model.named_parameters())
    param_groups = []
    for depth_from_top, names in enumerate(reversed(groups)):
        scale = layer_decay ** depth_from_top if strategy == "llrd" else 1.0
        param_groups += decay_groups([params[n] for n in names], weight_decay, lr=lr * scale)
    if strategy == "linear":
        head = set(groups[-1])
        param_groups = [dict(g, params=[p for p in g["params"] if any(p is params[n] for n in head)])
                        for g in param_groups]
        param_groups = [g for g in param_groups if g["params"]]
    return build_optimizer(param_groups, name=optimizer, lr=lr, weight_decay=weight_decay)


def set_trainable(model: nn.Module, groups: list[list[str]], top_groups: int) -> None:
    """Train only the ``top_groups`` groups nearest the output; freeze the rest."""
    trainable = {n for g in groups[len(groups) - top_groups:] for n in g}
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)


def _keep_frozen_norms_in_eval(model: nn.Module) -> None:
    """A BatchNorm whose parameters are all frozen normalises with its running statistics and
    does not update them, whatever mode the trainer puts the model in."""

    def pre_hook(module, args):
        if not any(p.requires_grad for p in module.parameters(recurse=False)):
            module.train(False)

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_pre_hook(pre_hook)


class GradualUnfreezing(Callback):
    """At each epoch start, unfreeze one more group from the top every ``every`` epochs."""

    def __init__(self, groups: list[list[str]], every: int):
        self.groups, self.every = groups, every

    def on_epoch_start(self, trainer) -> None:
        n = min(len(self.groups), 1 + trainer.state.epoch // self.every)
        set_trainable(trainer.model, self.groups, n)


def build_parser():
    p = recipe.build_parser("zoo finetune NAME / python -m zoo.vision.finetune", __doc__)
    p.add_argument("--num-classes", type=recipe.bounded(int, 1), default=None,
                   help="classes of the new head (default: the data's)")
    p.add_argument("--strategy", default="full", choices=STRATEGIES)
    p.add_argument("--layer-decay", type=recipe.bounded(float, 0, 1, above=True), default=0.75,
                   help="llrd: lr multiplier per group from the top")
    p.add_argument("--unfreeze-every", type=recipe.bounded(int, 1), default=1,
                   help="gradual: epochs between unfreezing steps")
    p.add_argument("--keep-head", action="store_true",
                   help="keep the checkpoint's classifier when it already has --num-classes outputs")
    return p


def run(args) -> dict:
    """Fine-tune ``args.pretrained`` on ``args.data`` with ``args.strategy``; returns the summary."""
    if not args.pretrained:
        raise InvalidConfigError(
            "zoo finetune needs --pretrained (a file, a save_pretrained directory or hf-hub:org/name)")
    data, model, config = recipe.setup(args, num_classes=args.num_classes)
    head = get_entry(model.zoo_name).classifier
    if not args.keep_head and not any(k.startswith(head) for k in model.load_report.reinitialized):
        # same number of classes as the checkpoint, but new classes: the old head means nothing here
        reset_classifier(model, model.num_classes)
        model.load_report.notes.append("classifier re-initialised for the new classes (--keep-head keeps it)")
    if model.load_report.notes:
        print("loaded", args.pretrained, "-", "; ".join(model.load_report.notes))
    groups = depth_groups(model)
    lr = config.lr
    optimizer = finetune_optimizer(model, groups, args.strategy, lr, config.weight_decay, args.layer_decay,
                                args.optimizer)
    callbacks = []
    if args.strategy == "linear":
        set_trainable(model, groups, 1)
    elif args.strategy == "gradual":
        callbacks.append(GradualUnfreezing(groups, args.unfreeze_every))
    if args.strategy in ("linear", "gradual"):
        _keep_frozen_norms_in_eval(model)
    return recipe.train_and_test(args, data, model, config, optimizer=optimizer, callbacks=callbacks)


def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
