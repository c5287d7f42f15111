"""The registry-wide suite: every registered model, on its tiny test config.

Adding a model to the registry (with a TestSpec) is all it takes to be covered here.
"""

import math

import pytest
import torch

import zoo
from shared.registry import get_entry

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
    assert info.num_params == sum(p.numel() for p in model.parameters())
    assert info.config == model.zoo_config
    for w in info.weights:
        assert w["tag"] and w["layout"] and (w.get("url") or w.get("hf_hub_id"))
    assert math.isfinite(info.num_params)
