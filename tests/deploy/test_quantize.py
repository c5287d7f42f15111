"""zoo quantize: the int8 folder loads through zoo.from_pretrained and gives the outputs the quantized
model gave before saving; the weights file is plain safetensors; bad input is named."""

import json

import pytest
import torch
from safetensors import safe_open

import zoo
from zoo.cli import main
from zoo.deploy.quantize import load_quantized, quantize, save_quantized
from zoo.shared.registry import get_entry

zoo.list_models()  # the domains register their models


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _tiny(name):
    spec = get_entry(name).test
    torch.manual_seed(0)
    return zoo.create(name, **spec.config).eval(), spec


def _quantized_modules(model):
    return sorted({("dynamic." if ".dynamic." in type(m).__module__ else "") + type(m).__name__
                   for m in model.modules() if "quantized" in type(m).__module__})


@pytest.mark.parametrize("name, kinds", [
    ("bert_tiny", {"dynamic.Linear"}),
    ("gpt2", {"dynamic.Linear"}),  # the Conv1D projections and the head
    ("bilstm_crf", {"dynamic.Linear", "dynamic.LSTM"}),
])
def test_dynamic_int8_round_trips_through_from_pretrained(name, kinds, tmp_path):
    model, spec = _tiny(name)
    q = quantize(model, "dynamic")
    assert kinds <= set(_quantized_modules(q)), _quantized_modules(q)
    float_linears = [m for m in q.modules() if type(m) is torch.nn.Linear or type(m).__name__ == "Conv1D"]
    assert not float_linears, "every Linear / Conv1D became int8"
    save_quantized(q, tmp_path / "int8", q.quantization)
    config = json.loads((tmp_path / "int8" / "config.json").read_text())
    assert config["quantization"]["mode"] == "dynamic" and config["architecture"] == name
    again = zoo.from_pretrained(tmp_path / "int8")
    assert again.zoo_name == name and again.quantization["mode"] == "dynamic"
    x = spec.inputs(model.zoo_config, 3)
    with torch.inference_mode():
        before, after, full = q(*x), again(*x), model(*x)
    assert torch.equal(before, after)
    assert not torch.equal(before, full)  # it is quantized: not the float model's outputs
    torch.testing.assert_close(before, full, atol=0.1, rtol=0.1)  # ... and close to them


def test_static_int8_resnet_round_trips_and_uses_int8_convolutions(tmp_path):
    model, spec = _tiny("resnet18")
    torch.manual_seed(1)
    calibration = [torch.randn(8, 3, 32, 32) for _ in range(3)]
    q = quantize(model, "static", calibration)
    kinds = _quantized_modules(q)
    assert any("ConvReLU2d" in k for k in kinds) and any(k.endswith("Conv2d") for k in kinds), kinds
    save_quantized(q, tmp_path / "int8", q.quantization)
    again = zoo.from_pretrained(tmp_path / "int8")
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        before, after, full = q(x), again(x), model(x)
    assert torch.equal(before, after) and not torch.equal(before, full)
    assert (before.argmax(1) == full.argmax(1)).float().mean() >= 0.5


def test_quantized_weights_are_plain_safetensors_and_smaller(tmp_path):
    model = zoo.create("bert_tiny", vocab_size=100, hidden_dim=64, num_layers=2, num_heads=2,
                       intermediate_dim=256, max_positions=32, head="sequence", num_classes=3).eval()
    zoo.save_pretrained(model, tmp_path / "float")
    q = quantize(model, "dynamic")
    save_quantized(q, tmp_path / "int8", q.quantization)
    with safe_open(str(tmp_path / "int8" / "model.safetensors"), framework="pt") as fh:
        dtypes = {fh.get_tensor(k).dtype for k in fh.keys()}
        assert "zoo_quantized" in fh.metadata()
    assert torch.int8 in dtypes
    size = lambda d: (tmp_path / d / "model.safetensors").stat().st_size  # noqa: E731
    assert size("int8") < 0.5 * size("float")


def test_cli_quantize_writes_a_folder_from_pretrained_loads(tmp_path, capsys):
    model, spec = _tiny("gpt2")
    zoo.save_pretrained(model, tmp_path / "float")
    assert main(["quantize", "--pretrained", str(tmp_path / "float"), "--out", str(tmp_path / "int8")]) == 0
    assert "dynamic int8" in capsys.readouterr().out
    again = zoo.from_pretrained(tmp_path / "int8")
    x = spec.inputs(model.zoo_config, 2)
    with torch.inference_mode():
        torch.testing.assert_close(again(*x), quantize(model, "dynamic")(*x), atol=0, rtol=0)


def _error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), err
    return lines[0]


def test_cli_quantize_errors(tmp_path, capsys):
    missing = tmp_path / "nothing"
    assert main(["quantize", "--pretrained", str(missing), "--out", str(tmp_path / "o")]) == 1
    assert str(missing) in _error_line(capsys.readouterr().err)
    model, _ = _tiny("gpt2")
    zoo.save_pretrained(model, tmp_path / "gpt")
    assert main(["quantize", "--pretrained", str(tmp_path / "gpt"), "--out", str(tmp_path / "o"), "--mode", "static"]) == 2
    assert "--calibration-data" in _error_line(capsys.readouterr().err)
    assert main(["quantize", "--pretrained", str(tmp_path / "gpt"), "--out", str(tmp_path / "o"),
                 "--mode", "static", "--calibration-data", "digits"]) == 1
    assert "ResNet family" in _error_line(capsys.readouterr().err)
    assert main(["quantize", "--pretrained", str(tmp_path / "gpt"), "--out", str(tmp_path / "o"), "--mode", "int4"]) == 2
    assert "int4" in _error_line(capsys.readouterr().err)


def test_a_quantized_folder_is_refused_by_create_and_overrides(tmp_path):
    model, _ = _tiny("bert_tiny")
    q = quantize(model, "dynamic")
    save_quantized(q, tmp_path / "int8", q.quantization)
    with pytest.raises(zoo.CheckpointError, match="from_pretrained"):
        zoo.create("bert_tiny", pretrained=tmp_path / "int8")
    with pytest.raises(zoo.InvalidConfigError, match="num_classes"):
        zoo.from_pretrained(tmp_path / "int8", num_classes=5)
    # weights that do not fit the config are a mismatch, named
    config = json.loads((tmp_path / "int8" / "config.json").read_text())
    config["config"]["num_layers"] = 1
    (tmp_path / "int8" / "config.json").write_text(json.dumps(config))
    with pytest.raises(zoo.CheckpointMismatchError, match="unexpected"):
        load_quantized(tmp_path / "int8")
