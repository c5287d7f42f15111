"""Train a spoken-digit classifier or a CTC recogniser on the Free Spoken Digit Dataset.

    python -m zoo.audio.train --model mel_cnn --data ../shared/data/fsdd/recordings --seeds 3
    zoo train m5 --data ../shared/data/fsdd/recordings --split speaker        # each speaker held out in turn
    zoo train mel_ctc --data ../shared/data/fsdd/recordings                   # spells the word, CER on test

Splits (:mod:`zoo.audio.fsdd`): ``official`` tests on recordings 0-4 of every speaker and digit
and trains on 5-49 (5-9 kept for validation); ``speaker`` trains on five speakers and tests on the
sixth, for every speaker in turn (``--held-out NAME`` for one). Training clips get a random gain,
a random place in the window (time shift) and, half of the time, noise at 10-40 dB SNR (white,
or clips from ``--noise-dir``); the models add SpecAugment. Classifiers see 1 s windows; the CTC
recogniser sees whole clips, padded per batch. The epoch with the best validation accuracy (CER
for CTC) is kept and evaluated on the test set.

In ``--output-dir`` (per seed / held-out speaker): metrics.csv, curves.png, last.pt / best.pt
(``--resume`` continues), confusion_matrix.png (classifiers) and results.json at the top.
The data folder is ``--data``, else ``$ZOO_DATA/fsdd``, else the zoo cache's ``data/fsdd``.

``build_parser()`` (the options), ``run(args)`` (does the work, returns the summary), ``main(argv)``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from zoo.shared.atomic import write_json
from zoo.shared.data_paths import data_root
from zoo.shared.errors import InvalidConfigError
from zoo.shared.factory import create
from zoo.shared.registry import get_entry
from zoo.shared.training import ClassificationTask, LossSum, Task, TrainConfig, Trainer, is_main_process
from zoo.shared.weights import save_pretrained

from .ctc import Alphabet, character_error_rate, ctc_loss, greedy_decode
from .fsdd import SAMPLE_RATE, WORDS, Augment, DigitClips, list_recordings, official_split, speaker_split
from .io import load_clips, pad_batch

CLASSIFIERS = ("mel_cnn", "m5")
RECOGNIZERS = ("mel_ctc",)


class CTCTask(Task):
    """CTC loss over characters; evaluation sums character edits and whole words right."""

    monitor = ("val/cer", "min")

    def __init__(self, alphabet: Alphabet):
        self.alphabet = alphabet

    def training_step(self, model, batch):
        waveforms, lengths, words = batch
        logits, frames = model(waveforms, lengths)
        targets = [self.alphabet.encode(w) for w in words]
        return ctc_loss(logits, frames, targets)

    def evaluation_step(self, model, batch):
        waveforms, lengths, words = batch
        logits, frames = model(waveforms, lengths)
        loss = ctc_loss(logits, frames, [self.alphabet.encode(w) for w in words])
        spelled = [self.alphabet.decode(p) for p in greedy_decode(logits, frames)]
        chars = sum(len(w) for w in words)
        return {"loss": loss * len(words), "count": len(words), "chars": chars,
                "edits": character_error_rate(spelled, words) * chars,
                "words": sum(s == w for s, w in zip(spelled, words))}

    def compute_metrics(self, sums):
        count = max(sums["count"], 1.0)
        return {"loss": sums["loss"] / count, "cer": sums["edits"] / max(sums["chars"], 1.0),
                "word_acc": sums["words"] / count}

    def batch_size(self, batch) -> int:
        return len(batch[2])


def collate_padded(items):
    """Whole clips padded to the longest in the batch, with their lengths and words."""
    waveforms, lengths = pad_batch([x for x, _ in items])
    return waveforms, lengths, [w for _, w in items]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zoo.audio.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mel_cnn", choices=CLASSIFIERS + RECOGNIZERS)
    p.add_argument("--data", default=None, help="FSDD's recordings folder ({digit}_{speaker}_{index}.wav)")
    p.add_argument("--model-arg", action="append", default=[], type=_model_arg, metavar="KEY=VALUE",
                   help="a model option, VALUE in JSON: --model-arg channels=[64,64,128,256] (repeatable)")
    p.add_argument("--split", choices=["official", "speaker"], default="official",
                   help="official: test = recordings 0-4; speaker: each speaker held out in turn")
    p.add_argument("--held-out", default=None, help="with --split speaker: only this speaker")
    p.add_argument("--epochs", type=int, default=None, help="default: 30")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None, help="AdamW peak learning rate; default 3e-3 (m5: 1e-2)")
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--clip-seconds", type=float, default=1.0, help="classifier window (crop / zero-pad)")
    p.add_argument("--noise-prob", type=float, default=0.5, help="share of training clips with noise mixed in")
    p.add_argument("--noise-dir", default=None, help="folder of background-noise audio files (default: white noise)")
    p.add_argument("--no-augment", action="store_true", help="no gain / shift / noise on training clips")
    p.add_argument("--limit", type=int, default=None, help="use the first N recordings of each split (smoke runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="runs with seeds seed..seed+N-1; reports mean +- std")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--output-dir", default=None, help="metrics.csv, curves.png, checkpoints, confusion_matrix.png")
    p.add_argument("--resume", action="store_true", help="continue the runs in --output-dir")
    p.add_argument("--save-model", default=None, help="save_pretrained directory of the first run's model")
    p.add_argument("--no-progress", action="store_true")
    return p


def _model_arg(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (VALUE in JSON), got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value  # a bare string


def save_confusion_matrix(preds, targets, classes, path, title: str = "") -> Path:
    """A confusion-matrix PNG (rows: true digit, columns: predicted) with counts in the cells."""
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    fig = Figure(figsize=(7, 7))
    ax = fig.add_subplot()
    ConfusionMatrixDisplay.from_predictions(targets, preds, labels=list(range(len(classes))), display_labels=classes,
                                            ax=ax, colorbar=False)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)


@torch.no_grad()
def predict(model, dataset, device, batch_size: int = 64) -> tuple[list[int], list[int]]:
    model.eval()
    preds, targets = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size):
        preds += model(x.to(device)).argmax(-1).tolist()
        targets += y.tolist()
    return preds, targets


def _defaults(args) -> tuple[int, float]:
    ctc = args.model in RECOGNIZERS
    epochs = args.epochs if args.epochs is not None else 30
    lr = args.lr if args.lr is not None else (1e-2 if args.model == "m5" else 3e-3)
    return epochs, lr


def train_one(args, splits: dict, clips: dict, seed: int, output_dir: str | None, noise) -> tuple:
    """One model trained on ``splits["train"]``; returns (model, fit result, test metrics, seconds)."""
    ctc = args.model in RECOGNIZERS
    epochs, lr = _defaults(args)
    torch.manual_seed(seed)
    alphabet = Alphabet()
    model = create(args.model, **{"num_classes": alphabet.num_labels if ctc else len(WORDS), **dict(args.model_arg)})
    augment = None if args.no_augment else Augment(noise_prob=args.noise_prob, noise=noise)
    length = None if ctc else round(args.clip_seconds * SAMPLE_RATE)
    data = {split: DigitClips(splits[split], length, augment if split == "train" else None, clips=clips[split])
            for split in ("train", "val", "test")}
    config = TrainConfig(
        epochs=epochs, max_steps=args.max_steps, batch_size=args.batch_size, eval_batch_size=64, optimizer="adamw",
        lr=lr, weight_decay=args.weight_decay, scheduler="cosine", warmup_epochs=args.warmup_epochs,
        clip_grad_norm=5.0 if ctc else None, device=args.device, seed=seed, output_dir=output_dir,
        resume=True if args.resume else None, progress=not args.no_progress, tensorboard=False,
        early_stopping_patience=epochs,  # never stops early; restores the best validation epoch
    )
    task = CTCTask(alphabet) if ctc else ClassificationTask(topk=(1,))
    collate = collate_padded if ctc else None
    t0 = time.perf_counter()
    trainer = Trainer(model, task, data["train"], data["val"], config, collate_fn=collate)
    result = trainer.fit()
    seconds = time.perf_counter() - t0
    test = trainer.evaluate(data["test"], prefix="test")
    if not ctc and output_dir and trainer.is_main:
        preds, targets = predict(trainer.eval_model, data["test"], trainer.device)
        save_confusion_matrix(preds, targets, WORDS, Path(output_dir) / "confusion_matrix.png",
                              f"{args.model} on FSDD test ({len(targets)} clips), acc {100 * test['test/acc']:.2f}%")
    return model, result, test, seconds, len(data["train"])


def _runs(args, recordings) -> list[tuple[str, dict]]:
    if args.split == "official":
        if args.held_out:
            raise InvalidConfigError("--held-out goes with --split speaker")
        return [("official", official_split(recordings))]
    speakers = [args.held_out] if args.held_out else sorted({r.speaker for r in recordings})
    return [(speaker, speaker_split(recordings, speaker)) for speaker in speakers]


def run(args: argparse.Namespace) -> dict:
    """Train ``args.seeds`` models per split (each held-out speaker is a split); returns the summary."""
    if args.model not in CLASSIFIERS + RECOGNIZERS:
        get_entry(args.model)  # an unknown name: the registry's suggestions
        raise SystemExit(f"zoo.audio.train trains {', '.join(CLASSIFIERS + RECOGNIZERS)}, not {args.model}")
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = data_root("fsdd", args.data)
    recordings = list_recordings(folder)
    paths = {r.path: w for r, w in zip(recordings, load_clips([r.path for r in recordings], SAMPLE_RATE))}
    noise = load_clips(sorted(p for p in Path(args.noise_dir).iterdir() if p.is_file()), SAMPLE_RATE) \
        if args.noise_dir else ()
    metric = "cer" if args.model in RECOGNIZERS else "acc"
    print(f"{args.model} on {folder}: {len(recordings)} recordings, "
          f"{len({r.speaker for r in recordings})} speakers, split {args.split}")
    runs, start = [], time.perf_counter()
    for split_name, splits in _runs(args, recordings):
        if args.limit:
            splits = {k: v[:: max(len(v) // args.limit, 1)][: args.limit] for k, v in splits.items()}
        clips = {k: [paths[r.path] for r in v] for k, v in splits.items()}
        for i in range(args.seeds):
            seed = args.seed + i
            out = None
            if args.output_dir:
                parts = ([split_name] if args.split == "speaker" else []) + ([f"seed{seed}"] if args.seeds > 1 else [])
                out = str(Path(args.output_dir, *parts))
            model, result, test, seconds, n_train = train_one(args, splits, clips, seed, out, noise)
            value = test[f"test/{metric}"]
            best = result["best"]
            runs.append({"split": split_name, "seed": seed, f"test_{metric}": value,
                         **{k: v for k, v in test.items() if k != f"test/{metric}"},
                         "val": best["value"], "best_epoch": best["epoch"], "seconds": round(seconds, 1),
                         "clips_per_second": round(n_train * result["epochs"] / seconds, 1)})
            print(f"{split_name} seed {seed}: test {metric} {100 * value:.2f}% (val {100 * (best['value'] or 0):.2f}% "
                  f"at epoch {best['epoch']}), {seconds:.0f} s", flush=True)
            if args.save_model and not (len(runs) - 1) and is_main_process():
                save_pretrained(model, args.save_model)
    values = [100 * r[f"test_{metric}"] for r in runs]
    mean, std = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
    per_split = {}
    for name in dict.fromkeys(r["split"] for r in runs):
        v = [100 * r[f"test_{metric}"] for r in runs if r["split"] == name]
        per_split[name] = [round(statistics.mean(v), 2), round(statistics.stdev(v), 2) if len(v) > 1 else 0.0]
    summary = {"model": args.model, "split": args.split, "data": str(folder), "metric": metric,
               f"test_{metric}_mean": round(mean, 2), f"test_{metric}_std": round(std, 2), "per_split": per_split,
               "runs": runs, "seconds": round(time.perf_counter() - start, 1)}
    print(f"{args.model}: test {metric} {mean:.2f} +- {std:.2f}% over {len(runs)} run(s)"
          + ("; " + ", ".join(f"{k} {m:.2f}" for k, (m, _) in per_split.items()) if len(per_split) > 1 else ""))
    if args.output_dir and is_main_process():
        write_json(Path(args.output_dir) / "results.json", summary)
    return summary


def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
