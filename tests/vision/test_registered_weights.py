"""Every registered pretrained source of the vision families agrees with the library that publishes it.

torchvision's weight enums and timm's pretrained configs are the references: a URL we register
must be one torchvision publishes (its file name carries the first hex digits of the file's
sha256, which torch.hub checks on download), and the tag's class count, input size, resize /
crop, interpolation, reported accuracy and the architecture's parameter count must be the ones
published with it. A typo in a hash prefix, a crop copied from the wrong recipe or a tag pointing
at another architecture's file fails here.
"""

import re

import pytest
import timm
import torchvision
from torchvision.models import get_model_weights

import zoo

VISION = zoo.list_models(domain="vision")
SOURCES = [(name, w) for name in VISION for w in zoo.model_info(name).weights]


def _torchvision_weights():
    """url -> (torchvision model name, weights enum member), over every classification model."""
    out = {}
    for model in torchvision.models.list_models(module=torchvision.models):
        for weights in get_model_weights(model):
            out[weights.url] = (model, weights)
    return out


TORCHVISION = _torchvision_weights()


@pytest.mark.parametrize("name, source", [(n, w) for n, w in SOURCES if w["layout"] == "torchvision"],
                         ids=lambda v: v if isinstance(v, str) else v["tag"])
def test_torchvision_sources_are_what_torchvision_publishes(name, source):
    url = source["url"]
    filename = url.rsplit("/", 1)[-1]
    assert re.fullmatch(r"[a-z0-9_]+-[0-9a-f]{8}\.pth", filename), f"{filename}: no sha256 prefix for torch.hub"
    assert url in TORCHVISION, f"{name}.{source['tag']}: {url} is not a torchvision weights URL"
    tv_model, weights = TORCHVISION[url]
    meta, transform = weights.meta, weights.transforms.keywords
    assert zoo.model_info(name).num_params == meta["num_params"], f"{name} is not {tv_model}'s architecture"
    assert source["num_classes"] == len(meta["categories"])
    crop, resize = transform["crop_size"], transform.get("resize_size", 256)
    assert tuple(source["input_size"]) == (3, crop, crop)
    assert source["crop_pct"] == round(crop / resize, 3)
    assert source["interpolation"] == getattr(transform.get("interpolation"), "value", "bilinear")
    assert f"top-1 {meta['_metrics']['ImageNet-1K']['acc@1']}" in source["description"]


@pytest.mark.parametrize("name, source", [(n, w) for n, w in SOURCES if w["layout"] == "timm"],
                         ids=lambda v: v if isinstance(v, str) else v["tag"])
def test_timm_sources_are_what_timm_publishes(name, source):
    cfg = timm.models.get_pretrained_cfg(f"{name}.{source['tag']}")
    assert cfg is not None, f"timm has no pretrained config {name}.{source['tag']}"
    assert source["hf_hub_id"] == cfg.hf_hub_id
    for key in ("num_classes", "interpolation", "crop_pct", "license"):
        assert source[key] == getattr(cfg, key), key
    for key in ("input_size", "mean", "std"):
        assert tuple(source[key]) == tuple(getattr(cfg, key)), key


def test_every_vision_source_is_checked():
    assert {w["layout"] for _, w in SOURCES} == {"torchvision", "timm"}
