"""The registry-wide suite: every registered model, on its tiny test config.

Adding a model to the registry (with a TestSpec) is all it takes to be covered here.
"""

import pytest
import torch

import zoo
from zoo.shared.registry import get_entry, reset_classifier

MODELS = zoo.list_models()


def _build(name):
    spec = get_entry(name).test
    assert spec is not None, f"{name} registers no TestSpec (tiny config + example inputs)"
    torch.manual_seed(0)
    model = zoo.create(name, **spec.config)
    cfg = model.zoo_config
    return model, spec, cfg


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def test_registry_is_not_empty():
    assert "resnet18" in MODELS


@pytest.mark.parametrize("name", MODELS)
def test_output_shape(name):
    model, spec, cfg = _build(name)
    model.eval()
    with torch.no_grad():
        out = _first(model(*spec.inputs(cfg, 3)))
    if spec.output_shape is not None:
        assert tuple(out.shape) == tuple(spec.output_shape(cfg, 3))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_finite_gradient(name):
    model, spec, cfg = _build(name)
    model.train()
    out = _first(model(*spec.inputs(cfg, 2)))
    # a loss that touches every output element with a different weight
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    (out * weights).sum().backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: {pname} received no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"


@pytest.mark.parametrize("name", MODELS)
def test_eval_is_deterministic(name):
    model, spec, cfg = _build(name)
    model.eval()
    x = spec.inputs(cfg, 2)
    with torch.no_grad():
        assert torch.equal(_first(model(*x)), _first(model(*x)))


@pytest.mark.parametrize("name", MODELS)
def test_batch_consistency(name):
    model, spec, cfg = _build(name)
    if not spec.batch_consistency:
        pytest.skip(f"{name}: inputs are not a batch of independent samples")
    model.eval()
    x = spec.inputs(cfg, 4)
    with torch.no_grad():
        full = _first(model(*x))
        if spec.select is not None:
            alone_inputs, expected = spec.select(x, full, 1)
        else:
            alone_inputs, expected = tuple(t[1:2] for t in x), full[1:2]
        alone = _first(model(*alone_inputs))
    torch.testing.assert_close(alone, expected, atol=spec.atol, rtol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_save_pretrained_round_trip_is_exact(name, tmp_path):
    model, spec, cfg = _build(name)
    model.eval()
    zoo.save_pretrained(model, tmp_path / "out")
    again = zoo.from_pretrained(tmp_path / "out").eval()
    assert again.zoo_name == name and again.zoo_config == cfg
    a, b = model.state_dict(), again.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = spec.inputs(cfg, 2)
    with torch.no_grad():
        assert torch.equal(_first(model(*x)), _first(again(*x)))


@pytest.mark.parametrize("name", MODELS)
def test_model_info(name):
    info = zoo.model_info(name)
    assert info.name == name and info.domain and info.task and info.paper
    with torch.device("meta"):  # full-size default config, without allocating or initialising it
        model = zoo.create(name)
    assert info.config == model.zoo_config
    for w in info.weights:
        assert w["tag"] and w["layout"] and (w.get("url") or w.get("hf_hub_id"))


# Parameter counts published with the reference implementations (torchvision's model documentation).
PUBLISHED_PARAMS = {"resnet18": 11_689_512, "resnet50": 25_557_032, "mobilenet_v3_large": 5_483_032,
                    "vit_base_patch16_224": 86_567_656}
# Registered names whose torchvision counterpart has another name; the rest share torchvision's.
TORCHVISION_NAMES = {"vit_base_patch16_224": "vit_b_16", "vit_base_patch32_224": "vit_b_32",
                     "vit_large_patch16_224": "vit_l_16"}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_model_info_counts_the_published_parameters(name):
    assert zoo.model_info(name).num_params == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", [n for n in MODELS if n in TORCHVISION_NAMES or n.startswith(("resnet", "resnext",
                                                                                                 "wide_", "mobilenet"))])
def test_model_info_counts_parameters_like_torchvision(name):
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):  # no memory, no initialisation
        reference = torchvision.models.get_model(TORCHVISION_NAMES.get(name, name))
    assert zoo.model_info(name).num_params == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier_is_recorded_for_save_pretrained(name, tmp_path):
    model, spec, cfg = _build(name)
    if not callable(getattr(model, "reset_classifier", None)):
        pytest.skip(f"{name} has no classifier to reset")
    reset_classifier(model, 3)
    model.eval()
    x = spec.inputs({**cfg, "num_classes": 3}, 2)
    with torch.no_grad():
        out = _first(model(*x))
    if spec.output_shape is not None:
        assert tuple(out.shape) == tuple(spec.output_shape({**cfg, "num_classes": 3}, 2))
    zoo.save_pretrained(model, tmp_path / "out")
    again = zoo.from_pretrained(tmp_path / "out").eval()  # a strict load: the head must have 3 outputs
    assert again.num_classes == 3 and again.zoo_config == {**cfg, "num_classes": 3}
    with torch.no_grad():
        assert torch.equal(_first(again(*x)), out)
