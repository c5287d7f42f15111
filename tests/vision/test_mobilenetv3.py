"""MobileNetV3 vs torchvision: identical state-dict layout, identical outputs, .pth files load."""

import pytest
import torch
import torchvision

import zoo
from zoo.shared.errors import InputError, InvalidConfigError
from zoo.vision.mobilenetv3 import MobileNetV3
from tests.vision._helpers import load_torchvision_checkpoint, randomize_bn

VARIANTS = ["mobilenet_v3_large", "mobilenet_v3_small"]
TOL = dict(atol=1e-5, rtol=1e-5)


def test_the_family_is_registered():
    assert set(VARIANTS) <= set(zoo.list_models("mobilenet*", domain="vision"))


@pytest.mark.parametrize("name", VARIANTS)
def test_matches_torchvision(name, tmp_path):
    torch.manual_seed(0)
    reference = randomize_bn(getattr(torchvision.models, name)()).eval()
    x = torch.randn(2, 3, 224, 224)
    loaded = load_torchvision_checkpoint(name, tmp_path, reference, x)
    with torch.no_grad():
        feats = reference.features(x)
        torch.testing.assert_close(loaded.forward_features(x), feats, **TOL)
        pooled = torch.flatten(reference.avgpool(feats), 1)
        torch.testing.assert_close(loaded.forward_head(feats, pre_logits=True), reference.classifier[:2](pooled), **TOL)


@pytest.mark.parametrize("name,kw", [("mobilenet_v3_large", dict(width_mult=0.75)),
                                     ("mobilenet_v3_large", dict(reduced_tail=True, dilated=True)),
                                     ("mobilenet_v3_small", dict(width_mult=0.5, reduced_tail=True)),
                                     ("mobilenet_v3_small", dict(dilated=True, num_classes=7))])
def test_options_match_torchvision(name, kw):
    torch.manual_seed(0)
    reference = randomize_bn(getattr(torchvision.models, name)(**kw)).eval()
    ours = zoo.create(name, **kw).eval()
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), **TOL)


def test_num_classes_and_in_chans_with_pretrained(tmp_path):
    torch.manual_seed(0)
    src = zoo.create("mobilenet_v3_small", width_mult=0.25)
    path = tmp_path / "small.pth"
    torch.save(src.state_dict(), path)
    model = zoo.create("mobilenet_v3_small", width_mult=0.25, num_classes=4, in_chans=1, pretrained=path).eval()
    assert set(model.load_report.reinitialized) == {"classifier.3.weight", "classifier.3.bias"}
    assert model.load_report.adapted == ["features.0.0.weight"]
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 4)
    assert torch.equal(model.classifier[0].weight, src.classifier[0].weight)


def test_timm_style_interface():
    model = zoo.create("mobilenet_v3_large", num_classes=10).eval()
    assert model.num_features == 960 and model.head_hidden_size == 1280
    x = torch.randn(1, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.shape == (1, 960, 2, 2)
    assert model.forward_head(feats, pre_logits=True).shape == (1, 1280)
    assert model.get_classifier() is model.classifier[3]
    model.reset_classifier(3)
    assert model(x).shape == (1, 3) and model.num_classes == 3
    assert model.zoo_config["num_classes"] == 10  # the registry's record is the registry's to change
    assert "classifier.0.weight" in model.state_dict()
    model.reset_classifier(0)
    assert model(x).shape == (1, 1280)
    cfg = model.default_cfg
    assert cfg["input_size"] == (3, 224, 224) and cfg["mean"] == (0.485, 0.456, 0.406)
    assert [f["reduction"] for f in model.feature_info] == [2, 4, 8, 16, 32]
    assert [f["num_chs"] for f in model.feature_info] == [16, 24, 40, 112, 960]
    assert zoo.create("mobilenet_v3_large.tv2_in1k").default_cfg["crop_pct"] == round(224 / 232, 3)
    assert zoo.create("mobilenet_v3_small", in_chans=1).default_cfg["input_size"] == (1, 224, 224)


def test_bad_inputs_raise_clear_errors():
    model = zoo.create("mobilenet_v3_small", width_mult=0.25).eval()
    with pytest.raises(InputError, match=r"\(batch, 3, height, width\)"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(InputError, match=r"\(batch, 3, height, width\)"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(InputError, match="floating-point"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(InvalidConfigError, match="variant"):
        MobileNetV3(variant="medium")
    with pytest.raises(InvalidConfigError, match="width_mult"):
        MobileNetV3(width_mult=0)
