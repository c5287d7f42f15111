"""Error paths and adaptations of pretrained loading, on a small ResNet-18."""

import dataclasses
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.shared.registry import WeightSource, get_entry
from zoo.shared.weights import adapt_input_conv, sha256_file


def _small(**kw):
    # resnet18 at its real layout, but with a narrow stem so files stay tiny
    return zoo.create("resnet18", base_channels=8, **kw)


@pytest.fixture
def reference():
    torch.manual_seed(0)
    return _small().eval()


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.randn(2, 3, 32, 32)


def _write(state, path):
    """A state dict as a file: safetensors by suffix, else torch.save."""
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    return path


def _same_output(a, b, x):
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x), atol=1e-6, rtol=0)


# -- names and configs -----------------------------------------------------------------------------


def test_unknown_name_suggests_close_names():
    with pytest.raises(zoo.UnknownModelError, match="resnet18") as err:
        zoo.create("resnet19")
    assert "Did you mean" in str(err.value)
    with pytest.raises(zoo.UnknownModelError, match="tv_in1k"):
        zoo.create("resnet18.imagenet22k")
    with pytest.raises(zoo.UnknownModelError):
        zoo.model_info("restnet50")


def test_unknown_option_is_named():
    with pytest.raises(zoo.InvalidConfigError, match="num_clases.*num_classes"):
        zoo.create("resnet18", num_clases=10)


def test_list_models_filters():
    assert zoo.list_models("resnet*", domain="vision") == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert zoo.list_models("resnet*", domain="graph") == []
    assert "resnet50.tv2_in1k" in zoo.list_models("resnet50*", pretrained=True)


# -- file formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".pt", ".bin"])
def test_loads_every_supported_format(reference, x, tmp_path, suffix):
    path = _write(reference.state_dict(), tmp_path / f"w{suffix}")
    model = _small(pretrained=path)
    _same_output(reference, model, x)
    assert model.load_report.reinitialized == [] and model.load_report.adapted == []


def test_loads_wrapped_and_ddp_prefixed_checkpoints(reference, x, tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}, "epoch": 3}, path)
    _same_output(reference, _small(pretrained=path), x)


def test_loads_directory_in_hugging_face_style(reference, x, tmp_path):
    zoo.save_pretrained(reference, tmp_path / "dir")
    _same_output(reference, _small(pretrained=tmp_path / "dir"), x)
    _same_output(reference, zoo.from_pretrained(tmp_path / "dir"), x)
    # a foreign directory: weights plus a config.json that is not ours
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    torch.save(reference.state_dict(), foreign / "pytorch_model.bin")
    (foreign / "config.json").write_text('{"model_type": "resnet"}')
    _same_output(reference, _small(pretrained=foreign), x)
    with pytest.raises(zoo.PretrainedNotFoundError, match="not a zoo config"):
        zoo.from_pretrained(foreign)


def test_from_pretrained_reports_bad_directories(tmp_path, reference):
    with pytest.raises(zoo.PretrainedNotFoundError, match="expects a directory"):
        zoo.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(zoo.PretrainedNotFoundError, match="No weights"):
        zoo.from_pretrained(tmp_path / "empty")
    zoo.save_pretrained(reference, tmp_path / "broken")
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(zoo.CheckpointError, match="not valid JSON"):
        zoo.from_pretrained(tmp_path / "broken")


def test_save_pretrained_needs_a_registry_model(tmp_path):
    with pytest.raises(ValueError, match="zoo.create"):
        zoo.save_pretrained(torch.nn.Linear(2, 2), tmp_path)


def test_missing_path_names_the_fix(tmp_path):
    with pytest.raises(zoo.PretrainedNotFoundError, match="neither a file"):
        _small(pretrained=tmp_path / "nope.pth")


# -- unsafe and broken files -------------------------------------------------------------------------


class _Payload:
    """Unpickling this would create a marker file: the refusal must happen before that."""

    marker = None

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_needing_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = str(marker)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:  # a legacy-free zip checkpoint holding a code-running object
        torch.save({"conv1.weight": torch.zeros(1), "x": payload}, fh)
    assert not marker.exists()
    with pytest.raises(zoo.UnsafeCheckpointError, match="Nothing in the file was executed"):
        _small(pretrained=path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_raw_pickle_file_is_refused(tmp_path):
    path = tmp_path / "raw.bin"
    path.write_bytes(pickle.dumps({"a": [1, 2]}))
    with pytest.raises(zoo.CheckpointError):
        _small(pretrained=path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file_gives_clear_error(reference, tmp_path, suffix):
    path = _write(reference.state_dict(), tmp_path / f"w{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(zoo.CheckpointError, match="truncated or corrupted"):
        _small(pretrained=path)


def test_garbage_and_non_state_dict_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(64))
    with pytest.raises(zoo.CheckpointError, match="truncated or corrupted"):
        _small(pretrained=junk)
    not_sd = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_sd)
    with pytest.raises(zoo.CheckpointError, match="does not hold a state dict"):
        _small(pretrained=not_sd)
    mixed = tmp_path / "mixed.pth"
    torch.save({"w": torch.zeros(1), "epoch": 3}, mixed)
    with pytest.raises(zoo.CheckpointError, match="not tensors"):
        _small(pretrained=mixed)
    odd = tmp_path / "w.h5"
    odd.write_bytes(b"x")
    with pytest.raises(zoo.CheckpointError, match="Unsupported checkpoint extension"):
        _small(pretrained=odd)


# -- strict loading report ----------------------------------------------------------------------------


def test_mismatch_report_lists_missing_unexpected_and_wrong_shape(reference, tmp_path):
    sd = dict(reference.state_dict())
    del sd["layer1.0.conv1.weight"]
    sd["layer9.extra.weight"] = torch.zeros(3)
    sd["layer2.0.bn1.weight"] = torch.ones(5)
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, path)
    with pytest.raises(zoo.CheckpointMismatchError) as err:
        _small(pretrained=path)
    msg = str(err.value)
    assert "missing (1): layer1.0.conv1.weight" in msg
    assert "unexpected (1): layer9.extra.weight" in msg
    assert "layer2.0.bn1.weight: checkpoint (5,) vs model (16,)" in msg
    assert err.value.missing == ["layer1.0.conv1.weight"]


def test_other_architecture_is_rejected(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(_small().state_dict(), path)
    with pytest.raises(zoo.CheckpointMismatchError, match="missing"):
        zoo.create("resnet34", base_channels=8, pretrained=path)


def test_classifier_mismatch_without_num_classes_suggests_it(tmp_path):
    path = tmp_path / "c10.pth"
    torch.save(_small(num_classes=10).state_dict(), path)
    with pytest.raises(zoo.CheckpointMismatchError, match="pass num_classes"):
        _small(pretrained=path)


def test_num_classes_reinitialises_only_the_classifier(reference, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(reference.state_dict(), path)
    model = _small(pretrained=path, num_classes=10)
    assert model.fc.weight.shape == (10, model.num_features)
    assert sorted(model.load_report.reinitialized) == ["fc.bias", "fc.weight"]
    assert "num_classes=10" in model.load_report.notes[0]
    ref = reference.state_dict()
    for k, v in model.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(v, ref[k]), k
    # same number of classes as the checkpoint: nothing dropped
    assert _small(pretrained=path, num_classes=1000).load_report.reinitialized == []


def test_in_chans_one_sums_the_rgb_filters(reference, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(reference.state_dict(), path)
    grey_model = _small(pretrained=path, in_chans=1).eval()
    assert grey_model.load_report.adapted == ["conv1.weight"]
    grey = torch.randn(2, 1, 32, 32)
    # a grey image seen by the summed filter equals the RGB model on three equal planes
    with torch.no_grad():
        torch.testing.assert_close(grey_model(grey), reference(grey.repeat(1, 3, 1, 1)), atol=1e-5, rtol=1e-5)


def test_in_chans_many_repeats_and_rescales():
    w = torch.randn(4, 3, 3, 3)
    w5 = adapt_input_conv(w, 5)
    assert w5.shape == (4, 5, 3, 3)
    torch.testing.assert_close(w5[:, :3], w * 3 / 5)
    torch.testing.assert_close(w5[:, 3:], w[:, :2] * 3 / 5)
    # with equal planes the response is unchanged up to the channel ratio: sum over inputs is kept
    torch.testing.assert_close(w5.sum(1), w.sum(1) * 3 / 5 + w[:, :2].sum(1) * 3 / 5)


# -- pretrained=True and the hub ---------------------------------------------------------------------------


def test_pretrained_true_reads_our_cache(reference, x, zoo_cache, monkeypatch):
    source = get_entry("resnet18").weights["tv_in1k"]
    target = zoo_cache / "resnet18" / source.cache_filename
    target.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), target)
    # the cached file is checked against the source's sha256: register this file's
    monkeypatch.setitem(get_entry("resnet18").weights, "tv_in1k",
                        dataclasses.replace(source, sha256=sha256_file(target)))
    _same_output(reference, _small(pretrained=True), x)
    _same_output(reference, zoo.create("resnet18.tv_in1k", base_channels=8, pretrained=True), x)


def test_pretrained_true_offline_says_where_it_looked(zoo_cache):
    with pytest.raises(zoo.PretrainedNotFoundError) as err:
        zoo.create("resnet18", pretrained=True)
    msg = str(err.value)
    assert str(zoo_cache / "resnet18" / "resnet18-f37072fd.pth") in msg
    assert "torch hub cache" in msg and "not tried: offline" in msg
    assert "pretrained='/path/to/resnet18-f37072fd.pth'" in msg


def test_pretrained_true_downloads_from_the_url_when_online(reference, x, zoo_cache, tmp_path, monkeypatch):
    monkeypatch.delenv("ZOO_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    served = tmp_path / "served" / "tiny-r18.pth"
    served.parent.mkdir()
    torch.save(reference.state_dict(), served)
    entry = get_entry("resnet18")
    monkeypatch.setitem(entry.weights, "tv_in1k", WeightSource("tv_in1k", url=served.as_uri(), layout="torchvision"))
    model = _small(pretrained=True)
    _same_output(reference, model, x)
    assert (zoo_cache / "resnet18" / "tiny-r18.pth").is_file()  # cached for next time


def _fake_hub_cache(root, repo_id, files):
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / "0123456789abcdef"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    for name, write in files.items():
        write(snap / name)


def test_hf_hub_spec_resolves_through_the_offline_cache(reference, x, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    sd = {k: v.contiguous() for k, v in reference.state_dict().items()}
    _fake_hub_cache(tmp_path / "hub", "someorg/tiny-r18", {"model.safetensors": lambda p: save_file(sd, p)})
    _same_output(reference, _small(pretrained="hf-hub:someorg/tiny-r18"), x)
    with pytest.raises(zoo.PretrainedNotFoundError, match="(?s)offline.*hub cache") as err:
        _small(pretrained="hf-hub:someorg/absent")
    assert "pretrained='/path/to/model.safetensors'" in str(err.value)
    with pytest.raises(zoo.PretrainedNotFoundError, match="Malformed"):
        _small(pretrained="hf-hub:noslash")


def test_from_pretrained_hf_hub(reference, x, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    zoo.save_pretrained(reference, tmp_path / "saved")
    files = {p.name: (lambda dst, src=p: dst.write_bytes(src.read_bytes())) for p in (tmp_path / "saved").iterdir()}
    _fake_hub_cache(tmp_path / "hub", "someorg/saved", files)
    _same_output(reference, zoo.from_pretrained("hf-hub:someorg/saved"), x)
    files.pop("config.json")  # a cache holding the weights alone: config.json is fetched, here offline
    _fake_hub_cache(tmp_path / "hub", "someorg/weights-only", files)
    with pytest.raises(zoo.PretrainedNotFoundError, match="(?s)no config.json beside the weights.*config.json"):
        zoo.from_pretrained("hf-hub:someorg/weights-only")


# -- inputs --------------------------------------------------------------------------------------------


def test_bad_inputs_are_named(reference):
    with pytest.raises(zoo.InputError, match=r"\(batch, 3, height, width\), got \(2, 1, 32, 32\)"):
        reference(torch.randn(2, 1, 32, 32))
    with pytest.raises(zoo.InputError, match="got \\(3, 32, 32\\)"):
        reference(torch.randn(3, 32, 32))
    with pytest.raises(zoo.InputError, match="floating-point.*uint8"):
        reference(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_registered_adapter_runs_only_when_its_option_is_asked(reference, tmp_path, monkeypatch):
    """An architecture's adapter (e.g. ViT img_size) transforms the checkpoint and is reported."""
    entry = get_entry("resnet18")

    def halve_fc(state, model):
        state = dict(state)
        state["fc.weight"] = state["fc.weight"] * 0.5
        return state, "fc halved for zero_init_residual"

    monkeypatch.setitem(entry.adapters, "zero_init_residual", halve_fc)
    path = _write(reference.state_dict(), tmp_path / "w.pth")
    plain = _small(pretrained=path)
    assert plain.load_report.notes == [] and torch.equal(plain.fc.weight, reference.fc.weight)
    adapted = _small(pretrained=path, zero_init_residual=True)
    assert adapted.load_report.notes == ["fc halved for zero_init_residual"]
    assert torch.equal(adapted.fc.weight, reference.fc.weight * 0.5)


def test_save_pretrained_directory_supplies_its_config(reference, x, tmp_path):
    zoo.save_pretrained(reference, tmp_path / "dir")  # base_channels=8, not the registered default
    model = zoo.create("resnet18", pretrained=tmp_path / "dir")
    assert model.zoo_config["base_channels"] == 8
    _same_output(reference, model, x)
    with pytest.raises(zoo.CheckpointError, match="holds a 'resnet18' model, not 'resnet34'"):
        zoo.create("resnet34", pretrained=tmp_path / "dir")


def test_mismatch_hint_names_in_chans_only_for_an_input_channel_difference(tmp_path):
    wide = _write(zoo.create("resnet18", base_channels=16).state_dict(), tmp_path / "wide.pth")
    with pytest.raises(zoo.CheckpointMismatchError) as err:
        _small(pretrained=wide)
    assert "in_chans" not in str(err.value) and "belongs to this architecture" in str(err.value)
    grey = _write(_small(in_chans=1).state_dict(), tmp_path / "grey.pth")
    with pytest.raises(zoo.CheckpointMismatchError, match="pass in_chans"):
        _small(pretrained=grey)
