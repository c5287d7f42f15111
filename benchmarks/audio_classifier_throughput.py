"""Training throughput of the audio classifiers (and the CTC recogniser) in clips per second.

    .venv/bin/python benchmarks/audio_classifier_throughput.py                # one thread, batch 32 x 1 s at 8 kHz
    .venv/bin/python benchmarks/audio_classifier_throughput.py --threads 2 --models mel_cnn

One training step is what the FSDD recipe does per batch: forward from the waveform (front end
included), loss, backward and an AdamW step; the waveform augmentation of the data pipeline is
timed separately (``augment``: clips/s of :class:`zoo.audio.fsdd.Augment` alone). The table gives
the median step time over ``--steps`` steps after ``--warmup`` and clips/s = batch / median.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import zoo
from zoo.audio.ctc import Alphabet, ctc_loss
from zoo.audio.fsdd import Augment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--models", nargs="+", default=["mel_cnn", "m5", "mel_ctc"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    samples = int(8000 * args.seconds)
    x = 0.1 * torch.randn(args.batch, samples)
    print(f"training step, batch {args.batch} x {args.seconds:g} s at 8 kHz, {args.threads} thread(s), "
          f"torch {torch.__version__}")
    print(f"{'model':>10} {'params':>9} {'step ms':>9} {'clips/s':>9}")
    augment, clip = Augment(), 0.1 * torch.randn(samples // 2)
    start = time.perf_counter()
    for _ in range(200):
        augment(clip, samples)
    print(f"{'augment':>10} {'':>9} {'':>9} {200 / (time.perf_counter() - start):9.0f}")
    alphabet = Alphabet()
    words = ["seven", "zero", "three", "one"] * (args.batch // 4 + 1)
    for name in args.models:
        ctc = name == "mel_ctc"
        model = zoo.create(name).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        y = torch.randint(0, 10, (args.batch,))

        def step():
            opt.zero_grad(set_to_none=True)
            if ctc:
                logits, frames = model(x)
                loss = ctc_loss(logits, frames, [alphabet.encode(w) for w in words[: args.batch]])
            else:
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()

        times = []
        for i in range(args.warmup + args.steps):
            t = time.perf_counter()
            step()
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
        med = statistics.median(times)
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:>10} {params / 1e6:8.2f}M {med * 1e3:9.1f} {args.batch / med:9.1f}", flush=True)


if __name__ == "__main__":
    main()
