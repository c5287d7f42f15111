"""zoo export: the exported file's contract (sidecar JSON, ONNX metadata, named dynamic axes), load(),
the reasons it gives when a model cannot export, and the command line's errors."""

import json

import numpy as np
import onnx
import pytest
import torch

import zoo
from zoo.cli import main
from zoo.deploy.export import ExportError, FORMATS, export, load, onnx_session, sidecar_path
from zoo.shared.registry import get_entry

zoo.list_models()  # the domains register their models
TINY_RESNET = get_entry("resnet18").test.config
CONTRACT_KEYS = {"format", "architecture", "config", "pretrained_cfg", "id2label", "inputs", "outputs",
                 "dynamic_axes", "zoo_version", "torch_version"}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def saved_resnet(tmp_path_factory):
    torch.manual_seed(0)
    model = zoo.create("resnet18", **TINY_RESNET)
    model.id2label = {str(i): f"class{i}" for i in range(7)}
    model.pretrained_cfg = {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.25] * 3}
    return zoo.save_pretrained(model, tmp_path_factory.mktemp("saved") / "resnet")


def _error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), err
    return lines[0]


def test_cli_exports_a_saved_model_with_its_contract(saved_resnet, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", "--pretrained", str(saved_resnet), "--format", "onnx", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    meta = json.loads(sidecar_path(out).read_text())
    assert set(meta) == CONTRACT_KEYS
    assert meta["format"] == "onnx" and meta["architecture"] == "resnet18"
    assert meta["config"] == json.loads((saved_resnet / "config.json").read_text())["config"]
    assert meta["id2label"]["6"] == "class6" and meta["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert meta["inputs"] == [{"name": "x", "shape": ["batch", 3, "height", "width"], "dtype": "float32"}]
    assert meta["outputs"] == [{"name": "logits", "shape": ["batch", 7], "dtype": "float32"}]
    assert meta["dynamic_axes"] == {"x": {"0": "batch", "2": "height", "3": "width"}}
    proto = onnx.load(str(out))
    assert json.loads({p.key: p.value for p in proto.metadata_props}["zoo"]) == meta
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert [i.name for i in proto.graph.input] == ["x"] and dims == ["batch", 3, "height", "width"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    # runs at a batch and an image size other than the traced example's (2 x 32 x 32)
    model = zoo.from_pretrained(saved_resnet).eval()
    x = torch.randn(5, 3, 40, 48)
    with torch.inference_mode():
        expected = model(x)
    runner = load(out)
    torch.testing.assert_close(runner(x), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(runner(x=x.numpy()), expected, atol=1e-4, rtol=1e-4)  # numpy, by name
    # the ONNX file alone (no sidecar) still carries its metadata
    sidecar_path(out).unlink()
    assert load(out).metadata == meta


def test_text_model_declares_batch_and_length_shared_by_its_inputs(tmp_path):
    torch.manual_seed(0)
    model = zoo.create("bert_tiny", **get_entry("bert_tiny").test.config).eval()
    ids = torch.randint(0, 50, (2, 7))
    path = export(model, "export", tmp_path / "bert.pt2", (ids, torch.ones_like(ids)))
    meta = json.loads(sidecar_path(path).read_text())
    assert [(i["name"], i["shape"], i["dtype"]) for i in meta["inputs"]] == [
        ("input_ids", ["batch", "length"], "int64"), ("attention_mask", ["batch", "length"], "int64")]
    ids = torch.randint(0, 50, (3, 11))
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0
    with torch.inference_mode():
        expected = model(ids, mask)
    torch.testing.assert_close(load(path)(ids, mask), expected, atol=1e-5, rtol=1e-5)


def test_static_export_fixes_the_shapes(tmp_path):
    model = zoo.create("dqn_mlp", **get_entry("dqn_mlp").test.config).eval()
    path = export(model, "export", tmp_path / "q.pt2", (torch.randn(4, 5),), dynamic=False)
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["inputs"][0]["shape"] == [4, 5] and meta["dynamic_axes"] == {}
    assert meta["inputs"][0]["name"] == "obs"  # the forward's parameter name
    with pytest.raises(Exception):
        load(path)(torch.randn(3, 5))


def test_an_operation_onnx_lacks_is_named(tmp_path):
    class Histogram(torch.nn.Module):
        def forward(self, x):
            return torch.histc(x, bins=4)

    with pytest.raises(ExportError, match=r"cannot be exported to ONNX: unsupported operation aten\.histc"):
        export(Histogram(), "onnx", tmp_path / "h.onnx", (torch.rand(2, 3),))
    assert not (tmp_path / "h.onnx").exists()


def test_a_torchscript_trace_that_bakes_in_the_batch_is_refused(tmp_path):
    # gin counts the graphs with int(batch.max()) + 1: a trace records the example's count as a constant
    model = zoo.create("gin", **get_entry("gin").test.config).eval()
    with pytest.raises(ExportError, match="TorchScript") as info:
        export(model, "torchscript", tmp_path / "gin.pt", get_entry("gin").test.inputs(model.zoo_config, 2))
    assert not (tmp_path / "gin.pt").exists() and not sidecar_path(tmp_path / "gin.pt").exists()
    assert info.value.model == "gin" and info.value.reason


# ------------------------------------------------------------------------------------------------ CLI errors


def test_cli_unknown_format(tmp_path, capsys):
    assert main(["export", "resnet18", "--format", "tflite", "--out", str(tmp_path / "m")]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "tflite" in line and all(f in line for f in FORMATS)
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export(zoo.create("dqn_mlp"), "tflite", tmp_path / "m")


def test_cli_a_model_that_cannot_export_names_the_operation(tmp_path, capsys):
    out = tmp_path / "gat.onnx"
    assert main(["export", "gat", "--format", "onnx", "--out", str(out)]) == 1
    line = _error_line(capsys.readouterr().err)
    assert "gat cannot be exported to ONNX" in line and "data-dependent" in line and "graph/" in line
    assert not out.exists()


def test_cli_unwritable_output_path(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["export", "dqn_mlp", "--format", "export", "--out", str(blocker / "model.pt2")]) == 1
    line = _error_line(capsys.readouterr().err)
    assert str(blocker) in line and "a file of that name exists" in line


def test_cli_missing_pretrained_folder(tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    assert main(["export", "--pretrained", str(missing), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 1
    line = _error_line(capsys.readouterr().err)
    assert str(missing) in line and "no such directory" in line


def test_cli_needs_a_name_or_a_folder(tmp_path, capsys):
    assert main(["export", "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "NAME or --pretrained DIR" in _error_line(capsys.readouterr().err)


def test_cli_name_and_folder_must_agree(saved_resnet, tmp_path, capsys):
    assert main(["export", "vit_small_patch16_224", "--pretrained", str(saved_resnet), "--format", "onnx",
                 "--out", str(tmp_path / "m.onnx")]) == 1
    line = _error_line(capsys.readouterr().err)
    assert "resnet18" in line and "vit_small_patch16_224" in line


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="zoo export"):
        load(tmp_path / "absent.onnx")
    (tmp_path / "bare.pt2").write_bytes(b"")
    with pytest.raises(zoo.ZooError, match="no sidecar"):
        load(tmp_path / "bare.pt2")
    model = zoo.create("dqn_mlp", **get_entry("dqn_mlp").test.config).eval()
    path = export(model, "torchscript", tmp_path / "q.pt", (torch.randn(2, 5),))
    runner = load(path)
    with pytest.raises(zoo.InputError, match="needs the input 'obs'"):
        runner()
    with pytest.raises(zoo.InputError, match="no input 'x'"):
        runner(np.zeros((2, 5), np.float32), x=1)


def test_onnx_session_providers(tmp_path):
    """ONNX Runtime's own kernels, or its OpenVINO provider where the onnxruntime-openvino build is
    installed (its absence is an error that names the package); an unknown provider is refused."""
    import onnxruntime as ort

    torch.manual_seed(0)
    model = zoo.create("resnet18", **TINY_RESNET).eval()
    x = torch.randn(2, 3, 32, 32)
    path = export(model, "onnx", tmp_path / "r.onnx", (x,))
    with torch.inference_mode():
        expected = model(x).numpy()
    session = onnx_session(path, threads=1)
    assert session.get_providers() == ["CPUExecutionProvider"]
    feed = {session.get_inputs()[0].name: x.numpy()}
    np.testing.assert_allclose(session.run(None, feed)[0], expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(zoo.InputError, match="unknown ONNX Runtime provider 'cuda'; choose one of cpu, openvino"):
        onnx_session(path, provider="cuda")
    if "OpenVINOExecutionProvider" in ort.get_available_providers():
        session = onnx_session(path, threads=1, provider="openvino")
        assert session.get_providers()[0] == "OpenVINOExecutionProvider"
        np.testing.assert_allclose(session.run(None, feed)[0], expected, atol=1e-4, rtol=1e-4)
    else:
        with pytest.raises(zoo.ZooError, match="no OpenVINO execution provider.*pip install onnxruntime-openvino"):
            onnx_session(path, provider="openvino")
