"""GPT-2 speed against transformers, same weights, same process, interleaved repeats.

    .venv/bin/python benchmarks/nlp_gpt_speed.py                   # one thread: forward 8x128, generate b1/b8
    .venv/bin/python benchmarks/nlp_gpt_speed.py --threads 2 --new-tokens 64 --profile

Forward: logits of a batch of 8 x 128 tokens (eval, no grad). Generation: greedy, ``--new-tokens``
new tokens after a 16-token prompt, batch 1 and 8 (the batch left-padded to prompts of 10..16
tokens), our ``generate`` with its preallocated key/value cache against ``GPT2LMHeadModel.generate``
(its DynamicCache); both must produce the same tokens, which is checked. Repeats alternate between
the two so machine load hits both alike; the table gives each median and the ratio of medians
(transformers / ours: above 1 means ours is faster). ``--profile`` prints where our generation
spends its time (torch.profiler, top operators).

Prompt lookup (``--prompt-lookup K``, default 10): our ``generate(..., prompt_lookup_num_tokens=K)``
drafts up to K tokens from where the text's last n-gram occurred before and keeps those greedy
confirms, so the tokens are greedy's and one forward can yield several. It is timed against plain
``generate`` and, at batch 1, against transformers' own prompt lookup; the printed tokens per forward
is what the gain rests on, and it is a property of the text: random weights (the default) repeat
themselves more than a trained model, so ``--trained DIR --text FILE`` measures a trained model
(``zoo.nlp.train_gpt --save-model DIR``) on prompts from the last tenth of FILE.

Measured 2026-11-29, 1 thread, 3 repeats, shared 2-core machine under a load of ~12 (read the
ratios): forward 8x128 1.12x; greedy generation of 128 tokens 1.06x at batch 1 and 1.01x at batch 8
(same tokens). Where our generation's time goes (batch 1): 64% the block projections (addmm), 25%
the output layer (the 50257 x 768 embedding, mm), 3% attention, under 10% everything else. A step
reads all 124M fp32 weights once, so with the same numerics the cache and the loop can save at most
that last ~10%: the issue's 1.5x is out of reach on a CPU at fp32 one token per forward.
Again, 1 thread beside one other 1-thread job: forward 1.10x, greedy 1.09x (batch 1 and 8); prompt
lookup 10: 2.56 tokens per forward and 1.67x at batch 1 (1.15x against transformers' lookup), 1.21
tokens per forward and 1.21x at batch 8. The trained char-GPT (``--trained``): 2.33 tokens per
forward, 2.83x at batch 1.

Each row of a batch keeps what greedy confirms of its own draft (2026-12-06; before, a step kept
only what every row confirmed). 1 thread, AMD EPYC, 3 repeats: batch 8 with ``--prompt-lookup 2``,
128 tokens in 78 forwards instead of 128, 1.14x transformers' plain ``generate`` (plain greedy
1.08x): a draft column costs every row (``--draft-cost``), and the batch waits for its slowest
row. Batch 1 is unchanged (lookup 10: 2.56 tokens per forward, 1.48x).

Since 2026-12-07 our projections and output layer run oneDNN's fp32 product in CPU inference (MKL,
which transformers' ``addmm`` reaches, is slow here for matrices of a few rows). AMD EPYC, alone, 3
repeats, 2 threads: forward 8x128 1.34x; greedy 1.35x at batch 1 and 1.96x / 1.99x at batch 8; prompt
lookup 10 at batch 1 2.77x (1.99x against transformers' lookup), lookup 2 at batch 8 2.27x. 1 thread:
forward 1.32x, greedy 1.10x (batch 1) and 1.30x (batch 8), lookup 10 at batch 1 1.65x, lookup 2 at
batch 8 1.57x.

``--device cuda`` runs both models on the GPU (each timing synchronises before and after); the rows
then say whether the two generations gave the same tokens rather than stopping when they do not
(GPU kernels need not be bitwise equal between the two implementations). Measured 2026-11-30 on an
H200 (fp32, transformers 5.17, same tokens throughout): forward 8x128 1.48x; greedy 1.37x at batch 1,
1.24x at batch 8; with prompt lookup 10, 2.67x at batch 1 (1.50x against transformers' lookup) and
1.20x at batch 8.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import transformers

from zoo.nlp.generation import generate
from zoo.nlp.gpt2 import gpt2, hf_key_map


def models(config: str):
    torch.manual_seed(0)
    sizes = {"gpt2": dict(n_embd=768, n_layer=12, n_head=12), "gpt2_mini": dict(n_embd=256, n_layer=4, n_head=4)}
    ref = transformers.GPT2LMHeadModel(transformers.GPT2Config(**sizes[config])).eval()
    c = ref.config
    ours = gpt2(embed_dim=c.n_embd, num_layers=c.n_layer, num_heads=c.n_head).eval()
    ours.load_state_dict(hf_key_map(ref.state_dict()), strict=True)
    return ref, ours


def timed(fn) -> tuple[float, object]:
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def compare(name: str, ours_fn, ref_fn, repeats: int, tokens: int, same=None) -> dict:
    ours_fn(), ref_fn()  # warm-up
    t_ours, t_ref = [], []
    for _ in range(repeats):
        t, a = timed(ours_fn)
        t_ours.append(t)
        t, b = timed(ref_fn)
        t_ref.append(t)
    mo, mr = statistics.median(t_ours), statistics.median(t_ref)
    row = {"case": name, "ours_s": mo, "hf_s": mr, "ratio": mr / mo, "ours_tok_s": tokens / mo,
           "hf_tok_s": tokens / mr}
    if same is not None:
        row["same_tokens"] = same(a, b)
        if not row["same_tokens"]:
            print(f"  WARNING: {name}: the two generations differ (the ratio compares different outputs)")
    print(f"{name:<34}{mo * 1000:>10.1f}{mr * 1000:>10.1f}{tokens / mo:>11.1f}{tokens / mr:>11.1f}"
          f"{mr / mo:>8.2f}x", flush=True)
    return row


def trained_models(folder: str):
    """A trained GPT-2-family model saved by ``zoo.nlp.train_gpt --save-model`` and its transformers twin."""
    import zoo
    from nlp_gpt_shakespeare import hf_gpt2  # this folder: the script's own

    ours = zoo.from_pretrained(folder).eval()
    return hf_gpt2(ours).eval(), ours


def text_prompts(folder: str, text_file: str, batch: int, length: int = 16):
    """``batch`` prompts of ``length`` characters from the last tenth of ``text_file`` (the char-GPT's
    validation text), at evenly spaced offsets, encoded with the model's ``vocab.json``."""
    chars = json.loads((Path(folder) / "vocab.json").read_text())
    index = {c: i for i, c in enumerate(chars)}
    text = Path(text_file).read_text(encoding="utf-8")
    val = text[int(0.9 * len(text)):]
    starts = [i * (len(val) - length) // batch for i in range(batch)]
    ids = torch.tensor([[index[c] for c in val[s:s + length]] for s in starts])
    return ids, torch.ones_like(ids)


def draft_cost(model, batch: int, cached: int = 64, widths=(1, 2, 3, 4, 6, 11), repeats: int = 5) -> dict:
    """Median ms of one cached forward of ``w`` tokens per row (the last token and ``w - 1`` drafts)
    after ``cached`` positions, per width: what a prompt-lookup step costs against a plain one."""
    g, device = torch.Generator().manual_seed(0), model.lm_head.weight.device
    ids = lambda width: torch.randint(0, model.config.vocab_size, (batch, width), generator=g).to(device)  # noqa: E731
    cache = model.new_cache(batch, cached + max(widths))
    model(ids(cached), cache=cache, last_only=True)
    times = {}
    for w in widths:
        x, runs = ids(w), []
        for _ in range(repeats + 1):  # the first is a warm-up
            runs.append(timed(lambda: model(x, cache=cache))[0])
            cache.truncate(cached)
        times[w] = statistics.median(runs[1:]) * 1e3
    return times


def count_forwards(model, fn) -> int:
    calls = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        fn()
    finally:
        handle.remove()
    return len(calls) - 1  # the prompt's own forward aside: one forward per step after it


def prompts(batch: int, vocab: int):
    g = torch.Generator().manual_seed(batch)
    ids = torch.randint(0, vocab, (batch, 16), generator=g)
    mask = torch.ones_like(ids)
    if batch > 1:
        for i in range(batch):
            mask[i, : i % 7] = 0  # prompts of 10..16 tokens, left-padded
    return ids.masked_fill(mask == 0, 0), mask


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model", choices=["gpt2", "gpt2_mini"], default="gpt2")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--skip-forward", action="store_true")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="generation batch sizes")
    p.add_argument("--prompt-lookup", type=int, default=10,
                   help="draft tokens per step for the prompt-lookup rows (0: leave them out)")
    p.add_argument("--trained", default=None,
                   help="a trained model's save_pretrained folder (zoo.nlp.train_gpt --save-model) instead of "
                        "random GPT-2 weights; prompts then come from --text")
    p.add_argument("--text", default=None, help="with --trained: the text file whose last tenth gives the prompts")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--draft-cost", action="store_true",
                   help="only time our cached forward of 1, 2, 3, 4, 6, 11 tokens per row at each --batches")
    p.add_argument("--device", default="cpu", help="cuda: both models and the prompts on the GPU (timings synchronise)")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.trained:
        if not args.text:
            p.error("--trained needs --text (the prompts)")
        ref, ours = trained_models(args.trained)
        name = f"{args.trained} (trained)"
        make_prompts = lambda batch: text_prompts(args.trained, args.text, batch)  # noqa: E731
    else:
        ref, ours = models(args.model)
        name = f"{args.model} (random weights)"
        make_prompts = lambda batch: prompts(batch, ours.config.vocab_size)  # noqa: E731
    ref, ours = ref.to(args.device), ours.to(args.device)
    vocab = ours.config.vocab_size
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{args.threads} thread(s)"
    print(f"{name}, {where}, torch {torch.__version__}, transformers {transformers.__version__}")
    if args.draft_cost:
        with torch.inference_mode():
            for batch in args.batches:
                times = draft_cost(ours, batch)
                print(f"batch {batch}: " + ", ".join(f"{w} tokens {ms:.0f} ms ({ms / times[1]:.2f}x)"
                                                     for w, ms in times.items()))
        return
    print(f"{'case':<34}{'ours ms':>10}{'HF ms':>10}{'ours tok/s':>11}{'HF tok/s':>11}{'HF/ours':>9}")
    rows = []
    with torch.inference_mode():
        if not args.skip_forward:
            x = torch.randint(0, vocab, (8, 128), generator=torch.Generator().manual_seed(0)).to(device)
            rows.append(compare("forward 8x128", lambda: ours(x), lambda: ref(x).logits, args.repeats, x.numel()))
        n, k = args.new_tokens, args.prompt_lookup
        same = torch.equal  # the generations' tokens, compared after each row's timings
        for batch in args.batches:
            ids, mask = (t.to(device) for t in make_prompts(batch))
            hf = dict(attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0,
                      eos_token_id=None)
            plain = lambda: generate(ours, ids, mask, max_new_tokens=n)  # noqa: E731
            drafted = lambda: generate(ours, ids, mask, max_new_tokens=n, prompt_lookup_num_tokens=k)  # noqa: E731
            hf_plain = lambda: ref.generate(ids, **hf)  # noqa: E731
            rows.append(compare(f"generate greedy b{batch}, {n} new", plain, hf_plain, args.repeats, batch * n, same))
            if not k:
                continue
            forwards = count_forwards(ours, drafted)
            print(f"  prompt lookup {k}: {n} tokens in {forwards} forwards ({n / forwards:.2f} tokens per forward)")
            rows.append(compare(f"  ours lookup {k} vs HF plain", drafted, hf_plain, args.repeats, batch * n, same))
            if batch == 1:  # transformers' own prompt lookup (assisted generation) takes one sequence
                rows.append(compare(f"  ours lookup {k} vs HF lookup {k}", drafted,
                                    lambda: ref.generate(ids, prompt_lookup_num_tokens=k, **hf), args.repeats,
                                    batch * n, same))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": name, "device": where, "rows": rows}, indent=2))
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        ids, mask = make_prompts(1)
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
            generate(ours, ids, mask, max_new_tokens=args.new_tokens)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
