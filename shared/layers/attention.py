"""Multi-head scaled dot-product attention (Vaswani et al., 2017, "Attention Is All You Need").

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V
    MultiHead(X, C)    = Concat(head_1, ..., head_h) W^O,  head_i = Attention(X W_i^Q, C W_i^K, C W_i^V)

Parameter layout
----------------
* ``kv_dim=None``: one fused ``qkv`` Linear (dim -> 3 * dim, rows ordered q | k | v, heads contiguous
  inside each block) and ``proj``; the same layout as timm's ViT ``Attention`` and as
  ``nn.MultiheadAttention.in_proj_weight`` / ``out_proj``. Cross-attention on a context of width
  ``dim`` uses the q rows of ``qkv`` for the queries and the k | v rows for the context.
* ``kv_dim`` given: separate ``q`` (dim -> dim) and ``kv`` (kv_dim -> 2 * dim) Linears and ``proj``,
  for cross-attention on a context of another width (timm-style cross-attention layout).

Masks follow ``torch.nn.MultiheadAttention``: in a boolean mask ``True`` means *not allowed*
(a padded key, or a blocked query-key pair); a float ``attn_mask`` is added to the scores.
A query whose keys are all masked gets a zero attention output (then ``proj``), never NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(nn.Module):
    """Multi-head self- or cross-attention built on ``F.scaled_dot_product_attention``.

    Args:
        dim: model width (query width and output width).
        num_heads: number of heads; must divide ``dim``.
        qkv_bias: bias on the input projections.
        attn_drop: dropout probability on the attention weights (training only).
        proj_drop: dropout probability after the output projection.
        kv_dim: width of the context for cross-attention. ``None`` keeps the fused ``qkv`` layout
            (context, if any, must then have width ``dim``).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        kv_dim: int | None = None,
    ) -> None:
        super().__init__()
        if dim <= 0 or num_heads <= 0 or dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.kv_dim = kv_dim
        if kv_dim is None:
            self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        else:
            self.q = nn.Linear(dim, dim, bias=qkv_bias)
            self.kv = nn.Linear(kv_dim, 2 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def extra_repr(self) -> str:
        kv = "" if self.kv_dim is None else f", kv_dim={self.kv_dim}"
        return f"dim={self.dim}, num_heads={self.num_heads}{kv}, attn_drop={self.attn_drop}"

    # ----------------------------------------------------------------------------------------
    def _project(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Input projections -> q (B, L, dim), k and v (B, S, dim)."""
        if self.kv_dim is None:
            if context is None:
                return self.qkv(x).chunk(3, dim=-1)
            w_q, w_kv = self.qkv.weight.split([self.dim, 2 * self.dim])
            b_q, b_kv = (None, None) if self.qkv.bias is None else self.qkv.bias.split([self.dim, 2 * self.dim])
            q = F.linear(x, w_q, b_q)
            k, v = F.linear(context, w_kv, b_kv).chunk(2, dim=-1)
            return q, k, v
        k, v = self.kv(x if context is None else context).chunk(2, dim=-1)
        return self.q(x), k, v

    def _check_inputs(self, x: Tensor, context: Tensor | None) -> tuple[int, int, int]:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x: expected shape (B, L, {self.dim}), got {tuple(x.shape)}")
        batch, q_len = x.shape[:2]
        if context is None:
            if self.kv_dim is not None and self.kv_dim != self.dim:
                raise ValueError(
                    f"this layer was built for cross-attention (kv_dim={self.kv_dim} != dim={self.dim}); "
                    "pass context=(B, S, kv_dim)"
                )
            return batch, q_len, q_len
        kv_width = self.dim if self.kv_dim is None else self.kv_dim
        if context.dim() != 3 or context.shape[0] != batch or context.shape[-1] != kv_width:
            raise ValueError(f"context: expected shape ({batch}, S, {kv_width}), got {tuple(context.shape)}")
        return batch, q_len, context.shape[1]

    def _build_mask(
        self,
        x: Tensor,
        batch: int,
        q_len: int,
        kv_len: int,
        causal: bool,
        key_padding_mask: Tensor | None,
        attn_mask: Tensor | None,
    ) -> Tensor | None:
        """Combine the masks into one (B, 1 | H, L, S) mask in SDPA convention (bool True = attend,
        or additive float); ``None`` when there is nothing to mask."""
        mask = None  # additive float or "allowed" bool
        if attn_mask is not None:
            if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
                raise ValueError(f"attn_mask: expected a bool or floating dtype, got {attn_mask.dtype}")
            h = self.num_heads
            if attn_mask.dim() == 2 and attn_mask.shape == (q_len, kv_len):
                mask = attn_mask[None, None]
            elif attn_mask.dim() == 3 and attn_mask.shape == (batch * h, q_len, kv_len):
                mask = attn_mask.reshape(batch, h, q_len, kv_len)
            elif attn_mask.dim() == 4 and attn_mask.shape[0] in (1, batch) and attn_mask.shape[1] in (1, h) \
                    and attn_mask.shape[2:] == (q_len, kv_len):
                mask = attn_mask
            else:
                raise ValueError(
                    f"attn_mask: expected shape ({q_len}, {kv_len}), ({batch * h}, {q_len}, {kv_len}) or "
                    f"({batch}|1, {h}|1, {q_len}, {kv_len}), got {tuple(attn_mask.shape)}"
                )
            mask = ~mask if mask.dtype == torch.bool else mask.to(x.dtype)
        if key_padding_mask is not None:
            if key_padding_mask.dtype != torch.bool:
                raise ValueError(f"key_padding_mask: expected dtype torch.bool (True = pad), got {key_padding_mask.dtype}")
            if key_padding_mask.shape != (batch, kv_len):
                raise ValueError(
                    f"key_padding_mask: expected shape ({batch}, {kv_len}), got {tuple(key_padding_mask.shape)}"
                )
            keep = ~key_padding_mask[:, None, None, :]
            mask = keep if mask is None else _and_masks(mask, keep)
        if causal and mask is not None:  # SDPA refuses is_causal together with a mask: spell it out
            keep = torch.ones(q_len, kv_len, dtype=torch.bool, device=x.device).tril()
            mask = _and_masks(mask, keep[None, None])
        return mask

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        causal: bool = False,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        """Attend from ``x`` (B, L, dim) to ``context`` (B, S, kv_dim) or, when it is None, to ``x``.

        Args:
            causal: query i sees keys 0..i only (top-left aligned, as ``is_causal`` in SDPA).
            key_padding_mask: bool (B, S), ``True`` marks a padded key that is ignored.
            attn_mask: bool (``True`` = blocked) or additive float mask of shape (L, S),
                (B * num_heads, L, S) or broadcastable (B | 1, num_heads | 1, L, S).

        Returns:
            (B, L, dim)
        """
        batch, q_len, kv_len = self._check_inputs(x, context)
        q, k, v = self._project(x, context)
        q, k, v = (t.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2) for t in (q, k, v))

        mask = self._build_mask(x, batch, q_len, kv_len, causal, key_padding_mask, attn_mask)
        empty_rows = None
        if mask is not None:
            # A query with no key left would softmax over all -inf -> NaN: let it attend to everything,
            # then zero its output.
            if mask.dtype == torch.bool:
                empty_rows = ~mask.any(dim=-1, keepdim=True)
                mask = mask | empty_rows
            else:
                empty_rows = torch.isneginf(mask).all(dim=-1, keepdim=True)
                mask = mask.masked_fill(empty_rows, 0.0)

        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.attn_drop if self.training else 0.0,
            is_causal=causal and mask is None,
        )
        if empty_rows is not None:
            out = out.masked_fill(empty_rows, 0.0)
        out = out.transpose(1, 2).flatten(2)
        return self.proj_drop(self.proj(out))


def _and_masks(mask: Tensor, keep: Tensor) -> Tensor:
    """Restrict ``mask`` (bool "allowed" or additive float) to the positions where ``keep`` is True."""
    if mask.dtype == torch.bool:
        return mask & keep
    return mask.masked_fill(~keep, float("-inf"))
