"""Scaled dot-product attention (Vaswani et al., 2017, "Attention Is All You Need"), as functions.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V

This is the core every attention module calls; the modules themselves live with their family
(ViT's fused ``qkv``, BERT's ``query`` / ``key`` / ``value``, GPT-2's ``c_attn``, ...), so each keeps
its checkpoint's parameter names and loads strictly, with no tensor-splitting key map. A module
projects its inputs, splits the heads (:func:`split_heads`), calls :func:`attention` and merges
them back (:func:`merge_heads`) before its output projection.

Masks follow ``torch.nn.MultiheadAttention``: in a boolean mask ``True`` means *not allowed* (a
padded key, or a blocked query-key pair); a float ``attn_mask`` is added to the scores. A query
whose keys are all masked gets a zero output row, never NaN. A mask of the wrong shape or dtype is
an ``InputError`` (a ``ValueError``) naming the shapes it accepts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError

__all__ = ["attention", "merge_masks", "split_heads", "merge_heads"]


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, L, H * D) -> (B, H, L, D)."""
    return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, L, D) -> (B, L, H * D)."""
    return x.transpose(1, 2).flatten(2)


def merge_masks(
    batch: int,
    num_heads: int,
    q_len: int,
    kv_len: int,
    *,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    attn_mask: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> Tensor | None:
    """Combine a causal flag, a key-padding mask and an attention mask into one mask in SDPA's
    convention (bool ``True`` = attend, or additive float), broadcastable to (B, H, L, S).

    Returns None when there is nothing to mask, or when ``causal`` is the only constraint (SDPA's
    ``is_causal`` then does it without building a mask).

    Args:
        key_padding_mask: bool (B, S), ``True`` marks a padded key.
        attn_mask: bool (``True`` = blocked) or additive float, of shape (L, S), (B * H, L, S) or
            broadcastable (B | 1, H | 1, L, S).
        dtype: the dtype a float mask is cast to (the scores' dtype).
    """
    mask = None  # additive float or "allowed" bool
    if attn_mask is not None:
        if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
            raise InputError(f"attn_mask: expected a bool or floating dtype, got {attn_mask.dtype}")
        h = num_heads
        if attn_mask.dim() == 2 and attn_mask.shape == (q_len, kv_len):
            mask = attn_mask[None, None]
        elif attn_mask.dim() == 3 and attn_mask.shape == (batch * h, q_len, kv_len):
            mask = attn_mask.reshape(batch, h, q_len, kv_len)
        elif attn_mask.dim() == 4 and attn_mask.shape[0] in (1, batch) and attn_mask.shape[1] in (1, h) \
                and attn_mask.shape[2:] == (q_len, kv_len):
            mask = attn_mask
        else:
            raise InputError(
                f"attn_mask: expected shape ({q_len}, {kv_len}), ({batch * h}, {q_len}, {kv_len}) or "
                f"({batch}|1, {h}|1, {q_len}, {kv_len}), got {tuple(attn_mask.shape)}"
            )
        mask = ~mask if mask.dtype == torch.bool else mask.to(dtype)
    if key_padding_mask is not None:
        if key_padding_mask.dtype != torch.bool:
            raise InputError(f"key_padding_mask: expected dtype torch.bool (True = pad), got {key_padding_mask.dtype}")
        if key_padding_mask.shape != (batch, kv_len):
            raise InputError(f"key_padding_mask: expected shape ({batch}, {kv_len}), got {tuple(key_padding_mask.shape)}")
        keep = ~key_padding_mask[:, None, None, :]
        mask = keep if mask is None else _and_masks(mask, keep)
    if causal and mask is not None:  # SDPA refuses is_causal together with a mask: spell it out
        keep = torch.ones(q_len, kv_len, dtype=torch.bool, device=device).tril()
        mask = _and_masks(mask, keep[None, None])
    return mask


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """Multi-head attention of q (B, H, L, D) over k, v (B, H, S, D) -> (B, H, L, D), through
    ``F.scaled_dot_product_attention``.

    Args:
        causal: query i sees keys 0..i only (top-left aligned, as ``is_causal`` in SDPA).
        key_padding_mask, attn_mask: see :func:`merge_masks`.
        dropout_p: dropout on the attention weights; the caller passes 0 outside training.
        scale: the score scale; default 1 / sqrt(D).
    """
    batch, heads, q_len, _ = q.shape
    mask = merge_masks(batch, heads, q_len, k.shape[-2], causal=causal, key_padding_mask=key_padding_mask,
                       attn_mask=attn_mask, dtype=q.dtype, device=q.device)
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
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                         is_causal=causal and mask is None, scale=scale)
    if empty_rows is not None:
        out = out.masked_fill(empty_rows, 0.0)
    return out


def _and_masks(mask: Tensor, keep: Tensor) -> Tensor:
    """Restrict ``mask`` (bool "allowed" or additive float) to the positions where ``keep`` is True."""
    if mask.dtype == torch.bool:
        return mask & keep
    return mask.masked_fill(~keep, float("-inf"))
