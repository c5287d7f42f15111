"""Fine-tune a BERT encoder for entity tagging on CoNLL-2003 (Devlin et al. 2019, sec. 5.3).

    zoo finetune bert_mini --pretrained mlm/ --data ../shared/data/conll2003 --seeds 3
    zoo finetune bert_mini --pretrained mlm/ --scratch ...     # the same model from random weights
    python -m zoo.nlp.finetune --model bert_mini --pretrained mlm/ ...

``--pretrained`` is a folder with a BERT and its tokenizer: one written by ``zoo.nlp.train_mlm
--save-model`` or a Hugging Face BERT folder (``config.json``, weights, ``tokenizer.json`` or
``vocab.txt``). Its encoder is loaded strictly into a token classifier (a new linear layer over the
last hidden states); ``--scratch`` keeps the architecture and the tokenizer but starts the encoder
from random weights, which is the baseline that shows what pretraining is worth.

Each word is cut into word pieces; its tag is predicted at its first piece (the paper's choice,
the other pieces are not scored), with a softmax over the tags (no CRF). Sentences longer than the
position table are cut, and their cut-off words count as tagged ``O`` in the scores. Selection on
eng.testa span F1, report on eng.testb with the NLP I scorer (overall and per type).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from zoo.shared.atomic import write_json
from zoo.shared.cli_types import fraction, positive_int
from zoo.shared.data_paths import data_root
from zoo.shared.errors import InvalidConfigError
from zoo.shared.factory import create, from_pretrained
from zoo.shared.training import LossSum, TrainConfig, Trainer, is_main_process
from zoo.shared.weights import read_zoo_config

from .bert import BertModel
from .train import (SCHEMES, TaggingTask, _check_types, _eval_sums, load_conll2003, scheme_tags, seed_runs,
                    seed_summary)
from .train_mlm import IGNORE, is_bert
from .vocab import build_vocabs


class PieceSentences(Dataset):
    """CoNLL sentences as word pieces: ``(ids, labels, firsts, gold)`` per sentence, where ``labels``
    holds each word's tag id at its first piece (-100 elsewhere), ``firsts`` the first-piece
    positions of the words kept and ``gold`` the tag ids of every word."""

    def __init__(self, sentences, tags, tokenizer, max_len: int):
        sep = tokenizer.token_to_id("[SEP]")
        self.items = []
        for s, enc in zip(sentences, tokenizer.encode_batch([s.words for s in sentences], is_pretokenized=True)):
            ids, word_of = enc.ids, enc.word_ids
            if len(ids) > max_len:
                ids, word_of = ids[: max_len - 1] + [sep], word_of[: max_len - 1] + [None]
            gold = tags.encode(s.tags)
            firsts, seen = [], set()
            for pos, w in enumerate(word_of):
                if w is not None and w not in seen:
                    seen.add(w)
                    firsts.append(pos)
            labels = torch.full((len(ids),), IGNORE, dtype=torch.long)
            labels[firsts] = torch.tensor(gold[: len(firsts)], dtype=torch.long)
            self.items.append((torch.tensor(ids, dtype=torch.long), labels, firsts, gold))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def collate(items):
    ids = torch.nn.utils.rnn.pad_sequence([x[0] for x in items], batch_first=True, padding_value=0)
    labels = torch.nn.utils.rnn.pad_sequence([x[1] for x in items], batch_first=True, padding_value=IGNORE)
    return ids, labels, [x[2] for x in items], [x[3] for x in items]


class PieceTaggingTask(TaggingTask):
    """Softmax cross-entropy at the first piece of each word; span counts as :class:`TaggingTask`."""

    def training_step(self, model, batch):
        ids, labels = batch[:2]
        logits = model(ids, (ids != 0).long())
        scored = labels != IGNORE
        return LossSum(F.cross_entropy(logits[scored], labels[scored], reduction="sum"), int(scored.sum()))

    def evaluation_step(self, model, batch):
        ids, labels, firsts, golds = batch
        logits = model(ids, (ids != 0).long())
        scored = labels != IGNORE
        sums = {"loss": F.cross_entropy(logits[scored].float(), labels[scored], reduction="sum"),
                "count": int(scored.sum()), **self.zero_counts()}
        best = logits.argmax(-1).tolist()
        outside = self.tags.encode(["O"])[0]
        for row, (first, gold) in enumerate(zip(firsts, golds)):
            path = [best[row][p] for p in first] + [outside] * (len(gold) - len(first))  # cut words: O
            self.count_spans(sums, path, gold)
        return sums

    def batch_size(self, batch) -> int:
        return len(batch[0])


def load_encoder(spec: str, name: str):
    """The BERT encoder and the tokenizer of a folder: ``(BertModel, tokenizer)``."""
    from .hf import load_tokenizer

    folder = Path(spec)
    # a zoo folder rebuilds what it holds; a Hugging Face folder or hf-hub: id goes through the registry
    model = from_pretrained(folder) if folder.is_dir() and read_zoo_config(folder) else create(name, pretrained=spec)
    encoder = model if isinstance(model, BertModel) else getattr(model, "bert", None)
    if not isinstance(encoder, BertModel):
        raise InvalidConfigError(f"{spec} holds a {type(model).__name__}, not a BERT; fine-tuning for tagging "
                                 "needs a BERT encoder (a masked LM from zoo.nlp.train_mlm, or a Hugging Face BERT)")
    return encoder, load_tokenizer(folder)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zoo.nlp.finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bert_mini", help="the registered BERT the folder holds")
    p.add_argument("--pretrained", required=True, metavar="DIR",
                   help="a BERT folder with its tokenizer (zoo.nlp.train_mlm --save-model, or Hugging Face)")
    p.add_argument("--scratch", action="store_true",
                   help="random encoder weights (the folder gives the architecture and the tokenizer only)")
    p.add_argument("--data", default=None, help="folder of eng.train / eng.testa / eng.testb")
    p.add_argument("--scheme", choices=sorted(SCHEMES), default="iob2", help="tag scheme the classifier learns")
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--max-steps", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup-epochs", type=float, default=0.5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--dropout", type=fraction, default=None, help="classifier dropout (the model's: 0.1)")
    p.add_argument("--limit", type=positive_int, default=None, help="first N sentences of each file (smoke runs)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=positive_int, default=1, help="runs with seeds seed, seed+1, ...")
    p.add_argument("--device", default="auto")
    p.add_argument("--output-dir", default=None, help="metrics.csv, curves.png, last.pt (resume), results.json")
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    p.add_argument("--save-model", default=None, help="save_pretrained directory of the first seed's tagger")
    p.add_argument("--no-progress", action="store_true")
    return p


def build_tagger(args, num_tags: int, seed: int):
    """The token classifier over the folder's encoder (random weights with ``--scratch``) and the
    folder's tokenizer: ``(model, tokenizer)``."""
    encoder, tokenizer = load_encoder(args.pretrained, args.model)
    cfg = dict(vars(encoder.config))
    cfg.update(head="token", num_classes=num_tags)
    if args.dropout is not None:
        cfg["classifier_dropout"] = args.dropout
    torch.manual_seed(seed)
    model = create(args.model, **cfg)
    if not args.scratch:
        model.bert.load_state_dict(encoder.state_dict(), strict=True)
    return model, tokenizer


def train_one(args, data, tags, seed: int, output_dir: str | None):
    model, tokenizer = build_tagger(args, len(tags), seed)
    max_len = model.config.max_positions
    splits = {k: PieceSentences(v, tags, tokenizer, max_len) for k, v in data.items()}
    config = TrainConfig(
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, eval_batch_size=64,
        optimizer="adamw", lr=args.lr, weight_decay=args.weight_decay, scheduler="cosine",
        warmup_epochs=args.warmup_epochs, clip_grad_norm=1.0, device=args.device, seed=seed,
        output_dir=output_dir, resume=True if args.resume else None, progress=not args.no_progress,
        early_stopping_patience=args.epochs, tensorboard=False,  # keeps the best eng.testa epoch
    )
    task = PieceTaggingTask(tags)
    trainer = Trainer(model, task, splits["train"], splits["val"], config, collate_fn=collate)
    result = trainer.fit()
    sums = _eval_sums(trainer.eval_model, task, splits["test"], collate, trainer.device)
    return model, result, task.scores(sums)


def run(args: argparse.Namespace) -> dict:
    if not is_bert(args.model):
        raise SystemExit(f"zoo.nlp.finetune fine-tunes BERT encoders for tagging (bert_mini, ...), not {args.model}")
    if args.resume and not args.output_dir:
        raise SystemExit("--resume needs --output-dir: the folder of the run to continue")
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = data_root("conll2003", args.data)
    data = load_conll2003(folder, SCHEMES[args.scheme], args.limit)
    tags = scheme_tags(build_vocabs(data["train"])[2], SCHEMES[args.scheme])
    _check_types(data, tags)
    start_from = "random weights (--scratch)" if args.scratch else f"the encoder of {args.pretrained}"
    print(f"{args.model} tagger from {start_from}: {', '.join(f'{len(v)} {k}' for k, v in data.items())} "
          f"sentences, tags {tags.tokens}", flush=True)
    start = time.perf_counter()
    runs = seed_runs(args, lambda seed, out: train_one(args, data, tags, seed, out))
    name = f"{args.model} ({'scratch' if args.scratch else 'pretrained'})"
    summary = {"model": args.model, "pretrained": args.pretrained, "scratch": args.scratch, "scheme": args.scheme,
               **seed_summary(name, runs), "seconds": round(time.perf_counter() - start, 1)}
    if args.output_dir and is_main_process():
        write_json(Path(args.output_dir) / "results.json", summary)
    return summary


def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
