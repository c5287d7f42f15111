"""Milliseconds per training step of the G2P recipe's model under each of its speed options, measured
in one run: what ``--amp``, ``--attention-kernel math`` and the dropout rates cost or save here.

    python benchmarks/nlp_g2p_step_time.py            # torch's threads; the recipe runs on them too
    python benchmarks/nlp_g2p_step_time.py --steps 200 --configs fp32,auto,0.05,0.05 bf16,math,0.1,0

The model is the README recipe's (``transformer_tiny``, 3 + 3 layers, 128 wide, attention dropout
0), on the recipe's own training batches (256 CMUdict pairs of similar length, ``--steps`` of them
drawn at random, the same for every configuration). A configuration is
``precision,attention kernel,dropout,activation dropout[,sampler]``, the sampler ``torch``
(``nn.Dropout``'s ``bernoulli_``, the default) or ``cpu`` (``--cpu-dropout``'s ``CpuDropout``).
Every step is the recipe's: forward under the configuration, label-smoothed cross-entropy, backward,
AdamW. The configurations take turns in
rounds of 10 steps so that a change in the machine's load hits all of them; the table gives each
one's mean step and the epoch (444 steps) it implies, and the speed-up over the first configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from zoo.nlp import train_g2p
from zoo.nlp.g2p import load_cmudict, split_lexicon
from zoo.shared.factory import create
from zoo.shared.layers.drop import CpuDropout

DEFAULT_CONFIGS = ("fp32,auto,0.05,0.05", "fp32,auto,0.1,0", "bf16,math,0.05,0.05", "bf16,math,0.1,0")


def _parse(config: str) -> tuple[str, str, float, float, str]:
    precision, kernel, dropout, activation, sampler = (config.split(",") + ["torch"])[:5]
    if precision not in ("fp32", "bf16") or kernel not in ("auto", "math") or sampler not in ("torch", "cpu"):
        raise SystemExit(f"a configuration is fp32|bf16,auto|math,DROPOUT,ACTIVATION_DROPOUT[,torch|cpu]; "
                         f"got {config!r}")
    return precision, kernel, float(dropout), float(activation), sampler


def _context(precision: str, kernel: str):
    stack = contextlib.ExitStack()
    if precision == "bf16":  # what the Trainer's --amp does on a CPU
        stack.enter_context(torch.autocast("cpu", torch.bfloat16))
    stack.enter_context(train_g2p.attention_kernel(kernel))
    return stack


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=150, help="timed steps per configuration")
    p.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = [_parse(c) for c in args.configs]

    splits = split_lexicon(load_cmudict(stress=False))
    letters, phonemes = train_g2p.symbol_vocabs(splits["train"])
    batches = train_g2p.LengthBatches(train_g2p.Pairs(splits["train"], letters, phonemes, all_prons=True), 256, 0)
    picks = torch.randperm(len(batches), generator=torch.Generator().manual_seed(1))[: args.steps].tolist()
    data = [batches[i][:3] for i in picks]
    torch.manual_seed(0)
    model = create("transformer_tiny", src_vocab_size=len(letters), tgt_vocab_size=len(phonemes),
                   share_embeddings=False, num_encoder_layers=3, num_decoder_layers=3, attention_dropout=0.0).train()
    optimizer = torch.optim.AdamW(model.parameters(), 2e-3)
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    hidden = [layer.dropout for layer in (*model.encoder.layers, *model.decoder.layers)]

    def step(batch, config) -> None:
        precision, kernel, dropout, activation, sampler = config
        for m in dropouts:
            m.p = dropout
            m.__class__ = CpuDropout if sampler == "cpu" else torch.nn.Dropout  # same state, another forward
        for m in hidden:  # the feed-forward hidden layer's dropout (activation_dropout)
            m.p = activation
        src, tgt_in, tgt_out = batch
        with _context(precision, kernel):
            logits = model(src, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=0, label_smoothing=0.1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for config in configs:  # warm-up
        step(data[0], config)
    seconds = [0.0] * len(configs)
    for start in range(0, len(data), 10):
        for j, config in enumerate(configs):
            t = time.perf_counter()
            for batch in data[start : start + 10]:
                step(batch, config)
            seconds[j] += time.perf_counter() - t
    print(f"{torch.get_num_threads()} threads, {len(data)} steps each, batch 256 pairs")
    print("| precision, kernel, dropout, activation dropout | ms / step | s / epoch (444 steps) | speed-up |")
    print("|---|---:|---:|---:|")
    for config, s in zip(args.configs, seconds):
        ms = 1e3 * s / len(data)
        print(f"| {config} | {ms:.0f} | {ms * 444 / 1e3:.0f} | {seconds[0] / s:.2f}x |")


if __name__ == "__main__":
    main()
