"""Decoding an encoder-decoder model: greedy search and beam search, batched, with the decoder's
key/value cache (``Transformer.decode_step``) or, for testing, by recomputing every prefix.

Beam search keeps the ``beam_size`` best unfinished prefixes of each source by summed log
probability. At each step it looks at the ``2 * beam_size`` best one-token extensions: those ending
in EOS among the ``beam_size`` best become finished hypotheses (as fairseq and transformers do, so
that a beam of one is greedy search), the best ``beam_size`` others stay active. A finished
hypothesis Y is ranked by log P(Y) / lp(Y), with GNMT's length penalty (Wu et al. 2016,
arXiv:1609.08144)

    lp(Y) = ((5 + |Y|) / 6) ** alpha        (|Y| counts the generated tokens, EOS included)

(alpha = 0: plain log probability). A source is done when it holds ``beam_size`` finished
hypotheses and no active one can still beat the worst of them (its log probability can only fall
and its length penalty is at most lp(max_len), so log P / lp(max_len) bounds its final score);
prefixes that reach ``max_len`` tokens without EOS are finished as they are. PAD and BOS are never
generated.

Both searches return, per source, token id lists without BOS and EOS.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from zoo.shared.errors import InputError

from .transformer import DecoderCache, Transformer


class Hypothesis(NamedTuple):
    tokens: list[int]  # without BOS and EOS
    score: float  # log_prob / lp(length): what the beam ranks by
    log_prob: float


def length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """GNMT: ((5 + length) / 6) ** alpha."""
    return ((5 + length) / 6) ** alpha


class _Stepper:
    """The next-token log probabilities of N running sequences, one step at a time: through the
    decoder's cache, or (``use_cache=False``) by running the decoder on the whole prefix again."""

    def __init__(self, model: Transformer, memory: Tensor, memory_mask: Tensor | None, use_cache: bool):
        self.model, self.memory, self.memory_mask = model, memory, memory_mask
        self.cache = DecoderCache() if use_cache else None

    def __call__(self, prefix: Tensor) -> Tensor:
        if self.cache is not None:
            logits = self.model.decode_step(prefix[:, -1:], self.memory, self.memory_mask, self.cache)
        else:
            logits = self.model.decode(prefix, self.memory, self.memory_mask)[:, -1]
        logp = logits.float().log_softmax(-1)
        logp[:, [self.model.pad_id, self.model.bos_id]] = float("-inf")  # never generated
        return logp

    def reorder(self, index: Tensor) -> None:
        self.memory = self.memory.index_select(0, index)
        if self.memory_mask is not None:
            self.memory_mask = self.memory_mask.index_select(0, index)
        if self.cache is not None:
            self.cache.reorder(index)


def _check(model: Transformer, src: Tensor, max_len: int) -> None:
    if max_len < 1:
        raise InputError(f"max_len must be >= 1, got {max_len}")
    if max_len + 1 > model.max_len:
        raise InputError(f"max_len {max_len} (+ BOS) exceeds the model's {model.max_len} positions; "
                         f"pass max_len <= {model.max_len - 1}")
    if src.dim() != 2:
        raise InputError(f"src: expected token ids of shape (batch, length), got {tuple(src.shape)}")


@torch.no_grad()
def greedy_decode(model: Transformer, src: Tensor, max_len: int, src_key_padding_mask: Tensor | None = None,
                  use_cache: bool = True) -> list[list[int]]:
    """The most probable next token at every step, until EOS or ``max_len`` tokens."""
    _check(model, src, max_len)
    memory, memory_mask = model.encode(src, src_key_padding_mask)
    step = _Stepper(model, memory, memory_mask, use_cache)
    prefix = torch.full((len(src), 1), model.bos_id, dtype=torch.long, device=src.device)
    done = torch.zeros(len(src), dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        token = step(prefix).argmax(-1)
        token = token.masked_fill(done, model.pad_id)
        prefix = torch.cat([prefix, token[:, None]], dim=1)
        done |= token == model.eos_id
        if bool(done.all()):
            break
    out = []
    for row in prefix[:, 1:].tolist():
        out.append(row[: row.index(model.eos_id)] if model.eos_id in row else row)
    return out


@torch.no_grad()
def beam_search(model: Transformer, src: Tensor, beam_size: int, max_len: int, alpha: float = 0.6,
                nbest: int = 1, src_key_padding_mask: Tensor | None = None,
                use_cache: bool = True) -> list[list[Hypothesis]]:
    """The ``nbest`` best hypotheses of each source (best first), by log P / lp(length)."""
    _check(model, src, max_len)
    if beam_size < 1 or not 1 <= nbest <= beam_size:
        raise InputError(f"need beam_size >= 1 and 1 <= nbest <= beam_size, got beam_size={beam_size}, "
                         f"nbest={nbest}")
    if alpha < 0:
        raise InputError(f"alpha (the length penalty exponent) must be >= 0, got {alpha}")
    batch, k, device = len(src), beam_size, src.device
    memory, memory_mask = model.encode(src, src_key_padding_mask)
    expand = torch.arange(batch, device=device).repeat_interleave(k)  # each source k times
    step = _Stepper(model, memory.index_select(0, expand),
                    None if memory_mask is None else memory_mask.index_select(0, expand), use_cache)
    prefix = torch.full((batch * k, 1), model.bos_id, dtype=torch.long, device=device)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis per source to start with
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    done = [False] * batch
    best_bound = float(length_penalty(max_len, alpha))
    for t in range(1, max_len + 1):
        logp = step(prefix)  # (B * k, V)
        vocab = logp.shape[-1]
        cand = (scores.reshape(-1, 1) + logp).reshape(batch, k * vocab)
        top, idx = cand.topk(min(2 * k, k * vocab), dim=-1)  # (B, 2k), best first
        beam, token = idx // vocab, idx % vocab
        live = torch.isfinite(top)
        ends = live & (token == model.eos_id)
        # as fairseq and transformers: an EOS extension finishes only if it ranks among the k best
        # (so beam size 1 is greedy search)
        for b, j in ends[:, :k].nonzero().tolist():
            if not done[b]:
                row = prefix[b * k + beam[b, j]].tolist()[1:]
                lp = float(top[b, j])
                _add(finished[b], Hypothesis(row, lp / float(length_penalty(t, alpha)), lp), k)
        # the best k extensions that do not end: the new active beams (stable order of rank)
        grows = live & ~ends
        rank = torch.where(grows, torch.arange(top.shape[1], device=device), top.shape[1])
        keep = rank.sort(dim=-1, stable=True).indices[:, :k]  # (B, k') with k' = min(k, 2k columns)
        if keep.shape[1] < k:  # a vocabulary smaller than the beam: pad with dead beams
            keep = torch.cat([keep, keep[:, -1:].expand(-1, k - keep.shape[1])], dim=1)
        kept_alive = grows.gather(1, keep) & (torch.arange(k, device=device) < grows.sum(1, keepdim=True))
        scores = torch.where(kept_alive, top.gather(1, keep), float("-inf"))
        source = (beam.gather(1, keep) + torch.arange(batch, device=device)[:, None] * k).reshape(-1)
        prefix = torch.cat([prefix.index_select(0, source), token.gather(1, keep).reshape(-1, 1)], dim=1)
        step.reorder(source)
        best_active = scores.max(dim=1).values.tolist()
        for b in range(batch):
            if not done[b] and len(finished[b]) >= k:
                done[b] = best_active[b] / best_bound <= finished[b][-1].score
        if all(done):
            break
    # sources still running at max_len: their live prefixes finish as they are
    for b in range(batch):
        if done[b]:
            continue
        for j in range(k):
            if torch.isfinite(scores[b, j]):
                lp = float(scores[b, j])
                row = prefix[b * k + j].tolist()[1:]
                _add(finished[b], Hypothesis(row, lp / float(length_penalty(len(row), alpha)), lp), k)
    return [hyps[:nbest] for hyps in finished]


def _add(hyps: list[Hypothesis], hyp: Hypothesis, k: int) -> None:
    """Insert into the best-first list, keeping at most k."""
    hyps.append(hyp)
    hyps.sort(key=lambda h: -h.score)
    del hyps[k:]
