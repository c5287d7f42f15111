"""Every vision model traces whole: no graph break under torch._dynamo, and torch.export gives a
program that computes what eager does. The input checks stay on shapes and dtypes only (static
under tracing), so they cost nothing once compiled and still raise clear InputErrors in eager."""

import pytest
import torch

import zoo
from zoo.shared.errors import InputError
from zoo.shared.registry import get_entry
from tests.vision._helpers import randomize_bn

VISION = zoo.list_models(domain="vision")
ONE_PER_FAMILY = ["resnet18", "mobilenet_v3_small", "vit_tiny_patch16_224"]


def _tiny(name: str):
    """The model at its TestSpec tiny config, in eval mode, and its example inputs (batch 2)."""
    spec = get_entry(name).test
    torch.manual_seed(0)
    model = randomize_bn(zoo.create(name, **spec.config)).eval()
    return model, spec.inputs(spec.config, 2)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_the_vision_domain_is_covered():
    assert {"resnet18", "resnet50", "mobilenet_v3_large", "vit_small_patch16_224"} <= set(VISION)


@pytest.mark.parametrize("name", VISION)
def test_no_graph_breaks(name):
    model, inputs = _tiny(name)
    explain = torch._dynamo.explain(model)(*inputs)
    reasons = "\n".join(f"- {b.reason}" + (f" at {b.user_stack[-1]}" if b.user_stack else "")
                        for b in explain.break_reasons)
    assert explain.graph_break_count == 0, f"{name}: {explain.graph_break_count} graph break(s):\n{reasons}"
    assert explain.graph_count == 1


@pytest.mark.parametrize("name", VISION)
def test_export_matches_eager(name):
    model, inputs = _tiny(name)
    with torch.no_grad():
        expected = model(*inputs)
    program = torch.export.export(model, inputs)
    with torch.no_grad():
        got = program.module()(*inputs)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_compiled_model_keeps_the_input_errors(name):
    """The checks are traced as guards; a bad input still reaches them and raises the eager message."""
    model, (x,) = _tiny(name)
    compiled = torch.compile(model, backend="eager")
    with torch.no_grad():
        assert compiled(x).shape == model(x).shape
        with pytest.raises(InputError, match="expects images of shape"):
            compiled(x[:, :1])
        with pytest.raises(InputError, match="floating-point"):
            compiled(x.to(torch.uint8))
