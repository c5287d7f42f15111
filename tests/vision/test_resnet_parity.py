"""ResNet family vs torchvision: identical state-dict layout, identical outputs, .pth files load."""

import pytest
import torch
import torchvision

import zoo
from tests.vision._helpers import load_torchvision_checkpoint, randomize_bn

VARIANTS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
            "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2"]


def test_the_family_is_registered():
    assert set(VARIANTS) <= set(zoo.list_models(domain="vision"))


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_matches_torchvision(name, tmp_path):
    torch.manual_seed(0)
    reference = randomize_bn(getattr(torchvision.models, name)()).eval()
    x = torch.randn(2, 3, 224, 224)
    loaded = load_torchvision_checkpoint(name, tmp_path, reference, x)
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_head(loaded.forward_features(x), pre_logits=True),
                                   torch.flatten(reference.avgpool(_tv_features(reference, x)), 1),
                                   atol=1e-5, rtol=1e-5)


def _tv_features(m, x):
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    return m.layer4(m.layer3(m.layer2(m.layer1(x))))


def test_timm_style_interface():
    model = zoo.create("resnet50", num_classes=10).eval()
    assert model.num_features == 2048
    x = torch.randn(1, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.shape == (1, 2048, 2, 2)
    assert model.forward_head(feats, pre_logits=True).shape == (1, 2048)
    model.reset_classifier(3)
    assert model(x).shape == (1, 3) and model.num_classes == 3
    assert model.zoo_config["num_classes"] == 10  # the registry's record is the registry's to change
    model.reset_classifier(0)
    assert model(x).shape == (1, 2048)
    cfg = model.default_cfg
    assert cfg["input_size"] == (3, 224, 224) and len(cfg["mean"]) == 3 and cfg["crop_pct"] == 0.875
    assert [f["num_chs"] for f in model.feature_info] == [64, 256, 512, 1024, 2048]  # stem + 4 stages, as timm


def test_default_cfg_follows_the_pretrained_tag():
    assert zoo.create("resnet50.tv2_in1k").default_cfg["crop_pct"] == round(224 / 232, 3)
    assert zoo.create("resnet50.tv_in1k").default_cfg["crop_pct"] == 0.875
    assert zoo.create("resnet50", in_chans=1).default_cfg["input_size"] == (1, 224, 224)
