"""Speed of our CRF against pytorch-crf's, measured in the same process, interleaved.

    .venv/bin/python benchmarks/crf_speed.py                 # one thread, batch 32, length 40
    .venv/bin/python benchmarks/crf_speed.py --threads 2 --repeats 50
    .venv/bin/python benchmarks/crf_speed.py --data ../shared/data/conll2003   # + the whole tagger

For 9 and 17 tags (CoNLL-2003 in BIO and BIOES) it times the log-likelihood forward + backward
(``reduction="mean"``, gradients into the emissions and the transitions) and Viterbi decoding to
a list of paths, with the same weights and inputs in both libraries and sequence lengths drawn
between 20 and 40 (masked, as a real batch is). Repeats alternate between the two libraries so
machine load hits both alike; the table gives each median and the ratio of medians
(pytorch-crf / ours: above 1 means ours is faster).

With ``--data`` it also times the whole ``bilstm_crf`` tagger at the recipe's size (hidden 200,
char hidden 50; random weights, the vocabularies of eng.train): tagging eng.testb in batches of 64
(sentences/s), and training steps of batch 32 on eng.train (sentences/s), each with our BiLSTMs
(``zoo.nlp.bilstm_crf.padded_bilstm``: dense in training, packed in inference) and with the same
LSTMs always run packed, interleaved.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import torch
import torchcrf

from zoo.nlp.crf import CRF

RECIPE = {"hidden_dim": 200, "char_hidden_dim": 50}  # the README's CoNLL-2003 recipe


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


class PackedLSTM(torch.nn.LSTM):
    """The same LSTM; as a subclass it takes ``padded_bilstm``'s packed path."""


def tagger_speed(data: str, repeats: int) -> list[tuple]:
    import zoo
    from zoo.nlp import train
    from zoo.nlp.bilstm_crf import vocab_config
    from zoo.nlp.vocab import build_vocabs

    splits = train.load_conll2003(train.data_root("conll2003", data), train.SCHEMES["bioes"])
    words, chars, tags = build_vocabs(splits["train"])
    tags = train.scheme_tags(tags, train.SCHEMES["bioes"])
    torch.manual_seed(0)
    ours = zoo.create("bilstm_crf", num_words=len(words), num_chars=len(chars), num_tags=len(tags),
                      vocab=vocab_config(words, chars, tags), **RECIPE)
    packed = copy.deepcopy(ours)
    for model in (packed, packed.char_encoder):
        lstm = model.lstm
        model.lstm = PackedLSTM(lstm.input_size, lstm.hidden_size, batch_first=True, bidirectional=True)
        model.lstm.load_state_dict(lstm.state_dict())
    collate = train.Collate(words, chars)
    test = [collate([(s.words, [0] * len(s.words)) for s in splits["test"][i: i + 64]])  # encoded once
            for i in range(0, len(splits["test"]), 64)]
    loader = torch.utils.data.DataLoader(train.TaggedSentences(splits["train"], tags), batch_size=32,
                                         shuffle=True, collate_fn=collate, generator=torch.Generator().manual_seed(0))
    batches = [b for _, b in zip(range(40), loader)]

    def tag_all(model):
        def run():
            with torch.no_grad():
                for w, c, m, *_ in test:
                    model.decode(w, c, m)
        return run

    def train_steps(model):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

        def run():
            for w, c, m, t, _ in batches:
                model.loss(w, c, m, t).backward()
                opt.step()
                opt.zero_grad()
        return run

    rows = []
    for task, make, sentences in (("tag eng.testb, batch 64", tag_all, len(splits["test"])),
                                  ("train, batch 32", train_steps, 32 * len(batches))):
        fns = {"ours": make(ours.eval() if make is tag_all else ours.train()),
               "packed": make(packed.eval() if make is tag_all else packed.train())}
        times = {name: [] for name in fns}
        for i in range(1 + repeats):
            for name, fn in fns.items():
                t = time_once(fn)
                if i:
                    times[name].append(t)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        rows.append((task, sentences / med["ours"], sentences / med["packed"], med["packed"] / med["ours"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=40)
    parser.add_argument("--tags", type=int, nargs="+", default=[9, 17])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--data", default=None, help="CoNLL-2003 folder: also time the whole tagger")
    parser.add_argument("--tagger-repeats", type=int, default=3)
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
    if args.data:
        print(f"\nbilstm_crf {RECIPE}, median of {args.tagger_repeats} interleaved repeats\n")
        print("| task | ours (sentences/s) | packed LSTMs (sentences/s) | speed-up |")
        print("|---|---:|---:|---:|")
        for task, ours, packed, ratio in tagger_speed(args.data, args.tagger_repeats):
            print(f"| {task} | {ours:.0f} | {packed:.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
