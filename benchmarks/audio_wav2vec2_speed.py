"""Speed of our wav2vec 2.0 base against torchaudio's, measured in the same process, interleaved.

    .venv/bin/python benchmarks/audio_wav2vec2_speed.py                    # one thread, 4 x 1 s and 4 x 10 s
    .venv/bin/python benchmarks/audio_wav2vec2_speed.py --threads 2 --repeats 5 --seconds 1

Both models hold the same weights (torchaudio's ``wav2vec2_base`` state dict loaded strictly into
``zoo.create("wav2vec2_base")``) and run inference (eval, ``torch.inference_mode``) on the same
16 kHz batch; the outputs are checked equal first. Repeats alternate between the two so machine
load hits both alike; the table gives each median and the ratio of medians (torchaudio / ours:
above 1 means ours is faster). ``--device cuda`` runs the same on a GPU (synchronised timings).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchaudio

import zoo


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each model per input size")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    reference = torchaudio.models.wav2vec2_base().eval().to(device)
    ours = zoo.create("wav2vec2_base").eval().to(device)
    ours.load_state_dict(reference.state_dict(), strict=True)
    print(f"wav2vec2_base forward, batch {args.batch}, {args.threads} thread(s), {device}, "
          f"torch {torch.__version__}, torchaudio {torchaudio.__version__}")
    print(f"{'input':>12} {'ours ms':>10} {'torchaudio ms':>14} {'ratio':>7}  max |diff|")
    for seconds in args.seconds:
        x = 0.1 * torch.randn(args.batch, int(16000 * seconds), device=device)
        with torch.inference_mode():
            diff = (ours(x)[0] - reference(x)[0]).abs().max().item()
            fns = {"ours": lambda: ours(x), "torchaudio": lambda: reference(x)}
            times = {name: [] for name in fns}
            for i in range(args.warmup + args.repeats):
                for name, fn in (fns.items() if i % 2 == 0 else reversed(fns.items())):  # alternate who goes first
                    t = timed(fn, device)
                    if i >= args.warmup:
                        times[name].append(t)
        med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
        print(f"{args.batch} x {seconds:g} s".rjust(12) + f" {med['ours']:10.1f} {med['torchaudio']:14.1f} "
              f"{med['torchaudio'] / med['ours']:7.3f}  {diff:.2e}", flush=True)


if __name__ == "__main__":
    main()
