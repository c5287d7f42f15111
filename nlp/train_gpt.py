"""Character-level GPT on Tiny Shakespeare, on the shared Trainer.

nanoGPT's configuration for a CPU (4 layers, 4 heads, 128 wide, context 64, batch 12, 2000
iterations, AdamW with 100 warm-up steps and cosine decay to a tenth of the peak, beta2 0.99, weight
decay 0.1, clipping at 1.0, no dropout), with the peak learning rate 5e-3 rather than nanoGPT's
1e-3: chosen with ``--dev`` (1e-3, 2e-3, 3e-3, 5e-3 gave dev losses 1.854, 1.768, 1.707, 1.703),
never on the validation text. The text is split 90/10 by position; the vocabulary is
every character of the file (65). Training windows are drawn without replacement from every offset
of the training text; the validation loss is the mean over a fixed, seeded set of validation
windows. A sample is printed at the end.

    python -m zoo.nlp.train_gpt --data ../shared/data/tinyshakespeare        # zoo train gpt_char
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from zoo.shared.atomic import write_json
from zoo.shared.data_paths import data_root
from zoo.shared.errors import DatasetError
from zoo.shared.factory import create
from zoo.shared.training import Task, TrainConfig, Trainer, is_main_process
from zoo.shared.weights import save_pretrained

MODELS = ("gpt_char",)


class CharVocab:
    """Characters <-> ids, in sorted order (nanoGPT's ``stoi`` / ``itos``)."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise DatasetError(f"characters {unknown[:10]} are not in the vocabulary of the training text")
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


class Windows(Dataset):
    """Every window of ``block`` tokens with its next-token targets: item i is (x[i:i+T], x[i+1:i+T+1])."""

    def __init__(self, ids: torch.Tensor, block: int):
        if len(ids) <= block:
            raise DatasetError(f"a text of {len(ids)} characters holds no window of {block} + 1")
        self.ids, self.block = ids, block

    def __len__(self) -> int:
        return len(self.ids) - self.block

    def __getitem__(self, i: int):
        chunk = self.ids[i:i + self.block + 1]
        return chunk[:-1], chunk[1:]


class LanguageModelTask(Task):
    """Next-token cross-entropy; ``val/loss`` is the mean over tokens (and ``val/ppl`` its exp).
    ``logits_of(model, x)`` reads the logits (a model that returns an output object needs one)."""

    monitor = ("loss", "min")

    def __init__(self, logits_of=None):
        self.logits_of = logits_of or (lambda model, x: model(x))

    def training_step(self, model, batch):
        x, y = batch
        logits = self.logits_of(model, x)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten())

    def evaluation_step(self, model, batch):
        x, y = batch
        logits = self.logits_of(model, x)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum")
        return {"loss": loss, "count": y.numel()}

    def compute_metrics(self, sums):
        loss = sums["loss"] / max(sums["count"], 1)
        return {"loss": loss, "ppl": math.exp(min(loss, 50.0))}


def load_text(folder: Path) -> str:
    path = folder / "input.txt" if folder.is_dir() else folder
    if not path.is_file():
        raise DatasetError(f"no Tiny Shakespeare text at {path}: pass --data the folder holding input.txt "
                           "(https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
                           "input.txt) or set $ZOO_DATA")
    return path.read_text(encoding="utf-8")


def build_data(text: str, block: int, eval_windows: int, seed: int = 1337, dev: bool = False):
    """The vocabulary, the training windows and a fixed sample of validation windows (90/10 split).

    ``dev``: for tuning, the last stretch of the training text, as long as the validation text, is
    held out and evaluated in its place; the validation text is then neither trained on nor read.
    """
    vocab = CharVocab(text)
    ids = vocab.encode(text)
    cut = int(0.9 * len(ids))
    train_ids, val_ids = ids[:cut], ids[cut:]
    if dev:
        cut = len(train_ids) - len(val_ids)
        train_ids, val_ids = train_ids[:cut], train_ids[cut:]
    train, val = Windows(train_ids, block), Windows(val_ids, block)
    if eval_windows and eval_windows < len(val):
        pick = torch.randperm(len(val), generator=torch.Generator().manual_seed(seed))[:eval_windows]
        val = Subset(val, pick.sort().values.tolist())
    return vocab, train, val


def train_config(args) -> TrainConfig:
    return TrainConfig(
        epochs=1, max_steps=args.max_steps, batch_size=args.batch_size, eval_batch_size=256,
        optimizer="adamw", lr=args.lr, weight_decay=0.1, beta1=0.9, beta2=0.99, scheduler="cosine",
        warmup_steps=args.warmup_steps, min_lr=args.lr / 10 if args.min_lr is None else args.min_lr,
        clip_grad_norm=1.0, device=args.device,
        seed=args.seed, output_dir=args.output_dir, resume=True if args.resume else None,
        eval_every_steps=args.eval_every, eval_every_epochs=None, progress=not args.no_progress,
        tensorboard=False, plot=args.output_dir is not None, log_every=100,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zoo.nlp.train_gpt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gpt_char", help="a registered GPT-2-family model (gpt_char)")
    p.add_argument("--data", default=None, help="folder holding input.txt (else $ZOO_DATA/tinyshakespeare)")
    p.add_argument("--block-size", type=int, default=64, help="context length")
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--embed-dim", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--max-steps", type=int, default=2000, help="optimizer steps (nanoGPT's max_iters)")
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--lr", type=float, default=5e-3, help="peak learning rate (nanoGPT's: 1e-3)")
    p.add_argument("--min-lr", type=float, default=None, help="the cosine's floor (default: lr / 10)")
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=None, help="also evaluate every N steps (a curve)")
    p.add_argument("--eval-windows", type=int, default=4000,
                   help="validation windows in the fixed evaluation sample (0: all ~111k)")
    p.add_argument("--dev", action="store_true",
                   help="tuning: train on the training text less its last tenth of the file and evaluate "
                        "on that tenth (the validation text stays unseen)")
    p.add_argument("--sample-chars", type=int, default=300, help="characters to sample at the end (0: none)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default="auto")
    p.add_argument("--output-dir", default=None, help="metrics.csv, curves.png, last.pt (resume), results.json")
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    p.add_argument("--save-model", default=None, help="save_pretrained directory for the trained model")
    p.add_argument("--no-progress", action="store_true")
    return p


def build_model(args, vocab_size: int):
    return create(args.model, vocab_size=vocab_size, max_positions=args.block_size, embed_dim=args.embed_dim,
                  num_layers=args.num_layers, num_heads=args.num_heads, resid_dropout=args.dropout,
                  embed_dropout=args.dropout, attention_dropout=args.dropout)


def sample(model, vocab: CharVocab, chars: int, seed: int, block: int) -> str:
    """nanoGPT's sample.py: from a newline, temperature 0.8, top-k 200, sliding the context window."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    ids = vocab.encode("\n").to(device)[None]
    out = []
    while len(out) < chars:
        step = min(chars - len(out), block - 1)
        context = ids[:, -(block - step):]
        new = model.generate(context, max_new_tokens=step, do_sample=True, temperature=0.8, top_k=200,
                             generator=g)[:, context.shape[1]:]
        out += new[0].tolist()
        ids = torch.cat([ids, new], 1)
    return vocab.decode(out)


def run(args: argparse.Namespace) -> dict:
    """Train, evaluate, sample; returns the summary (also results.json in --output-dir)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = data_root("tinyshakespeare", args.data)
    text = load_text(folder)
    vocab, train, val = build_data(text, args.block_size, args.eval_windows, dev=args.dev)
    torch.manual_seed(args.seed)
    model = build_model(args, len(vocab))
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {params / 1e6:.2f}M parameters, {len(vocab)} characters, {len(train):,} training / "
          f"{len(val):,} validation windows of {args.block_size}", flush=True)
    start = time.perf_counter()
    result = Trainer(model, LanguageModelTask(), train, val, train_config(args)).fit()
    seconds = time.perf_counter() - start
    final = result["history"][-1]
    summary = {"model": args.model, "data": str(folder), "split": "dev" if args.dev else "val",
               "steps": result["steps"], "params": params,
               "val_loss": round(final["val/loss"], 4), "train_loss": round(final["train/loss"], 4),
               "seconds": round(seconds, 1), "threads": torch.get_num_threads()}
    print(f"step {result['steps']}: {summary['split']} loss {final['val/loss']:.4f}, "
          f"train loss {final['train/loss']:.4f}, {seconds:.1f} s on {torch.get_num_threads()} thread(s)")
    if args.sample_chars:
        summary["sample"] = sample(model, vocab, args.sample_chars, args.seed, args.block_size)
        print("sample:\n" + summary["sample"])
    if args.save_model and is_main_process():
        save_pretrained(model, args.save_model)
        (Path(args.save_model) / "vocab.json").write_text(json.dumps(vocab.chars) + "\n")
    if args.output_dir and is_main_process():
        write_json(Path(args.output_dir) / "results.json", summary)
    return summary


def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
