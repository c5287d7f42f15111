"""GPT-2 against Hugging Face's GPT2LMHeadModel: same weights, same logits (with padding), the
Conv1D [in, out] layout and tied embeddings, the hub's GPT2Model-layout files, the variants' sizes,
clear errors, and a forward that compiles without graph breaks and exports."""

import pytest
import torch

import zoo
from zoo.nlp import gpt2 as gpt2_module
from zoo.nlp.gpt2 import gpt2, hf_key_map
from zoo.nlp.hf import gpt2_config_from_hf
from zoo.shared.errors import InputError, InvalidConfigError

transformers = pytest.importorskip("transformers")


def small_config(**kw):
    base = dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=24, bos_token_id=0, eos_token_id=0,
                initializer_range=0.2,
                pad_token_id=0)
    return transformers.GPT2Config(**{**base, **kw})


def pair(config=None):
    torch.manual_seed(0)
    config = config or small_config()
    ref = transformers.GPT2LMHeadModel(config).eval()
    ours = gpt2(**gpt2_config_from_hf(config.to_dict())).eval()
    ours.load_state_dict(hf_key_map(ref.state_dict()), strict=True)
    return ref, ours


def ids(batch=3, length=11, vocab=99):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("act,eps,inner", [("gelu_new", 1e-5, None), ("gelu", 1e-6, 50), ("relu", 1e-5, None)])
def test_logits_equal_transformers(act, eps, inner):
    ref, ours = pair(small_config(activation_function=act, layer_norm_epsilon=eps, n_inner=inner))
    x = ids()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x).logits, atol=1e-5, rtol=0)


def test_left_padded_logits_equal_transformers():
    ref, ours = pair()
    x = ids()
    mask = torch.ones_like(x)
    mask[0, :4] = 0
    mask[2, :1] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = ref(x, attention_mask=mask, position_ids=positions).logits
        got = ours(x, mask, positions)
        alone = ours(x[0:1, 4:])  # the padded row equals the same tokens without padding
    keep = mask.bool()
    torch.testing.assert_close(got[keep], expected[keep], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[0, 4:], alone[0], atol=1e-5, rtol=0)


def test_layout_conv1d_in_out_and_tied_embeddings():
    ref, ours = pair()
    assert list(ours.state_dict()) == list(ref.state_dict())
    w = ours.transformer.h[0].attn.c_attn.weight
    assert w.shape == (32, 96)  # [in, out]: transposed against nn.Linear
    assert ours.lm_head.weight is ours.transformer.wte.weight
    untied = gpt2(**gpt2_config_from_hf(small_config(tie_word_embeddings=False).to_dict()))
    assert untied.lm_head.weight is not untied.transformer.wte.weight


def test_hub_gpt2model_layout_loads(tmp_path):
    """The hub's gpt2 files hold GPT2Model keys (no ``transformer.``), the old ``attn.bias`` /
    ``attn.masked_bias`` buffers and no lm_head."""
    from safetensors.torch import save_file

    ref, _ = pair()
    state = {k[len("transformer."):]: v.contiguous() for k, v in ref.state_dict().items() if k != "lm_head.weight"}
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.ones(1, 1, 24, 24).tril()
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(state, tmp_path / "model.safetensors")
    model = zoo.create("gpt2", pretrained=tmp_path / "model.safetensors",
                       **gpt2_config_from_hf(small_config().to_dict())).eval()
    x = ids()
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x).logits, atol=1e-5, rtol=0)


def test_last_only_is_the_last_row():
    _, ours = pair()
    x = ids()
    with torch.no_grad():
        torch.testing.assert_close(ours(x, last_only=True), ours(x)[:, -1:], atol=1e-6, rtol=0)


def test_variants_count_transformers_parameters():
    sizes = {"gpt2": (768, 12, 12), "gpt2_medium": (1024, 24, 16), "gpt2_large": (1280, 36, 20),
             "gpt2_xl": (1600, 48, 25)}
    with torch.device("meta"):
        for name, (dim, layers, heads) in sizes.items():
            ref = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=dim, n_layer=layers, n_head=heads))
            assert zoo.model_info(name).num_params == sum(p.numel() for p in ref.parameters()), name
    assert zoo.model_info("gpt2").num_params == 124_439_808
    char = zoo.model_info("gpt_char").config
    assert (char["num_layers"], char["num_heads"], char["embed_dim"], char["max_positions"]) == (4, 4, 128, 64)


def test_bad_input_is_a_clear_error():
    model = zoo.create("gpt2", vocab_size=40, max_positions=8, embed_dim=16, num_layers=1, num_heads=2)
    with pytest.raises(InputError, match=r"token ids must be in \[0, 40\)"):
        model(torch.tensor([[3, 40]]))
    with pytest.raises(InputError, match="longer than the position table"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(InputError, match="attention_mask must cover"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 4))
    with pytest.raises(InvalidConfigError, match="multiple of num_heads"):
        zoo.create("gpt2", embed_dim=30, num_heads=4)


@pytest.mark.slow
def test_gpt2_full_size_logits_equal_transformers():
    ref, ours = pair(transformers.GPT2Config())
    x = ids(2, 32, 50257)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x).logits, atol=1e-5, rtol=0)


def test_compile_has_no_graph_breaks_and_export_matches():
    _, ours = pair()
    x = ids()
    mask = torch.ones_like(x)
    mask[0, :3] = 0
    explained = torch._dynamo.explain(ours)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    explained = torch._dynamo.explain(ours)(x, mask)
    assert explained.graph_break_count == 0, explained.break_reasons
    exported = torch.export.export(ours, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), ours(x), atol=1e-6, rtol=0)


@pytest.mark.skipif(gpt2_module._ONEDNN_LINEAR is None, reason="this torch build has no oneDNN linear")
def test_inference_projections_run_on_onednn_and_training_keeps_autograd():
    from torch.profiler import ProfilerActivity, profile

    _, ours = pair()
    x = ids()

    def onednn_calls(fn):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out = fn()
        return sum(e.count for e in prof.key_averages() if e.key == "mkldnn::_linear_pointwise"), out

    with torch.no_grad():  # four projections per block and the output layer
        assert onednn_calls(lambda: ours(x))[0] == 4 * ours.config.num_layers + 1
    calls, logits = onednn_calls(lambda: ours(x))
    assert calls == 0 and logits.requires_grad
    logits.sum().backward()
    assert ours.transformer.h[0].attn.c_attn.weight.grad is not None


@pytest.mark.parametrize("rows", [1, 2, 3, 8, 40])
def test_linear_equals_f_linear_for_both_weight_layouts(rows):
    g = torch.Generator().manual_seed(rows)
    x, w, b = torch.randn(rows, 24, generator=g), torch.randn(40, 24, generator=g), torch.randn(40, generator=g)
    in_out = w.t().contiguous()  # Conv1D's [in, out], passed as its transposed view
    with torch.inference_mode():
        expected = torch.nn.functional.linear(x, w, b)
        torch.testing.assert_close(gpt2_module.linear(x, w, b), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(gpt2_module.linear(x, in_out.t(), b), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(gpt2_module.linear(x[None], w), expected[None] - b, atol=1e-5, rtol=0)
