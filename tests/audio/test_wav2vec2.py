"""wav2vec 2.0 against torchaudio (same state dict, same outputs) and Hugging Face (key map both
ways, config.json), padded batches against the items alone, greedy CTC on the model's output."""

import json

import pytest
import torch

import zoo
from zoo.audio.wav2vec2 import config_from_hf, from_hf_state_dict, from_huggingface, to_hf_state_dict
from zoo.shared.errors import CheckpointMismatchError, InputError

torchaudio_models = pytest.importorskip("torchaudio.models")

TINY = dict(conv_layers=[[8, 10, 5], [8, 3, 2], [8, 2, 2]], embed_dim=16, num_layers=2, num_heads=2, ff_dim=32,
            pos_conv_kernel=8, pos_conv_groups=2)
# our option -> torchaudio's wav2vec2_model argument
TA_NAMES = dict(extractor_mode="extractor_mode", conv_layers="extractor_conv_layer_config",
                conv_bias="extractor_conv_bias", embed_dim="encoder_embed_dim", num_layers="encoder_num_layers",
                num_heads="encoder_num_heads", ff_dim="encoder_ff_interm_features",
                pos_conv_kernel="encoder_pos_conv_kernel", pos_conv_groups="encoder_pos_conv_groups",
                layer_norm_first="encoder_layer_norm_first")
MODES = {"base-like": dict(extractor_mode="group_norm", conv_bias=False, layer_norm_first=False),
         "lv60k-like": dict(extractor_mode="layer_norm", conv_bias=True, layer_norm_first=True)}


def torchaudio_model(num_classes=0, **config):
    args = {TA_NAMES[k]: v for k, v in config.items()}
    if "extractor_conv_layer_config" in args:
        args["extractor_conv_layer_config"] = [tuple(c) for c in args["extractor_conv_layer_config"]]
    defaults = dict(extractor_mode="group_norm", extractor_conv_layer_config=None, extractor_conv_bias=False,
                    encoder_embed_dim=768, encoder_projection_dropout=0.1, encoder_pos_conv_kernel=128,
                    encoder_pos_conv_groups=16, encoder_num_layers=12, encoder_num_heads=12,
                    encoder_attention_dropout=0.1, encoder_ff_interm_features=3072, encoder_ff_interm_dropout=0.1,
                    encoder_dropout=0.1, encoder_layer_norm_first=False, encoder_layer_drop=0.1)
    return torchaudio_models.wav2vec2_model(**{**defaults, **args}, aux_num_out=num_classes or None)


def randomise(model):
    """Non-trivial norms and biases (fresh ones are 1 and 0), so a wrong place for them shows."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.mark.slow
def test_base_equals_torchaudio_with_its_weights():
    torch.manual_seed(0)
    reference = randomise(torchaudio_models.wav2vec2_base(aux_num_out=32))
    ours = zoo.create("wav2vec2_base", num_classes=32).eval()
    state = reference.state_dict()
    assert list(ours.state_dict()) == list(state)
    ours.load_state_dict(state, strict=True)
    x = 0.1 * torch.randn(2, 16000)
    lengths = torch.tensor([16000, 11000])
    with torch.no_grad():
        expected, _ = reference(x)
        got, none = ours(x)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        assert none is None
        # padded: item 1 in the batch gives what torchaudio gives for it alone
        padded, frames = ours(x, lengths)
        alone, alone_frames = reference(x[1:, :11000], torch.tensor([11000]))
    assert frames.tolist() == [49, 34] and alone_frames.tolist() == [34]
    torch.testing.assert_close(padded[1, :34], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded[0], expected[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,builder", [("wav2vec2_large", "wav2vec2_large"),
                                          ("wav2vec2_large_lv60k", "wav2vec2_large_lv60k")])
@pytest.mark.parametrize("num_classes", [0, 32])
def test_large_state_dict_keys_and_shapes_are_torchaudios(name, builder, num_classes):
    with torch.device("meta"):
        reference = getattr(torchaudio_models, builder)(aux_num_out=num_classes or None)
        ours = zoo.create(name, num_classes=num_classes)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
           [(k, v.shape) for k, v in reference.state_dict().items()]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_tiny_configs_equal_torchaudio_with_and_without_lengths(mode):
    config = {**TINY, **MODES[mode]}
    torch.manual_seed(0)
    reference = randomise(torchaudio_model(num_classes=7, **config))
    ours = zoo.create("wav2vec2_base", num_classes=7, **config).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = 0.1 * torch.randn(3, 1600)
    full = torch.tensor([1600, 1600, 1600])
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], reference(x)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours(x, full)[0], reference(x, full)[0], atol=1e-5, rtol=1e-5)
        for a, b in zip(ours.extract_features(x, num_layers=1)[0], reference.extract_features(x, num_layers=1)[0]):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_padded_batch_equals_each_item_alone(mode):
    torch.manual_seed(0)
    model = randomise(zoo.create("wav2vec2_base", num_classes=5, **TINY, **MODES[mode]))
    clips = [0.1 * torch.randn(n) for n in (1600, 900, 1234)]
    batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    lengths = torch.tensor([len(c) for c in clips])
    with torch.no_grad():
        out, frames = model(batch, lengths)
        for i, clip in enumerate(clips):
            alone, n = model(clip[None])
            assert n is None and frames[i] == alone.shape[1]
            torch.testing.assert_close(out[i, : frames[i]], alone[0], atol=1e-5, rtol=1e-5)


def test_padded_batch_differs_without_the_masked_group_norm():
    """The guard of the test above: normalising over the padding (torchaudio's way) changes the
    shorter item's output, so the equality there is the masking's doing."""
    torch.manual_seed(0)
    config = {**TINY, **MODES["base-like"]}
    reference = randomise(torchaudio_model(num_classes=5, **config))
    clips = [0.1 * torch.randn(n) for n in (1600, 900)]
    batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    with torch.no_grad():
        padded, frames = reference(batch, torch.tensor([1600, 900]))
        alone, _ = reference(clips[1][None])
    assert not torch.allclose(padded[1, : frames[1]], alone[0], atol=1e-4)


def test_bad_inputs_are_named():
    model = zoo.create("wav2vec2_base", **TINY).eval()
    with pytest.raises(InputError, match="shape \\(batch, time\\)"):
        model(torch.randn(2, 2, 800))
    with pytest.raises(InputError, match="lengths must be between 1 and the padded length 800"):
        model(torch.randn(2, 800), torch.tensor([800, 900]))
    with pytest.raises(InputError, match="one valid length per waveform"):
        model(torch.randn(2, 800), torch.tensor([800]))


# ------------------------------------------------------------------------------------------------
# Hugging Face
# ------------------------------------------------------------------------------------------------

HF_MODES = {"group": dict(feat_extract_norm="group", conv_bias=False, do_stable_layer_norm=False),
            "layer": dict(feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True)}


def hf_config(mode, **extra):
    transformers = pytest.importorskip("transformers")
    return transformers.Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8, 8),
        conv_kernel=(10, 3, 2), conv_stride=(5, 2, 2), num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
        vocab_size=7, mask_time_prob=0.0, **HF_MODES[mode], **extra)


def hf_model(mode, ctc: bool):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cls = transformers.Wav2Vec2ForCTC if ctc else transformers.Wav2Vec2Model
    model = cls(hf_config(mode, architectures=[cls.__name__]))
    return randomise(model)


def hf_output(model, x):
    out = model(x)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("mode", sorted(HF_MODES))
@pytest.mark.parametrize("ctc", [False, True], ids=["Wav2Vec2Model", "Wav2Vec2ForCTC"])
def test_hf_key_map_both_ways(mode, ctc):
    reference = hf_model(mode, ctc)
    config = config_from_hf(reference.config.to_dict())
    assert config["num_classes"] == (7 if ctc else 0)
    ours = zoo.create("wav2vec2_base", **config).eval()
    ours.load_state_dict(from_hf_state_dict(reference.state_dict()), strict=True)  # HF -> ours
    x = 0.1 * torch.randn(2, 1600)
    with torch.no_grad():
        expected = hf_output(reference, x)
        torch.testing.assert_close(ours(x)[0], expected, atol=1e-5, rtol=1e-5)
        back = to_hf_state_dict(ours.state_dict())  # ours -> HF, loaded strictly into a fresh HF model
        assert set(back) == set(reference.state_dict())
        fresh = type(reference)(reference.config).eval()
        fresh.load_state_dict(back, strict=True)
        torch.testing.assert_close(hf_output(fresh, x), expected, atol=1e-5, rtol=1e-5)


def test_hf_legacy_weight_norm_names_and_training_only_entries_map():
    reference = hf_model("group", ctc=True)
    state = dict(reference.state_dict())
    prefix = "wav2vec2.encoder.pos_conv_embed.conv."
    state[prefix + "weight_g"] = state.pop(prefix + "parametrizations.weight.original0")
    state[prefix + "weight_v"] = state.pop(prefix + "parametrizations.weight.original1")
    state["wav2vec2.masked_spec_embed"] = torch.zeros(16)
    state["quantizer.codevectors"] = torch.zeros(1, 4, 8)
    ours = zoo.create("wav2vec2_base", **config_from_hf(reference.config.to_dict()))
    ours.load_state_dict(from_hf_state_dict(state), strict=True)


@pytest.mark.parametrize("mode", sorted(HF_MODES))
def test_hf_folder_builds_the_configuration_it_describes(mode, tmp_path):
    reference = hf_model(mode, ctc=True)
    reference.save_pretrained(tmp_path / "hf")  # config.json + model.safetensors
    model = from_huggingface(tmp_path / "hf").eval()
    expected_name = "wav2vec2_large_lv60k" if mode == "layer" else "wav2vec2_base"
    assert model.zoo_name == expected_name
    assert model.zoo_config["embed_dim"] == 16 and model.zoo_config["num_classes"] == 7
    assert model.zoo_config["layer_norm_first"] is (mode == "layer")
    assert model.load_report.layout == "huggingface"
    x = 0.1 * torch.randn(1, 1600)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], hf_output(reference, x), atol=1e-5, rtol=1e-5)


def test_hf_config_that_is_not_wav2vec2_is_refused(tmp_path):
    with pytest.raises(zoo.InvalidConfigError, match="hubert"):
        config_from_hf({"model_type": "hubert"})
    with pytest.raises(zoo.InvalidConfigError, match="relu"):
        config_from_hf({"hidden_act": "relu"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(zoo.InvalidConfigError, match="no config.json"):
        from_huggingface(tmp_path / "empty")


def test_zoo_create_loads_torchaudio_weights_from_a_file(tmp_path):
    torch.manual_seed(0)
    reference = randomise(torchaudio_model(num_classes=7, **TINY))
    from safetensors.torch import save_file

    save_file(reference.state_dict(), tmp_path / "model.safetensors")
    model = zoo.create("wav2vec2_base", pretrained=tmp_path, num_classes=7, **TINY).eval()
    # an older torchaudio file (nn.utils.weight_norm names) through the legacy map
    legacy = {k.replace("parametrizations.weight.original0", "weight_g")
               .replace("parametrizations.weight.original1", "weight_v"): v for k, v in reference.state_dict().items()}
    torch.save(legacy, tmp_path / "legacy.pt")
    old = zoo.create("wav2vec2_base", pretrained=tmp_path / "legacy.pt", num_classes=7, **TINY).eval()
    assert old.load_report.layout == "torchaudio_legacy"
    x = 0.1 * torch.randn(1, 1600)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], reference(x)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(old(x)[0], reference(x)[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(CheckpointMismatchError, match="aux"):
        zoo.create("wav2vec2_base", pretrained=tmp_path, **TINY)  # the _asr head in the file, none asked for


@pytest.mark.parametrize("ctc", [False, True], ids=["Wav2Vec2Model", "Wav2Vec2ForCTC"])
def test_zoo_create_reads_a_hf_folder_through_the_key_map(ctc, tmp_path):
    reference = hf_model("group", ctc).eval()
    reference.save_pretrained(tmp_path / "hf")
    config = config_from_hf(reference.config.to_dict())
    model = zoo.create("wav2vec2_base", pretrained=tmp_path / "hf", **config).eval()
    assert model.load_report.layout == "huggingface" and not model.load_report.unwrapped
    x = 0.1 * torch.randn(1, 1600)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], hf_output(reference, x), atol=1e-5, rtol=1e-5)
    model = zoo.create("wav2vec2_base", pretrained=tmp_path / "hf").eval()  # the config from the folder alone
    assert model.zoo_config == zoo.create("wav2vec2_base", **config).zoo_config
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], hf_output(reference, x), atol=1e-5, rtol=1e-5)


def test_hf_hub_repo_through_the_offline_cache(tmp_path, monkeypatch):
    """``hf-hub:org/name`` (the way to bring the published checkpoints) resolves in the hub cache:
    config and weights of a Wav2Vec2ForCTC repo, with no network."""
    from huggingface_hub import constants

    reference = hf_model("group", True).eval()
    reference.save_pretrained(tmp_path / "hf")
    snapshot = tmp_path / "hub" / "models--someorg--tiny-w2v" / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    (tmp_path / "hub" / "models--someorg--tiny-w2v" / "refs").mkdir()
    (tmp_path / "hub" / "models--someorg--tiny-w2v" / "refs" / "main").write_text("0123456789abcdef")
    for path in (tmp_path / "hf").iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    x = 0.1 * torch.randn(1, 1600)
    for model in (zoo.create("wav2vec2_base", pretrained="hf-hub:someorg/tiny-w2v"),
                  from_huggingface("hf-hub:someorg/tiny-w2v")):
        assert model.load_report.layout == "huggingface"
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(x)[0], hf_output(reference, x), atol=1e-5, rtol=1e-5)
