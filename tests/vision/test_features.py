"""Feature extraction (forward_intermediates, feature_info, features_only) and gradient checkpointing."""

import copy
import math

import pytest
import torch
from torch import nn

import zoo
from zoo.shared import registry
from zoo.shared.features import FeatureExtractor
from zoo.vision.vit import VisionTransformer
from tests.vision._helpers import randomize_bn

VISION = zoo.list_models(domain="vision")


def _tiny(name):
    return dict(registry.get_entry(name).test.config)


def _inputs(name, batch=2):
    entry = registry.get_entry(name)
    return entry.test.inputs(entry.test.config, batch)[0]


def _check_maps(feats, info, x):
    assert isinstance(feats, list) and len(feats) == len(info)
    h, w = x.shape[-2:]
    for f, i in zip(feats, info):
        r = i["reduction"]
        assert f.shape == (x.shape[0], i["num_chs"], math.ceil(h / r), math.ceil(w / r)), (i, tuple(f.shape))


@pytest.mark.parametrize("name", VISION)
def test_feature_info_matches_the_maps(name):
    torch.manual_seed(0)
    ext = zoo.create(name, features_only=True, **_tiny(name)).eval()
    assert isinstance(ext, FeatureExtractor)
    assert ext.feature_info == [dict(f, index=i) for i, f in enumerate(ext.model.feature_info)]
    assert ext.out_indices == tuple(range(len(ext.model.feature_info)))
    assert ext.feature_info.channels() == [f["num_chs"] for f in ext.feature_info]
    assert ext.feature_info.reduction() == [f["reduction"] for f in ext.feature_info]
    sizes = [tuple(_inputs(name).shape[-2:])]
    if not isinstance(ext.model, VisionTransformer):
        sizes.append((35, 41))  # odd sizes: each stride-2 layer rounds up
    for size in sizes:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            feats = ext(x)
            _check_maps(feats, ext.feature_info, x)
            # the wrapper is forward_intermediates, which also returns forward_features' output
            final, inter = ext.model.forward_intermediates(x)
            assert len(inter) == len(feats)
            for a, b in zip(feats, inter):
                torch.testing.assert_close(a, b, atol=0, rtol=0)
            torch.testing.assert_close(final, ext.model.forward_features(x), atol=0, rtol=0)
            if not isinstance(ext.model, VisionTransformer):  # CNNs: the last stage is the final map
                torch.testing.assert_close(feats[-1], final, atol=0, rtol=0)


@pytest.mark.parametrize("name", VISION)
def test_out_indices_select_stages(name):
    torch.manual_seed(0)
    cfg = _tiny(name)
    model = zoo.create(name, **cfg).eval()
    n = len(model.feature_info)
    x = _inputs(name)
    with torch.no_grad():
        everything = model.forward_intermediates(x, intermediates_only=True)
        for out_indices, expect in [((0, -1), [0, n - 1]), (2, [n - 2, n - 1]), ([-2, 1], sorted([1, n - 2])), ((1,), [1])]:
            ext = zoo.create(name, features_only=True, out_indices=out_indices, **cfg).eval()
            ext.load_state_dict(model.state_dict())
            assert ext.out_indices == tuple(expect)
            assert [f["index"] for f in ext.feature_info] == expect
            assert ext.feature_info.channels() == [model.feature_info[i]["num_chs"] for i in expect]
            feats = ext(x)
            assert len(feats) == len(expect)
            for f, i in zip(feats, expect):
                torch.testing.assert_close(f, everything[i], atol=0, rtol=0)
        # stop_early: the same maps, and the final features are the last map computed
        final, early = model.forward_intermediates(x, indices=[0], stop_early=True)
        torch.testing.assert_close(early[0], everything[0], atol=0, rtol=0)
        if not isinstance(model, VisionTransformer):
            torch.testing.assert_close(final, everything[0], atol=0, rtol=0)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "vit_tiny_patch16_224"])
def test_bad_out_indices_raise_clear_errors(name):
    cfg = _tiny(name)
    n = len(zoo.create(name, **cfg).feature_info)
    valid = rf"0\.\.{n - 1}"
    for bad in [(n,), (-n - 1,), (0, 0), (), 0, n + 1, "1", (1.5,), 2.0, True]:
        with pytest.raises(zoo.InvalidConfigError, match=valid if not isinstance(bad, int) or isinstance(bad, bool)
                           else rf"1\.\.{n}"):
            zoo.create(name, features_only=True, out_indices=bad, **cfg)
    with pytest.raises(zoo.InvalidConfigError, match="features_only"):
        zoo.create(name, out_indices=(1,), **cfg)
    model = zoo.create(name, **cfg)
    with pytest.raises(zoo.InvalidConfigError, match=valid):
        model.forward_intermediates(_inputs(name), indices=[n])


class _Plain(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3)

    def forward(self, x):
        return self.conv(x)


def _plain_builder(width: int = 4):
    return _Plain(width)


@pytest.mark.parametrize("builder", [_Plain, _plain_builder], ids=["class", "function"])
def test_features_only_without_support_raises(builder, monkeypatch):
    entry = registry.ModelEntry(name="plain_dummy", builder=builder, config=dict(width=4), domain="vision",
                                task="image-classification")
    monkeypatch.setitem(registry._REGISTRY, "plain_dummy", entry)
    assert isinstance(zoo.create("plain_dummy"), _Plain)
    with pytest.raises(zoo.InvalidConfigError, match="plain_dummy does not support features_only"):
        zoo.create("plain_dummy", features_only=True)


def test_extractor_saves_and_loads_as_the_model(tmp_path):
    torch.manual_seed(0)
    cfg = _tiny("resnet18")
    ext = randomize_bn(zoo.create("resnet18", features_only=True, out_indices=(1, 3), **cfg)).eval()
    model_keys = list(ext.model.state_dict())
    assert list(ext.state_dict()) == model_keys  # no "model." prefix
    x = _inputs("resnet18")
    zoo.save_pretrained(ext, tmp_path / "r18")
    plain = zoo.from_pretrained(tmp_path / "r18").eval()
    assert not isinstance(plain, FeatureExtractor)
    torch.testing.assert_close(plain(x), ext.model(x), atol=0, rtol=0)
    again = zoo.create("resnet18", pretrained=tmp_path / "r18", features_only=True, out_indices=(1, 3), **cfg).eval()
    for a, b in zip(again(x), ext(x)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # nested in a bigger module the keys stay consistent between state_dict and load_state_dict
    parent = nn.ModuleDict({"backbone": ext, "neck": nn.Conv2d(64, 8, 1)})
    state = parent.state_dict()
    assert "backbone.conv1.weight" in state and not any(".model." in k for k in state)
    fresh = nn.ModuleDict({"backbone": zoo.create("resnet18", features_only=True, out_indices=(1, 3), **cfg),
                           "neck": nn.Conv2d(64, 8, 1)})
    fresh.load_state_dict(state)  # strict
    fresh.eval()
    for a, b in zip(fresh["backbone"](x), ext(x)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_vit_intermediates_drop_prefix_tokens_and_norm():
    torch.manual_seed(0)
    model = zoo.create("vit_tiny_patch16_224", **_tiny("vit_tiny_patch16_224")).eval()
    x = _inputs("vit_tiny_patch16_224")
    with torch.no_grad():
        tokens = model.forward_features(x)  # (B, 1 + 16, D), normed
        final, (last,) = model.forward_intermediates(x, indices=1, norm=True)
    b, d = tokens.shape[0], tokens.shape[-1]
    torch.testing.assert_close(final, tokens, atol=0, rtol=0)
    torch.testing.assert_close(last, tokens[:, 1:].reshape(b, 4, 4, d).permute(0, 3, 1, 2), atol=0, rtol=0)


def test_resnet50_features_match_timm():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ours = randomize_bn(zoo.create("resnet50", features_only=True)).eval()
    reference = timm.create_model("resnet50", features_only=True, pretrained=False).eval()
    state = {k: v for k, v in ours.state_dict().items() if not k.startswith("fc.")}
    assert set(state) == set(reference.state_dict())  # timm's keys are torchvision's, minus the head
    reference.load_state_dict(state)
    assert ours.feature_info.channels() == reference.feature_info.channels()
    assert ours.feature_info.reduction() == reference.feature_info.reduction()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(ours(x), reference(x), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v3_large", "mobilenet_v3_small"])
def test_grad_checkpointing_keeps_outputs_grads_and_bn_stats(name):
    torch.manual_seed(0)
    cfg = _tiny(name)
    if name.startswith("mobilenet"):
        cfg["drop_rate"] = 0.0  # dropout would differ between the two runs
    model = zoo.create(name, **cfg).train()
    twin = copy.deepcopy(model)
    twin.set_grad_checkpointing(True)
    assert twin.grad_checkpointing
    x = _inputs(name)
    out = model(x)
    out.square().sum().backward()
    out2 = twin(x)
    out2.square().sum().backward()
    torch.testing.assert_close(out2, out, atol=0, rtol=0)
    for (k, p), p2 in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p2.grad, p.grad, atol=1e-6, rtol=1e-5, msg=k)
    # BatchNorm running statistics are updated once, not again by the recomputation
    for (k, b), b2 in zip(model.named_buffers(), twin.buffers()):
        torch.testing.assert_close(b2, b, atol=0, rtol=0, msg=k)
    # forward_intermediates checkpoints as well
    feats = twin.forward_intermediates(x, intermediates_only=True)
    sum(f.mean() for f in feats).backward()
    twin.set_grad_checkpointing(False)
    assert not twin.grad_checkpointing


def _saved_bytes(fn):
    """Bytes autograd keeps for backward while ``fn()`` runs, counted once per storage."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "vit_tiny_patch16_224"])
def test_grad_checkpointing_keeps_fewer_activations(name):
    """Equal outputs above would also hold if checkpointing did nothing: here it must store less."""
    model = zoo.create(name, **_tiny(name)).train()
    x = _inputs(name).requires_grad_()
    plain = _saved_bytes(lambda: model(x))
    plain_maps = _saved_bytes(lambda: model.forward_intermediates(x))
    model.set_grad_checkpointing(True)
    assert _saved_bytes(lambda: model(x)) < plain / 2
    assert _saved_bytes(lambda: model.forward_intermediates(x)) < plain_maps / 2
