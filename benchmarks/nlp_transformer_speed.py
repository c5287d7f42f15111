"""Forward speed of our Transformer's encoder-decoder against torch.nn.Transformer, same weights,
measured in the same process, interleaved.

    .venv/bin/python benchmarks/nlp_transformer_speed.py              # base size, batch 8 x 128, 1 thread
    .venv/bin/python benchmarks/nlp_transformer_speed.py --threads 2 --repeats 10
    .venv/bin/python benchmarks/nlp_transformer_speed.py --dim 256 --layers 3   # a smaller model

Both take embedded inputs (B, L, dim) — the token embeddings are a table look-up in either — and
run in eval mode under ``torch.no_grad``, as inference does: the encoder over the source, the
decoder over the target with a causal mask and attention over the memory. Two cases: no padding,
and padded sources and targets (key-padding masks; nn.Transformer's encoder then takes its
nested-tensor fast path). Repeats alternate between the two so machine load hits both alike; the
table gives each median and the ratio of medians (nn.Transformer / ours: above 1 means ours is
faster). The outputs are checked equal first (real positions, 1e-4).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch import nn

from zoo.nlp.transformer import Transformer


def bench(args) -> list[tuple]:
    torch.manual_seed(0)
    d, heads, ffn, n = args.dim, args.heads, args.ffn_dim, args.layers
    ours = Transformer(src_vocab_size=8, tgt_vocab_size=8, dim=d, num_heads=heads, ffn_dim=ffn,
                       num_encoder_layers=n, num_decoder_layers=n, dropout=0.0, norm_first=args.norm_first).eval()
    ref = nn.Transformer(d, heads, n, n, ffn, dropout=0.0, batch_first=True, norm_first=args.norm_first).eval()
    ours.load_state_dict({**ours.state_dict(), **ref.state_dict()})
    b, length = args.batch, args.length
    src, tgt = torch.randn(b, length, d), torch.randn(b, length, d)
    causal = torch.ones(length, length, dtype=torch.bool).triu(1)
    lengths = torch.randint(length // 2, length + 1, (b,))
    lengths[0] = length
    pad = torch.arange(length) >= lengths[:, None]

    cases = {"no padding": (None, None), "padded source and target": (pad, pad)}
    rows = []
    for case, (src_pad, tgt_pad) in cases.items():
        def run_ours():
            return ours.decoder(tgt, ours.encoder(src, src_pad), tgt_pad, src_pad)

        def run_ref():
            return ref(src, tgt, tgt_mask=causal, src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad,
                       memory_key_padding_mask=src_pad, tgt_is_causal=True)

        with torch.no_grad():
            a, r = run_ours(), run_ref()
            real = slice(None) if tgt_pad is None else ~tgt_pad
            torch.testing.assert_close(a[real], r[real], atol=1e-4, rtol=1e-4)
        fns = {"ours": run_ours, "nn.Transformer": run_ref}
        times = {name: [] for name in fns}
        with torch.no_grad():
            for i in range(args.warmup + args.repeats):
                for name, fn in fns.items():  # interleaved
                    start = time.perf_counter()
                    fn()
                    if i >= args.warmup:
                        times[name].append(time.perf_counter() - start)
        med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
        tokens = 2 * b * length  # source + target tokens per forward
        rows.append((case, med["ours"], med["nn.Transformer"], tokens / med["ours"] * 1e3,
                     med["nn.Transformer"] / med["ours"]))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--ffn-dim", type=int, default=2048)
    p.add_argument("--layers", type=int, default=6, help="encoder and decoder layers each")
    p.add_argument("--norm-first", action="store_true")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*nested tensors is in prototype stage.*")
    print(f"dim {args.dim}, {args.heads} heads, ffn {args.ffn_dim}, {args.layers}+{args.layers} layers, "
          f"{'pre' if args.norm_first else 'post'}-norm; batch {args.batch} x {args.length} tokens; "
          f"{args.threads} thread(s); median of {args.repeats} interleaved repeats; torch {torch.__version__}\n")
    print("| case | ours (ms) | nn.Transformer (ms) | ours (tokens/s) | speed ratio (theirs / ours) |")
    print("|---|---:|---:|---:|---:|")
    for case, ours, ref, tps, ratio in bench(args):
        print(f"| {case} | {ours:.1f} | {ref:.1f} | {tps:.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
