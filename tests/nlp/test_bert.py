"""BERT against Hugging Face's transformers: the same weights give the same outputs (padding masks
and segments included) for the bare encoder and each task head, the key layout loads strictly with
and without the ``bert.`` prefix, bad input is refused clearly, and the forward compiles and exports."""

import time

import pytest
import torch

import zoo
from zoo.nlp.bert import bert, hf_key_map
from zoo.nlp.hf import bert_config_from_hf
from zoo.shared.errors import CheckpointMismatchError, InputError, InvalidConfigError

transformers = pytest.importorskip("transformers")

HEADS = {"BertModel": "none", "BertForMaskedLM": "mlm", "BertForSequenceClassification": "sequence",
         "BertForTokenClassification": "token"}


def small_config(**kw):
    base = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                max_position_embeddings=24, type_vocab_size=3, num_labels=5, hidden_act="gelu",
                layer_norm_eps=1e-12)
    return transformers.BertConfig(**{**base, **kw})


def pair(arch: str, config=None):
    """A random HF model of class ``arch`` and ours with its weights copied across."""
    torch.manual_seed(0)
    config = config or small_config()
    ref = getattr(transformers, arch)(config).eval()
    ours = bert(**bert_config_from_hf({**config.to_dict(), "architectures": [arch]})).eval()
    ours.load_state_dict(hf_key_map(ref.state_dict()), strict=True)
    return ref, ours


def batch(vocab=99, length=13):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (4, length), generator=g)
    mask = torch.ones(4, length, dtype=torch.long)
    mask[1, 9:] = 0
    mask[2, 2:] = 0
    mask[3, 12:] = 0
    segments = (torch.arange(length) >= 6).long().expand(4, -1)
    return ids, mask, segments


@pytest.mark.parametrize("arch", list(HEADS))
@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
def test_outputs_equal_transformers_with_padding_and_segments(arch, act):
    ref, ours = pair(arch, small_config(hidden_act=act, layer_norm_eps=1e-7))
    ids, mask, segments = batch()
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask, token_type_ids=segments)
        got = ours(ids, mask, segments)
    pairs = ([(got[0], expected.last_hidden_state), (got[1], expected.pooler_output)] if arch == "BertModel"
             else [(got, expected.logits)])
    for a, b in pairs:
        if act == "gelu_new":  # ours is F.gelu's fused tanh form; transformers' NewGELU spells it out in 6 ops
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        else:  # bitwise: the same operations in the same order (the embeddings summed as transformers does)
            assert torch.equal(a, b)


def test_state_dict_is_transformers_layout():
    for arch in HEADS:
        ref, ours = pair(arch)
        assert list(ours.state_dict()) == list(ref.state_dict()), arch
        assert all(ours.state_dict()[k].shape == v.shape for k, v in ref.state_dict().items())
    _, mlm = pair("BertForMaskedLM")  # the decoder is the word embedding matrix, its bias the head's
    assert mlm.cls.predictions.decoder.weight is mlm.bert.embeddings.word_embeddings.weight
    assert mlm.cls.predictions.decoder.bias is mlm.cls.predictions.bias


def test_default_segments_and_no_mask_equal_transformers():
    ref, ours = pair("BertModel")
    ids, _, _ = batch()
    with torch.no_grad():
        assert torch.equal(ours(ids)[0], ref(ids).last_hidden_state)


def test_padding_does_not_change_the_tokens():
    _, ours = pair("BertForTokenClassification")
    ids, mask, _ = batch()
    with torch.no_grad():
        alone = ours(ids[1:2, :9])
        padded = ours(ids, mask)[1:2, :9]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=0)


def test_key_maps_with_and_without_the_bert_prefix():
    ref, _ = pair("BertForSequenceClassification")
    state = ref.state_dict()
    bare = {k[len("bert."):]: v for k, v in state.items() if k.startswith("bert.")}
    # BertModel weights (no prefix) into the bare encoder: exactly its keys
    model = zoo.create("bert", **bert_config_from_hf({**small_config().to_dict(), "architectures": ["BertModel"]}))
    model.load_state_dict(hf_key_map(bare), strict=True)
    # a head beside prefix-less encoder keys gets the prefix
    prefixed = hf_key_map({**bare, "classifier.weight": state["classifier.weight"],
                           "classifier.bias": state["classifier.bias"]})
    assert set(prefixed) == set(state)
    # save_pretrained leaves the tied MLM decoder out; the map restores it from what it is tied to
    mlm_ref, mlm = pair("BertForMaskedLM")
    saved = {k: v for k, v in mlm_ref.state_dict().items() if not k.startswith("cls.predictions.decoder")}
    mlm.load_state_dict(hf_key_map(saved), strict=True)


def test_pretraining_checkpoint_into_the_bare_encoder(tmp_path):
    """bert-base-uncased on the hub is a BertForPreTraining file: the encoder under ``bert.``, the
    MLM and next-sentence heads beside it; the bare encoder takes the ``bert.`` part."""
    from safetensors.torch import save_file

    ref = transformers.BertForPreTraining(small_config()).eval()
    state = {k: v.contiguous() for k, v in ref.state_dict().items() if not k.startswith("cls.predictions.decoder")}
    save_file(state, tmp_path / "model.safetensors")
    cfg = bert_config_from_hf({**small_config().to_dict(), "architectures": ["BertModel"]})
    model = zoo.create("bert", pretrained=tmp_path / "model.safetensors", **cfg).eval()
    ids, mask, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask)[0], ref.bert(ids, attention_mask=mask).last_hidden_state,
                                   atol=1e-5, rtol=0)
    assert any("bert." in note for note in model.load_report.unwrapped)


def test_weights_of_another_size_are_refused_naming_the_keys(tmp_path):
    from safetensors.torch import save_file

    ref = transformers.BertModel(small_config())
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointMismatchError, match="word_embeddings"):
        zoo.create("bert_tiny", pretrained=tmp_path / "model.safetensors")


def test_ids_out_of_range_and_too_long_are_clear_errors():
    model = zoo.create("bert", vocab_size=50, hidden_dim=16, num_layers=1, num_heads=2, intermediate_dim=32,
                                max_positions=16)
    with pytest.raises(InputError, match=r"token ids must be in \[0, 50\)"):
        model(torch.tensor([[1, 2, 50]]))
    with pytest.raises(InputError, match=r"token ids must be in \[0, 50\)"):
        model(torch.tensor([[-1, 2]]))
    with pytest.raises(InputError, match="longer than the position table"):
        model(torch.ones(1, 17, dtype=torch.long))
    with pytest.raises(InputError, match="integer token ids"):
        model(torch.rand(1, 4))
    with pytest.raises(InputError, match="attention_mask"):
        model(torch.ones(2, 4, dtype=torch.long), torch.ones(2, 5))


def test_config_errors_name_the_option():
    with pytest.raises(InvalidConfigError, match="multiple of num_heads"):
        zoo.create("bert", hidden_dim=30, num_heads=4)
    with pytest.raises(InvalidConfigError, match="hidden_act"):
        zoo.create("bert_tiny", hidden_act="gelu_fast")
    with pytest.raises(InvalidConfigError, match="head"):
        zoo.create("bert_tiny", head="qa")


def test_variants_have_the_published_sizes():
    # parameter counts of transformers' BertModel for bert-base-uncased / bert-large-uncased configs
    with torch.device("meta"):
        for name, hf in (("bert_base_uncased", transformers.BertConfig()),
                         ("bert_large_uncased", transformers.BertConfig(hidden_size=1024, num_hidden_layers=24,
                                                                        num_attention_heads=16,
                                                                        intermediate_size=4096))):
            ours = sum(p.numel() for p in zoo.create(name).parameters())
            assert ours == sum(p.numel() for p in transformers.BertModel(hf).parameters()), name
    assert zoo.model_info("bert_base_uncased").num_params == 109_482_240


@pytest.mark.slow
def test_bert_base_forward_equals_transformers():
    start = time.perf_counter()
    ref, ours = pair("BertModel", transformers.BertConfig())
    ids, mask, segments = batch(vocab=30522, length=64)
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask, token_type_ids=segments).last_hidden_state
        got = ours(ids, mask, segments)[0]
    assert torch.equal(got, expected)  # bitwise, padded positions too
    assert time.perf_counter() - start < 60


def test_compile_has_no_graph_breaks_and_export_matches():
    _, ours = pair("BertForSequenceClassification")
    ids, mask, segments = batch()
    explained = torch._dynamo.explain(ours)(ids, mask, segments)
    assert explained.graph_break_count == 0, explained.break_reasons
    exported = torch.export.export(ours, (ids, mask, segments))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(ids, mask, segments), ours(ids, mask, segments),
                                   atol=1e-6, rtol=0)
