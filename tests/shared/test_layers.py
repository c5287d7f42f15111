"""Tests for zoo.shared.layers: parity with torch / torchvision / timm references, math properties, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo.shared.layers import (
    ConvNormAct,
    DropPath,
    GradientReversal,
    Mlp,
    SinusoidalPositionalEncoding,
    SqueezeExcitation,
    attention,
    checkpoint_seq,
    drop_path,
    grad_reverse,
    init_weights_vit_style,
    merge_heads,
    merge_masks,
    resample_abs_pos_embed,
    sinusoidal_position_encoding,
    split_heads,
    trunc_normal_,
)

DIM, HEADS, B, L, S = 16, 4, 2, 5, 7


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- attention
# The functional core is checked behind nn.MultiheadAttention's own projections: the reference
# defines the mask conventions (bool True = blocked, float = added) that the core follows.
def _reference():
    ref = nn.MultiheadAttention(DIM, HEADS, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_bias.normal_()  # non-zero biases, so a bias mix-up would show
        ref.out_proj.bias.normal_()
    return ref


def _ref(ref, x, ctx=None, **kw):
    ctx = x if ctx is None else ctx
    return ref(x, ctx, ctx, need_weights=False, **kw)[0]


def _ours(ref, x, ctx=None, **kw):
    """The reference's projections around our core: split heads, attention, merge heads."""
    ctx = x if ctx is None else ctx
    (w_q, w_k, w_v), (b_q, b_k, b_v) = ref.in_proj_weight.chunk(3), ref.in_proj_bias.chunk(3)
    q = split_heads(F.linear(x, w_q, b_q), HEADS)
    k, v = split_heads(F.linear(ctx, w_k, b_k), HEADS), split_heads(F.linear(ctx, w_v, b_v), HEADS)
    return ref.out_proj(merge_heads(attention(q, k, v, **kw)))


def test_split_and_merge_heads():
    x = torch.randn(B, L, DIM)
    heads = split_heads(x, HEADS)
    assert heads.shape == (B, HEADS, L, DIM // HEADS)
    torch.testing.assert_close(heads[:, 1], x[..., DIM // HEADS: 2 * DIM // HEADS], atol=0, rtol=0)  # contiguous heads
    assert torch.equal(merge_heads(heads), x)


def test_attention_self_and_cross_match_torch():
    ref = _reference()
    x, ctx = torch.randn(B, L, DIM), torch.randn(B, S, DIM)
    torch.testing.assert_close(_ours(ref, x), _ref(ref, x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_ours(ref, x, ctx), _ref(ref, x, ctx), atol=1e-5, rtol=1e-5)
    pad = torch.zeros(B, S, dtype=torch.bool)
    pad[0, -3:] = True
    torch.testing.assert_close(_ours(ref, x, ctx, key_padding_mask=pad), _ref(ref, x, ctx, key_padding_mask=pad),
                               atol=1e-5, rtol=1e-5)


def test_attention_causal_matches_torch():
    ref = _reference()
    x = torch.randn(B, L, DIM)
    causal = nn.Transformer.generate_square_subsequent_mask(L)
    expected = _ref(ref, x, attn_mask=causal, is_causal=True)
    torch.testing.assert_close(_ours(ref, x, causal=True), expected, atol=1e-5, rtol=1e-5)
    # the same mask given explicitly, as float and as bool (True = blocked)
    torch.testing.assert_close(_ours(ref, x, attn_mask=causal), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_ours(ref, x, attn_mask=torch.isinf(causal)), expected, atol=1e-5, rtol=1e-5)


def test_attention_key_padding_matches_torch():
    ref = _reference()
    x = torch.randn(B, L, DIM)
    pad = torch.zeros(B, L, dtype=torch.bool)
    pad[1, -2:] = True
    torch.testing.assert_close(_ours(ref, x, key_padding_mask=pad), _ref(ref, x, key_padding_mask=pad),
                               atol=1e-5, rtol=1e-5)
    # right padding + causal: every query keeps key 0, nothing fully masked
    causal = torch.ones(L, L, dtype=torch.bool).triu(1)  # True = blocked
    torch.testing.assert_close(
        _ours(ref, x, causal=True, key_padding_mask=pad),
        _ref(ref, x, key_padding_mask=pad, attn_mask=causal),
        atol=1e-5, rtol=1e-5,
    )


def test_attention_per_head_masks_match_torch():
    ref = _reference()
    x = torch.randn(B, L, DIM)
    blocked = torch.rand(B * HEADS, L, L) > 0.6
    blocked[..., 0] = False  # every query keeps one key
    expected = _ref(ref, x, attn_mask=blocked)
    torch.testing.assert_close(_ours(ref, x, attn_mask=blocked), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_ours(ref, x, attn_mask=blocked.view(B, HEADS, L, L)), expected, atol=1e-5, rtol=1e-5)
    bias = torch.randn(L, L)
    torch.testing.assert_close(_ours(ref, x, attn_mask=bias), _ref(ref, x, attn_mask=bias), atol=1e-5, rtol=1e-5)


def test_attention_fully_masked_rows_are_finite():
    ref = _reference()
    x = torch.randn(B, L, DIM, requires_grad=True)
    # left padding + causal: the first two queries of sample 0 see only padded keys
    pad = torch.zeros(B, L, dtype=torch.bool)
    pad[0, :2] = True
    out = _ours(ref, x, causal=True, key_padding_mask=pad)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    causal = torch.ones(L, L, dtype=torch.bool).triu(1)
    expected = _ref(ref, x, key_padding_mask=pad, attn_mask=causal)
    torch.testing.assert_close(out[0, 2:], expected[0, 2:], atol=1e-5, rtol=1e-5)  # non-pad queries
    torch.testing.assert_close(out[1], expected[1], atol=1e-5, rtol=1e-5)
    # a fully masked row is a zero attention output: out_proj(0) = out_proj.bias
    torch.testing.assert_close(out[0, :2], ref.out_proj.bias.expand(2, DIM))
    # a sample whose keys are all padding
    all_pad = torch.zeros(B, L, dtype=torch.bool)
    all_pad[0] = True
    out = _ours(ref, x, key_padding_mask=all_pad)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], _ref(ref, x, key_padding_mask=all_pad)[1], atol=1e-5, rtol=1e-5)
    # float mask with a fully -inf row
    bias = torch.zeros(L, L)
    bias[0] = float("-inf")
    assert torch.isfinite(_ours(ref, x, attn_mask=bias)).all()


def test_attention_dropout_drops_weights_and_keeps_the_expectation():
    n, d = 4000, 8
    q, k, v = torch.randn(1, 1, L, d), torch.randn(1, 1, S, d), torch.randn(1, 1, S, d)
    plain = attention(q, k, v)
    # n copies of the same problem in one call: each draws its own dropout mask
    dropped = attention(q.expand(n, -1, -1, -1), k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1), dropout_p=0.5)
    spread = (dropped - plain).abs().amax(dim=(1, 2, 3))
    assert (spread > 1e-3).float().mean() > 0.9  # nearly every copy is changed by its mask
    torch.testing.assert_close(dropped.mean(0, keepdim=True), plain, atol=0.08, rtol=0)  # weights scaled by 1 / (1 - p)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(key_padding_mask=torch.zeros(B, L + 1, dtype=torch.bool)),
         r"key_padding_mask: expected shape \(2, 5\), got \(2, 6\)"),
        (dict(key_padding_mask=torch.zeros(B, L)), r"key_padding_mask: expected dtype torch.bool"),
        (dict(attn_mask=torch.zeros(L, L + 1)),
         r"attn_mask: expected shape \(5, 5\), \(8, 5, 5\) or \(2\|1, 4\|1, 5, 5\), got \(5, 6\)"),
        (dict(attn_mask=torch.zeros(L, L, dtype=torch.long)), r"attn_mask: expected a bool or floating dtype"),
    ],
)
def test_attention_bad_masks(kw, match):
    with pytest.raises(ValueError, match=match):
        merge_masks(B, HEADS, L, L, **kw)
    q = torch.randn(B, HEADS, L, DIM // HEADS)
    with pytest.raises(ValueError, match=match):
        attention(q, q, q, **kw)


def test_merge_masks_leaves_a_lone_causal_flag_to_sdpa():
    assert merge_masks(B, HEADS, L, L) is None
    assert merge_masks(B, HEADS, L, L, causal=True) is None  # is_causal, no mask built
    pad = torch.zeros(B, L, dtype=torch.bool)
    pad[0, -1] = True
    keep = merge_masks(B, HEADS, L, L, causal=True, key_padding_mask=pad)
    assert keep.dtype == torch.bool and keep.shape == (B, 1, L, L)
    assert torch.equal(keep[1, 0], torch.ones(L, L, dtype=torch.bool).tril())
    assert not keep[0, 0, :, -1].any()


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


# --------------------------------------------------------------------------- cpu dropout
@pytest.mark.parametrize("p", [0.05, 0.3])
def test_cpu_dropout_drops_each_entry_with_probability_p_and_keeps_the_expectation(p):
    from zoo.shared.layers.drop import cpu_dropout

    torch.manual_seed(0)
    n = 600_001  # not a multiple of 3: the last random word is cut
    y = cpu_dropout(torch.ones(n), p)
    dropped = (y == 0).float()
    # within 5 standard deviations of p overall, and in each of the three fields a word gives
    for part in (dropped, *(dropped[i::3] for i in range(3))):
        sd = (p * (1 - p) / part.numel()) ** 0.5
        assert abs(part.mean().item() - p) < 5 * sd
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 65536 / (65536 - round(p * 65536))), rtol=0, atol=0)
    assert abs(y.mean().item() - 1.0) < 0.01


def test_cpu_dropout_gradient_eval_and_module_swap():
    from zoo.shared.layers.drop import CpuDropout, cpu_dropout, use_cpu_dropout

    x = torch.randn(4, 5, 6, requires_grad=True)
    y = cpu_dropout(x, 0.5)
    y.sum().backward()
    assert torch.equal(x.grad == 0, y == 0) and y.shape == x.shape  # the gradient takes the same mask
    assert cpu_dropout(x, 0.5, training=False) is x and cpu_dropout(x, 0.0) is x
    assert torch.all(cpu_dropout(x, 1.0) == 0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 1.5"):
        cpu_dropout(x, 1.5)
    model = nn.Sequential(nn.Linear(6, 6), nn.Dropout(0.2), nn.Sequential(nn.Dropout(0.1)), nn.ReLU())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert use_cpu_dropout(model) == 2
    assert type(model[1]) is CpuDropout and model[1].p == 0.2 and model[2][0].p == 0.1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    dropped = (model.train()[1](torch.ones(20000)) == 0).float().mean().item()
    assert 0.17 < dropped < 0.23
    assert torch.equal(model.eval()(x), model[3](model[0](x)))  # identity in eval


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
    m = nn.Sequential(nn.Linear(64, 256), nn.LayerNorm(256), nn.Linear(256, 64), nn.LayerNorm(64, bias=False))
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(3.0)
    assert init_weights_vit_style(m) is m
    assert m[0].weight.abs().max() <= 0.04 + 1e-7 and abs(m[0].weight.std().item() - 0.0176) < 0.002
    assert torch.all(m[0].bias == 0) and torch.all(m[2].bias == 0)
    assert torch.all(m[1].weight == 1) and torch.all(m[1].bias == 0) and torch.all(m[3].weight == 1)
    assert torch.all(m[0].bias == 0)


# --------------------------------------------------------------------------- gradient checkpointing
def _saved_bytes(fn, x):
    """Bytes of the tensors autograd keeps for backward while computing fn(x), counted once per storage."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(x)
    return sum(storages.values()), y


def _blocks():
    return nn.Sequential(*[nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                         nn.Dropout(0.3)) for _ in range(3)]).train()


def test_checkpoint_seq_recomputes_instead_of_storing():
    import copy

    plain = _blocks()
    ckpt = copy.deepcopy(plain)
    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    torch.manual_seed(1)
    kept, out = _saved_bytes(lambda t: checkpoint_seq(plain, t, enabled=False), x)
    torch.manual_seed(1)
    kept_ckpt, out_ckpt = _saved_bytes(lambda t: checkpoint_seq(ckpt, t), x)
    assert kept_ckpt * 3 < kept  # block inputs only, not every conv / BN / ReLU / dropout activation
    # same dropout masks when the blocks are recomputed (RNG state preserved), so the same values and grads
    torch.testing.assert_close(out_ckpt, out, atol=0, rtol=0)
    out.square().sum().backward()
    grad_x = x.grad.clone()
    x.grad = None
    out_ckpt.square().sum().backward()
    torch.testing.assert_close(x.grad, grad_x, atol=1e-6, rtol=1e-5)
    for (name, p), p2 in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(p2.grad, p.grad, atol=1e-6, rtol=1e-5, msg=name)
    # BatchNorm running statistics count the batch once, not again when backward recomputes it
    for (name, b), b2 in zip(plain.named_buffers(), ckpt.buffers()):
        torch.testing.assert_close(b2, b, atol=0, rtol=0, msg=name)


def test_checkpoint_seq_is_a_plain_loop_without_grad():
    blocks = _blocks().eval()
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(checkpoint_seq(blocks, x), blocks(x), atol=0, rtol=0)


# --------------------------------------------------------------------------- gradient reversal
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
