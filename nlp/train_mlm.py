"""Masked-LM pretraining of a BERT on a text file, on the shared Trainer (Devlin et al. 2019, sec. 3.1).

    python -m zoo.nlp.train_mlm --model bert_mini --text corpus.txt --output-dir runs/mlm
    python -m zoo.nlp.train_mlm --model bert_mini --from-conll ../shared/data/conll2003/eng.train ...
    zoo train bert_mini --text corpus.txt --save-model mlm/

Each non-empty line of the text is one example (``--from-conll`` takes the words of a CoNLL file,
one sentence a line, and drops its tags). Without ``--tokenizer``, a WordPiece vocabulary of
``--vocab-size`` pieces is learned from the training lines with the ``tokenizers`` library (cased by
default: entity tagging needs the case; ``--lowercase`` for an uncased one). Masking: 15% of the
word pieces (never [CLS] / [SEP] / padding) are chosen; of those, 80% become [MASK], 10% a random
piece and 10% stay as they were; the loss is the cross-entropy on the chosen pieces alone. Training
examples are masked afresh every time they are drawn (dynamic masking, as RoBERTa; BERT masked
each example 10 fixed ways); the held-out lines (``--val-fraction``, the last lines of the file)
are masked once, with a fixed seed, so every evaluation scores the same pieces.

The model and its tokenizer are written with ``--save-model DIR`` (``config.json``,
``model.safetensors``, ``tokenizer.json``): ``zoo finetune bert_mini --pretrained DIR --data
conll2003`` fine-tunes its encoder for entity tagging (``zoo.nlp.finetune``).

``build_parser()`` (the options), ``run(args)`` (does the work, returns the summary), ``main(argv)``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from zoo.shared.atomic import write_json
from zoo.shared.cli_types import fraction, positive_int
from zoo.shared.errors import DatasetError, InvalidConfigError
from zoo.shared.factory import create
from zoo.shared.training import LossSum, Task, TrainConfig, Trainer, is_main_process
from zoo.shared.weights import save_pretrained

from .conll import read_conll

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # [PAD] is id 0: BERT's pad_token_id
IGNORE = -100  # the label of a piece that is not scored


def is_bert(name: str) -> bool:
    return name == "bert" or name.startswith("bert_")


# ------------------------------------------------------------------------------------------------
# text and tokenizer
# ------------------------------------------------------------------------------------------------

def read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"no text file at {path}: pass --text a UTF-8 file with one example per line")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = [line for line in lines if line]
    if len(lines) < 2:
        raise DatasetError(f"{path} holds {len(lines)} non-empty line(s); pretraining needs at least two "
                           "(one to train on, one to hold out)")
    return lines


def conll_lines(path: Path) -> list[str]:
    """The sentences of a CoNLL file as lines of words; the tags are not read into the result."""
    return [" ".join(s.words) for s in read_conll(path)]


def train_tokenizer(lines: list[str], vocab_size: int, lowercase: bool = False):
    """A BERT-style WordPiece tokenizer learned from ``lines`` (``[CLS] text [SEP]`` on encoding)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, strip_accents=lowercase, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                        continuing_subword_prefix="##", show_progress=False)
    tok.train_from_iterator(lines, trainer=trainer, length=len(lines))
    ids = {t: tok.token_to_id(t) for t in SPECIALS}
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    return tok


def special_ids(tokenizer) -> dict[str, int]:
    ids = {t: tokenizer.token_to_id(t) for t in SPECIALS}
    missing = [t for t, i in ids.items() if i is None]
    if missing:
        raise InvalidConfigError(f"the tokenizer has no {', '.join(missing)} token; masked-LM pretraining "
                                 f"needs {', '.join(SPECIALS)}")
    if ids["[PAD]"] != 0:
        raise InvalidConfigError(f"the tokenizer's [PAD] is id {ids['[PAD]']}; BERT pads with id 0")
    return ids


# ------------------------------------------------------------------------------------------------
# masking
# ------------------------------------------------------------------------------------------------

def mask_tokens(ids: torch.Tensor, special: torch.Tensor, mask_id: int, vocab_size: int,
                probability: float = 0.15, generator: torch.Generator | None = None):
    """BERT's masking of a batch ``ids (B, T)``: returns ``(inputs, labels)``.

    Each piece that is not ``special`` (a bool tensor like ``ids``: [CLS], [SEP], padding) is chosen
    with ``probability``; a chosen piece becomes ``mask_id`` with probability 0.8, a random piece
    with 0.1, and stays with 0.1. ``labels`` holds the original id at the chosen pieces, -100 elsewhere.
    """
    def draw(p: float) -> torch.Tensor:
        return torch.rand(ids.shape, generator=generator, device=ids.device) < p

    chosen = draw(probability) & ~special
    labels = ids.masked_fill(~chosen, IGNORE)
    to_mask = chosen & draw(0.8)
    to_random = chosen & ~to_mask & draw(0.5)  # half of the remaining 20%
    random_ids = torch.randint(len(SPECIALS), vocab_size, ids.shape, generator=generator, device=ids.device)
    inputs = ids.masked_fill(to_mask, mask_id)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, labels


class Lines(Dataset):
    """Tokenised lines, each truncated to ``max_len`` pieces (its [SEP] kept)."""

    def __init__(self, lines: list[str], tokenizer, max_len: int):
        sep = tokenizer.token_to_id("[SEP]")
        self.items = []
        for enc in tokenizer.encode_batch(lines):
            ids = enc.ids
            if len(ids) > max_len:
                ids = ids[: max_len - 1] + [sep]
            self.items.append(torch.tensor(ids, dtype=torch.long))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.items[i]


def pad(items: list[torch.Tensor]) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(items, batch_first=True, padding_value=0)


def collate(items):
    """Training lines -> padded ids ``(B, T)``; masked held-out lines -> ``(inputs, labels)``."""
    if isinstance(items[0], torch.Tensor):
        return pad(items)
    labels = torch.nn.utils.rnn.pad_sequence([y for _, y in items], batch_first=True, padding_value=IGNORE)
    return pad([x for x, _ in items]), labels


class MaskedVal(Dataset):
    """Held-out lines masked once with a fixed seed: ``(inputs, labels)`` per line."""

    def __init__(self, lines: Lines, specials: dict[str, int], vocab_size: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for ids in lines.items:
            special = torch.isin(ids, torch.tensor(list(specials.values())))
            inputs, labels = mask_tokens(ids[None], special[None], specials["[MASK]"], vocab_size, generator=g)
            self.items.append((inputs[0], labels[0]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


class MaskedLMTask(Task):
    """Cross-entropy on the masked pieces; ``val/loss`` per masked piece and ``val/accuracy``."""

    monitor = ("loss", "min")

    def __init__(self, specials: dict[str, int], vocab_size: int, probability: float = 0.15):
        self.special = torch.tensor(sorted(specials.values()))
        self.mask_id, self.vocab_size, self.probability = specials["[MASK]"], vocab_size, probability

    @staticmethod
    def scored_logits(model, inputs: torch.Tensor, labels: torch.Tensor):
        """The masked LM's logits at the scored pieces alone ``(N, vocab)`` and their labels ``(N,)``:
        the encoder runs over every piece, the vocabulary projection (a third of a small BERT's
        work) only where the loss looks."""
        hidden = model.bert.forward_features(inputs, (inputs != 0).long())
        scored = labels != IGNORE
        return model.cls(hidden[scored]), labels[scored]

    def training_step(self, model, batch):
        ids = batch
        special = torch.isin(ids, self.special.to(ids.device))
        inputs, labels = mask_tokens(ids, special, self.mask_id, self.vocab_size, self.probability)
        logits, targets = self.scored_logits(model, inputs, labels)
        return LossSum(F.cross_entropy(logits, targets, reduction="sum"), len(targets))

    def evaluation_step(self, model, batch):
        logits, targets = self.scored_logits(model, *batch)
        loss = F.cross_entropy(logits.float(), targets, reduction="sum")
        correct = (logits.argmax(-1) == targets).sum()
        return {"loss": loss, "correct": correct, "count": len(targets)}

    def compute_metrics(self, sums):
        n = max(sums["count"], 1)
        return {"loss": sums["loss"] / n, "accuracy": sums["correct"] / n}

    def batch_size(self, batch) -> int:
        return len(batch[0]) if isinstance(batch, (tuple, list)) else len(batch)


# ------------------------------------------------------------------------------------------------
# the recipe
# ------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zoo.nlp.train_mlm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bert_mini", help="a registered BERT (bert_tiny, bert_mini, bert_small, ...)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", default=None, help="a UTF-8 text file, one example per line")
    src.add_argument("--from-conll", default=None, metavar="FILE",
                     help="a CoNLL file whose words (not tags) are the text, one sentence a line")
    p.add_argument("--tokenizer", default=None, help="a tokenizer.json to use instead of learning one")
    p.add_argument("--vocab-size", type=positive_int, default=8000, help="WordPiece vocabulary to learn")
    p.add_argument("--lowercase", action="store_true", help="learn an uncased vocabulary")
    p.add_argument("--max-len", type=positive_int, default=128, help="pieces per example, [CLS]/[SEP] included")
    p.add_argument("--max-positions", type=positive_int, default=256, help="the model's position table")
    p.add_argument("--mask-probability", type=fraction, default=0.15)
    p.add_argument("--val-fraction", type=fraction, default=0.05, help="last lines held out for val/loss")
    p.add_argument("--epochs", type=positive_int, default=20)
    p.add_argument("--max-steps", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--output-dir", default=None, help="metrics.csv, curves.png, last.pt (resume), results.json")
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    p.add_argument("--save-model", default=None, help="directory for config.json, model.safetensors, tokenizer.json")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace) -> dict:
    if not is_bert(args.model):
        raise SystemExit(f"zoo.nlp.train_mlm pretrains BERT models (bert_tiny, bert_mini, ...), not {args.model}")
    if args.resume and not args.output_dir:
        raise SystemExit("--resume needs --output-dir: the folder of the run to continue")
    if args.threads:
        torch.set_num_threads(args.threads)
    source = Path(args.text or args.from_conll)
    lines = read_lines(source) if args.text else conll_lines(source)
    cut = len(lines) - max(1, round(args.val_fraction * len(lines)))
    if args.tokenizer:
        from .hf import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer)
    else:
        tokenizer = train_tokenizer(lines[:cut], args.vocab_size, args.lowercase)
    specials = special_ids(tokenizer)
    vocab_size = tokenizer.get_vocab_size()
    max_len = min(args.max_len, args.max_positions)
    train, val_lines = Lines(lines[:cut], tokenizer, max_len), Lines(lines[cut:], tokenizer, max_len)
    val = MaskedVal(val_lines, specials, vocab_size, seed=args.seed)
    torch.manual_seed(args.seed)
    model = create(args.model, head="mlm", vocab_size=vocab_size, max_positions=args.max_positions)
    params = sum(p.numel() for p in model.parameters())
    pieces = sum(len(x) for x in train.items)
    print(f"{args.model} masked LM: {params / 1e6:.2f}M parameters, vocabulary {vocab_size}, {len(train):,} "
          f"training lines ({pieces:,} pieces), {len(val):,} held out, from {source}", flush=True)
    config = TrainConfig(
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, eval_batch_size=128,
        optimizer="adamw", lr=args.lr, weight_decay=args.weight_decay, beta2=0.98, scheduler="cosine",
        warmup_epochs=args.warmup_epochs, clip_grad_norm=1.0, device=args.device, seed=args.seed,
        output_dir=args.output_dir, resume=True if args.resume else None, progress=not args.no_progress,
        tensorboard=False,
    )
    start = time.perf_counter()
    result = Trainer(model, MaskedLMTask(specials, vocab_size, args.mask_probability), train, val, config,
                     collate_fn=collate).fit()
    seconds = time.perf_counter() - start
    final = result["history"][-1]
    summary = {"model": args.model, "text": str(source), "vocab_size": vocab_size, "params": params,
               "steps": result["steps"], "val_loss": round(final["val/loss"], 4),
               "val_ppl": round(math.exp(min(final["val/loss"], 50.0)), 2),
               "val_accuracy": round(final["val/accuracy"], 4), "seconds": round(seconds, 1)}
    print(f"masked LM after {result['steps']} steps: val loss {summary['val_loss']:.4f} (ppl {summary['val_ppl']}), "
          f"masked-piece accuracy {100 * summary['val_accuracy']:.2f}%, {seconds:.0f} s")
    if args.save_model and is_main_process():
        save_pretrained(model, args.save_model)
        tokenizer.save(str(Path(args.save_model) / "tokenizer.json"))
        print(f"saved the masked LM and its tokenizer to {args.save_model}")
    if args.output_dir and is_main_process():
        write_json(Path(args.output_dir) / "results.json", summary)
    return summary


def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
