"""Arguments checked up front (issue 11, section 3): ``zoo.create``'s options against the model's
declared config and its family's rules, ``register_model``'s refusals, ``pretrained=`` as a tag, and
the load report every created model carries. Each bad input is written out and the error asserted to
be an InvalidConfigError (or the named kind) whose message names the option at fault."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import zoo
from zoo.shared import factory, registry
from zoo.shared.registry import AT_LEAST_ONE, PROBABILITY, Range, WeightSource, check_config, register_model

# -- zoo.create: types, ranges, family checks -----------------------------------------------------------------

SMALL = {"resnet18": dict(layers=[1, 1, 1, 1], base_channels=8),
         "vit_tiny_patch16_224": dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2),
         "mobilenet_v3_small": dict(width_mult=0.25), "gcn": {}, "gat": {}, "gin": {}, "graphsage": {}}

BAD_ARGUMENTS = [
    # (model, keyword arguments, words the message must hold)
    ("resnet18", dict(num_classes=-1), ["num_classes", ">= 0", "-1"]),
    ("resnet18", dict(num_classes=10.0), ["num_classes", "an int", "10.0 (float)"]),
    ("resnet18", dict(num_classes=True), ["num_classes", "an int", "True (bool)"]),
    ("resnet18", dict(num_classes="10"), ["num_classes", "an int", "'10' (str)"]),
    ("resnet18", dict(num_classes=None), ["num_classes", "an int", "None"]),
    ("resnet18", dict(in_chans=0), ["in_chans", ">= 1", "0"]),
    ("resnet18", dict(in_chans=3.5), ["in_chans", "an int"]),
    ("resnet18", dict(drop_rate=1.5), ["drop_rate", "from 0.0 to 1.0", "1.5"]),
    ("resnet18", dict(drop_rate=-0.1), ["drop_rate", "probability"]),
    ("resnet18", dict(drop_rate=math.nan), ["drop_rate", "finite"]),
    ("resnet18", dict(drop_rate="0.1"), ["drop_rate", "a number", "'0.1' (str)"]),
    ("resnet18", dict(layers=[2, 0, 2, 2]), ["layers", ">= 1", "[2, 0, 2, 2]"]),
    ("resnet18", dict(layers="2222"), ["layers", "a list of int"]),
    ("resnet18", dict(groups=0), ["groups", ">= 1"]),
    ("resnet18", dict(zero_init_residual="yes"), ["zero_init_residual", "True or False"]),
    ("resnet18", dict(block=3), ["block", "a string"]),
    ("vit_tiny_patch16_224", dict(img_size=100), ["img_size", "not divisible by patch_size"]),
    ("vit_tiny_patch16_224", dict(img_size=(32, 30)), ["img_size", "not divisible by patch_size"]),
    ("vit_tiny_patch16_224", dict(img_size=[224, 224, 3]), ["img_size", "(height, width)"]),
    ("vit_tiny_patch16_224", dict(img_size=0), ["img_size", ">= 1"]),
    ("vit_tiny_patch16_224", dict(patch_size=0), ["patch_size", ">= 1"]),
    ("vit_tiny_patch16_224", dict(num_heads=5), ["embed_dim", "num_heads"]),
    ("vit_tiny_patch16_224", dict(drop_path_rate=2.0), ["drop_path_rate", "probability"]),
    ("vit_tiny_patch16_224", dict(attn_drop_rate=-1.0), ["attn_drop_rate", "probability"]),
    ("vit_tiny_patch16_224", dict(mlp_ratio=0.0), ["mlp_ratio", "> 0"]),
    ("vit_tiny_patch16_224", dict(global_pool="max"), ["global_pool", "'token' or 'avg'"]),
    ("mobilenet_v3_small", dict(width_mult=0.0), ["width_mult", "> 0"]),
    ("mobilenet_v3_small", dict(width_mult=math.inf), ["width_mult", "finite"]),
    ("gcn", dict(dropout=1.5), ["dropout", "probability"]),
    ("gcn", dict(in_channels=0), ["in_channels", ">= 1"]),
    ("gcn", dict(hidden_channels=-4), ["hidden_channels", ">= 1"]),
    ("gcn", dict(num_classes=2.5), ["num_classes", "an int"]),
    ("gat", dict(heads=0), ["heads", ">= 1"]),
    ("gat", dict(attention_dropout=-0.1), ["attention_dropout", "probability"]),
    ("gat", dict(edge_dim=0), ["edge_dim", ">= 1"]),
    ("gat", dict(edge_dim="4"), ["edge_dim", "an int or None"]),
    ("gin", dict(num_layers=0), ["num_layers", ">= 1"]),
    ("graphsage", dict(dropout="high"), ["dropout", "a number"]),
]


@pytest.mark.parametrize("name, kwargs, words", BAD_ARGUMENTS,
                         ids=[f"{n}-{'-'.join(f'{k}={v!r}' for k, v in kw.items())}" for n, kw, _ in BAD_ARGUMENTS])
def test_create_refuses_a_bad_argument_naming_it(name, kwargs, words):
    with pytest.raises(zoo.InvalidConfigError) as err:
        zoo.create(name, **{**SMALL[name], **kwargs})
    message = str(err.value)
    # "<model>: " is the registry's prefix: the check ran before the builder, not deep inside it
    assert message.startswith(f"{name}: "), message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("name", sorted(SMALL))
def test_good_arguments_still_build(name):
    model = zoo.create(name, **SMALL[name])
    assert isinstance(model, nn.Module)


def test_num_classes_zero_means_no_head_and_numpy_ints_are_plain_ints():
    model = zoo.create("resnet18", num_classes=0, **SMALL["resnet18"])
    assert isinstance(model.fc, nn.Identity)
    model = zoo.create("resnet18", num_classes=np.int64(3), drop_rate=np.float32(0.25), **SMALL["resnet18"])
    assert type(model.zoo_config["num_classes"]) is int and model.zoo_config["num_classes"] == 3
    assert type(model.zoo_config["drop_rate"]) is float


def test_a_saved_config_with_a_bad_value_is_refused_by_the_same_check(tmp_path):
    import json

    zoo.save_pretrained(zoo.create("resnet18", **SMALL["resnet18"]), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["config"]["drop_rate"] = 7
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(zoo.InvalidConfigError, match="drop_rate must be from 0.0 to 1.0"):
        zoo.from_pretrained(tmp_path)


def test_create_flags_must_be_bools():
    with pytest.raises(zoo.InvalidConfigError, match="features_only must be True or False"):
        zoo.create("resnet18", features_only="yes")
    with pytest.raises(zoo.InvalidConfigError, match="a model name is a string"):
        zoo.create(18)


def test_list_models_domain_is_case_insensitive():
    assert registry.list_models(domain="VISION") == registry.list_models(domain="vision") != []
    assert zoo.list_models(domain="Graph") == zoo.list_models(domain="graph") != []


# -- the rule vocabulary ----------------------------------------------------------------------------------------


def test_range_words_and_bounds():
    assert str(AT_LEAST_ONE) == ">= 1" and str(PROBABILITY) == "from 0.0 to 1.0 (a probability)"
    assert str(Range(0, open_low=True)) == "> 0" and str(Range(high=5)) == "<= 5"
    assert Range(0, open_low=True).admits(1e-9) and not Range(0, open_low=True).admits(0)
    assert not PROBABILITY.admits(math.nan)


# -- register_model ---------------------------------------------------------------------------------------------


class _Tiny(nn.Module):
    def __init__(self, width: int = 4, num_classes: int = 2, dropout: float = 0.0):
        super().__init__()
        self.fc = nn.Linear(width, num_classes)


def _needs_depth(depth: int, num_classes: int = 2):
    return _Tiny(num_classes=num_classes)


@pytest.fixture
def scratch_registry(monkeypatch):
    zoo.list_models()  # every domain imported first: the copy holds them all
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _register(name="tiny_test", builder=_Tiny, config=None, **kw):
    return register_model(name, builder, config, **{"domain": "test", "task": "test", **kw})


BAD_REGISTRATIONS = [
    (dict(name=""), "needs a name"),
    (dict(name="   "), "needs a name"),
    (dict(name=None), "needs a name"),
    (dict(name="Tiny"), "not a model name"),
    (dict(name="tiny-net"), "not a model name"),
    (dict(name="9tiny"), "not a model name"),
    (dict(name="tiny net"), "not a model name"),
    (dict(name="tiny.v1"), "register the architecture alone ('tiny')"),
    (dict(builder="not callable"), "builder must be a class or function"),
    (dict(builder=None), "builder must be a class or function"),
    (dict(config={"widht": 4}), "'widht' is not an argument of _Tiny"),
    (dict(config={"width": "4"}), "width must be an int"),
    (dict(config={"num_classes": -2}), "num_classes must be >= 0"),
    (dict(config={"dropout": 3.0}), "dropout must be from 0.0 to 1.0"),
    (dict(builder=_needs_depth), "_needs_depth needs depth, which has no default"),
    (dict(ranges={"depht": AT_LEAST_ONE}), "'depht' is not an argument of _Tiny"),
    (dict(config={"width": 4}, ranges={"width": Range(8)}), "width must be >= 8, got 4"),
    (dict(builder=lambda name="x", width=4: _Tiny(width)), "takes 'name', which zoo.create keeps for itself"),
    (dict(builder=lambda pretrained=False: _Tiny()), "takes 'pretrained', which zoo.create keeps"),
    (dict(checks=[lambda cfg: "width and num_classes disagree"]), "width and num_classes disagree"),
    (dict(checks=["not a function"]), "checks must be functions"),
    (dict(foreign_config="config.json"), "foreign_config must be a function"),
    (dict(record_config={"width": 4}), "record_config must be a function"),
    (dict(weights=[WeightSource("a"), WeightSource("a", url="https://x/y.pth")]), "two weight sources are tagged 'a'"),
    (dict(weights=[WeightSource("In1K")]), "weight tag 'In1K' is not a tag"),
    (dict(weights=["a"]), "weights must be WeightSource rows"),
    (dict(weights=[WeightSource("a")], default_tag="b"), "default_tag 'b' is not one of its tags (a)"),
    (dict(domain=""), "domain must be a non-empty string"),
    (dict(task=None), "task must be a non-empty string"),
]


@pytest.mark.parametrize("kwargs, words", BAD_REGISTRATIONS, ids=[w for _, w in BAD_REGISTRATIONS])
def test_register_model_refuses(kwargs, words, scratch_registry):
    before = dict(registry._REGISTRY)
    with pytest.raises(zoo.InvalidConfigError, match="register_model: ") as err:
        _register(**kwargs)
    assert words in str(err.value)
    assert registry._REGISTRY == before  # nothing half-registered


def test_register_model_refuses_a_second_registration_of_a_name(scratch_registry):
    first = _register()
    with pytest.raises(zoo.InvalidConfigError, match="'tiny_test' is already registered"):
        _register(config={"width": 8})
    assert registry.get_entry("tiny_test") is first  # not overwritten
    with pytest.raises(zoo.InvalidConfigError, match="'resnet18' is already registered"):
        _register(name="resnet18")


def test_foreign_config_builds_the_model_another_librarys_folder_describes(scratch_registry, tmp_path):
    import json

    def read(folder):
        path = Path(folder) / "their_config.json"
        return {"width": json.loads(path.read_text())["hidden"]} if path.is_file() else None

    _register(foreign_config=read)
    torch.manual_seed(0)
    state = _Tiny(width=6).state_dict()
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "their_config.json").write_text(json.dumps({"hidden": 6}))
    model = zoo.create("tiny_test", pretrained=tmp_path)  # width 6 from their file, not the default 4
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    (tmp_path / "their_config.json").unlink()
    with pytest.raises(zoo.CheckpointMismatchError):  # no config to read: the default width, a clear mismatch
        zoo.create("tiny_test", pretrained=tmp_path)


def test_a_registered_family_rule_applies_at_create(scratch_registry):
    _register(ranges={"width": Range(2, 64)}, checks=[lambda cfg: "width must be even" if cfg["width"] % 2 else None])
    assert zoo.create("tiny_test", width=8).fc.in_features == 8
    with pytest.raises(zoo.InvalidConfigError, match="tiny_test: width must be from 2 to 64, got 65"):
        zoo.create("tiny_test", width=65)
    with pytest.raises(zoo.InvalidConfigError, match="tiny_test: width must be even"):
        zoo.create("tiny_test", width=7)
    # a check sees the builder's defaults for options the registered config leaves out
    seen = []
    registry.get_entry("tiny_test").checks = (lambda cfg: seen.append(dict(cfg)),)
    zoo.create("tiny_test")
    assert seen == [{"width": 4, "num_classes": 2, "dropout": 0.0}]


def test_a_domain_is_recorded_lowercase(scratch_registry):
    _register(domain="Test")
    assert registry.get_entry("tiny_test").domain == "test"


def test_an_unannotated_builder_is_checked_by_its_defaults(scratch_registry):
    def plain(width=4, scale=1.0, title="x", flag=False, anything=None):
        return _Tiny(width)

    _register(builder=plain)
    for bad, word in [({"width": 2.5}, "width must be an int"), ({"scale": "big"}, "scale must be a number"),
                      ({"title": 3}, "title must be a string"), ({"flag": 1}, "flag must be True or False")]:
        with pytest.raises(zoo.InvalidConfigError, match=word):
            zoo.create("tiny_test", **bad)
    zoo.create("tiny_test", anything=[1, "x"], scale=2)  # None default: anything; an int is a number


def test_check_config_keeps_json_values():
    entry = registry.get_entry("resnet18")
    assert check_config(entry, {"layers": (1, 1, 1, 1), "num_classes": np.int32(4)}) == {
        "layers": [1, 1, 1, 1], "num_classes": 4}


# -- pretrained= as a tag, and the load report --------------------------------------------------------------------


@pytest.fixture
def local_source(tmp_path, monkeypatch):
    """resnet18's registered source resolved to a local file (no network): a small model's weights."""
    torch.manual_seed(0)
    reference = zoo.create("resnet18", **SMALL["resnet18"])
    path = tmp_path / "tv.pth"
    torch.save(reference.state_dict(), path)
    calls = []

    def resolve(arch, source):
        calls.append((arch, source.tag))
        return path

    monkeypatch.setattr(factory, "resolve_source", resolve)
    return reference, calls


def test_pretrained_tag_is_the_tag_with_pretrained_true(local_source):
    reference, calls = local_source
    by_tag = zoo.create("resnet18", pretrained="tv_in1k", **SMALL["resnet18"])
    by_name = zoo.create("resnet18.tv_in1k", pretrained=True, **SMALL["resnet18"])
    assert calls == [("resnet18", "tv_in1k"), ("resnet18", "tv_in1k")]
    for a, b in zip(by_tag.state_dict().values(), reference.state_dict().values()):
        assert torch.equal(a, b)
    assert by_tag.pretrained_cfg == by_name.pretrained_cfg and by_tag.pretrained_cfg["tag"] == "tv_in1k"
    assert by_tag.load_report.source == by_name.load_report.source
    # the same tag twice is fine; any case of the tag is the tag
    zoo.create("resnet18.tv_in1k", pretrained="TV_IN1K", **SMALL["resnet18"])


def test_pretrained_tag_wins_over_a_file_of_that_name(local_source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tv_in1k").write_bytes(b"not weights")
    zoo.create("resnet18", pretrained="tv_in1k", **SMALL["resnet18"])  # the tag, not the file
    with pytest.raises(zoo.CheckpointError):
        zoo.create("resnet18", pretrained="./tv_in1k", **SMALL["resnet18"])  # the file


def test_pretrained_that_is_neither_a_tag_nor_a_path_names_the_tags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(zoo.PretrainedNotFoundError) as err:
        zoo.create("resnet18", pretrained="tv_in1kk")
    message = str(err.value)
    assert "pretrained='tv_in1kk'" in message and "tag of resnet18 (its tags: tv_in1k)" in message


def test_two_different_tags_are_refused(monkeypatch):
    first, second = list(registry.get_entry("resnet50").weights)[:2]
    with pytest.raises(zoo.InvalidConfigError, match=f"resnet50.{first} with pretrained='{second}' names two tags"):
        zoo.create(f"resnet50.{first}", pretrained=second)


@pytest.mark.parametrize("value", ["", "  ", 0, 2.5, [], b"x"])
def test_pretrained_that_is_not_a_choice_or_a_path_is_refused_by_create(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    zoo.save_pretrained(zoo.create("resnet18", **SMALL["resnet18"]), tmp_path)  # "" must not find these
    with pytest.raises(zoo.InvalidConfigError, match="pretrained="):
        zoo.create("resnet18", pretrained=value, **SMALL["resnet18"])


@pytest.mark.parametrize("name", ["resnet18", "gcn", "vit_tiny_patch16_224"])
def test_every_created_model_has_a_load_report(name):
    model = zoo.create(name, **SMALL[name])
    report = model.load_report
    assert isinstance(report, zoo.LoadReport)
    assert report.source == "" and report.reinitialized == report.adapted == report.notes == []


def test_the_load_report_is_kept_through_features_only(tmp_path):
    zoo.save_pretrained(zoo.create("resnet18", **SMALL["resnet18"]), tmp_path)
    assert zoo.create("resnet18", features_only=True, **SMALL["resnet18"]).load_report.source == ""
    extractor = zoo.create("resnet18", pretrained=tmp_path, features_only=True)
    assert extractor.load_report.source.endswith("model.safetensors")
