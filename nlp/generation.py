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

    def compact(self, valid: Tensor) -> Tensor:
        """Drop the positions that ``valid`` (batch, length) marks False in each row: every row's kept
        positions move, in order, to the end of the first ``max kept`` columns (left padding, as
        prompts of different lengths have). Returns the new ``valid``."""
        kept = valid[:, :self.length]
        width = int(kept.sum(1).max())
        # a stable sort puts each row's dropped columns first and keeps the order of the others
        cols = kept.to(torch.uint8).sort(dim=1, stable=True).indices[:, self.length - width:]
        index = cols[None, :, None, :, None].expand(*self.keys.shape[:3], width, self.keys.shape[-1])
        for store in (self.keys, self.values):
            store[:, :, :, :width] = store[:, :, :, :self.length].gather(3, index)
        self.length = width
        return torch.zeros_like(valid).scatter_(1, torch.arange(width, device=valid.device).expand_as(cols),
                                                kept.gather(1, cols))


def _check_left_padded(mask: Tensor) -> None:
    # left padding: once a row has a token, every later position is a token
    if bool((mask[:, 1:] < mask[:, :-1]).any()):
        raise InputError("generate: attention_mask has padding after a token; pad prompts on the LEFT so every "
                         "sequence ends at the last column (tokenizer padding_side='left').")
    if bool((mask.sum(1) == 0).any()):
        raise InputError("generate: a prompt is all padding; give every sequence at least one token.")


def lookup_draft(tokens: Tensor, num_tokens: int, max_ngram: int = 3) -> Tensor | None:
    """A draft continuation found in a sequence's own text (prompt lookup decoding, Saxena 2023).

    Finds the latest earlier occurrence of the last ``n`` tokens of ``tokens`` (L,) (``n = max_ngram``
    down to 1) and proposes the up to ``num_tokens`` tokens that followed it; None without a match."""
    length = tokens.shape[0]
    for n in range(min(max_ngram, length - 1), 0, -1):
        windows = tokens[:-1].unfold(0, n, 1)  # the n-grams that end before the last token
        hits = (windows == tokens[-n:]).all(1).nonzero()
        if len(hits):
            # the latest occurrence with a full draft after it (a loop repeats its latest period),
            # else the earliest (the longest draft there is)
            starts = hits[:, 0] + n
            full = starts[starts + num_tokens <= length]
            start = int(full[-1] if len(full) else starts[0])
            return tokens[start:start + num_tokens]
    return None


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

    ``prompt_lookup_num_tokens`` (greedy, cached): each step also feeds, per sequence, up to that many
    draft tokens copied from where its text's last n-gram occurred before (:func:`lookup_draft`), and
    each sequence keeps the draft tokens that greedy decoding itself predicts, plus the model's own
    next token, so the sequences of a batch advance at their own pace. The tokens are greedy's (up to
    rounding in near-ties: several positions go through one matrix product); a step reads the
    weights once for several tokens when the text repeats itself."""
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
    full_pos = torch.cat([positions, positions[:, -1:] + 1 + torch.arange(max_new_tokens, device=device)], 1)
    if prompt_lookup_num_tokens is not None:
        out = _greedy_with_lookup(model, out, attention_mask if padded else None, full_pos, max_new_tokens,
                                  eos_token_id, prompt_lookup_num_tokens, prompt_lookup_max_ngram)
        model.train(was_training)
        return out
    full_mask = torch.ones(batch, total, dtype=torch.long, device=device)
    full_mask[:, :prompt_len] = attention_mask
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    cache = model.new_cache(batch, total) if use_cache else None
    length = prompt_len
    while length < total and not (eos_token_id is not None and bool(done.all())):
        start = cache.length if cache is not None else 0  # the cache holds positions before `start`
        logits = model(out[:, start:length], full_mask[:, :length] if padded else None,
                       full_pos[:, start:length], cache=cache, last_only=True)[:, -1]
        if do_sample:
            probs = filter_logits(logits.float(), temperature, top_k, top_p).softmax(-1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            token = logits.argmax(-1)
        if eos_token_id is not None:
            token = token.masked_fill(done, pad_token_id)
            done = done | (token == eos_token_id)
        out[:, length] = token
        length += 1
    model.train(was_training)
    return out[:, :length]


def _greedy_with_lookup(model, out: Tensor, prompt_mask: Tensor | None, positions: Tensor, max_new: int,
                        eos_token_id: int | None, num_tokens: int, max_ngram: int) -> Tensor:
    """Greedy decoding in which every step also feeds each row's prompt-lookup draft and each row
    keeps what greedy confirms of its own draft (``out``: prompts, then room for ``max_new`` tokens;
    ``positions`` of every column of ``out``). Rows advance by different counts, so the cache gets
    holes, the positions of rejected drafts: they are masked out, and squeezed out when the cache
    is full."""
    batch, total = out.shape
    prompt_len, device = total - max_new, out.device
    if max_new == 0:
        return out
    limit = model.config.max_positions
    width = min(limit, prompt_len + max_new * (1 + num_tokens))
    cache = model.new_cache(batch, width)
    valid = torch.zeros(batch, width, dtype=torch.bool, device=device)  # the cached positions each row sees
    valid[:, :prompt_len] = True if prompt_mask is None else prompt_mask.bool()
    first = (prompt_len - valid[:, :prompt_len].sum(1)).tolist()  # each row's first prompt token
    made, done = [0] * batch, [False] * batch  # tokens written per row; EOS or max_new reached

    def emit(row: int, tokens: list[int]) -> None:
        for token in tokens:
            out[row, prompt_len + made[row]] = token
            made[row] += 1
            if token == eos_token_id or made[row] == max_new:
                done[row] = True
                return

    logits = model(out[:, :prompt_len], prompt_mask, positions[:, :prompt_len], cache=cache, last_only=True)
    for row, token in enumerate(logits[:, -1].argmax(-1).tolist()):
        emit(row, [token])
    while not all(done):
        drafts = []
        for row in range(batch):
            room = max_new - made[row] - 1  # d drafts give up to d + 1 tokens
            draft = None if done[row] or room < 1 else lookup_draft(
                out[row, first[row]:prompt_len + made[row]], min(num_tokens, room), max_ngram)
            drafts.append([] if draft is None else draft.tolist())
        # the rows furthest behind decide when the batch is done, and a column costs the same in every
        # row: draft as far as their drafts reach (on one CPU thread at batch 8, a draft column adds
        # about a quarter of a one-token step; benchmarks/nlp_gpt_speed.py)
        behind = min(made[row] for row in range(batch) if not done[row])
        longest = max(len(drafts[row]) for row in range(batch) if not done[row] and made[row] == behind)
        if cache.length + 1 + longest > width and int(valid[:, :cache.length].sum(1).max()) < cache.length:
            valid = cache.compact(valid)
        past = cache.length
        d = min(longest, width - past - 1)
        last = [int(out[row, prompt_len + made[row] - 1]) for row in range(batch)]  # not cached yet
        x = torch.tensor([[last[r], *(drafts[r] + [last[r]] * d)[:d]] for r in range(batch)], device=device)
        ends = torch.tensor(made, device=device) + prompt_len - 1
        pos = positions[torch.arange(batch, device=device), ends][:, None] + torch.arange(1 + d, device=device)
        mask = None
        if not bool(valid[:, :past].all()):
            mask = torch.cat([valid[:, :past], torch.ones(batch, 1 + d, dtype=torch.bool, device=device)], 1).long()
        # a filler column past a row's end may point beyond the position table; nothing reads it
        predicted = model(x, mask, pos.clamp(max=limit - 1), cache=cache).argmax(-1).tolist()
        kept = []
        for row in range(batch):
            accepted = 0
            while accepted < min(len(drafts[row]), d) and predicted[row][accepted] == drafts[row][accepted]:
                accepted += 1
            kept.append(0 if done[row] else accepted + 1)  # the last token and the confirmed drafts
            if not done[row]:
                emit(row, predicted[row][:accepted + 1])
        kept_cols = torch.tensor(kept, device=device)[:, None]
        valid[:, past:past + 1 + d] = torch.arange(1 + d, device=device) < kept_cols
        cache.truncate(past + max(kept))
    return out[:, :prompt_len + max(made)]
