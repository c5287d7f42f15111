"""Character-level GPT on Tiny Shakespeare: ours against Hugging Face's GPT2LMHeadModel, in the
same configuration, the same loop and from the same initial weights.

    .venv/bin/python benchmarks/nlp_gpt_shakespeare.py                       # both at once, 1 thread each
    .venv/bin/python benchmarks/nlp_gpt_shakespeare.py --mode sequential --threads 2
    .venv/bin/python benchmarks/nlp_gpt_shakespeare.py --max-steps 200       # a short look

Both models are trained by ``zoo.nlp.train_gpt``'s Trainer setup (nanoGPT's CPU configuration:
4 layers, 4 heads, 128 wide, context 64, batch 12, 2000 steps, AdamW 5e-3 cosine to 5e-4) on the
same windows in the same order; HF's model gets our initial weights (the layouts are the same), so
the two runs compute the same losses up to rounding and differ in wall time only. The default mode
runs the two as parallel processes with one thread each, so a shared machine's load falls on both
alike; ``--mode sequential`` runs them one after the other in this process. Targets: validation
loss <= 1.88 in less wall time than HF's. Prints both losses and times, their ratio and a sample.

Measured 2026-11-29 on the quiet machine (default command, parallel, 1 thread each; seeds 1337, 1,
2): ours 1.7598 / 1.7601 / 1.7576 in 151 / 134 / 127 s, HF 1.7636 / 1.7472 / 1.7560 in 193 / 163 /
166 s: 1.27x less wall time on average, the loss target met on each seed. With nanoGPT's lr 1e-3
(``--lr 1e-3``) both end at 1.8951.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
from torch import nn

from zoo.nlp import train_gpt


class HFLogits(nn.Module):
    """transformers' GPT2LMHeadModel with the zoo's call: ids in, logits out."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(input_ids=x).logits


def hf_gpt2(ours, **config):
    """transformers' GPT2LMHeadModel in our model's configuration, holding its weights (the layouts are
    the same); ``config``: further GPT2Config fields. benchmarks/nlp_gpt_speed.py uses it too."""
    import transformers

    cfg = ours.config
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.max_positions, n_embd=cfg.embed_dim, n_layer=cfg.num_layers,
        n_head=cfg.num_heads, activation_function=cfg.activation, layer_norm_epsilon=cfg.layer_norm_eps,
        resid_pdrop=cfg.resid_dropout, embd_pdrop=cfg.embed_dropout, attn_pdrop=cfg.attention_dropout, **config))
    hf.load_state_dict(ours.state_dict(), strict=True)
    return hf


def hf_twin(ours):
    return HFLogits(hf_gpt2(ours, bos_token_id=0, eos_token_id=0))


def train(which: str, args) -> dict:
    torch.set_num_threads(args.threads)
    text = train_gpt.load_text(train_gpt.data_root("tinyshakespeare", args.data))
    vocab, train_set, val_set = train_gpt.build_data(text, 64, args.eval_windows)
    recipe = train_gpt.build_parser().parse_args(
        ["--max-steps", str(args.max_steps), "--no-progress", "--seed", str(args.seed), "--lr", str(args.lr),
         *(["--min-lr", str(args.min_lr)] if args.min_lr is not None else [])])  # else the recipe's lr / 10
    torch.manual_seed(args.seed)
    model = train_gpt.build_model(recipe, len(vocab))
    if which == "hf":
        model = hf_twin(model)
    start = time.perf_counter()
    result = train_gpt.Trainer(model, train_gpt.LanguageModelTask(), train_set, val_set,
                               train_gpt.train_config(recipe)).fit()
    seconds = time.perf_counter() - start
    out = {"which": which, "val_loss": result["history"][-1]["val/loss"], "seconds": seconds,
           "threads": torch.get_num_threads(), "steps": result["steps"]}
    if which == "ours" and args.sample_chars:
        out["sample"] = train_gpt.sample(model, vocab, args.sample_chars, args.seed, 64)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="folder holding input.txt (else $ZOO_DATA/tinyshakespeare)")
    p.add_argument("--mode", choices=["parallel", "sequential"], default="parallel")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--eval-windows", type=int, default=4000)
    p.add_argument("--lr", type=float, default=5e-3, help="peak learning rate (the recipe's --lr)")
    p.add_argument("--min-lr", type=float, default=None, help="the cosine's floor (default: lr / 10, nanoGPT's)")
    p.add_argument("--sample-chars", type=int, default=300)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--only", choices=["ours", "hf"], default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.only:  # a child of --mode parallel
        print(json.dumps(train(args.only, args)))
        return
    if args.mode == "sequential":
        results = [train("ours", args), train("hf", args)]
    else:
        argv = [a for a in sys.argv[1:]]
        children = [subprocess.Popen([sys.executable, __file__, *argv, "--only", which], stdout=subprocess.PIPE,
                                     text=True) for which in ("ours", "hf")]
        results = [json.loads(c.communicate()[0].strip().splitlines()[-1]) for c in children]
    ours, hf = results
    print(f"\nTiny Shakespeare, char-level GPT (4 layers, 4 heads, 128 wide, context 64), {ours['steps']} steps, "
          f"{args.threads} thread(s) each, mode {args.mode}")
    print(f"{'model':<28}{'val loss':>10}{'wall s':>10}")
    print(f"{'zoo gpt_char':<28}{ours['val_loss']:>10.4f}{ours['seconds']:>10.1f}")
    print(f"{'transformers GPT2LMHeadModel':<28}{hf['val_loss']:>10.4f}{hf['seconds']:>10.1f}")
    print(f"wall-time ratio HF / ours: {hf['seconds'] / ours['seconds']:.2f}x "
          f"(target: ours <= 1.88 val loss and faster than HF)")
    if "sample" in ours:
        print("\nsample (ours, temperature 0.8, top-k 200):\n" + ours["sample"])


if __name__ == "__main__":
    main()
