"""Does masked-LM pretraining help a BERT tag entities? Pretrain once, fine-tune from it and from
scratch with the same recipe and seeds, report eng.testb span F1 (mean +- std).

    python benchmarks/bert_pretrain_finetune.py --data ../shared/data/conll2003 --seeds 3 --threads 1

Pretraining text: the words of eng.train, one sentence a line, tags not read (``--from-conll``);
the WordPiece vocabulary is learned from the same lines. Nothing from eng.testa / eng.testb is seen
before evaluation. The fine-tuning recipe (``zoo.nlp.finetune``) is the same for both starts.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from zoo.nlp import finetune, train_mlm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder of eng.train / eng.testa / eng.testb")
    p.add_argument("--model", default="bert_mini")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--pretrain-epochs", type=int, default=30)
    p.add_argument("--finetune-epochs", type=int, default=6)
    p.add_argument("--finetune-lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default="runs/bert_pretrain_finetune")
    p.add_argument("--reuse", action="store_true", help="reuse the pretrained folder of an earlier run")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    folder = work / "mlm"
    t0 = time.perf_counter()
    pre = None
    if not (args.reuse and (folder / "model.safetensors").is_file()):
        pre = train_mlm.run(train_mlm.build_parser().parse_args([
            "--model", args.model, "--from-conll", str(Path(args.data) / "eng.train"),
            "--epochs", str(args.pretrain_epochs), "--save-model", str(folder),
            "--output-dir", str(work / "mlm_run"), "--no-progress"]))
    pretrain_s = time.perf_counter() - t0
    rows = {}
    for start in ("pretrained", "scratch"):
        argv = ["--model", args.model, "--pretrained", str(folder), "--data", args.data, "--seeds", str(args.seeds),
                "--epochs", str(args.finetune_epochs), "--lr", str(args.finetune_lr),
                "--output-dir", str(work / start), "--no-progress"]
        rows[start] = finetune.run(finetune.build_parser().parse_args(argv + (["--scratch"] if start == "scratch" else [])))
    print(f"\n{args.model}, masked-LM pretraining on eng.train's words ({args.pretrain_epochs} epochs, "
          f"{pretrain_s:.0f} s), fine-tuning {args.finetune_epochs} epochs at lr {args.finetune_lr}, "
          f"{args.seeds} seeds, {args.threads} thread(s):")
    print("| start | eng.testb F1 (mean +- std) | per seed | fine-tune s/run |")
    print("|---|---|---|---|")
    for start, r in rows.items():
        seeds = ", ".join(f"{100 * x['test_f1']:.2f}" for x in r["runs"])
        secs = sum(x["seconds"] for x in r["runs"]) / len(r["runs"])
        print(f"| {start} | {r['test_f1_mean']:.2f} +- {r['test_f1_std']:.2f} | {seeds} | {secs:.0f} |")
    gain = rows["pretrained"]["test_f1_mean"] - rows["scratch"]["test_f1_mean"]
    print(f"pretraining gain: {gain:+.2f} F1")
    (work / "summary.json").write_text(json.dumps({"pretrain": pre, "rows": rows, "gain": gain}, indent=1) + "\n")


if __name__ == "__main__":
    main()
