"""Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
Network", arXiv:1503.02531), with optional feature distillation (FitNets, Romero et al. 2015).

    zoo distill --teacher runs/r18/ --student mobilenet_v3_small --temperature 4 --alpha 0.9
    zoo distill --teacher runs/r18/ --student resnet18 --student-width 16 --feature-layers layer3:layer3
    python -m zoo.techniques.distill --help

The student learns from the teacher's *soft targets*, its class probabilities at temperature T
(softmax(z / T)), and from the hard labels:

    loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

The T^2 keeps the soft term's gradient the same size as T changes (the gradient of the soft term
scales as 1 / T^2; section 2 of the paper). ``--feature-layers s:t`` adds ``beta * MSE(adapter(s), t)``
between the student's module ``s`` and the teacher's module ``t``: a 1x1 convolution (feature maps)
or a linear layer (vectors) maps the student's channels to the teacher's, and a student map of
another size is resized to the teacher's by bilinear interpolation. The adapters train with the
student and are dropped at the end.

The loop is the shared Trainer: :class:`DistillationTask` turns a batch into the loss above, and
:class:`Distiller` holds the student, the frozen teacher (always in eval mode) and the adapters.
The data, split and options are those of ``zoo.vision.train`` (``--data digits`` by default); the
final student is written with ``save_pretrained`` (``--save-model``) as its registered
architecture, usable by ``zoo predict`` / ``zoo finetune``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from zoo.shared.errors import InvalidConfigError
from zoo.shared.training import ClassificationTask, Trainer
from zoo.shared.factory import from_pretrained
from zoo.shared.weights import save_pretrained

__all__ = ["kd_loss", "FeatureAdapter", "Distiller", "DistillationTask", "build_parser", "run", "main"]


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Hinton's distillation loss, the batch mean of
    ``alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, targets)``."""
    if temperature <= 0:
        raise InvalidConfigError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise InvalidConfigError(f"alpha must be in [0, 1], got {alpha}")
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    soft = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits.float(), targets)
    return alpha * temperature ** 2 * soft + (1.0 - alpha) * hard


class FeatureAdapter(nn.Module):
    """Maps a student feature (``(N, C_s, H, W)`` or ``(N, C_s)``) to the teacher's channels and size."""

    def __init__(self, student_channels: int, teacher_channels: int, spatial: bool):
        super().__init__()
        self.spatial = spatial
        self.proj = (nn.Conv2d(student_channels, teacher_channels, 1) if spatial
                     else nn.Linear(student_channels, teacher_channels))

    def forward(self, x: torch.Tensor, size: tuple[int, ...] | None = None) -> torch.Tensor:
        x = self.proj(x)
        if self.spatial and size is not None and tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x


def _capture(module: nn.Module, name: str, store: dict, key: str):
    """A forward hook that keeps the output of ``module``'s submodule ``name`` in ``store[key]``."""
    modules = dict(module.named_modules())
    if name not in modules:
        close = [n for n in modules if n and (n.startswith(name) or name in n)][:8]
        raise InvalidConfigError(f"--feature-layers: the {key} has no module {name!r}"
                                 + (f"; close names: {', '.join(close)}" if close else
                                    f"; its top-level modules: {', '.join(n for n, _ in module.named_children())}"))
    target = modules[name]
    while isinstance(target, nn.Sequential) and len(target):
        target = target[-1]  # a stage may be run block by block (checkpoint_seq): its output is its last block's
    return target.register_forward_hook(lambda m, args, out: store.__setitem__(key, out))


class Distiller(nn.Module):
    """The student (trained), the teacher (frozen, eval mode) and one adapter per feature pair.

    ``forward(x)`` is the student's logits, so evaluation measures the student alone;
    :meth:`distill_forward` also runs the teacher and returns what the loss needs.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, feature_pairs: list[tuple[str, str]] = (),
                 example: torch.Tensor | None = None):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.feature_pairs = list(feature_pairs)
        self._feats: dict[str, torch.Tensor] = {}
        self.adapters = nn.ModuleList()
        for i, (s_name, t_name) in enumerate(self.feature_pairs):
            _capture(student, s_name, self._feats, f"student:{i}")
            _capture(teacher, t_name, self._feats, f"teacher:{i}")
        if self.feature_pairs:
            if example is None:
                raise ValueError("feature distillation needs an example input to size the adapters")
            with torch.no_grad():
                was = student.training
                student.eval()
                student(example), teacher(example)
                student.train(was)
            for i in range(len(self.feature_pairs)):
                missing = [who for who in ("student", "teacher") if f"{who}:{i}" not in self._feats]
                if missing:
                    raise InvalidConfigError(f"--feature-layers {':'.join(self.feature_pairs[i])}: the {missing[0]}'s "
                                             "module is not called in its forward; name one that runs")
                s, t = self._feats[f"student:{i}"], self._feats[f"teacher:{i}"]
                if s.dim() != t.dim() or s.dim() not in (2, 4):
                    raise InvalidConfigError(
                        f"--feature-layers {':'.join(self.feature_pairs[i])}: the student's output has shape "
                        f"{tuple(s.shape)} and the teacher's {tuple(t.shape)}; pick two feature maps (N, C, H, W) "
                        "or two vectors (N, C)")
                self.adapters.append(FeatureAdapter(s.shape[1], t.shape[1], spatial=s.dim() == 4))
            self._feats.clear()

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # its BatchNorm statistics and dropout stay as trained
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.student(x)
        self._feats.clear()  # a plain forward keeps no features alive
        return out

    def distill_forward(self, x: torch.Tensor):
        """(student logits, teacher logits, [(adapted student feature, teacher feature), ...])."""
        self._feats.clear()
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        student_logits = self.student(x)
        pairs = []
        for i, adapter in enumerate(self.adapters):
            t = self._feats[f"teacher:{i}"].detach()
            pairs.append((adapter(self._feats[f"student:{i}"], t.shape[-2:] if t.dim() == 4 else None), t))
        self._feats.clear()
        return student_logits, teacher_logits, pairs


class DistillationTask(ClassificationTask):
    """Training loss: :func:`kd_loss` plus ``beta`` x the features' MSE; evaluation: the student's
    accuracy and cross-entropy (the classification task's)."""

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9, beta: float = 1.0):
        super().__init__()
        kd_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), temperature, alpha)  # checks
        self.temperature, self.alpha, self.beta = temperature, alpha, beta

    def training_step(self, model, batch):
        inputs, targets = batch[0], batch[1]
        distiller = model.module if hasattr(model, "module") else model  # DDP wraps it
        student_logits, teacher_logits, pairs = distiller.distill_forward(inputs)
        loss = kd_loss(student_logits, teacher_logits, targets, self.temperature, self.alpha)
        for student_feat, teacher_feat in pairs:
            loss = loss + self.beta * F.mse_loss(student_feat.float(), teacher_feat.float())
        return loss


# ------------------------------------------------------------------------------------------------
# The recipe
# ------------------------------------------------------------------------------------------------


def _feature_pair(text: str) -> tuple[str, str]:
    s, sep, t = text.partition(":")
    if not sep or not s or not t:
        raise argparse.ArgumentTypeError(f"expected STUDENT_MODULE:TEACHER_MODULE such as layer3:layer3, got {text!r}")
    return s, t


def build_parser() -> argparse.ArgumentParser:
    from zoo.vision import train as vtrain

    p = vtrain.build_parser("zoo distill", __doc__)
    p.set_defaults(model=None)
    for action in p._actions:
        if action.dest in ("model", "pretrained"):  # the student is --student, trained from scratch
            action.help = argparse.SUPPRESS
    p.add_argument("--teacher", required=True, help="the trained teacher: a save_pretrained directory (--save-model)")
    p.add_argument("--student", required=True, help="registered model name of the student (zoo list --domain vision)")
    p.add_argument("--student-width", type=vtrain.bounded(int, 1), default=None,
                   help="a thinner student: ResNet base_channels (64 in the paper's ResNet)")
    p.add_argument("--temperature", type=vtrain.bounded(float, 0, above=True), default=4.0,
                   help="softmax temperature T of the soft targets")
    p.add_argument("--alpha", type=vtrain.bounded(float, 0, 1), default=0.9,
                   help="weight of the soft-target term (1 - alpha: the hard labels); 0 trains the student alone")
    p.add_argument("--feature-layers", type=_feature_pair, action="append", default=[], metavar="S:T",
                   help="also match the student's module S to the teacher's module T (MSE through an adapter); "
                        "repeatable")
    p.add_argument("--feature-weight", type=vtrain.bounded(float, 0), default=1.0,
                   help="beta, the weight of each feature-matching term")
    return p


def run(args: argparse.Namespace) -> dict:
    """Distil ``args.teacher`` into a fresh ``args.student`` on ``args.data``; returns the summary:
    the student's test metrics, the teacher's, and their speeds (images/s, same run)."""
    from zoo.vision import train as vtrain

    if args.pretrained:
        raise InvalidConfigError("zoo distill trains the student from scratch; --pretrained is not used "
                                 "(the teacher comes from --teacher)")
    teacher = from_pretrained(args.teacher)
    args.model = args.student
    data, student, config = vtrain.setup(args)
    if args.student_width is not None:
        from zoo.shared.factory import create

        torch.manual_seed(args.seed)
        cfg = student.pretrained_cfg, getattr(student, "id2label", None)
        student = create(args.student, num_classes=student.num_classes, in_chans=data.in_chans,
                         base_channels=args.student_width)
        student.pretrained_cfg = cfg[0]
        if cfg[1] is not None:
            student.id2label = cfg[1]
    n_out = getattr(teacher, "num_classes", None)
    if n_out != len(data.classes) or getattr(teacher, "in_chans", data.in_chans) != data.in_chans:
        raise InvalidConfigError(
            f"the teacher {args.teacher} has {n_out} classes and {getattr(teacher, 'in_chans', '?')} input channels; "
            f"{data.name} has {len(data.classes)} classes and {data.in_chans} channels: train the teacher on the "
            "same data (python -m zoo.vision.train --data ... --save-model DIR)")
    example = data.train[0][0].unsqueeze(0)
    distiller = Distiller(student, teacher, args.feature_layers, example=example)
    task = DistillationTask(args.temperature, args.alpha, args.feature_weight)
    trainer = Trainer(distiller, task, data.train, data.val, config)
    if trainer.is_main:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        print(f"distilling {args.teacher} ({count(teacher):,} params) into {args.student} ({count(student):,} params) "
              f"on {data.name}: T={args.temperature}, alpha={args.alpha}, features={args.feature_layers or 'none'}")
    start = time.perf_counter()
    trainer.fit()
    elapsed = time.perf_counter() - start
    metrics = trainer.evaluate(data.test, prefix="test")
    final = trainer.eval_model  # the Distiller (EMA copy when EMA evaluates)
    preds, targets = vtrain.predict(teacher, data.test, trainer.device)
    teacher_metrics = {"teacher/acc": (preds == targets).float().mean().item()}
    speed = {f"{k}_images_per_s": round(v, 1)
             for k, v in measure_speed({"student": final.student, "teacher": teacher}, example, trainer.device).items()}
    summary = {"student": args.student, "teacher": args.teacher, "data": data.name,
               "temperature": args.temperature, "alpha": args.alpha,
               **{k: round(v, 4) for k, v in metrics.items()}, **{k: round(v, 4) for k, v in teacher_metrics.items()},
               **speed, "speed_ratio": round(speed["student_images_per_s"] / speed["teacher_images_per_s"], 2),
               "train_seconds": round(elapsed, 1)}
    if trainer.is_main:
        print(f"student test accuracy: {100 * metrics['test/acc']:.2f}% "
              f"(teacher {100 * teacher_metrics['teacher/acc']:.2f}%); "
              f"student {summary['speed_ratio']}x the teacher's images/s")
        print(json.dumps(summary))
        if args.save_model:
            save_pretrained(final.student, args.save_model)
            print(f"saved the student to {args.save_model}")
    return summary


@torch.no_grad()
def measure_speed(models: dict[str, nn.Module], example: torch.Tensor, device, batch_size: int = 256,
                  repeats: int = 5) -> dict[str, float]:
    """Inference images/s of each model on one batch of ``batch_size`` copies of ``example``, timed
    alternately (model A, model B, A, B, ...) so a change in machine load hits both; best of ``repeats``."""
    batch = example.expand(batch_size, *example.shape[1:]).contiguous().to(device)
    best = {name: float("inf") for name in models}
    for name, m in models.items():
        m.eval()
        m(batch)  # warm-up
    for _ in range(repeats):
        for name, m in models.items():
            start = time.perf_counter()
            m(batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: batch_size / t for name, t in best.items()}


def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
