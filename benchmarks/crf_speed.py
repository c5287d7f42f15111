"""Speed of our CRF against pytorch-crf's, measured in the same process, interleaved.

    .venv/bin/python benchmarks/crf_speed.py                 # one thread, batch 32, length 40
    .venv/bin/python benchmarks/crf_speed.py --threads 2 --repeats 50

For 9 and 17 tags (CoNLL-2003 in BIO and BIOES) it times the log-likelihood forward + backward
(``reduction="mean"``, gradients into the emissions and the transitions) and Viterbi decoding to
a list of paths, with the same weights and inputs in both libraries and sequence lengths drawn
between 20 and 40 (masked, as a real batch is). Repeats alternate between the two libraries so
machine load hits both alike; the table gives each median and the ratio of medians
(pytorch-crf / ours: above 1 means ours is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torchcrf

from zoo.nlp.crf import CRF


def time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(num_tags: int, batch: int, seq_len: int, repeats: int, warmup: int) -> list[tuple]:
    torch.manual_seed(num_tags)
    ours = CRF(num_tags, batch_first=True)
    ref = torchcrf.CRF(num_tags, batch_first=True)
    ref.load_state_dict(ours.state_dict())
    emissions = torch.randn(batch, seq_len, num_tags, requires_grad=True)
    tags = torch.randint(num_tags, (batch, seq_len))
    lengths = torch.randint(seq_len // 2, seq_len + 1, (batch,))
    lengths[0] = seq_len
    mask = torch.arange(seq_len) < lengths.unsqueeze(1)
    ref_mask = mask.to(torch.uint8)  # pytorch-crf's documented mask type

    def llh(crf, m):
        def run():
            crf.zero_grad(set_to_none=True)
            emissions.grad = None
            crf(emissions, tags, m, reduction="mean").neg().backward()
        return run

    def decode(crf, m):
        def run():
            with torch.no_grad():
                crf.decode(emissions, m)
        return run

    assert ours.decode(emissions, mask) == ref.decode(emissions, ref_mask)
    rows = []
    for task, make in (("log-likelihood fwd+bwd", llh), ("Viterbi decode", decode)):
        fns = {"ours": make(ours, mask), "pytorch-crf": make(ref, ref_mask)}
        times = {name: [] for name in fns}
        for i in range(warmup + repeats):
            for name, fn in fns.items():  # interleaved: ours, then theirs, in every repeat
                t = time_once(fn)
                if i >= warmup:
                    times[name].append(t)
        med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
        rows.append((task, num_tags, med["ours"], med["pytorch-crf"],
                     med["pytorch-crf"] / med["ours"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=40)
    parser.add_argument("--tags", type=int, nargs="+", default=[9, 17])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="where received a uint8")  # inside pytorch-crf
    print(f"batch {args.batch}, length {args.length} (masked, lengths {args.length // 2}-"
          f"{args.length}), {args.threads} thread(s), median of {args.repeats} interleaved "
          f"repeats, torch {torch.__version__}\n")
    print("| task | tags | ours (ms) | pytorch-crf (ms) | speed-up (theirs / ours) |")
    print("|---|---:|---:|---:|---:|")
    for num_tags in args.tags:
        for task, n, ours, ref, ratio in bench(num_tags, args.batch, args.length,
                                               args.repeats, args.warmup):
            print(f"| {task} | {n} | {ours:.2f} | {ref:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
