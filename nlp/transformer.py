"""Transformer: Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (arXiv:1706.03762).

    source ids -> embedding * sqrt(d) + sinusoidal positions -> encoder (N layers)  -> memory
    target ids -> embedding * sqrt(d) + sinusoidal positions -> decoder (N layers, causal
                  self-attention, attention over the memory) -> linear -> logits

Each encoder layer is self-attention then a position-wise feed-forward network; each decoder
layer adds attention over the encoder's output between the two. Every sub-layer is wrapped in a
residual connection and a layer norm: after the sum (post-norm, the paper) or on the sub-layer's
input (pre-norm, ``norm_first=True``, Wang et al. 2019), and both stacks end in a layer norm.

Checkpoint layout: ``encoder.*`` and ``decoder.*`` are ``torch.nn.Transformer``'s keys
(``encoder.layers.N.self_attn.in_proj_weight``, ``linear1``, ``norm1``, ..., ``encoder.norm``,
``decoder.layers.N.multihead_attn.*``, ``decoder.norm``), so an ``nn.Transformer``'s
``state_dict`` loads into them strictly; the embeddings (``src_embed``, ``tgt_embed``) and the
output projection (``generator``) are ours. With ``share_embeddings`` the source and target
embeddings are one matrix (a joint vocabulary, as the paper's English-German model); with
``tie_output`` the output projection is the target embedding.

API: ``model(src, tgt)`` -> logits ``(B, T, tgt_vocab_size)`` (teacher forcing: ``tgt`` starts
with BOS); ``encode`` / ``decode`` for the two halves; ``decode_step`` runs the decoder on one new
token per sequence with a :class:`DecoderCache` of keys and values, which is what greedy and beam
search (``zoo.nlp.beam``) call. Padding masks default to ``ids == pad_id``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.shared.errors import InputError, InvalidConfigError
from zoo.shared.layers.attention import attention, merge_heads, split_heads
from zoo.shared.layers.pos_embed import SinusoidalPositionalEncoding
from zoo.shared.registry import TestSpec, register_model


def swiglu(x: Tensor) -> Tensor:
    """SwiGLU (Shazeer 2020, "GLU Variants Improve Transformer", arXiv:2002.05202): the first half
    of the features, through SiLU, gates the second half. (..., 2f) -> (..., f)."""
    gate, value = x.chunk(2, dim=-1)
    return F.silu(gate) * value


ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "swiglu": swiglu}
GATED = {"swiglu"}  # linear1 is twice ffn_dim wide: the gate and the value


# -- the key/value cache of incremental decoding ---------------------------------------------------
@dataclass
class LayerCache:
    """One decoder layer's keys and values, each (N, H, S, D): self-attention (grows by one step
    per call) and attention over the memory (computed once)."""

    self_k: Tensor | None = None
    self_v: Tensor | None = None
    cross_k: Tensor | None = None
    cross_v: Tensor | None = None


@dataclass
class DecoderCache:
    """The decoder's keys and values so far; ``length`` tokens have been fed."""

    layers: list[LayerCache] = field(default_factory=list)
    length: int = 0

    def reorder(self, index: Tensor) -> None:
        """Keep the sequences ``index`` (N,) in that order: beam search's surviving hypotheses."""
        for layer in self.layers:
            for name in ("self_k", "self_v", "cross_k", "cross_v"):
                t = getattr(layer, name)
                if t is not None:
                    setattr(layer, name, t.index_select(0, index))


# -- the blocks ------------------------------------------------------------------------------------
class MultiheadAttention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameters: the query, key and value
    projections stacked in ``in_proj_weight`` (3 * dim, dim), then ``out_proj``."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of ``x`` (B, S, dim), each (B, H, S, D)."""
        dim = x.shape[-1]
        k, v = F.linear(x, self.in_proj_weight[dim:], self.in_proj_bias[dim:]).chunk(2, dim=-1)
        return split_heads(k, self.num_heads), split_heads(v, self.num_heads)

    def forward(self, query: Tensor, k: Tensor, v: Tensor, *, causal: bool = False,
                key_padding_mask: Tensor | None = None) -> Tensor:
        """``query`` (B, L, dim) over projected keys and values (B, H, S, D) -> (B, L, dim)."""
        dim = query.shape[-1]
        q = split_heads(F.linear(query, self.in_proj_weight[:dim], self.in_proj_bias[:dim]), self.num_heads)
        out = attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask,
                        dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(merge_heads(out))


class EncoderLayer(nn.Module):
    """Self-attention and feed-forward, each in a residual connection with a layer norm.
    Parameter names: ``nn.TransformerEncoderLayer``'s."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, activation: str,
                 norm_first: bool, eps: float, attention_dropout: float, activation_dropout: float):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiheadAttention(dim, num_heads, attention_dropout)
        self.linear1 = nn.Linear(dim, 2 * ffn_dim if activation in GATED else ffn_dim)
        self.dropout = nn.Dropout(activation_dropout)  # on the feed-forward hidden layer
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = ACTIVATIONS[activation]

    def _sa(self, x: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        k, v = self.self_attn.project_kv(x)
        return self.dropout1(self.self_attn(x, k, v, key_padding_mask=key_padding_mask))

    def _ff(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        if self.norm_first:
            x = x + self._sa(self.norm1(x), key_padding_mask)
            return x + self._ff(self.norm2(x))
        x = self.norm1(x + self._sa(x, key_padding_mask))
        return self.norm2(x + self._ff(x))


class DecoderLayer(nn.Module):
    """Causal self-attention, attention over the memory, feed-forward; parameter names:
    ``nn.TransformerDecoderLayer``'s (``self_attn``, ``multihead_attn``, ``norm1..3``)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, activation: str,
                 norm_first: bool, eps: float, attention_dropout: float, activation_dropout: float):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiheadAttention(dim, num_heads, attention_dropout)
        self.multihead_attn = MultiheadAttention(dim, num_heads, attention_dropout)
        self.linear1 = nn.Linear(dim, 2 * ffn_dim if activation in GATED else ffn_dim)
        self.dropout = nn.Dropout(activation_dropout)  # on the feed-forward hidden layer
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.norm3 = nn.LayerNorm(dim, eps=eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = ACTIVATIONS[activation]

    def _sa(self, x: Tensor, key_padding_mask: Tensor | None, cache: LayerCache | None) -> Tensor:
        k, v = self.self_attn.project_kv(x)
        if cache is not None:  # one new step: its keys join those of the steps before it
            if cache.self_k is not None:
                k, v = torch.cat([cache.self_k, k], dim=2), torch.cat([cache.self_v, v], dim=2)
            cache.self_k, cache.self_v = k, v
            # the new token sees every cached step: no causal mask, and no padding among them
            return self.dropout1(self.self_attn(x, k, v))
        return self.dropout1(self.self_attn(x, k, v, causal=True, key_padding_mask=key_padding_mask))

    def _mha(self, x: Tensor, memory: Tensor, memory_mask: Tensor | None, cache: LayerCache | None) -> Tensor:
        if cache is not None and cache.cross_k is not None:
            k, v = cache.cross_k, cache.cross_v
        else:
            k, v = self.multihead_attn.project_kv(memory)
            if cache is not None:
                cache.cross_k, cache.cross_v = k, v
        return self.dropout2(self.multihead_attn(x, k, v, key_padding_mask=memory_mask))

    def _ff(self, x: Tensor) -> Tensor:
        return self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(self, x: Tensor, memory: Tensor, tgt_key_padding_mask: Tensor | None = None,
                memory_key_padding_mask: Tensor | None = None, cache: LayerCache | None = None) -> Tensor:
        if self.norm_first:
            x = x + self._sa(self.norm1(x), tgt_key_padding_mask, cache)
            x = x + self._mha(self.norm2(x), memory, memory_key_padding_mask, cache)
            return x + self._ff(self.norm3(x))
        x = self.norm1(x + self._sa(x, tgt_key_padding_mask, cache))
        x = self.norm2(x + self._mha(x, memory, memory_key_padding_mask, cache))
        return self.norm3(x + self._ff(x))


class Encoder(nn.Module):
    """``nn.TransformerEncoder``'s layout: ``layers.N`` then ``norm``. Input: embedded (B, S, dim)."""

    def __init__(self, num_layers: int, norm_eps: float, **layer):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(eps=norm_eps, **layer) for _ in range(num_layers))
        self.norm = nn.LayerNorm(layer["dim"], eps=norm_eps)

    def forward(self, x: Tensor, src_key_padding_mask: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, src_key_padding_mask)
        return self.norm(x)


class Decoder(nn.Module):
    """``nn.TransformerDecoder``'s layout: ``layers.N`` then ``norm``. Input: embedded (B, T, dim);
    self-attention is always causal."""

    def __init__(self, num_layers: int, norm_eps: float, **layer):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(eps=norm_eps, **layer) for _ in range(num_layers))
        self.norm = nn.LayerNorm(layer["dim"], eps=norm_eps)

    def forward(self, x: Tensor, memory: Tensor, tgt_key_padding_mask: Tensor | None = None,
                memory_key_padding_mask: Tensor | None = None, cache: DecoderCache | None = None) -> Tensor:
        if cache is not None and not cache.layers:
            cache.layers = [LayerCache() for _ in self.layers]
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, tgt_key_padding_mask, memory_key_padding_mask,
                      None if cache is None else cache.layers[i])
        return self.norm(x)


# -- the model -------------------------------------------------------------------------------------
class Transformer(nn.Module):
    """Encoder-decoder Transformer over token ids.

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes (equal with ``share_embeddings``).
        dim, num_heads, ffn_dim: model width, attention heads, feed-forward width.
        num_encoder_layers, num_decoder_layers: stack depths.
        dropout: on the embeddings + positions, the attention weights, the feed-forward hidden
            layer and every sub-layer's output (0.1 in the paper).
        attention_dropout: on the attention weights alone, when it should differ from ``dropout``
            (``None``: ``dropout``, as ``nn.Transformer``). On a CPU, attention dropout also moves
            SDPA off its fused kernel onto the one that forms the weights.
        activation_dropout: on the feed-forward hidden layer alone (after the activation), when it
            should differ from ``dropout`` (``None``: ``dropout``, as ``nn.Transformer``; fairseq's and
            Hugging Face BART's option of that name). That layer is ``ffn_dim`` wide, so its masks
            are most of the random numbers dropout draws.
        activation: "relu" (the paper), "gelu" or "swiglu" (a gated feed-forward layer, Shazeer
            2020: ``linear1`` is then ``2 * ffn_dim`` wide; about 2/3 of a ReLU model's ``ffn_dim``
            keeps the parameter count). ``nn.Transformer`` has the first two only.
        norm_first: pre-norm instead of the paper's post-norm.
        max_len: the longest source or target the position table covers.
        share_embeddings: one embedding matrix for source and target.
        tie_output: the output projection reuses the target embedding (no output bias then).
        pad_id, bos_id, eos_id: the special target ids (``pad_id`` is also the source padding).
    """

    def __init__(self, src_vocab_size: int = 37000, tgt_vocab_size: int = 37000, dim: int = 512,
                 num_heads: int = 8, ffn_dim: int = 2048, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dropout: float = 0.1, attention_dropout: float | None = None,
                 activation_dropout: float | None = None,
                 activation: Literal["relu", "gelu", "swiglu"] = "relu",
                 norm_first: bool = False, norm_eps: float = 1e-5, max_len: int = 1024,
                 share_embeddings: bool = False, tie_output: bool = True,
                 pad_id: int = 0, bos_id: int = 1, eos_id: int = 2):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise InvalidConfigError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if dim % num_heads:
            raise InvalidConfigError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise InvalidConfigError(
                f"share_embeddings needs one vocabulary: src_vocab_size ({src_vocab_size}) != "
                f"tgt_vocab_size ({tgt_vocab_size}); pass share_embeddings=False")
        self.src_vocab_size, self.tgt_vocab_size, self.dim = src_vocab_size, tgt_vocab_size, dim
        self.max_len, self.pad_id, self.bos_id, self.eos_id = max_len, pad_id, bos_id, eos_id
        self.src_embed = nn.Embedding(src_vocab_size, dim)
        self.tgt_embed = self.src_embed if share_embeddings else nn.Embedding(tgt_vocab_size, dim)
        self.pos = SinusoidalPositionalEncoding(dim, max_len, dropout)
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        activation_dropout = dropout if activation_dropout is None else activation_dropout
        layer = dict(dim=dim, num_heads=num_heads, ffn_dim=ffn_dim, dropout=dropout, activation=activation,
                     norm_first=norm_first, attention_dropout=attention_dropout,
                     activation_dropout=activation_dropout)
        self.encoder = Encoder(num_encoder_layers, norm_eps, **layer)
        self.decoder = Decoder(num_decoder_layers, norm_eps, **layer)
        self.generator = nn.Linear(dim, tgt_vocab_size, bias=not tie_output)
        for p in (*self.encoder.parameters(), *self.decoder.parameters()):
            if p.dim() > 1:  # as nn.Transformer's _reset_parameters
                nn.init.xavier_uniform_(p)
        for emb in dict.fromkeys((self.src_embed, self.tgt_embed)):
            nn.init.normal_(emb.weight, std=dim ** -0.5)  # times sqrt(dim) in forward: unit scale
        if tie_output:
            self.generator.weight = self.tgt_embed.weight

    # -- inputs ------------------------------------------------------------------------------------
    def _embed(self, ids: Tensor, embed: nn.Embedding, name: str, positions: Tensor | None = None) -> Tensor:
        if (not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype.is_floating_point
                or ids.dtype == torch.bool):
            got = f"{tuple(ids.shape)} {ids.dtype}" if isinstance(ids, Tensor) else type(ids).__name__
            raise InputError(f"{name}: expected integer token ids of shape (batch, length), got {got}")
        if torch.compiler.is_compiling():  # the checks below read values: they would break the graph
            return self.pos(embed(ids) * math.sqrt(self.dim), positions)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= embed.num_embeddings):
            raise InputError(f"{name}: token ids must lie in [0, {embed.num_embeddings}), got values in "
                             f"[{int(ids.min())}, {int(ids.max())}]; check the vocabulary the ids come from")
        end = ids.shape[1] if positions is None else int(positions.max()) + 1
        if end > self.max_len:
            raise InputError(f"{name}: length {end} exceeds the {self.max_len} positions of this model; "
                             f"shorten the input or build the model with max_len >= {end}")
        return self.pos(embed(ids) * math.sqrt(self.dim), positions)

    def _padding(self, ids: Tensor, mask: Tensor | None) -> Tensor | None:
        if mask is not None:
            return mask
        if self.pad_id is None:
            return None
        pad = ids == self.pad_id
        # without padding SDPA runs unmasked (faster); compiled graphs keep the mask (no branch on data)
        return pad if torch.compiler.is_compiling() or bool(pad.any()) else None

    # -- the network -------------------------------------------------------------------------------
    def encode(self, src: Tensor, src_key_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Memory (B, S, dim) and its padding mask (True = pad; default ``src == pad_id``)."""
        mask = self._padding(src, src_key_padding_mask)
        return self.encoder(self._embed(src, self.src_embed, "src"), mask), mask

    def decode(self, tgt: Tensor, memory: Tensor, memory_key_padding_mask: Tensor | None = None,
               tgt_key_padding_mask: Tensor | None = None) -> Tensor:
        """Logits (B, T, tgt_vocab_size) of the token after each prefix of ``tgt``."""
        x = self._embed(tgt, self.tgt_embed, "tgt")
        mask = self._padding(tgt, tgt_key_padding_mask)
        return self.generator(self.decoder(x, memory, mask, memory_key_padding_mask))

    def forward(self, src: Tensor, tgt: Tensor, src_key_padding_mask: Tensor | None = None,
                tgt_key_padding_mask: Tensor | None = None) -> Tensor:
        memory, memory_mask = self.encode(src, src_key_padding_mask)
        return self.decode(tgt, memory, memory_mask, tgt_key_padding_mask)

    def decode_step(self, tokens: Tensor, memory: Tensor, memory_key_padding_mask: Tensor | None,
                    cache: DecoderCache) -> Tensor:
        """Logits (N, tgt_vocab_size) of the next token, given the newest token of each sequence
        ``tokens`` (N, 1); the earlier steps' keys and values come from ``cache``, which grows."""
        if tokens.dim() != 2 or tokens.shape[1] != 1:
            raise InputError("decode_step takes one new token per sequence, shape (N, 1); "
                             f"got {tuple(tokens.shape)}")
        positions = torch.full_like(tokens[0], cache.length)
        x = self._embed(tokens, self.tgt_embed, "tokens", positions)
        out = self.decoder(x, memory, None, memory_key_padding_mask, cache)
        cache.length += tokens.shape[1]
        return self.generator(out[:, -1])


# -- variants --------------------------------------------------------------------------------------
def _test_spec(shared: bool) -> TestSpec:
    config = dict(src_vocab_size=13 if shared else 11, tgt_vocab_size=13, dim=16, num_heads=2, ffn_dim=32,
                  num_encoder_layers=2, num_decoder_layers=2, max_len=16)

    def inputs(cfg: dict, batch: int) -> tuple:
        g = torch.Generator().manual_seed(batch)
        src = torch.randint(3, cfg["src_vocab_size"], (batch, 7), generator=g)
        tgt = torch.randint(3, cfg["tgt_vocab_size"], (batch, 5), generator=g)
        src[0, 5:] = 0  # padding: the masks take part
        tgt[:, 0] = 1
        return src, tgt

    return TestSpec(config=config, inputs=inputs,
                    output_shape=lambda cfg, batch: (batch, 5, cfg["tgt_vocab_size"]))


def _check_vocab(config: dict) -> str | None:
    if config["share_embeddings"] and config["src_vocab_size"] != config["tgt_vocab_size"]:
        return "share_embeddings needs src_vocab_size == tgt_vocab_size (one joint vocabulary)"
    if config["dim"] % config["num_heads"]:
        return f"dim ({config['dim']}) must be divisible by num_heads ({config['num_heads']})"
    return None


PAPER = "Vaswani et al. 2017, Attention Is All You Need (arXiv:1706.03762)"
FAMILY = dict(domain="nlp", task="sequence-to-sequence", paper=PAPER,
              inputs="src (B, S), tgt (B, T) int64 token ids; tgt starts with bos_id",
              checks=[_check_vocab])
VARIANTS = {
    # the paper's base and big models (English-German: one joint BPE vocabulary, shared embeddings)
    "transformer_base": dict(dim=512, num_heads=8, ffn_dim=2048, num_encoder_layers=6, num_decoder_layers=6,
                             dropout=0.1, share_embeddings=True),
    "transformer_big": dict(dim=1024, num_heads=16, ffn_dim=4096, num_encoder_layers=6, num_decoder_layers=6,
                            dropout=0.3, share_embeddings=True),
    # small ones, for character-level tasks such as grapheme-to-phoneme
    "transformer_small": dict(src_vocab_size=64, tgt_vocab_size=128, dim=256, num_heads=4, ffn_dim=1024,
                              num_encoder_layers=3, num_decoder_layers=3, dropout=0.1, max_len=64),
    "transformer_tiny": dict(src_vocab_size=64, tgt_vocab_size=128, dim=128, num_heads=4, ffn_dim=512,
                             num_encoder_layers=2, num_decoder_layers=2, dropout=0.1, max_len=64),
}
for _name, _config in VARIANTS.items():
    register_model(_name, Transformer, _config, test=_test_spec(_config.get("share_embeddings", False)),
                   **FAMILY)
