"""CoNLL-2003 quality of the BiLSTM-CRF recipe: eng.testb span F1 over seeds, as an ablation table.

    .venv/bin/python benchmarks/ner_quality.py --data ../shared/data/conll2003                 # every variant, 3 seeds
    .venv/bin/python benchmarks/ner_quality.py --data ../shared/data/conll2003 --only word2vec --seeds 3

Each variant is a set of ``zoo.nlp.train`` options (no external word vectors in any of them; ``word2vec``
pretrains its own on eng.train's text); the table gives the eng.testb F1 mean +- std (overall and per
type), the eng.testa F1 that picked the epoch, and the wall time of one run. The yardsticks are the
papers' own figures without pretrained embeddings: Lample et al. 2016, LSTM-CRF with random embeddings
83.63; Ma & Hovy 2016, BiLSTM-CNN-CRF with random embeddings 80.76.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.nlp import train  # noqa: E402

# name -> (what changes, zoo.nlp.train options); each variant extends the one it names (a later
# option wins, as argparse reads them)
ADAM = ["--optimizer", "adam", "--lr", "0.002", "--batch-size", "32", "--scheduler", "cosine", "--scheme", "bioes"]
ADAM200 = [*ADAM, "--hidden-dim", "200", "--char-hidden-dim", "50", "--epochs", "25"]
LOWERCASE = [*ADAM200, "--lowercase"]
VARIANTS = {
    "sgd": ("Ma & Hovy optimiser: SGD lr 0.015 momentum 0.9, batch 10, constant LR, IOB2",
            ["--optimizer", "sgd", "--lr", "0.015", "--batch-size", "10", "--scheme", "iob2"]),
    "adam": ("Adam lr 0.002, batch 32, cosine decay, BIOES", ADAM),
    "adam200": ("as adam, BiLSTM 200 and char-BiLSTM 50 per direction, 25 epochs", ADAM200),
    "ema": ("as adam200, selecting and evaluating an EMA of the weights (decay 0.999)",
            [*ADAM200, "--ema-decay", "0.999"]),
    "lowercase": ("as adam200, words lowercased (the characters keep the case)", LOWERCASE),
    "casing": ("as lowercase, plus a 10-wide embedding of each word's casing (lower, UPPER, Title, mIxed, "
               "numeric, other)", [*LOWERCASE, "--case-dim", "10"]),
    "variational": ("as lowercase, with one dropout mask per sentence around the word BiLSTM (variational "
                    "dropout) instead of one per token", [*LOWERCASE, "--variational-dropout"]),
    "word2vec": ("as lowercase, the word embeddings initialised with skip-gram vectors trained on eng.train's own "
                 "text (gensim, 100-wide, rescaled to std 1): the README's recipe",
                 [*LOWERCASE, "--pretrain-word-vectors"]),
    "context": ("as adam, with the neighbouring sentences of the document (sequences of up to 100 tokens, "
                "batch 8 of them)", [*ADAM, "--batch-size", "8", "--context", "100"]),
}
PAPERS = {"Lample et al. 2016, LSTM-CRF, random embeddings": 83.63,
          "Ma & Hovy 2016, BiLSTM-CNN-CRF, random embeddings": 80.76}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="folder of eng.train / eng.testa / eng.testb")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30, help="for the variants that do not set their own")
    p.add_argument("--only", default=None, help=f"comma-separated variants of {', '.join(VARIANTS)}")
    p.add_argument("--model", default="bilstm_crf")
    p.add_argument("--json", default=None, help="write the summaries here (after every variant)")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    summaries = {}
    for name in names:
        options = ["--epochs", str(args.epochs), *VARIANTS[name][1], "--model", args.model,  # a variant's own wins
                   "--seeds", str(args.seeds), "--no-progress"]
        if args.data:
            options += ["--data", args.data]
        t0 = time.perf_counter()
        s = train.run(train.build_parser().parse_args(options))
        s["wall_s_per_run"] = round((time.perf_counter() - t0) / args.seeds, 1)
        s["val_f1_mean"] = round(100 * statistics.mean(r["val_f1"] for r in s["runs"]), 2)
        summaries[name] = s
        if args.json:
            Path(args.json).write_text(json.dumps(summaries, indent=2) + "\n")
    types = sorted({t for s in summaries.values() for t in s["test_f1_per_type"]})
    print(f"\n| variant | eng.testb F1 ({args.seeds} seeds) | " + " | ".join(types)
          + " | eng.testa F1 | min per run |")
    print("|---|---|" + "---|" * len(types) + "---|---|")
    for name, s in summaries.items():
        per_type = " | ".join("{:.2f} +- {:.2f}".format(*s["test_f1_per_type"].get(t, (0, 0))) for t in types)
        print(f"| {name}: {VARIANTS[name][0]} | {s['test_f1_mean']:.2f} +- {s['test_f1_std']:.2f} | {per_type} "
              f"| {s['val_f1_mean']:.2f} | {s['wall_s_per_run'] / 60:.1f} |")
    for paper, f1 in PAPERS.items():
        print(f"| {paper} | {f1} |" + " |" * (len(types) + 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
