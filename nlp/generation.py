"""Text generation for decoder-only language models (GPT-2): greedy, temperature, top-k, top-p,
EOS and ``max_new_tokens``, batched prompts with left padding, with or without a key/value cache.

The cache is preallocated for the whole generation (prompt + new tokens) and written in place, so
a step costs one forward of one token per sequence and no concatenation. Without the cache every
step recomputes the whole sequence: the plain definition, kept as the test oracle. Greedy decoding
can also verify draft tokens copied from earlier in the text (``prompt_lookup_num_tokens``): one
forward then yields several of greedy's tokens when the text repeats itself.

A model takes part by offering ``forward(input_ids, attention_mask=None, position_ids=None,
cache=None, last_only=False)`` and ``new_cache(batch, max_length)`` (see :mod:`zoo.nlp.gpt2`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from zoo.shared.errors import InputError


class KVCache:
    """Keys and values of every layer, ``(layers, batch, heads, max_length, head_dim)``, filled up to
    ``length``. A layer writes the new positions with :meth:`update` and reads everything so far;
    the model calls :meth:`advance` once all layers have run."""

    def __init__(self, num_layers: int, batch: int, num_heads: int, max_length: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        shape = (num_layers, batch, num_heads, max_length, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.max_length = max_length
        self.length = 0

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        end = self.length + k.shape[2]
        if end > self.max_length:
            raise InputError(f"KVCache: {end} positions do not fit a cache of {self.max_length}; "
                             "make the cache for prompt length + max_new_tokens.")
        self.keys[layer, :, :, self.length:end] = k
        self.values[layer, :, :, self.length:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, steps: int) -> None:
        self.length += steps

    def truncate(self, length: int) -> None:
        """Forget the positions from ``length`` on (draft tokens that were not accepted); the next
        :meth:`update` overwrites them."""
        if not 0 <= length <= self.length:
            raise InputError(f"KVCache: cannot truncate {self.length} positions to {length}.")
        self.length = length


def _check_left_padded(mask: Tensor) -> None:
    # left padding: once a row has a token, every later position is a token
    if bool((mask[:, 1:] < mask[:, :-1]).any()):
        raise InputError("generate: attention_mask has padding after a token; pad prompts on the LEFT so every "
                         "sequence ends at the last column (tokenizer padding_side='left').")
    if bool((mask.sum(1) == 0).any()):
        raise InputError("generate: a prompt is all padding; give every sequence at least one token.")


def lookup_drafts(tokens: Tensor, active: Tensor, num_tokens: int, max_ngram: int = 3) -> Tensor | None:
    """Draft continuations found in each sequence's own text (prompt lookup decoding, Saxena 2023).

    For each row of ``tokens`` (B, L), find the latest earlier occurrence of its last ``n`` tokens
    (``n = max_ngram`` down to 1) and propose the up to ``num_tokens`` tokens that followed it. Returns
    (B, d) drafts, ``d`` the shortest proposal over the ``active`` rows (inactive rows get filler), or
    None when an active row has no match: then one ordinary step is cheaper than a draft that a
    single row would reject at once."""
    batch, length = tokens.shape
    drafts: list[Tensor | None] = [None] * batch
    for row in range(batch):
        if not bool(active[row]):
            continue
        seq = tokens[row]
        for n in range(min(max_ngram, length - 1), 0, -1):
            windows = seq[:-1].unfold(0, n, 1)  # the n-grams that end before the last token
            hits = (windows == seq[-n:]).all(1).nonzero()
            if len(hits):
                # the latest occurrence with a full draft after it (a loop repeats its latest period),
                # else the earliest (the longest draft there is)
                starts = hits[:, 0] + n
                full = starts[starts + num_tokens <= length]
                start = int(full[-1] if len(full) else starts[0])
                drafts[row] = seq[start:start + num_tokens]
                break
        if drafts[row] is None:
            return None
    found = [d for d in drafts if d is not None]
    if not found:
        return None
    width = min(len(d) for d in found)
    filler = found[0][:width]
    return torch.stack([(d if d is not None else filler)[:width] for d in drafts])


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> Tensor:
    """Scale by ``1 / temperature``, then keep the ``top_k`` highest logits, then the smallest set
    whose probability reaches ``top_p`` (nucleus sampling, Holtzman et al. 2020); the rest become -inf."""
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # probability of the tokens ranked above this one
        drop = before >= top_p  # the top token is always kept (before == 0)
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


@torch.no_grad()
def generate(model, input_ids: Tensor, attention_mask: Tensor | None = None, *, max_new_tokens: int = 20,
             do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, eos_token_id: int | None = None, pad_token_id: int | None = None,
             use_cache: bool = True, generator: torch.Generator | None = None,
             prompt_lookup_num_tokens: int | None = None, prompt_lookup_max_ngram: int = 3) -> Tensor:
    """Continue each prompt by up to ``max_new_tokens`` tokens; returns (B, T + new) ids, the prompts
    first. ``attention_mask`` (1: token, 0: padding) marks left padding in a batch of prompts of
    different lengths. Greedy unless ``do_sample``; a sequence that produced ``eos_token_id`` is
    continued with ``pad_token_id`` (default: the EOS id) and generation stops when all have.

    ``prompt_lookup_num_tokens`` (greedy, cached): each step also feeds up to that many draft tokens
    copied from where the text's last n-gram occurred before (:func:`lookup_drafts`), and keeps every
    draft token that greedy decoding itself predicts, plus the model's own next token. The tokens are
    greedy's (up to rounding in near-ties: several positions go through one matrix product); a
    step reads the weights once for several tokens when the text repeats itself."""
    if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise InputError("generate: input_ids must be a (batch, length) tensor of prompt token ids, length >= 1.")
    if max_new_tokens < 0:
        raise InputError(f"generate: max_new_tokens must be >= 0, got {max_new_tokens}.")
    if do_sample and not temperature > 0:
        raise InputError(f"generate: temperature must be > 0, got {temperature}.")
    if top_k is not None and top_k < 1:
        raise InputError(f"generate: top_k must be >= 1, got {top_k}.")
    if top_p is not None and not 0 < top_p <= 1:
        raise InputError(f"generate: top_p must be in (0, 1], got {top_p}.")
    if prompt_lookup_num_tokens is not None:
        if prompt_lookup_num_tokens < 1 or prompt_lookup_max_ngram < 1:
            raise InputError("generate: prompt_lookup_num_tokens and prompt_lookup_max_ngram must be >= 1, got "
                             f"{prompt_lookup_num_tokens} and {prompt_lookup_max_ngram}.")
        if do_sample or not use_cache:
            raise InputError("generate: prompt lookup drafts are checked against greedy decoding with the cache; "
                             "pass do_sample=False and use_cache=True, or drop prompt_lookup_num_tokens.")
    batch, prompt_len = input_ids.shape
    limit = model.config.max_positions
    if prompt_len + max_new_tokens > limit:
        raise InputError(f"generate: prompt length {prompt_len} + max_new_tokens {max_new_tokens} is more than "
                         f"the position table ({limit}); shorten the prompt or ask for fewer tokens.")
    device = input_ids.device
    padded = attention_mask is not None and not bool(attention_mask.all())
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise InputError(f"generate: attention_mask has shape {tuple(attention_mask.shape)}, input_ids "
                         f"{tuple(input_ids.shape)}.")
    attention_mask = attention_mask.to(torch.long)
    _check_left_padded(attention_mask)
    if pad_token_id is None:
        pad_token_id = eos_token_id if eos_token_id is not None else 0
    was_training = model.training
    model.eval()
    # positions count the real tokens only, so a left-padded prompt reads like an unpadded one
    positions = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
    total = prompt_len + max_new_tokens
    out = torch.full((batch, total), pad_token_id, dtype=input_ids.dtype, device=device)
    out[:, :prompt_len] = input_ids
    full_mask = torch.ones(batch, total, dtype=torch.long, device=device)
    full_mask[:, :prompt_len] = attention_mask
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    full_pos = torch.cat([positions, positions[:, -1:] + 1 + torch.arange(max_new_tokens, device=device)], 1)
    cache = model.new_cache(batch, total) if use_cache else None
    length = prompt_len
    while length < total and not (eos_token_id is not None and bool(done.all())):
        start = cache.length if cache is not None else 0  # the cache holds positions before `start`
        drafts = None
        if prompt_lookup_num_tokens is not None and start > 0:  # after the prompt's own forward
            room = min(prompt_lookup_num_tokens, total - length - 1)  # d drafts give up to d + 1 tokens
            drafts = lookup_drafts(out[:, :length], ~done, room, prompt_lookup_max_ngram) if room > 0 else None
        if drafts is not None:
            d = drafts.shape[1]
            out[:, length:length + d] = drafts
            logits = model(out[:, start:length + d], full_mask[:, :length + d] if padded else None,
                           full_pos[:, start:length + d], cache=cache)
            predicted = logits[:, -d - 1:].argmax(-1)  # greedy's token after the last token and each draft
            agree = (predicted[:, :d] == drafts) | done[:, None]  # a finished row only emits padding
            accepted = int(agree.long().cumprod(1).sum(1).min())  # drafts every row confirmed, in order
            cache.truncate(length + accepted)  # the last token and the accepted drafts stay cached
            steps = predicted[:, :accepted + 1].unbind(1)
        else:
            logits = model(out[:, start:length], full_mask[:, :length] if padded else None,
                           full_pos[:, start:length], cache=cache, last_only=True)[:, -1]
            if do_sample:
                probs = filter_logits(logits.float(), temperature, top_k, top_p).softmax(-1)
                steps = (torch.multinomial(probs, 1, generator=generator).squeeze(1),)
            else:
                steps = (logits.argmax(-1),)
        for token in steps:
            if eos_token_id is not None:
                token = token.masked_fill(done, pad_token_id)
                done = done | (token == eos_token_id)
            out[:, length] = token
            length += 1
            if eos_token_id is not None and bool(done.all()):
                break
    model.train(was_training)
    return out[:, :length]
