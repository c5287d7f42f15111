"""Hugging Face folders written by transformers' save_pretrained: the config builds the model it
describes (sizes, activation, layer-norm epsilon, vocabulary, positions, head) and the weights load
strictly, from a folder or hf-hub:org/name in an offline hub cache; the tokenizer files give the ids
transformers gives; a config that does not describe the weights and an unknown tokenizer are clear
errors."""

import json

import pytest
import torch

import zoo
from zoo.nlp.hf import bert_config_from_hf, config_from_hf, from_hf, gpt2_config_from_hf, load_tokenizer
from zoo.shared.errors import CheckpointMismatchError, InvalidConfigFileError, PretrainedNotFoundError

transformers = pytest.importorskip("transformers")



def bert_folder(tmp_path, arch="BertForSequenceClassification", safe=True, **kw):
    torch.manual_seed(0)
    config = transformers.BertConfig(**{**dict(vocab_size=77, hidden_size=24, num_hidden_layers=3,
                                               num_attention_heads=3, intermediate_size=40,
                                               max_position_embeddings=30, hidden_act="gelu_new",
                                               layer_norm_eps=1e-6, num_labels=4), **kw})
    model = getattr(transformers, arch)(config).eval()
    folder = tmp_path / arch
    _save(model, folder, safe)
    return model, folder


def gpt2_folder(tmp_path, safe=True):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=70, n_embd=24, n_layer=2, n_head=2, n_positions=40,
                                     activation_function="gelu", layer_norm_epsilon=1e-6, bos_token_id=0,
                                     eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    folder = tmp_path / "gpt2"
    _save(model, folder, safe)
    return model, folder


def _save(model, folder, safe):
    """save_pretrained, then (safe=False) the weights as a pytorch_model.bin instead, as older folders hold them."""
    model.save_pretrained(folder)
    if not safe:
        (folder / "model.safetensors").unlink()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")


def ids(vocab, batch=2, length=9):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(4))


@pytest.mark.parametrize("safe", [True, False])
@pytest.mark.parametrize("arch", ["BertModel", "BertForMaskedLM", "BertForSequenceClassification",
                                  "BertForTokenClassification"])
def test_bert_folder_builds_the_described_model_and_matches(tmp_path, arch, safe):
    ref, folder = bert_folder(tmp_path, arch, safe)
    assert (folder / ("model.safetensors" if safe else "pytorch_model.bin")).is_file()
    model = from_hf("bert", folder).eval()
    cfg = model.zoo_config
    assert (cfg["vocab_size"], cfg["hidden_dim"], cfg["num_layers"], cfg["num_heads"], cfg["intermediate_dim"],
            cfg["max_positions"], cfg["hidden_act"], cfg["layer_norm_eps"]) == (77, 24, 3, 3, 40, 30, "gelu_new", 1e-6)
    x = ids(77)
    mask = torch.ones_like(x)
    mask[0, 6:] = 0
    with torch.no_grad():
        got, expected = model(x, mask), ref(x, attention_mask=mask)
    torch.testing.assert_close(got[0] if arch == "BertModel" else got, expected[0], atol=1e-5, rtol=0)
    if arch.endswith("Classification"):
        assert cfg["num_classes"] == 4


@pytest.mark.parametrize("safe", [True, False])
def test_gpt2_folder_builds_the_described_model_and_matches(tmp_path, safe):
    ref, folder = gpt2_folder(tmp_path, safe)
    model = from_hf("gpt2", folder).eval()
    cfg = model.zoo_config
    assert (cfg["vocab_size"], cfg["embed_dim"], cfg["num_layers"], cfg["max_positions"], cfg["activation"],
            cfg["layer_norm_eps"]) == (70, 24, 2, 40, "gelu", 1e-6)
    x = ids(70)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x).logits, atol=1e-5, rtol=0)


def test_zoo_create_reads_the_hf_config(tmp_path):
    ref, folder = gpt2_folder(tmp_path)
    model = zoo.create("gpt2", pretrained=folder).eval()
    x = ids(70)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x).logits, atol=1e-5, rtol=0)
    bert_ref, bert_dir = bert_folder(tmp_path, "BertForTokenClassification")
    assert zoo.create("bert", pretrained=bert_dir).zoo_config["num_classes"] == 4


def _fake_hub_cache(root, repo_id, folder):
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / "0123456789abcdef"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    for path in folder.iterdir():
        (snap / path.name).write_bytes(path.read_bytes())


def test_hf_hub_through_the_offline_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    ref, folder = gpt2_folder(tmp_path)
    tok = transformers.GPT2Tokenizer(*_bpe_files(tmp_path))
    tok.save_pretrained(folder)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    _fake_hub_cache(tmp_path / "hub", "someorg/tiny-gpt2", folder)
    model = from_hf("gpt2", "hf-hub:someorg/tiny-gpt2").eval()
    x = ids(70)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x).logits, atol=1e-5, rtol=0)
    model = zoo.create("gpt2", pretrained="hf-hub:someorg/tiny-gpt2").eval()  # the registry's foreign_config
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x).logits, atol=1e-5, rtol=0)
    text = "hello world, the cat"
    assert load_tokenizer("hf-hub:someorg/tiny-gpt2").encode(text).ids == tok(text)["input_ids"]
    with pytest.raises(PretrainedNotFoundError, match="offline"):
        from_hf("gpt2", "hf-hub:someorg/absent")


def test_config_that_does_not_describe_the_weights(tmp_path):
    _, folder = bert_folder(tmp_path, "BertModel")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
    with pytest.raises(CheckpointMismatchError, match=r"intermediate\.dense\.weight: checkpoint \(40, 24\) vs model "
                                                      r"\(48, 24\)"):
        from_hf("bert", folder)
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(InvalidConfigFileError, match="model_type is 'gpt2', not 'bert'"):
        from_hf("bert", folder)
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "hidden_size"}))
    with pytest.raises(InvalidConfigFileError, match="no 'hidden_size'"):
        from_hf("bert", folder)
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["BertForQuestionAnswering"]}))
    with pytest.raises(InvalidConfigFileError, match="BertForQuestionAnswering"):
        from_hf("bert", folder)


def test_zoo_save_pretrained_folder_is_not_read_as_hf(tmp_path):
    model = zoo.create("bert_tiny", vocab_size=40, max_positions=16)
    zoo.save_pretrained(model, tmp_path / "ours")
    assert config_from_hf("bert", tmp_path / "ours") is None
    assert config_from_hf("bert", tmp_path) is None  # no config.json at all


def test_unsupported_gpt2_options_are_refused():
    with pytest.raises(InvalidConfigFileError, match="scale_attn_by_inverse_layer_idx"):
        gpt2_config_from_hf({"vocab_size": 10, "scale_attn_by_inverse_layer_idx": True})
    with pytest.raises(InvalidConfigFileError, match="position_embedding_type"):
        bert_config_from_hf({"vocab_size": 10, "position_embedding_type": "relative_key"})


# ------------------------------------------------------------------------------------------------
# tokenizers
# ------------------------------------------------------------------------------------------------

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "##s", "un", "##aff",
         "##able", ".", ",", "!", "hello", "world", "é", "中"]
TEXTS = ["The cats sat on the unaffable mat, Héllo!", "hello   world 中文 [MASK] .", "unknownword cats"]


def _bpe_files(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    folder = tmp_path / "bpe"
    if not folder.is_dir():
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        bpe.train_from_iterator(["hello world, the cat sat on the mat"] * 5 + ["Unaffable cats! 123 é ü"], trainer)
        folder.mkdir()
        bpe.model.save(str(folder))
    return str(folder / "vocab.json"), str(folder / "merges.txt")


@pytest.mark.parametrize("lower", [True, False])
def test_wordpiece_vocab_txt_and_tokenizer_json_give_transformers_ids(tmp_path, lower):
    (tmp_path / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    reference = transformers.BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=lower)
    saved = tmp_path / "saved"
    reference.save_pretrained(saved)
    # only vocab.txt + tokenizer_config.json, as older folders hold them
    old = tmp_path / "old"
    old.mkdir()
    (old / "vocab.txt").write_text((tmp_path / "vocab.txt").read_text())
    (old / "tokenizer_config.json").write_text((saved / "tokenizer_config.json").read_text())
    for folder in (saved, old):
        ours = load_tokenizer(folder)
        for text in TEXTS:
            assert ours.encode(text).ids == reference(text)["input_ids"], (folder.name, text)
        pair = ours.encode(TEXTS[0], TEXTS[1])
        assert pair.ids == reference(TEXTS[0], TEXTS[1])["input_ids"]
        assert pair.type_ids == reference(TEXTS[0], TEXTS[1])["token_type_ids"]


def test_byte_level_bpe_vocab_json_merges_give_transformers_ids(tmp_path):
    vocab, merges = _bpe_files(tmp_path)
    reference = transformers.GPT2Tokenizer(vocab, merges)
    ours = load_tokenizer(tmp_path / "bpe")
    for text in ["Hello world, the cats sat! ü", "  spaces  and\nnewlines", "<|endoftext|>the cat"]:
        assert ours.encode(text).ids == reference(text)["input_ids"], text
        assert ours.decode(ours.encode(text).ids, skip_special_tokens=False) == text


def test_text_to_outputs_like_transformers(tmp_path):
    """Text in, the same ids and the same outputs: tokenizer and model from one folder."""
    (tmp_path / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    ref, folder = bert_folder(tmp_path, "BertForSequenceClassification", vocab_size=len(WORDS))
    reference_tok = transformers.BertTokenizer(str(tmp_path / "vocab.txt"))
    reference_tok.save_pretrained(folder)
    batch = reference_tok(TEXTS, padding=True, return_tensors="pt")
    ours_tok = load_tokenizer(folder)
    ours_tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = ours_tok.encode_batch(TEXTS)
    x = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    assert torch.equal(x, batch["input_ids"]) and torch.equal(mask, batch["attention_mask"])
    model = from_hf("bert", folder).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x, mask), ref(**batch).logits, atol=1e-5, rtol=0)


def test_unknown_tokenizer_files_are_a_clear_error(tmp_path):
    (tmp_path / "spiece.model").write_bytes(b"\x00")
    with pytest.raises(InvalidConfigFileError, match=r"(?s)spiece\.model.*tokenizer\.json, a WordPiece vocab\.txt"):
        load_tokenizer(tmp_path)
    with pytest.raises(PretrainedNotFoundError):
        load_tokenizer(tmp_path / "absent")


def test_registered_hub_sources_load_through_the_offline_cache(tmp_path, monkeypatch):
    """bert_base_uncased.hf and gpt2.openai in the hub's own layouts: google-bert/bert-base-uncased is a
    BertForPreTraining file (into the encoder or the masked LM), openai-community/gpt2 a GPT2Model file
    with the old attn.bias buffers and no lm_head. Small configs stand in for the published sizes."""
    from huggingface_hub import constants
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "zoo"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    torch.manual_seed(0)
    bert_cfg = transformers.BertConfig(vocab_size=77, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                                       intermediate_size=40, max_position_embeddings=30)
    pretraining = transformers.BertForPreTraining(bert_cfg).eval()
    state = {k: v.contiguous() for k, v in pretraining.state_dict().items()
             if not k.startswith("cls.predictions.decoder")}
    files = tmp_path / "bert_files"
    files.mkdir()
    save_file(state, files / "model.safetensors")
    _fake_hub_cache(tmp_path / "hub", "google-bert/bert-base-uncased", files)
    small = {k: v for k, v in bert_config_from_hf({**bert_cfg.to_dict(), "architectures": ["BertModel"]}).items()
             if k != "head"}
    x = ids(77)
    encoder = zoo.create("bert_base_uncased.hf", pretrained=True, **small).eval()
    mlm = zoo.create("bert_base_uncased", pretrained="hf", head="mlm", **small).eval()
    with torch.no_grad():
        expected = pretraining(x)
        torch.testing.assert_close(encoder(x)[0], pretraining.bert(x).last_hidden_state, atol=1e-5, rtol=0)
        torch.testing.assert_close(mlm(x), expected.prediction_logits, atol=1e-5, rtol=0)

    ref, _ = gpt2_folder(tmp_path)
    state = {k[len("transformer."):]: v.contiguous() for k, v in ref.state_dict().items() if k != "lm_head.weight"}
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.ones(1, 1, 40, 40).tril()
    files = tmp_path / "gpt2_files"
    files.mkdir()
    save_file(state, files / "model.safetensors")
    _fake_hub_cache(tmp_path / "hub", "openai-community/gpt2", files)
    model = zoo.create("gpt2.openai", pretrained=True, **gpt2_config_from_hf(ref.config.to_dict())).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids(70)), ref(ids(70)).logits, atol=1e-5, rtol=0)
