"""Train a BiLSTM-CRF named-entity tagger on CoNLL-2003 (English).

    python -m zoo.nlp.train --model bilstm_crf --data ../shared/data/conll2003 --seeds 3
    zoo train bilstm_cnn_crf --data ../shared/data/conll2003 --scheme bioes --save-model tagger/

Trains on eng.train, picks the epoch with the best span F1 on eng.testa and reports eng.testb
(overall and per type). The data folder is ``--data``, else ``$ZOO_DATA/conll2003``, else the zoo
cache's ``data/conll2003``. Vocabularies come from the training sentences only (digits to 0);
with ``--word-vectors`` the words of testa/testb that the vectors cover are added too (the
papers' convention). Words seen once in training become UNK with probability ``--unk-replace``
(Lample et al.: 0.5). Defaults follow Ma & Hovy: SGD, lr 0.015, momentum 0.9, batch 10, gradient
norm clipped at 5.

``build_parser()`` (the options), ``run(args)`` (does the work, returns the summary), ``main(argv)``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from zoo.shared.atomic import write_json
from zoo.shared.data_paths import data_root
from zoo.shared.errors import DatasetError
from zoo.shared.factory import create
from zoo.shared.registry import get_entry
from zoo.shared.training import LossSum, Task, TrainConfig, Trainer, is_main_process
from zoo.shared.weights import save_pretrained

from .bilstm_crf import encode_batch, vocab_config
from .conll import read_conll, spans
from .metrics import Score, SpanScores
from .vocab import Vocab, build_vocabs

MODELS = ("bilstm_crf", "bilstm_cnn_crf")
SPLITS = {"train": "eng.train", "val": "eng.testa", "test": "eng.testb"}
SCHEMES = {"iob2": "IOB2", "bioes": "BIOES"}


class TaggedSentences(Dataset):
    """Sentences as (tokens, tag ids, sentence lengths); batches are encoded by :class:`Collate`.

    ``context`` > 0 packs consecutive sentences of one document into sequences of at most that many
    tokens (a longer sentence stays alone): the BiLSTM then reads each sentence with its neighbours,
    and the CRF runs over the whole sequence. Scores are still counted sentence by sentence.
    """

    def __init__(self, sentences, tags: Vocab, context: int = 0):
        self.items = [([w for s in group for w in s.words], tags.encode([t for s in group for t in s.tags]),
                       [len(s) for s in group]) for group in context_groups(sentences, context)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def context_groups(sentences, context: int = 0) -> list[list]:
    """Consecutive sentences of the same document in groups of at most ``context`` tokens
    (one sentence a group when ``context`` is 0, or when a sentence alone is longer)."""
    groups: list[list] = []
    size = 0
    for s in sentences:
        if groups and context > 0 and s.doc == groups[-1][-1].doc and size + len(s) <= context:
            groups[-1].append(s)
            size += len(s)
        else:
            groups.append([s])
            size = len(s)
    return groups


class Collate:
    """``(words, chars, mask, tags, starts)``; ``starts`` marks the first token of each sentence."""

    def __init__(self, words: Vocab, chars: Vocab):
        self.words, self.chars = words, chars

    def __call__(self, items):
        words, chars, mask = encode_batch([tokens for tokens, *_ in items], self.words, self.chars)
        tags = torch.zeros_like(words)
        starts = torch.zeros_like(mask, dtype=torch.bool)
        for i, (_, ids, *lengths) in enumerate(items):
            tags[i, : len(ids)] = torch.tensor(ids)
            offsets = [0]
            for n in (lengths[0] if lengths else [len(ids)])[:-1]:
                offsets.append(offsets[-1] + n)
            starts[i, offsets] = True
        return words, chars, mask, tags, starts


class TaggingTask(Task):
    """CRF negative log-likelihood per sentence; evaluation sums span counts per entity type."""

    monitor = ("val/f1", "max")

    def __init__(self, tags: Vocab, singletons: list[int] = (), unk_replace: float = 0.0):
        self.tags = tags
        self.types = sorted({t[2:] for t in tags.tokens if t != "O"})
        self.singletons = torch.tensor(sorted(singletons), dtype=torch.long)
        self.unk_replace = unk_replace

    @staticmethod
    def sentences(batch) -> int:
        """How many sentences a batch holds (a row may pack several: see ``TaggedSentences``)."""
        starts = batch[4] if len(batch) > 4 else None
        return len(batch[0]) if starts is None else int(starts.sum())

    def training_step(self, model, batch):
        words, chars, mask, tags = batch[:4]
        if self.unk_replace > 0 and len(self.singletons):  # Lample et al.: singletons -> UNK
            single = torch.isin(words, self.singletons.to(words.device))
            drop = single & (torch.rand(words.shape, device=words.device) < self.unk_replace)
            words = words.masked_fill(drop, 1)  # 1: UNK
        return LossSum(-model(words, chars, mask, tags).sum(), self.sentences(batch))

    def evaluation_step(self, model, batch):
        words, chars, mask, tags = batch[:4]
        emissions = model.features(words, chars, mask)
        loss = -model.crf(emissions, tags, mask=mask, reduction="sum")
        sums = {"loss": loss, "count": self.sentences(batch), **self.zero_counts()}
        lengths = mask.sum(-1).tolist()
        starts = batch[4] if len(batch) > 4 else None  # None: each row is one sentence
        for row, (path, gold, n) in enumerate(zip(model.crf.decode(emissions, mask=mask), tags.tolist(), lengths)):
            cuts = (starts[row, :n].nonzero().flatten().tolist() if starts is not None else [0]) + [n]
            for a, b in zip(cuts, cuts[1:]):  # spans sentence by sentence, as the files count them
                self.count_spans(sums, path[a:b], gold[a:b])
        return sums

    def zero_counts(self) -> dict:
        return {f"{key}/{t}": 0 for key in ("gold", "predicted", "correct") for t in self.types}

    def count_spans(self, sums: dict, predicted: list[int], gold: list[int]) -> None:
        """Add one sentence's gold, predicted and correct entity spans per type to ``sums``."""
        p = set(spans(self.tags.decode(predicted)))
        g = set(spans(self.tags.decode(gold)))
        for key, found in (("gold", g), ("predicted", p), ("correct", g & p)):
            for type_, _, _ in found:
                sums[f"{key}/{type_}"] += 1

    def scores(self, sums: dict) -> SpanScores:
        # as zoo.nlp.metrics.span_scores: the types found in the gold or the predicted tags
        per_type = {t: Score.from_counts(int(sums[f"correct/{t}"]), int(sums[f"predicted/{t}"]),
                                         int(sums[f"gold/{t}"]))
                    for t in self.types if sums[f"gold/{t}"] or sums[f"predicted/{t}"]}
        total = [sum(int(sums[f"{k}/{t}"]) for t in self.types) for k in ("correct", "predicted", "gold")]
        return SpanScores(Score.from_counts(*total), per_type)

    def compute_metrics(self, sums):
        s = self.scores(sums)
        out = {"loss": sums["loss"] / max(sums["count"], 1), "f1": s.f1, "precision": s.overall.precision,
               "recall": s.overall.recall}
        out.update({f"f1_{t}": s.per_type[t].f1 if t in s.per_type else 0.0 for t in self.types})
        return out


def load_conll2003(folder: Path, scheme: str, limit: int | None = None) -> dict[str, list]:
    missing = [name for name in SPLITS.values() if not (folder / name).is_file()]
    if missing:
        raise DatasetError(f"{folder}: no {', '.join(missing)}; pass --data DIR holding eng.train, eng.testa "
                           "and eng.testb (or set $ZOO_DATA so that $ZOO_DATA/conll2003 holds them)")
    data = {split: read_conll(folder / name, "ner", scheme=scheme) for split, name in SPLITS.items()}
    if limit:
        data = {k: v[:limit] for k, v in data.items()}
    return data


def scheme_tags(seen: Vocab, scheme: str) -> Vocab:
    """Every tag of the scheme for each entity type seen in training (a type whose one-token
    entities never occur in training still gets its ``S-`` tag), and ``O``."""
    types = sorted({t[2:] for t in seen.tokens if t != "O"})
    prefixes = "BI" if scheme == "IOB2" else "BIES"
    return Vocab("tag", sorted(["O", *(f"{p}-{t}" for t in types for p in prefixes)]))


def _check_types(data: dict, tags: Vocab) -> None:
    for split in ("val", "test"):
        unknown = sorted({t for s in data[split] for t in s.tags} - set(tags.tokens))
        if unknown:
            raise DatasetError(f"{SPLITS[split]} holds tags of entity types that eng.train lacks: {unknown}")


def _vector_words(path: str) -> set[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return {line.split(" ", 1)[0] for line in f}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zoo.nlp.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bilstm_crf", choices=MODELS)
    p.add_argument("--data", default=None, help="folder of eng.train / eng.testa / eng.testb")
    p.add_argument("--scheme", choices=sorted(SCHEMES), default="iob2", help="tag scheme the CRF learns")
    p.add_argument("--epochs", type=int, default=30, help="about 50 s each for bilstm_crf on one CPU core")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="sgd")
    p.add_argument("--lr", type=float, default=0.015)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--clip-grad-norm", type=float, default=5.0, help="0: no clipping")
    p.add_argument("--dropout", type=float, default=None, help="the model's default: 0.5")
    p.add_argument("--hidden-dim", type=int, default=None, help="BiLSTM size per direction (model default)")
    p.add_argument("--char-hidden-dim", type=int, default=None, help="character features per direction")
    p.add_argument("--scheduler", choices=["constant", "cosine"], default="constant",
                   help="learning rate over the run: constant, or cosine decay to 0")
    p.add_argument("--context", type=int, default=0,
                   help="pack consecutive sentences of a document into sequences of up to this many tokens "
                        "(0: one sentence at a time)")
    p.add_argument("--word-dim", type=int, default=None,
                   help="the model's default: 100 (match --word-vectors)")
    p.add_argument("--case-dim", type=int, default=None,
                   help="embed each word's casing (lower/UPPER/Title/...) with this width (default 0: off)")
    p.add_argument("--variational-dropout", action="store_true",
                   help="one dropout mask per sentence around the BiLSTM, not one per token")
    p.add_argument("--unk-replace", type=float, default=0.5, help="training singletons -> UNK with this p")
    p.add_argument("--lowercase", action="store_true", help="lowercase the word vocabulary")
    p.add_argument("--word-vectors", default=None, help="GloVe / word2vec text file (optional)")
    p.add_argument("--pretrain-word-vectors", action="store_true",
                   help="initialise the word embeddings with skip-gram vectors trained on eng.train's text "
                        "(gensim; written to word2vec.txt in the run's output folder)")
    p.add_argument("--ema-decay", type=float, default=None,
                   help="evaluate, select and save an exponential moving average of the weights (e.g. 0.999)")
    p.add_argument("--patience", type=int, default=None, help="epochs without val F1 gain before stopping")
    p.add_argument("--limit", type=int, default=None,
                   help="use the first N sentences of each file (smoke runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1,
                   help="runs with seeds seed..seed+N-1; reports mean +- std")
    p.add_argument("--device", default="auto")
    p.add_argument("--output-dir", default=None, help="metrics.csv, curves.png, last.pt/best.pt (resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    p.add_argument("--save-model", default=None, help="save_pretrained directory of the first seed's tagger")
    p.add_argument("--no-progress", action="store_true")
    return p


def train_one(args, data, vocabs, seed: int, output_dir: str | None) -> tuple:
    words, chars, tags = vocabs
    torch.manual_seed(seed)
    options = {k: getattr(args, k) for k in ("dropout", "word_dim", "hidden_dim", "char_hidden_dim", "case_dim")
               if getattr(args, k) is not None}
    if args.variational_dropout:
        options["variational_dropout"] = True
    model = create(args.model, num_words=len(words), num_chars=len(chars), num_tags=len(tags),
                   vocab=vocab_config(words, chars, tags), **options)
    if args.word_vectors:
        _load_vectors(model, args.word_vectors, words)
    if args.pretrain_word_vectors:  # skip-gram on eng.train's own words, a fresh set for each seed
        from .word2vec import train_word_vectors

        with tempfile.TemporaryDirectory(prefix="zoo-word2vec-") as tmp:
            path = train_word_vectors([s.words for s in data["train"]], Path(output_dir or tmp) / "word2vec.txt",
                                      model.word_embed.embedding_dim, lowercase=words.lowercase, zeros=words.zeros,
                                      seed=seed)
            _load_vectors(model, path, words)
    config = TrainConfig(
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, eval_batch_size=64,
        optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        scheduler=args.scheduler, clip_grad_norm=args.clip_grad_norm or None, device=args.device, seed=seed,
        output_dir=output_dir, resume=True if args.resume else None, progress=not args.no_progress,
        early_stopping_patience=args.patience if args.patience is not None else args.epochs,  # restores best
        tensorboard=False, ema_decay=args.ema_decay,
    )
    task = TaggingTask(tags, words.singletons(), args.unk_replace)
    collate = Collate(words, chars)
    trainer = Trainer(model, task, TaggedSentences(data["train"], tags, args.context),
                      TaggedSentences(data["val"], tags, args.context), config, collate_fn=collate)
    result = trainer.fit()
    sums = _eval_sums(trainer.eval_model, task, TaggedSentences(data["test"], tags, args.context), collate,
                      trainer.device)
    return trainer.eval_model, result, task.scores(sums)  # eval_model: the EMA weights under --ema-decay


def _load_vectors(model, path, words: Vocab) -> None:
    coverage = model.load_pretrained_vectors(path)
    print(f"pretrained vectors cover {100 * coverage:.1f}% of the {len(words) - 2} words ({Path(path).name})")


def _eval_sums(model, task, dataset, collate, device) -> dict:
    """The task's span counts over ``dataset`` (the per-type table needs the counts, which
    ``Trainer.evaluate`` turns into rates)."""
    model, sums = model.eval(), {}
    loader = DataLoader(dataset, batch_size=64, collate_fn=collate)
    with torch.no_grad():
        for batch in loader:
            for k, v in task.evaluation_step(model, task.to_device(batch, device)).items():
                sums[k] = sums.get(k, 0.0) + float(v)
    return sums


def run(args: argparse.Namespace) -> dict:
    """Train ``args.seeds`` taggers; returns the summary (also results.json in --output-dir)."""
    if args.model not in MODELS:
        get_entry(args.model)  # an unknown name: the registry's suggestions
        from . import train_g2p, train_gpt

        others = ", ".join([*train_g2p.MODELS, *train_gpt.MODELS, "bert* (masked-LM pretraining)"])
        raise SystemExit(f"zoo.nlp.train trains the taggers {', '.join(MODELS)} (and {others} through their "
                         f"recipes); {args.model} has no recipe yet")
    folder = data_root("conll2003", args.data)
    data = load_conll2003(folder, SCHEMES[args.scheme], args.limit)
    vocabs = build_vocabs(data["train"], lowercase=args.lowercase)
    vocabs = (*vocabs[:2], scheme_tags(vocabs[2], SCHEMES[args.scheme]))
    _check_types(data, vocabs[2])
    if args.word_vectors:  # the papers' convention: dev/test words enter only when the vectors cover them
        covered = _vector_words(args.word_vectors)
        extra = [w for split in ("val", "test") for s in data[split] for w in s.words
                 if w in covered or w.lower() in covered]
        print(f"vocabulary: {vocabs[0].extend(extra)} testa/testb words added (covered by the vectors)")
    print(f"{args.model} on {folder}: {', '.join(f'{len(v)} {k}' for k, v in data.items())} sentences, "
          f"{len(vocabs[0])} words, {len(vocabs[1])} chars, tags {vocabs[2].tokens}")
    start = time.perf_counter()
    runs = seed_runs(args, lambda seed, out: train_one(args, data, vocabs, seed, out))
    summary = {"model": args.model, "scheme": args.scheme, "data": str(folder),
               **seed_summary(args.model, runs), "seconds": round(time.perf_counter() - start, 1)}
    if args.output_dir and is_main_process():
        write_json(Path(args.output_dir) / "results.json", summary)
    return summary


def seed_runs(args, train_one) -> list[dict]:
    """``args.seeds`` runs with seeds ``args.seed``, ``args.seed + 1``, ...: ``train_one(seed, output_dir)``
    returns ``(model, trainer result, eng.testb SpanScores)``; each run's scores are printed, the first
    seed's model saved with ``--save-model``. Shared by the tagging recipes (this one, zoo.nlp.finetune)."""
    runs = []
    for i in range(args.seeds):
        seed = args.seed + i
        out = None
        if args.output_dir:
            out = str(Path(args.output_dir) / f"seed{seed}") if args.seeds > 1 else args.output_dir
        t0 = time.perf_counter()
        model, result, test = train_one(seed, out)
        best = result["best"]
        runs.append({"seed": seed, "val_f1": best["value"], "best_epoch": best["epoch"], "test_f1": test.f1,
                     "test": test.as_dict(), "seconds": round(time.perf_counter() - t0, 1)})
        val = (f"eng.testa {100 * best['value']:.2f}, best epoch {best['epoch']}" if best["value"] is not None
               else "no eng.testa evaluation: stopped before the first epoch ended")
        print(f"seed {seed}: eng.testb F1 {100 * test.f1:.2f} ({val})\n{test.table()}", flush=True)
        if args.save_model and i == 0 and is_main_process():
            save_pretrained(model, args.save_model)
    return runs


def seed_summary(name: str, runs: list[dict]) -> dict:
    """Mean +- std of eng.testb F1 over the runs, overall and per type (printed, and returned)."""
    f1s = [100 * r["test_f1"] for r in runs]
    mean, std = statistics.mean(f1s), statistics.stdev(f1s) if len(f1s) > 1 else 0.0
    types = sorted({t for r in runs for t in r["test"]["per_type"]})
    per_type = {}
    for t in types:
        values = [100 * r["test"]["per_type"].get(t, {"f1": 0.0})["f1"] for r in runs]
        per_type[t] = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
    print(f"{name}: eng.testb F1 {mean:.2f} +- {std:.2f} over {len(runs)} seed(s); "
          + ", ".join(f"{t} {m:.2f} +- {s:.2f}" for t, (m, s) in per_type.items()))
    return {"seeds": len(runs), "test_f1_mean": round(mean, 2), "test_f1_std": round(std, 2),
            "test_f1_per_type": {t: [round(m, 2), round(s, 2)] for t, (m, s) in per_type.items()}, "runs": runs}


def recipe_module(name: str):
    """The module whose recipe trains ``name``: this one for the taggers, ``zoo.nlp.train_g2p`` for
    the G2P Transformers, ``zoo.nlp.train_gpt`` for the character-level GPT (the CLI asks too)."""
    from . import train_g2p, train_gpt

    for module in (train_g2p, train_gpt):
        if name in module.MODELS:
            return module
    from . import train_mlm

    if train_mlm.is_bert(name):  # zoo train bert_mini --text FILE: masked-LM pretraining
        return train_mlm
    return sys.modules[__name__]


def main(argv=None) -> int:
    """``zoo train NAME`` for every nlp model with a recipe: the taggers here, the G2P Transformers
    and the character-level GPT in their own modules."""
    argv = list(sys.argv[1:] if argv is None else argv)
    picker = argparse.ArgumentParser(add_help=False)  # --model as the recipes' parsers read it
    picker.add_argument("--model", default=MODELS[0])
    recipe = recipe_module(picker.parse_known_args(argv)[0].model)
    if recipe is not sys.modules[__name__]:
        return recipe.main(argv)
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
