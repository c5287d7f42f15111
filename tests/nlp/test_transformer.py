"""The encoder-decoder Transformer against torch.nn.Transformer (same weights, same outputs), its
cache, and its errors."""

import math

import pytest
import torch
from torch import nn

import zoo
from zoo.nlp.transformer import DecoderCache, MultiheadAttention, Transformer
from zoo.shared.errors import InputError, InvalidConfigError

torch.set_num_threads(1)


def _ours(norm_first: bool, activation: str = "relu", dim=32, heads=4, ffn=64, layers=2, dropout=0.0):
    """Our model, seeded: ``layers`` encoder and ``layers + 1`` decoder layers."""
    torch.manual_seed(0)
    return Transformer(src_vocab_size=23, tgt_vocab_size=19, dim=dim, num_heads=heads, ffn_dim=ffn,
                       num_encoder_layers=layers, num_decoder_layers=layers + 1, dropout=dropout,
                       activation=activation, norm_first=norm_first, max_len=64)


def _pair(norm_first: bool, activation: str = "relu", dim=32, heads=4, ffn=64, layers=2, dropout=0.0):
    """Our model and an nn.Transformer holding the same encoder/decoder weights."""
    ours = _ours(norm_first, activation, dim, heads, ffn, layers, dropout)
    ref = nn.Transformer(dim, heads, layers, layers + 1, ffn, dropout=dropout, activation=activation,
                         batch_first=True, norm_first=norm_first)
    core = {k: v for k, v in ours.state_dict().items() if k.startswith(("encoder.", "decoder."))}
    assert sorted(core) == sorted(ref.state_dict())  # nn.Transformer's keys, nothing more or less
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert not unexpected and all(not k.startswith(("encoder.", "decoder.")) for k in missing)
    return ours.eval(), ref.eval()


def _masks(batch=3, s=9, t=7):
    src_pad = torch.zeros(batch, s, dtype=torch.bool)
    src_pad[1, 6:] = True
    src_pad[-1, 3:] = True
    tgt_pad = torch.zeros(batch, t, dtype=torch.bool)
    tgt_pad[0, 5:] = True
    tgt_pad[-1, 2:] = True
    return src_pad, tgt_pad


def _causal(t):
    return torch.ones(t, t, dtype=torch.bool).triu(1)  # True = blocked, as nn.Transformer reads it


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_decoder_equal_nn_transformer_with_every_mask(norm_first, activation):
    ours, ref = _pair(norm_first, activation)
    src, tgt = torch.randn(3, 9, 32), torch.randn(3, 7, 32)
    src_pad, tgt_pad = _masks()
    causal = _causal(7)
    with torch.no_grad():
        memory = ours.encoder(src, src_pad)
        out = ours.decoder(tgt, memory, tgt_pad, src_pad)
        ref_memory = ref.encoder(src, src_key_padding_mask=src_pad)
        expected = ref(src, tgt, tgt_mask=causal, src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad,
                       memory_key_padding_mask=src_pad, tgt_is_causal=True)
    real = ~src_pad  # nn.Transformer's fast path may zero the padded rows of the memory
    torch.testing.assert_close(memory[real], ref_memory[real], atol=1e-5, rtol=1e-5)
    # a padded target query still attends to itself in both: compare the real rows (the rest is unused)
    real_t = ~tgt_pad
    torch.testing.assert_close(out[real_t], expected[real_t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_training_mode_without_dropout_equals_nn_transformer_everywhere(norm_first):
    ours, ref = _pair(norm_first)
    ours.train(), ref.train()  # no fast path: every row, padded ones included, is comparable
    src, tgt = torch.randn(3, 9, 32), torch.randn(3, 7, 32)
    src_pad, tgt_pad = _masks()
    causal = _causal(7)
    tgt_pad[:, 0] = False  # a query with every key masked is NaN in nn.Transformer, zero in ours
    out = ours.decoder(tgt, ours.encoder(src, src_pad), tgt_pad, src_pad)
    expected = ref(src, tgt, tgt_mask=causal, src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad,
                   memory_key_padding_mask=src_pad)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    out.square().sum().backward()
    expected.square().sum().backward()
    grads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        if name.startswith(("encoder.", "decoder.")):
            torch.testing.assert_close(p.grad, grads[name].grad, atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_model_on_token_ids_equals_embeddings_through_nn_transformer(norm_first):
    ours, ref = _pair(norm_first)
    src = torch.randint(3, 23, (3, 9))
    tgt = torch.randint(3, 19, (3, 7))
    src_pad, tgt_pad = _masks()
    src[src_pad] = 0  # pad_id: the model derives the masks from the ids
    tgt[tgt_pad] = 0
    with torch.no_grad():
        logits = ours(src, tgt)
        scale = math.sqrt(32)
        src_e = ours.src_embed(src) * scale + ours.pos.pe[:9]
        tgt_e = ours.tgt_embed(tgt) * scale + ours.pos.pe[:7]
        hidden = ref(src_e, tgt_e, tgt_mask=_causal(7),
                     src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad)
        expected = hidden @ ours.tgt_embed.weight.T  # tie_output
    torch.testing.assert_close(logits[~tgt_pad], expected[~tgt_pad], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_transformer_base_equals_nn_transformer_at_full_size():
    torch.manual_seed(0)
    ours = zoo.create("transformer_base", src_vocab_size=100, tgt_vocab_size=100, dropout=0.0).eval()
    ref = nn.Transformer(batch_first=True, dropout=0.0).eval()  # its defaults are the base model's
    ours.load_state_dict({**ours.state_dict(), **ref.state_dict()})
    src, tgt = torch.randn(2, 12, 512), torch.randn(2, 10, 512)
    src_pad, tgt_pad = _masks(2, 12, 10)
    with torch.no_grad():
        out = ours.decoder(tgt, ours.encoder(src, src_pad), tgt_pad, src_pad)
        expected = ref(src, tgt, tgt_mask=_causal(10),
                       src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad)
    torch.testing.assert_close(out[~tgt_pad], expected[~tgt_pad], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "swiglu"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_cached_steps_equal_full_recomputation(norm_first, activation):
    ours = _ours(norm_first, activation).eval()
    src = torch.randint(3, 23, (3, 9))
    src[1, 6:] = 0
    tgt = torch.randint(3, 19, (3, 8))
    tgt[:, 0] = ours.bos_id
    with torch.no_grad():
        memory, mask = ours.encode(src)
        full = ours.decode(tgt, memory, mask)
        cache = DecoderCache()
        steps = torch.stack([ours.decode_step(tgt[:, i : i + 1], memory, mask, cache) for i in range(8)], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)
    assert cache.length == 8 and cache.layers[0].self_k.shape[2] == 8


def test_cache_reorder_follows_the_chosen_sequences():
    ours, _ = _pair(False)
    src = torch.randint(3, 23, (3, 9))
    tgt = torch.randint(3, 19, (3, 5))
    with torch.no_grad():
        memory, mask = ours.encode(src)
        cache = DecoderCache()
        for i in range(4):
            ours.decode_step(tgt[:, i : i + 1], memory, mask, cache)
        order = torch.tensor([2, 0, 0])
        cache.reorder(order)
        last = ours.decode_step(tgt[order, 4:5], memory[order], None, cache)
        full = ours.decode(tgt[order], memory[order])[:, -1]
    torch.testing.assert_close(last, full, atol=1e-5, rtol=1e-5)


def test_shared_and_tied_embeddings_are_one_matrix():
    model = Transformer(src_vocab_size=30, tgt_vocab_size=30, dim=16, num_heads=2, ffn_dim=32,
                        num_encoder_layers=1, num_decoder_layers=1, share_embeddings=True)
    assert model.src_embed.weight is model.tgt_embed.weight is model.generator.weight
    untied = Transformer(src_vocab_size=30, tgt_vocab_size=20, dim=16, num_heads=2, ffn_dim=32,
                         num_encoder_layers=1, num_decoder_layers=1, tie_output=False)
    assert untied.generator.weight is not untied.tgt_embed.weight and untied.generator.bias is not None


def test_registered_variants_have_the_papers_sizes():
    info = zoo.model_info("transformer_base")
    c = info.config
    assert (c["dim"], c["num_heads"], c["ffn_dim"], c["num_encoder_layers"], c["num_decoder_layers"]) == \
        (512, 8, 2048, 6, 6)
    with torch.device("meta"):
        base = zoo.create("transformer_base", src_vocab_size=100, tgt_vocab_size=100)
        ref = nn.Transformer()
    core = sum(p.numel() for n, p in base.named_parameters() if n.startswith(("encoder.", "decoder.")))
    assert core == sum(p.numel() for p in ref.parameters())  # 44.1 M, the base model minus embeddings
    assert {"transformer_base", "transformer_big", "transformer_small", "transformer_tiny"} <= \
        set(zoo.list_models("transformer*"))


def test_bad_inputs_raise_clear_errors():
    model = zoo.create("transformer_tiny", max_len=10).eval()
    ok = torch.randint(3, 60, (2, 5))
    with pytest.raises(InputError, match=r"src: token ids must lie in \[0, 64\)"):
        model(torch.tensor([[3, 64]]), ok)
    with pytest.raises(InputError, match=r"tgt: token ids must lie in \[0, 128\).*-1"):
        model(ok, torch.tensor([[1, -1]]))
    with pytest.raises(InputError, match="length 11 exceeds the 10 positions.*max_len >= 11"):
        model(torch.randint(3, 60, (1, 11)), ok)
    with pytest.raises(InputError, match=r"integer token ids of shape \(batch, length\)"):
        model(torch.randn(2, 5), ok)
    with pytest.raises(InputError, match=r"integer token ids of shape \(batch, length\)"):
        model(ok[0], ok)
    with pytest.raises(InvalidConfigError, match="share_embeddings needs src_vocab_size == tgt_vocab_size"):
        zoo.create("transformer_tiny", share_embeddings=True)
    with pytest.raises(InvalidConfigError, match="divisible by num_heads"):
        zoo.create("transformer_tiny", num_heads=3)
    with pytest.raises(InvalidConfigError, match="activation must be one of 'relu', 'gelu'"):
        zoo.create("transformer_tiny", activation="swish")
    with pytest.raises(InvalidConfigError, match="activation must be one of"):
        Transformer(activation="swish")
    with pytest.raises(InputError, match="one new token per sequence"):
        memory, mask = model.encode(ok)
        model.decode_step(ok, memory, mask, DecoderCache())


def test_save_and_load_round_trip_keeps_tied_weights(tmp_path):
    model = zoo.create("transformer_tiny").eval()
    zoo.save_pretrained(model, tmp_path / "t")
    again = zoo.from_pretrained(tmp_path / "t").eval()
    assert again.generator.weight is again.tgt_embed.weight
    src, tgt = torch.randint(3, 60, (2, 6)), torch.randint(3, 100, (2, 4))
    with torch.no_grad():
        assert torch.equal(model(src, tgt), again(src, tgt))


def test_attention_dropout_is_a_rate_of_its_own():
    """``attention_dropout`` drops attention weights alone; ``None`` means ``dropout`` (nn.Transformer)."""
    src, tgt = torch.randint(3, 23, (2, 9)), torch.randint(3, 19, (2, 7))

    def build(**rates):
        torch.manual_seed(0)
        return Transformer(src_vocab_size=23, tgt_vocab_size=19, dim=32, num_heads=4, ffn_dim=64,
                           num_encoder_layers=1, num_decoder_layers=1, max_len=16, **rates).train()

    def two_training_calls(**rates):
        model = build(**rates)
        return model(src, tgt), model(src, tgt)

    a, b = two_training_calls(dropout=0.0, attention_dropout=0.5)  # only the attention weights drop
    assert not torch.equal(a, b)
    a, b = two_training_calls(dropout=0.0)  # None follows dropout: nothing drops
    assert torch.equal(a, b)
    a, b = two_training_calls(dropout=0.5, attention_dropout=0.0)  # the rest still drops
    assert not torch.equal(a, b)
    for attention_dropout, drops in ((0.0, False), (None, True)):  # inside attention: its own rate, else dropout's
        model = build(dropout=0.5, attention_dropout=attention_dropout)
        attentions = [m for m in model.modules() if isinstance(m, MultiheadAttention)]
        assert len(attentions) == 3  # encoder self, decoder self and cross attention
        for mha in attentions:
            x = torch.randn(2, 5, 32)
            k, v = mha.project_kv(x)
            assert torch.equal(mha(x, k, v), mha(x, k, v)) is not drops


def test_activation_dropout_is_a_rate_of_its_own():
    """``activation_dropout`` drops the feed-forward hidden layer alone; ``None`` means ``dropout``."""
    src, tgt = torch.randint(3, 23, (2, 9)), torch.randint(3, 19, (2, 7))

    def hidden_dropped(**rates):  # per feed-forward: does its second layer get less than relu(first layer)?
        torch.manual_seed(0)
        model = Transformer(src_vocab_size=23, tgt_vocab_size=19, dim=32, num_heads=4, ffn_dim=64,
                            num_encoder_layers=1, num_decoder_layers=1, max_len=16, **rates).train()
        first, second = [], []
        for layer in (*model.encoder.layers, *model.decoder.layers):
            layer.linear1.register_forward_hook(lambda mod, args, out: first.append(torch.relu(out)))
            layer.linear2.register_forward_hook(lambda mod, args, out: second.append(args[0]))
        out = model(src, tgt)
        assert len(first) == len(second) == 2  # one encoder and one decoder layer
        return [not torch.equal(x, y) for x, y in zip(first, second)], out, model(src, tgt)

    dropped, a, b = hidden_dropped(dropout=0.0, activation_dropout=0.5)
    assert dropped == [True, True] and not torch.equal(a, b)
    dropped, a, b = hidden_dropped(dropout=0.5, activation_dropout=0.0)  # the rest drops, the hidden layer not
    assert dropped == [False, False] and not torch.equal(a, b)
    assert hidden_dropped(dropout=0.5)[0] == [True, True]  # None follows dropout
    dropped, a, b = hidden_dropped(dropout=0.0)
    assert dropped == [False, False] and torch.equal(a, b)


def test_swiglu_feed_forward_gates_the_second_half_with_silu_of_the_first():
    """activation="swiglu": linear1 is 2 * ffn_dim wide; the hidden layer is silu(x W_gate) * (x W_value),
    the gate being linear1's first ffn_dim rows, in the encoder's and the decoder's layers alike."""
    torch.manual_seed(0)
    model = Transformer(src_vocab_size=23, tgt_vocab_size=19, dim=32, num_heads=4, ffn_dim=48,
                        num_encoder_layers=1, num_decoder_layers=1, activation="swiglu", max_len=16).eval()
    x = torch.randn(2, 5, 32)
    for layer in (model.encoder.layers[0], model.decoder.layers[0]):
        w, b = layer.linear1.weight, layer.linear1.bias
        assert w.shape == (96, 32)
        gate, value = x @ w[:48].T + b[:48], x @ w[48:].T + b[48:]
        expected = layer.linear2(gate * torch.sigmoid(gate) * value)
        torch.testing.assert_close(layer._ff(x), expected)
    # 2/3 of a ReLU layer's width keeps the parameter count (three ffn-by-dim matrices, not two)
    relu = Transformer(src_vocab_size=23, tgt_vocab_size=19, dim=32, ffn_dim=96, num_heads=4, max_len=16,
                       num_encoder_layers=1, num_decoder_layers=1)
    gated = Transformer(src_vocab_size=23, tgt_vocab_size=19, dim=32, ffn_dim=64, num_heads=4, max_len=16,
                        num_encoder_layers=1, num_decoder_layers=1, activation="swiglu")
    count = lambda m: sum(p.numel() for p in m.parameters() if p.dim() > 1)  # noqa: E731
    assert count(gated) == count(relu)  # the cache with it: test_cached_steps_equal_full_recomputation
    with pytest.raises(InvalidConfigError, match="activation must be one of"):
        Transformer(src_vocab_size=23, tgt_vocab_size=19, dim=32, num_heads=4, activation="geglu")
