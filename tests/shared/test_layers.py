"""Tests for shared.layers: parity with torch / torchvision / timm references, math properties, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shared.layers import (
    ConvNormAct,
    DropPath,
    GradientReversal,
    LayerNorm,
    LayerNorm2d,
    LearnedPositionalEmbedding,
    MemoryEfficientSwish,
    Mlp,
    MultiHeadAttention,
    RMSNorm,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    SqueezeExcitation,
    drop_path,
    grad_reverse,
    init_weights_kaiming,
    init_weights_vit_style,
    resample_abs_pos_embed,
    sinusoidal_position_encoding,
    swish,
    trunc_normal_,
)

DIM, HEADS, B, L, S = 16, 4, 2, 5, 7


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- attention
def _pair(kv_dim=None):
    """Our attention and an nn.MultiheadAttention holding the same weights."""
    ours = MultiHeadAttention(DIM, HEADS, kv_dim=kv_dim).eval()
    kw = {} if kv_dim is None else {"kdim": kv_dim, "vdim": kv_dim}
    ref = nn.MultiheadAttention(DIM, HEADS, batch_first=True, **kw).eval()
    with torch.no_grad():
        ref.in_proj_bias.normal_()  # non-zero biases, so a bias mix-up would show
        ref.out_proj.bias.normal_()
        if kv_dim is None:
            ours.qkv.weight.copy_(ref.in_proj_weight)
            ours.qkv.bias.copy_(ref.in_proj_bias)
        else:
            ours.q.weight.copy_(ref.q_proj_weight)
            ours.kv.weight.copy_(torch.cat([ref.k_proj_weight, ref.v_proj_weight]))
            ours.q.bias.copy_(ref.in_proj_bias[:DIM])
            ours.kv.bias.copy_(ref.in_proj_bias[DIM:])
        ours.proj.load_state_dict(ref.out_proj.state_dict())
    return ours, ref


def _ref(ref, x, ctx=None, **kw):
    ctx = x if ctx is None else ctx
    return ref(x, ctx, ctx, need_weights=False, **kw)[0]


def test_attention_layout_is_timm_vit():
    m = MultiHeadAttention(DIM, HEADS)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == {
        "qkv.weight": (3 * DIM, DIM), "qkv.bias": (3 * DIM,), "proj.weight": (DIM, DIM), "proj.bias": (DIM,),
    }
    c = MultiHeadAttention(DIM, HEADS, kv_dim=8)
    assert set(c.state_dict()) == {"q.weight", "q.bias", "kv.weight", "kv.bias", "proj.weight", "proj.bias"}
    assert c.kv.weight.shape == (2 * DIM, 8)


def test_attention_self_matches_torch():
    ours, ref = _pair()
    x = torch.randn(B, L, DIM)
    torch.testing.assert_close(ours(x), _ref(ref, x), atol=1e-5, rtol=1e-5)


def test_attention_cross_same_width_matches_torch():
    ours, ref = _pair()
    x, ctx = torch.randn(B, L, DIM), torch.randn(B, S, DIM)
    torch.testing.assert_close(ours(x, ctx), _ref(ref, x, ctx), atol=1e-5, rtol=1e-5)


def test_attention_cross_kv_dim_matches_torch():
    ours, ref = _pair(kv_dim=8)
    x, ctx = torch.randn(B, L, DIM), torch.randn(B, S, 8)
    torch.testing.assert_close(ours(x, ctx), _ref(ref, x, ctx), atol=1e-5, rtol=1e-5)
    pad = torch.zeros(B, S, dtype=torch.bool)
    pad[0, -3:] = True
    torch.testing.assert_close(
        ours(x, ctx, key_padding_mask=pad), _ref(ref, x, ctx, key_padding_mask=pad), atol=1e-5, rtol=1e-5
    )


def test_attention_causal_matches_torch():
    ours, ref = _pair()
    x = torch.randn(B, L, DIM)
    causal = nn.Transformer.generate_square_subsequent_mask(L)
    expected = _ref(ref, x, attn_mask=causal, is_causal=True)
    torch.testing.assert_close(ours(x, causal=True), expected, atol=1e-5, rtol=1e-5)
    # the same mask given explicitly, as float and as bool (True = blocked)
    torch.testing.assert_close(ours(x, attn_mask=causal), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours(x, attn_mask=torch.isinf(causal)), expected, atol=1e-5, rtol=1e-5)


def test_attention_key_padding_matches_torch():
    ours, ref = _pair()
    x = torch.randn(B, L, DIM)
    pad = torch.zeros(B, L, dtype=torch.bool)
    pad[1, -2:] = True
    expected = _ref(ref, x, key_padding_mask=pad)
    torch.testing.assert_close(ours(x, key_padding_mask=pad), expected, atol=1e-5, rtol=1e-5)
    # right padding + causal: every query keeps key 0, nothing fully masked
    causal = torch.ones(L, L, dtype=torch.bool).triu(1)  # True = blocked
    torch.testing.assert_close(
        ours(x, causal=True, key_padding_mask=pad),
        _ref(ref, x, key_padding_mask=pad, attn_mask=causal),
        atol=1e-5, rtol=1e-5,
    )


def test_attention_per_head_masks_match_torch():
    ours, ref = _pair()
    x = torch.randn(B, L, DIM)
    blocked = torch.rand(B * HEADS, L, L) > 0.6
    blocked[..., 0] = False  # every query keeps one key
    expected = _ref(ref, x, attn_mask=blocked)
    torch.testing.assert_close(ours(x, attn_mask=blocked), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours(x, attn_mask=blocked.view(B, HEADS, L, L)), expected, atol=1e-5, rtol=1e-5)
    bias = torch.randn(L, L)
    torch.testing.assert_close(ours(x, attn_mask=bias), _ref(ref, x, attn_mask=bias), atol=1e-5, rtol=1e-5)


def test_attention_fully_masked_rows_are_finite():
    ours, ref = _pair()
    x = torch.randn(B, L, DIM, requires_grad=True)
    # left padding + causal: the first two queries of sample 0 see only padded keys
    pad = torch.zeros(B, L, dtype=torch.bool)
    pad[0, :2] = True
    out = ours(x, causal=True, key_padding_mask=pad)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    causal = torch.ones(L, L, dtype=torch.bool).triu(1)
    expected = _ref(ref, x, key_padding_mask=pad, attn_mask=causal)
    torch.testing.assert_close(out[0, 2:], expected[0, 2:], atol=1e-5, rtol=1e-5)  # non-pad queries
    torch.testing.assert_close(out[1], expected[1], atol=1e-5, rtol=1e-5)
    # a fully masked row outputs proj(0) = proj.bias
    torch.testing.assert_close(out[0, :2], ours.proj.bias.expand(2, DIM))
    # a sample whose keys are all padding
    all_pad = torch.zeros(B, L, dtype=torch.bool)
    all_pad[0] = True
    out = ours(x, key_padding_mask=all_pad)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], _ref(ref, x, key_padding_mask=all_pad)[1], atol=1e-5, rtol=1e-5)
    # float mask with a fully -inf row
    bias = torch.zeros(L, L)
    bias[0] = float("-inf")
    assert torch.isfinite(ours(x, attn_mask=bias)).all()


def test_attention_train_mode_dropout_runs():
    m = MultiHeadAttention(DIM, HEADS, attn_drop=0.5, proj_drop=0.1).train()
    x = torch.randn(B, L, DIM)
    assert m(x, causal=True).shape == (B, L, DIM)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m(torch.randn(L, DIM)), r"x: expected shape \(B, L, 16\), got \(5, 16\)"),
        (lambda m: m(torch.randn(B, L, 8)), r"x: expected shape \(B, L, 16\), got \(2, 5, 8\)"),
        (lambda m: m(torch.randn(B, L, DIM), torch.randn(3, S, DIM)), r"context: expected shape \(2, S, 16\), got \(3, 7, 16\)"),
        (lambda m: m(torch.randn(B, L, DIM), torch.randn(B, S, 8)), r"context: expected shape \(2, S, 16\)"),
        (
            lambda m: m(torch.randn(B, L, DIM), key_padding_mask=torch.zeros(B, L + 1, dtype=torch.bool)),
            r"key_padding_mask: expected shape \(2, 5\), got \(2, 6\)",
        ),
        (
            lambda m: m(torch.randn(B, L, DIM), key_padding_mask=torch.zeros(B, L)),
            r"key_padding_mask: expected dtype torch.bool",
        ),
        (
            lambda m: m(torch.randn(B, L, DIM), attn_mask=torch.zeros(L, L + 1)),
            r"attn_mask: expected shape \(5, 5\), \(8, 5, 5\) or \(2\|1, 4\|1, 5, 5\), got \(5, 6\)",
        ),
        (
            lambda m: m(torch.randn(B, L, DIM), attn_mask=torch.zeros(L, L, dtype=torch.long)),
            r"attn_mask: expected a bool or floating dtype",
        ),
    ],
)
def test_attention_bad_shapes(call, match):
    with pytest.raises(ValueError, match=match):
        call(MultiHeadAttention(DIM, HEADS))


def test_attention_bad_config_and_missing_context():
    with pytest.raises(ValueError, match=r"dim \(10\) must be a positive multiple of num_heads \(4\)"):
        MultiHeadAttention(10, 4)
    cross = MultiHeadAttention(DIM, HEADS, kv_dim=8)
    with pytest.raises(ValueError, match="pass context"):
        cross(torch.randn(B, L, DIM))
    with pytest.raises(ValueError, match=r"context: expected shape \(2, S, 8\), got \(2, 7, 16\)"):
        cross(torch.randn(B, L, DIM), torch.randn(B, S, DIM))


# --------------------------------------------------------------------------- MLP
def test_mlp_keys_and_forward():
    m = Mlp(8, 32, 4).eval()
    assert list(m.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert [n for n, _ in m.named_children()] == ["fc1", "act", "drop1", "fc2", "drop2"]
    x = torch.randn(3, 8)
    torch.testing.assert_close(m(x), m.fc2(F.gelu(m.fc1(x))))
    assert Mlp(8).fc2.out_features == 8 and Mlp(8, bias=False).fc1.bias is None


def test_mlp_matches_timm():
    timm_layers = pytest.importorskip("timm.layers")
    ref = timm_layers.Mlp(8, 32, 4).eval()
    m = Mlp(8, 32, 4).eval()
    m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 8)
    torch.testing.assert_close(m(x), ref(x))


# --------------------------------------------------------------------------- norms
def test_rmsnorm_matches_torch():
    ours, ref = RMSNorm(DIM), nn.RMSNorm(DIM, eps=1e-6)
    with torch.no_grad():
        ref.weight.normal_()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 4, DIM) * 5
    torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=1e-6)
    plain = RMSNorm(DIM, elementwise_affine=False)
    assert list(plain.state_dict()) == []
    torch.testing.assert_close(plain(x), nn.RMSNorm(DIM, eps=1e-6, elementwise_affine=False)(x), atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="expected last dimension 16"):
        ours(torch.randn(3, 8))


def test_layernorm_and_layernorm2d():
    assert issubclass(LayerNorm, nn.LayerNorm)
    ln = LayerNorm2d(6)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    x = torch.randn(2, 6, 3, 5)
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, 1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), expected)
    timm_layers = pytest.importorskip("timm.layers")
    ref = timm_layers.LayerNorm2d(6)
    ref.load_state_dict(ln.state_dict(), strict=True)
    torch.testing.assert_close(ln(x), ref(x), atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match=r"expected shape \(B, 6, H, W\), got \(2, 5, 3, 5\)"):
        ln(torch.randn(2, 5, 3, 5))


# --------------------------------------------------------------------------- drop path
def test_drop_path_identity_in_eval_and_p0():
    x = torch.randn(8, 3)
    assert drop_path(x, 0.5, training=False) is x
    assert drop_path(x, 0.0, training=True) is x
    m = DropPath(0.5).eval()
    assert m(x) is x


def test_drop_path_training_statistics():
    p = 0.3
    x = torch.ones(20000, 4)
    y = DropPath(p).train()(x)
    per_sample = y[:, 0]
    assert torch.all(y == per_sample[:, None])  # whole samples are kept or dropped
    assert (per_sample == 0).any()
    kept = per_sample[per_sample != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)))
    assert abs(y.mean().item() - 1.0) < 0.03  # expectation preserved
    assert abs((per_sample == 0).float().mean().item() - p) < 0.02
    unscaled = drop_path(x, p, training=True, scale_by_keep=False)
    assert set(unscaled.unique().tolist()) == {0.0, 1.0}
    assert torch.all(drop_path(x, 1.0, training=True) == 0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 1.5"):
        DropPath(1.5)


# --------------------------------------------------------------------------- positions
def test_sinusoidal_matches_formula():
    length, dim = 50, 12
    pe = np.zeros((length, dim))
    for pos in range(length):
        for i in range(dim // 2):
            pe[pos, 2 * i] = np.sin(pos / 10000 ** (2 * i / dim))
            pe[pos, 2 * i + 1] = np.cos(pos / 10000 ** (2 * i / dim))
    ours = sinusoidal_position_encoding(length, dim)
    assert ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), pe, atol=1e-6)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_position_encoding(4, 7)


def test_sinusoidal_module():
    m = SinusoidalPositionalEncoding(DIM, max_len=32)
    assert list(m.state_dict()) == []  # fixed table, not a checkpoint key
    x = torch.randn(B, L, DIM)
    table = sinusoidal_position_encoding(32, DIM)
    torch.testing.assert_close(m(x), x + table[:L])
    pos = torch.tensor([[3, 4, 5, 6, 7], [0, 1, 2, 3, 4]])
    torch.testing.assert_close(m(x, pos), x + table[pos])
    with pytest.raises(ValueError, match="exceeds the 32 supported positions"):
        m(torch.randn(1, 33, DIM))
    with pytest.raises(ValueError, match=r"expected x of shape \(B, L, 16\)"):
        m(torch.randn(1, 3, 8))


def test_learned_positional_embedding():
    m = LearnedPositionalEmbedding(10, DIM)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == {"weight": (10, DIM)}
    x = torch.randn(B, L, DIM)
    torch.testing.assert_close(m(x), x + m.weight[:L])
    torch.testing.assert_close(m(x, torch.arange(2, 2 + L)), x + m.weight[2 : 2 + L])
    with pytest.raises(ValueError, match=r"positions must lie in \[0, 10\), got values in \[8, 12\]"):
        m(x, torch.arange(8, 8 + L))
    with pytest.raises(ValueError, match="integer tensor"):
        m(x, torch.arange(L).float())


def test_rotary_relative_property():
    dim = 8
    rope = RotaryEmbedding(dim)
    q, k = torch.randn(dim, dtype=torch.float64), torch.randn(dim, dtype=torch.float64)

    def score(m, n):
        qr = rope.rotate(q.float()[None], torch.tensor([m]))
        kr = rope.rotate(k.float()[None], torch.tensor([n]))
        return (qr * kr).sum().item()

    for offset in (-3, 0, 2, 7):
        scores = [score(m, m - offset) for m in (7, 10, 25, 40)]
        assert max(scores) - min(scores) < 1e-4, (offset, scores)
    assert abs(score(5, 2) - score(5, 3)) > 1e-3  # and it does depend on the offset


def test_rotary_rotate_half_convention_and_shapes():
    rope = RotaryEmbedding(2)
    x = torch.tensor([[1.0, 0.0]])  # one position, a unit vector on the first feature
    torch.testing.assert_close(rope.rotate(x, torch.tensor([1])), torch.tensor([[math.cos(1.0), math.sin(1.0)]]))
    rope = RotaryEmbedding(8)
    q, k = torch.randn(B, HEADS, L, 8), torch.randn(B, HEADS, L, 8)
    qr, kr = rope.apply_rotary(q, k)
    torch.testing.assert_close(qr[:, :, 0], q[:, :, 0])  # position 0 is not rotated
    torch.testing.assert_close(qr.norm(dim=-1), q.norm(dim=-1))  # rotations keep norms
    pos = torch.arange(L).expand(B, L) + torch.tensor([[0], [3]])  # per-sample positions
    qb, _ = rope.apply_rotary(q, k, pos)
    torch.testing.assert_close(qb[1], rope.rotate(q[1], torch.arange(3, 3 + L)))
    partial = RotaryEmbedding(4)
    x = torch.randn(B, HEADS, L, 8)
    y = partial.rotate(x)
    torch.testing.assert_close(y[..., 4:], x[..., 4:])  # features past `dim` pass through
    with pytest.raises(ValueError, match="D >= 8"):
        rope.rotate(torch.randn(2, 4))


def test_resample_abs_pos_embed():
    pe = torch.randn(1, 1 + 4 * 4, DIM)
    assert resample_abs_pos_embed(pe, (4, 4)) is pe
    out = resample_abs_pos_embed(pe, (6, 8))
    assert out.shape == (1, 1 + 48, DIM)
    torch.testing.assert_close(out[:, :1], pe[:, :1])  # class token kept
    const = torch.ones(1, 2 + 9, 3)
    torch.testing.assert_close(resample_abs_pos_embed(const, 5, num_prefix_tokens=2), torch.ones(1, 2 + 25, 3))
    with pytest.raises(ValueError, match="not a square"):
        resample_abs_pos_embed(torch.randn(1, 1 + 12, DIM), 4)
    with pytest.raises(ValueError, match=r"old_grid 3x5 needs 15 grid tokens, got 12"):
        resample_abs_pos_embed(torch.randn(1, 1 + 12, DIM), 4, old_grid=(3, 5))
    # non-square source grid, same result as timm
    timm_layers = pytest.importorskip("timm.layers")
    pe = torch.randn(1, 1 + 3 * 4, DIM)
    ours = resample_abs_pos_embed(pe, (6, 5), old_grid=(3, 4))
    ref = timm_layers.resample_abs_pos_embed(pe, new_size=[6, 5], old_size=[3, 4], num_prefix_tokens=1)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)


# --------------------------------------------------------------------------- conv blocks
def test_conv_norm_act_matches_torchvision():
    from torchvision.ops import Conv2dNormActivation

    ours = ConvNormAct(3, 8, 3, stride=2, act_layer=nn.Hardswish).eval()
    ref = Conv2dNormActivation(3, 8, 3, stride=2, activation_layer=nn.Hardswish).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert [n for n, _ in ours.named_children()] == ["0", "1", "2"]
    with torch.no_grad():
        ref[1].running_mean.normal_()
        ref[1].weight.normal_()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(ours(x), ref(x))


def test_conv_norm_act_options():
    x = torch.randn(1, 4, 10, 10)
    for k, d in ((1, 1), (3, 1), (5, 1), (3, 2)):
        assert ConvNormAct(4, 4, k, dilation=d)(x).shape == (1, 4, 10, 10)
    bare = ConvNormAct(4, 6, 3, norm_layer=None, act_layer=None, bias=True)
    assert len(bare) == 1 and bare[0].bias is not None
    no_norm = ConvNormAct(4, 4, 3, groups=4, norm_layer=None)
    assert [type(c) for c in no_norm] == [nn.Conv2d, nn.ReLU] and no_norm[0].groups == 4
    assert ConvNormAct(4, 4, 3, padding=0)(x).shape == (1, 4, 8, 8)


def test_squeeze_excitation_matches_torchvision():
    from torchvision.ops import SqueezeExcitation as TvSE

    for act, gate in ((nn.ReLU, nn.Sigmoid), (nn.ReLU, nn.Hardsigmoid)):
        ours = SqueezeExcitation(16, 4, act_layer=act, gate_layer=gate)
        ref = TvSE(16, 4, activation=act, scale_activation=gate)
        assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
        ours.load_state_dict(ref.state_dict(), strict=True)
        x = torch.randn(2, 16, 5, 5)
        torch.testing.assert_close(ours(x), ref(x))
    assert isinstance(ours.avgpool, nn.AdaptiveAvgPool2d)


# --------------------------------------------------------------------------- init
def test_trunc_normal_bounds():
    t = trunc_normal_(torch.empty(20000), std=0.02)
    assert t.abs().max() <= 0.04 + 1e-7
    assert abs(t.std().item() - 0.02 * 0.88) < 0.002  # a +-2 sigma truncated normal has std ~0.88 sigma


def test_init_weights_vit_style():
    m = nn.Sequential(nn.Linear(64, 256), nn.LayerNorm(256), nn.Linear(256, 64), RMSNorm(64))
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(3.0)
    assert init_weights_vit_style(m) is m
    assert m[0].weight.abs().max() <= 0.04 + 1e-7 and abs(m[0].weight.std().item() - 0.0176) < 0.002
    assert torch.all(m[0].bias == 0) and torch.all(m[2].bias == 0)
    assert torch.all(m[1].weight == 1) and torch.all(m[1].bias == 0) and torch.all(m[3].weight == 1)


def test_init_weights_kaiming():
    m = nn.Sequential(nn.Conv2d(8, 32, 3, bias=True), nn.BatchNorm2d(32), nn.Flatten(), nn.Linear(32, 10))
    linear_before = m[3].weight.clone()
    with torch.no_grad():
        m[1].weight.fill_(5.0)
        m[1].bias.fill_(5.0)
    init_weights_kaiming(m)
    expected_std = math.sqrt(2.0 / (32 * 3 * 3))  # fan_out = out_channels * kernel area
    assert abs(m[0].weight.std().item() - expected_std) / expected_std < 0.1
    assert torch.all(m[0].bias == 0)
    assert torch.all(m[1].weight == 1) and torch.all(m[1].bias == 0)
    assert torch.equal(m[3].weight, linear_before)  # Linear keeps PyTorch's default init


# --------------------------------------------------------------------------- custom autograd functions
def _saved(fn, x):
    """Tensors that autograd saves for backward while computing fn(x)."""
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(x)
    return saved, y


def test_swish_values_and_gradcheck():
    x = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(swish, (x,))
    xf = torch.randn(3, 5) * 4
    torch.testing.assert_close(swish(xf), xf * torch.sigmoid(xf))
    torch.testing.assert_close(MemoryEfficientSwish()(xf), F.silu(xf))
    xa, xb = xf.clone().requires_grad_(), xf.clone().requires_grad_()
    g = torch.randn_like(xf)
    swish(xa).backward(g)
    F.silu(xb).backward(g)
    torch.testing.assert_close(xa.grad, xb.grad)


def test_swish_saves_only_its_input():
    x = torch.randn(64, 32, requires_grad=True)
    saved, y = _saved(swish, x)
    assert len(saved) == 1
    assert saved[0].data_ptr() == x.data_ptr() and saved[0].nbytes == x.nbytes
    naive, _ = _saved(lambda t: t * torch.sigmoid(t), x)
    naive_bytes = sum(t.nbytes for t in naive)
    naive_unique = {t.untyped_storage().data_ptr() for t in naive}
    assert naive_bytes > x.nbytes and len(naive_unique) == 2  # x and sigmoid(x)
    y.sum().backward()  # the graph with hooks still backpropagates
    assert x.grad is not None


def test_gradient_reversal():
    x = torch.randn(3, 4, requires_grad=True)
    y = grad_reverse(x, lambd=0.5)
    torch.testing.assert_close(y, x)
    g = torch.randn(3, 4)
    y.backward(g)
    torch.testing.assert_close(x.grad, -0.5 * g)
    x.grad = None
    layer = GradientReversal(2.0)
    (layer(x) * 3).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, -6.0))
    # gradcheck compares with the numerical derivative of the identity, which the reversed
    # gradient equals only for lambd = -1; other lambdas are checked exactly above.
    xd = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: grad_reverse(t, -1.0), (xd,))
    with pytest.raises(RuntimeError, match="Jacobian mismatch"):  # reversed != derivative of identity
        torch.autograd.gradcheck(lambda t: grad_reverse(t, 1.0), (xd,), raise_exception=True)
