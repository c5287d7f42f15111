"""Hostile and careless inputs to weight loading (issue 11, section 2): a cached file that is not the
published one, a dead network, weights with NaN/Inf or integers, ``pretrained=`` values that are not
paths, and ``config.json`` files that break the schema. Each test writes the bad input and checks
the error type and that the message names the problem."""

import dataclasses
import json
import socket
import threading
import time

import pytest
import torch
from safetensors.torch import save_file

import zoo.shared.weights as weights
import zoo
from zoo.shared.errors import CheckpointValuesError, InvalidConfigFileError, WeightsIntegrityError
from zoo.shared.registry import WeightSource, get_entry
from zoo.shared.weights import check_pretrained_arg, load_weights, read_state_dict, sha256_file, zoo_cache_paths


from .test_weights import _small, reference  # noqa: E402,F401  (the small resnet18 and its fixture)


def _replace_source(monkeypatch, arch, tag, **changes):
    """Swap a registered source for a variant of it for the duration of a test."""
    entry = get_entry(arch)
    source = dataclasses.replace(entry.weights[tag], **changes)
    monkeypatch.setitem(entry.weights, tag, source)
    return source


def _assert_weights(model, reference):
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


# -- (a) hashes: registered, in torchvision file names, checked on every cached and downloaded file -------


def test_torchvision_sources_carry_the_hash_prefix_of_their_file_name():
    zoo.list_models()
    sources = [(name, w) for name in zoo.list_models(domain="vision") for w in get_entry(name).weights.values()
               if w.url and w.url.startswith("https://download.pytorch.org/")]
    assert len(sources) > 10
    for name, source in sources:
        stem = source.cache_filename.rsplit(".", 1)[0]
        assert source.expected_sha256 == stem.rsplit("-", 1)[1], (name, source.tag)
        assert len(source.expected_sha256) >= 8


def test_registered_hash_is_validated_and_wins_over_the_file_name():
    with pytest.raises(ValueError, match="sha256"):
        WeightSource("t", url="https://x/a.pth", sha256="not-hex")
    with pytest.raises(ValueError, match="sha256"):
        WeightSource("t", url="https://x/a.pth", sha256="abc")  # too short to mean anything
    assert WeightSource("t", url="https://x/a-0123abcd.pth").expected_sha256 == "0123abcd"
    assert WeightSource("t", url="https://x/a-0123abcd.pth", sha256="f" * 64).expected_sha256 == "f" * 64
    # a name part that is not hex, or too short, is not a hash
    assert WeightSource("t", url="https://x/tiny-r18.pth").expected_sha256 is None
    assert WeightSource("t", url="https://x/model-beef.pth").expected_sha256 is None


def test_cached_file_with_the_registered_hash_loads(reference, zoo_cache, monkeypatch):
    source = get_entry("resnet18").weights["tv_in1k"]
    target = zoo_cache_paths("resnet18", source)[0]
    target.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), target)
    digest = sha256_file(target)
    for registered in (digest, digest[:10]):  # the full hash, or a prefix of it
        _replace_source(monkeypatch, "resnet18", "tv_in1k", sha256=registered)
        _assert_weights(_small(pretrained=True), reference)


@pytest.mark.parametrize("content", ["zeros", "other_weights", "truncated"])
@pytest.mark.parametrize("cache", ["zoo", "torch_hub"])
def test_cached_file_that_does_not_match_is_refused(reference, zoo_cache, tmp_path, content, cache):
    source = get_entry("resnet18").weights["tv_in1k"]  # the real torchvision source and file name
    if cache == "zoo":
        target = zoo_cache_paths("resnet18", source)[0]
    else:  # conftest points TORCH_HOME at tmp_path/torch-home
        target = tmp_path / "torch-home" / "hub" / "checkpoints" / source.cache_filename
    target.parent.mkdir(parents=True)
    if content == "zeros":
        target.write_bytes(bytes(4096))
    else:
        torch.save(reference.state_dict(), target)  # loadable, but not the published checkpoint
        if content == "truncated":
            target.write_bytes(target.read_bytes()[:1000])
    with pytest.raises(WeightsIntegrityError) as err:
        _small(pretrained=True)
    msg = str(err.value)
    assert str(target) in msg and f"starts with {source.expected_sha256}" in msg
    assert "Delete it" in msg and "pretrained='/path/to/" in msg


def _hub_cache_with(root, repo_id, state):
    """A Hugging Face cache holding ``repo_id``'s model.safetensors, as huggingface_hub lays it out."""
    snap = root / ("models--" + repo_id.replace("/", "--")) / "snapshots" / "0123456789abcdef"
    snap.mkdir(parents=True)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0123456789abcdef")
    save_file({k: v.contiguous() for k, v in state.items()}, snap / "model.safetensors")
    return snap / "model.safetensors"


def test_hub_file_is_checked_against_a_registered_full_hash(reference, zoo_cache, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    good = sha256_file(_hub_cache_with(tmp_path / "hub", "someorg/r18", reference.state_dict()))
    _replace_source(monkeypatch, "resnet18", "tv_in1k", url=None, hf_hub_id="someorg/r18", sha256=good)
    _assert_weights(_small(pretrained=True), reference)
    _replace_source(monkeypatch, "resnet18", "tv_in1k", url=None, hf_hub_id="someorg/r18", sha256="0" * 64)
    with pytest.raises(WeightsIntegrityError, match="is 0000000000"):
        _small(pretrained=True)


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_download_is_verified_and_a_bad_one_leaves_nothing(reference, zoo_cache, tmp_path, monkeypatch, online):
    served = tmp_path / "served"
    served.mkdir()
    torch.save(reference.state_dict(), served / "r18.pth")
    digest = sha256_file(served / "r18.pth")
    # published under a name whose hash prefix matches: downloaded, verified, cached
    (served / f"r18-{digest[:8]}.pth").write_bytes((served / "r18.pth").read_bytes())
    _replace_source(monkeypatch, "resnet18", "tv_in1k", url=(served / f"r18-{digest[:8]}.pth").as_uri())
    _assert_weights(_small(pretrained=True), reference)
    assert (zoo_cache / "resnet18" / f"r18-{digest[:8]}.pth").is_file()
    # the server sends a different file than the registered hash says: refused, nothing kept
    (served / "r18-deadbeef.pth").write_bytes((served / "r18.pth").read_bytes())
    _replace_source(monkeypatch, "resnet18", "tv_in1k", url=(served / "r18-deadbeef.pth").as_uri())
    with pytest.raises(WeightsIntegrityError, match="starts with deadbeef"):
        _small(pretrained=True)
    assert sorted(p.name for p in (zoo_cache / "resnet18").iterdir()) == [f"r18-{digest[:8]}.pth"]


# -- (b) where the loader looks, and a dead network ---------------------------------------------------------


def test_hub_only_source_offline_names_places_it_searches(zoo_cache):
    """A hub-only source (the timm ViTs): the message's "put it at" path is one the loader reads."""
    arch = "vit_tiny_patch16_224"
    tiny = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    with pytest.raises(zoo.PretrainedNotFoundError) as err:
        zoo.create(arch, pretrained=True, **tiny)
    msg = str(err.value)
    source = get_entry(arch).weights[get_entry(arch).default_tag]
    target = zoo_cache_paths(arch, source)[0]
    assert str(zoo_cache) in str(target)  # $ZOO_CACHE is where it looks
    assert f"put it at {target} " in msg and "not tried: offline" in msg
    torch.manual_seed(0)
    reference = zoo.create(arch, **tiny)
    target.parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, target)
    _assert_weights(zoo.create(arch, pretrained=True, **tiny), reference)


def test_url_without_network_gives_up_in_seconds(zoo_cache, monkeypatch, online):
    """A server that accepts the connection and never answers (a dead proxy, a black-holed route)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # never accepted: the kernel completes the handshake, nothing is ever sent
    port = listener.getsockname()[1]
    # without a timeout the download would wait forever: end it after 20 s so the test still fails
    stopper = threading.Timer(20, listener.close)
    stopper.daemon = True
    stopper.start()
    monkeypatch.setattr(weights, "NETWORK_TIMEOUT_S", 0.5)
    url = f"http://127.0.0.1:{port}/r18-0123abcd.pth"
    _replace_source(monkeypatch, "resnet18", "tv_in1k", url=url)
    start = time.monotonic()
    try:
        with pytest.raises(zoo.PretrainedNotFoundError) as err:
            _small(pretrained=True)
    finally:
        stopper.cancel()
        listener.close()
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert f"url: {url}" in msg and "timed out" in msg and "pretrained='/path/to/r18-0123abcd.pth'" in msg


def test_hub_without_network_gives_up_in_seconds(reference, zoo_cache, tmp_path, monkeypatch, online):
    """huggingface_hub alone retries an unreachable host with back-off (about 25 s per file here)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused, as on a machine without a network
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    arch = "vit_tiny_patch16_224"
    start = time.monotonic()
    with pytest.raises(zoo.PretrainedNotFoundError) as err:
        zoo.create(arch, pretrained=True, img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    assert time.monotonic() - start < 8
    msg = str(err.value)
    assert "unreachable" in msg and f"127.0.0.1:{port}" in msg
    source = get_entry(arch).weights[get_entry(arch).default_tag]
    assert f"put it at {zoo_cache_paths(arch, source)[0]} " in msg
    # what the hub cache already holds still loads, without waiting for the network either
    _hub_cache_with(tmp_path / "hub", "someorg/r18", reference.state_dict())
    start = time.monotonic()
    _assert_weights(_small(pretrained="hf-hub:someorg/r18"), reference)
    assert time.monotonic() - start < 8


# -- (c) values the model cannot compute with ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["nan", "inf", "int"])
def test_nonfinite_or_integer_weights_are_refused_and_named(reference, tmp_path, kind):
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    if kind == "nan":
        state["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    elif kind == "inf":
        state["layer2.0.conv1.weight"][0, 0, 0, 0] = float("-inf")
    else:
        state["layer2.0.conv1.weight"] = (state["layer2.0.conv1.weight"] * 100).long()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointValuesError) as err:
        _small(pretrained=tmp_path / "w.safetensors")
    msg = str(err.value)
    assert "layer2.0.conv1.weight" in msg and "allow_nonfinite=True" in msg
    assert ("torch.int64 values where the model has torch.float32" if kind == "int" else "1 of 1152 values are NaN/Inf") in msg
    # asked for, it loads, and the report still lists the tensor
    model = _small()
    report = load_weights(model, get_entry("resnet18"), read_state_dict(tmp_path / "w.safetensors"),
                          requested={}, allow_nonfinite=True)
    assert report.bad_values and report.bad_values[0].startswith("layer2.0.conv1.weight")
    assert "allow_nonfinite=True" in report.notes[-1]


def test_integer_buffers_are_not_flagged(reference, tmp_path):
    # BatchNorm's num_batches_tracked is an int64 in the model too: nothing to report
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    assert _small(pretrained=tmp_path / "w.pth").load_report.bad_values == []


def test_allow_nonfinite_through_create(reference, tmp_path):
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    state["fc.bias"][0] = float("nan")
    torch.save(state, tmp_path / "w.pth")
    assert _small(pretrained=tmp_path / "w.pth", allow_nonfinite=True).load_report.bad_values


# -- (d) pretrained= values that are not a choice or a path -------------------------------------------------


@pytest.mark.parametrize("value", ["", "   ", 0, 1.5, [], {}, b"x", object()])
def test_pretrained_value_that_is_not_a_path_is_a_config_error(value):
    with pytest.raises(zoo.InvalidConfigError, match="pretrained=") as err:
        check_pretrained_arg(value)
    assert "False" in str(err.value) and "True" in str(err.value)


@pytest.mark.parametrize("value", [False, True, None, "w.pth", "hf-hub:org/name"])
def test_valid_pretrained_values_pass_the_check(value, tmp_path):
    check_pretrained_arg(value)
    check_pretrained_arg(tmp_path)


@pytest.mark.parametrize("value", ["", 0, [], 2.0])
def test_create_refuses_pretrained_that_is_not_a_path(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the current directory holds weights: "" must not find them
    zoo.save_pretrained(_small(), tmp_path)
    with pytest.raises(zoo.InvalidConfigError, match="pretrained="):
        _small(pretrained=value)


# -- (e) config.json schema ---------------------------------------------------------------------------------


def _saved(tmp_path, reference, edit):
    """A save_pretrained directory whose config.json went through ``edit(config) -> config or text``."""
    directory = tmp_path / "saved"
    zoo.save_pretrained(reference, directory)
    config = json.loads((directory / "config.json").read_text())
    edited = edit(config)
    (directory / "config.json").write_text(edited if isinstance(edited, str) else json.dumps(edited))
    return directory


def _set(*path, value):
    def edit(config):
        target = config
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return config
    return edit


BAD_CONFIGS = {
    # name: (edit, what the message must name)
    "architecture int": (_set("architecture", value=5), "'architecture' must be"),
    "architecture null": (_set("architecture", value=None), "'architecture' must be"),
    "architecture list": (_set("architecture", value=["resnet18"]), "'architecture' must be"),
    "architecture empty": (_set("architecture", value=""), "'architecture' must be"),
    "architecture case": (_set("architecture", value="ResNet18"), "did you mean 'resnet18'"),
    "architecture tag": (_set("architecture", value="resnet18.tv_in1k"), "without a tag"),
    "num_classes str": (_set("config", "num_classes", value="ten"), 'config.num_classes must be an integer.*"ten"'),
    "num_classes negative": (_set("config", "num_classes", value=-1), "config.num_classes must be an integer.*-1"),
    "num_classes float": (_set("config", "num_classes", value=10.0), r"config.num_classes .*10\.0 \(float\)"),
    "num_classes bool": (_set("config", "num_classes", value=True), r"config.num_classes .*true \(bool\)"),
    "num_classes 1e12": (lambda c: json.dumps(c).replace('"num_classes": 1000', '"num_classes": 1e12'),
                         r"config.num_classes .*1000000000000.0 \(float\)"),
    "num_classes 10**12": (_set("config", "num_classes", value=10**12), "config.num_classes .*from 0 to 10,000,000"),
    "in_chans zero": (_set("config", "in_chans", value=0), "config.in_chans must be an integer from 1"),
    "version future": (_set("version", value=2), "'version' 2 is not one this code reads"),
    "version string": (_set("version", value="1"), "'version' \"1\" is not one"),
    "version bool": (_set("version", value=True), "'version' true is not one"),
    "format": (_set("format", value="timm"), "'format' must be \"zoo\""),
    "config list": (_set("config", value=[1, 2]), "'config' must be an object"),
    "deep nesting": (_set("config", "layers", value=json.loads("[" * 40 + "]" * 40)), "nested more than 16 levels"),
    "very deep nesting": (lambda c: '{"architecture": "resnet18", "config": ' + "[" * 100_000 + "]" * 100_000 + "}",
                          "nested more than 16 levels"),
    "top level list": (lambda c: "[1, 2]", "expected a JSON object"),
    "not json": (lambda c: "{architecture: resnet18", "not valid JSON"),
    "huge": (lambda c: json.dumps({**c, "padding": "x" * (2 << 20)}), "is not a config"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_json_is_a_clear_config_error(reference, tmp_path, case):
    edit, expected = BAD_CONFIGS[case]
    directory = _saved(tmp_path, reference, edit)
    for load in (lambda: zoo.from_pretrained(directory), lambda: zoo.create("resnet18", pretrained=directory)):
        with pytest.raises(InvalidConfigFileError, match=expected) as err:
            load()
        assert isinstance(err.value, zoo.InvalidConfigError) and isinstance(err.value, zoo.CheckpointError)
        assert str(directory / "config.json") in str(err.value)


def test_valid_config_edge_values_still_load(tmp_path):
    torch.manual_seed(0)
    headless = _small(num_classes=0)  # 0 means no classifier (as timm): a valid saved config
    zoo.save_pretrained(headless, tmp_path / "headless")
    _assert_weights(zoo.from_pretrained(tmp_path / "headless"), headless)
    # a config without "version" (hand-written) reads as version 1
    directory = _saved(tmp_path, headless, lambda c: {k: v for k, v in c.items() if k != "version"})
    _assert_weights(zoo.from_pretrained(directory), headless)


def test_config_naming_another_architecture_is_refused_by_the_strict_load(reference, tmp_path):
    # the config.json of a resnet34 over resnet18 weights: resnet34 is built, and its strict load fails
    zoo.save_pretrained(zoo.create("resnet34", base_channels=8), tmp_path / "r34")
    r34_config = json.loads((tmp_path / "r34" / "config.json").read_text())
    directory = _saved(tmp_path, reference, lambda c: r34_config)
    with pytest.raises(zoo.CheckpointMismatchError, match="does not match resnet34") as err:
        zoo.from_pretrained(directory)
    assert "layer1.2.conv1.weight" in err.value.missing  # resnet34 has three blocks in layer1, resnet18 two


def test_foreign_config_is_checked_for_sanity_only(reference, tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"model_type": "resnet", "architectures": ["ResNetModel"]}))
    _assert_weights(_small(pretrained=folder), reference)  # weights only: its schema is not ours
    (folder / "config.json").write_text('{"model_type": ' + "[" * 50 + "]" * 50 + "}")
    with pytest.raises(InvalidConfigFileError, match="nested more than 16 levels"):
        _small(pretrained=folder)


def test_headless_checkpoint_gets_a_new_classifier_when_num_classes_is_asked(tmp_path):
    """An encoder saved with num_classes=0 (SimCLR's, timm's) loads with num_classes=N: every other weight
    strictly, the classifier new and reported; without num_classes the missing head is still an error."""
    headless = _small(num_classes=0)
    zoo.save_pretrained(headless, tmp_path / "headless")
    file = tmp_path / "headless" / "model.safetensors"
    model = _small(pretrained=str(file), num_classes=7)
    assert model.fc.out_features == 7 and "fc.weight" in model.load_report.reinitialized
    assert any("no classifier" in note for note in model.load_report.notes)
    trunk = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(v, headless.state_dict()[k]) for k, v in trunk.items())
    with pytest.raises(zoo.CheckpointMismatchError, match="fc.weight"):
        _small(pretrained=str(file))
