"""Int8 quantization (``zoo.deploy.quantize``): size ratio, speed ratio and quality change, same run.

    OMP_NUM_THREADS=1 python benchmarks/deploy_quantize.py --threads 1 \
        --tagger runs/tagger --gpt runs/gpt_char --resnet runs/resnet18_digits \
        --conll ../shared/data/conll2003 --shakespeare ../shared/data/tinyshakespeare

Speed and size, random weights (neither depends on them): BERT-base (batch 8 x 128 tokens, the
target is 1.5x) and GPT-2 (124M, batch 8 x 128), fp32 eager against dynamic int8 (``inference_mode``,
interleaved repeats, medians); sizes are those of the ``model.safetensors`` that save_pretrained and
zoo quantize write. Quality, on trained models given as save_pretrained folders (each optional):

- ``--tagger``: the BiLSTM-CRF tagger's CoNLL-2003 eng.testb span F1, fp32 and dynamic int8;
- ``--gpt``: the char GPT's Tiny Shakespeare validation loss (the recipe's fixed validation windows);
- ``--resnet``: resnet18's digits test accuracy, fp32 and static int8 calibrated on training images.

Each quantized model is written with ``save_quantized`` and read back with ``zoo.from_pretrained``,
so the numbers are those of the files a user deploys.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import zoo
from zoo.deploy.quantize import calibration_batches, quantize, save_quantized


def _size(folder: Path) -> int:
    return (folder / "model.safetensors").stat().st_size


def _round_trip(model, mode, calibration=None):
    """The quantized model as a user gets it: written by zoo quantize's saver, read by from_pretrained."""
    q = quantize(model, mode, calibration)
    folder = Path(tempfile.mkdtemp(prefix="zoo-int8-"))
    save_quantized(q, folder, q.quantization)
    return zoo.from_pretrained(folder), folder


def _speed(a, b, inputs, repeats: int) -> tuple[float, float]:
    with torch.inference_mode():
        for _ in range(2):
            a(*inputs), b(*inputs)
        ta, tb = [], []
        for _ in range(repeats):  # interleaved
            t = time.perf_counter(); a(*inputs); ta.append(time.perf_counter() - t)  # noqa: E702
            t = time.perf_counter(); b(*inputs); tb.append(time.perf_counter() - t)  # noqa: E702
    return statistics.median(ta) * 1e3, statistics.median(tb) * 1e3


def speed_rows(repeats: int) -> list[dict]:
    rows = []
    for name, make in (("bert_base_uncased", lambda m: (torch.randint(0, m.config.vocab_size, (8, 128)),
                                                        torch.ones(8, 128, dtype=torch.long))),
                       ("gpt2", lambda m: (torch.randint(0, m.config.vocab_size, (8, 128)),))):
        torch.manual_seed(0)
        model = zoo.create(name).eval()
        folder = Path(tempfile.mkdtemp(prefix="zoo-fp32-"))
        zoo.save_pretrained(model, folder)
        q, qfolder = _round_trip(model, "dynamic")
        inputs = make(model)
        fp32_ms, int8_ms = _speed(model, q, inputs, repeats)
        with torch.inference_mode():
            a = torch.utils._pytree.tree_leaves(model(*inputs))[0]
            b = torch.utils._pytree.tree_leaves(q(*inputs))[0]
        row = {"model": name, "mode": "dynamic", "input": "8 x 128", "threads": torch.get_num_threads(),
               "fp32_ms": round(fp32_ms, 1), "int8_ms": round(int8_ms, 1), "speed_ratio": round(fp32_ms / int8_ms, 3),
               "fp32_mb": round(_size(folder) / 2**20, 1), "int8_mb": round(_size(qfolder) / 2**20, 1),
               "rel_output_error": round(float((a - b).norm() / a.norm()), 4)}
        row["size_ratio"] = round(row["fp32_mb"] / row["int8_mb"], 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def tagger_row(folder: str, conll: str) -> dict:
    from zoo.nlp.train import Collate, TaggedSentences, TaggingTask, _eval_sums, load_conll2003

    model = zoo.from_pretrained(folder).eval()
    tags = model.vocabs["tags"]
    scheme = "IOBES" if any(t.startswith(("S-", "E-")) for t in tags.tokens) else "IOB2"
    data = load_conll2003(Path(conll), scheme)
    dataset = TaggedSentences(data["test"], tags)
    collate = Collate(model.vocabs["words"], model.vocabs["chars"])
    task = TaggingTask(tags)
    q, qfolder = _round_trip(model, "dynamic")
    q.vocabs = model.vocabs
    t = time.perf_counter()
    f1_fp32 = task.scores(_eval_sums(model, task, dataset, collate, "cpu")).f1
    t_fp32 = time.perf_counter() - t
    t = time.perf_counter()
    f1_int8 = task.scores(_eval_sums(q, task, dataset, collate, "cpu")).f1
    t_int8 = time.perf_counter() - t
    row = {"model": "bilstm_crf", "mode": "dynamic", "task": "CoNLL-2003 eng.testb span F1",
           "fp32": round(100 * f1_fp32, 2), "int8": round(100 * f1_int8, 2),
           "change": round(100 * (f1_int8 - f1_fp32), 2), "eval_seconds_fp32": round(t_fp32, 1),
           "eval_seconds_int8": round(t_int8, 1), "speed_ratio": round(t_fp32 / t_int8, 3),
           "size_ratio": round(_size(Path(folder)) / _size(qfolder), 2)}
    print(json.dumps(row), flush=True)
    return row


def gpt_row(folder: str, shakespeare: str) -> dict:
    from zoo.nlp.train_gpt import LanguageModelTask, build_data, build_parser, load_text

    defaults = build_parser().parse_args([])
    model = zoo.from_pretrained(folder).eval()
    _, _, val = build_data(load_text(Path(shakespeare)), defaults.block_size, defaults.eval_windows)
    task = LanguageModelTask()
    q, qfolder = _round_trip(model, "dynamic")

    def val_loss(m):
        sums = {"loss": 0.0, "count": 0}
        with torch.inference_mode():
            for batch in torch.utils.data.DataLoader(val, batch_size=256):
                for k, v in task.evaluation_step(m, batch).items():
                    sums[k] += float(v)
        return sums["loss"] / sums["count"]

    t = time.perf_counter(); fp32 = val_loss(model); t_fp32 = time.perf_counter() - t  # noqa: E702
    t = time.perf_counter(); int8 = val_loss(q); t_int8 = time.perf_counter() - t  # noqa: E702
    row = {"model": "gpt_char", "mode": "dynamic", "task": f"Tiny Shakespeare val loss ({len(val)} windows of "
           f"{defaults.block_size})", "fp32": round(fp32, 4), "int8": round(int8, 4), "change": round(int8 - fp32, 4),
           "speed_ratio": round(t_fp32 / t_int8, 3), "size_ratio": round(_size(Path(folder)) / _size(qfolder), 2)}
    print(json.dumps(row), flush=True)
    return row


def resnet_row(folder: str, batches: int = 16) -> dict:
    from zoo.vision.data import load_digits

    model = zoo.from_pretrained(folder).eval()
    size = (model.pretrained_cfg or {}).get("input_size", [1, 32, 32])[-1]
    calibration = calibration_batches("digits", model, batches)
    q, qfolder = _round_trip(model, "static", calibration)
    test = load_digits(size).test
    loader = torch.utils.data.DataLoader(test, batch_size=64)

    def accuracy(m):
        right = total = 0
        with torch.inference_mode():
            for x, y in loader:
                right += int((m(x).argmax(-1) == y).sum())
                total += len(y)
        return right / total, total

    t = time.perf_counter(); (fp32, n) = accuracy(model); t_fp32 = time.perf_counter() - t  # noqa: E702
    t = time.perf_counter(); (int8, _) = accuracy(q); t_int8 = time.perf_counter() - t  # noqa: E702
    row = {"model": "resnet18", "mode": "static", "task": f"digits test accuracy ({n} images)",
           "calibration": f"{batches} x 32 training images", "fp32": round(100 * fp32, 2), "int8": round(100 * int8, 2),
           "change": round(100 * (int8 - fp32), 2), "speed_ratio": round(t_fp32 / t_int8, 3),
           "size_ratio": round(_size(Path(folder)) / _size(qfolder), 2)}
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-speed", action="store_true", help="only the quality rows")
    parser.add_argument("--tagger", help="a saved bilstm_crf folder (python -m zoo.nlp.train --save-model)")
    parser.add_argument("--conll", default=str(Path(__file__).resolve().parents[2] / "shared/data/conll2003"))
    parser.add_argument("--gpt", help="a saved gpt_char folder (python -m zoo.nlp.train_gpt --save-model)")
    parser.add_argument("--shakespeare", default=str(Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare"))
    parser.add_argument("--resnet", help="a saved resnet18 digits folder (python -m zoo.vision.train --save-model)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [] if args.skip_speed else speed_rows(args.repeats)
    if args.tagger:
        rows.append(tagger_row(args.tagger, args.conll))
    if args.gpt:
        rows.append(gpt_row(args.gpt, args.shakespeare))
    if args.resnet:
        rows.append(resnet_row(args.resnet))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
