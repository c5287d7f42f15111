"""Fine-tuning strategies and the `zoo finetune` CLI, on tiny image folders made here."""

import json

import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.shared.errors import InvalidConfigError
from zoo.shared.registry import get_entry
from tests.vision.test_train_recipe import _write_folder
from zoo.vision.finetune import build_parser, depth_groups, finetune_optimizer, run
from zoo.vision.finetune import main as finetune_main
from zoo.cli import main as zoo_main


def test_depth_groups_follow_each_family():
    r = depth_groups(zoo.create("resnet18", **get_entry("resnet18").test.config))
    assert r[0] == ["conv1.weight", "bn1.weight", "bn1.bias"] and r[-1] == ["fc.weight", "fc.bias"]
    assert [g[0].split(".")[0] for g in r[1:-1]] == ["layer1", "layer2", "layer3", "layer4"]
    v = depth_groups(zoo.create("vit_tiny_patch16_224", **get_entry("vit_tiny_patch16_224").test.config))
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight"} <= set(v[0])
    assert [g[0].split(".")[1] for g in v[1:-1]] == ["0", "1"]  # blocks.0, blocks.1
    assert {"norm.weight", "head.weight"} <= set(v[-1])
    m = depth_groups(zoo.create("mobilenet_v3_small", **get_entry("mobilenet_v3_small").test.config))
    assert m[0][0].startswith("features.0.") and m[-1][-1].startswith("classifier.")


def test_layer_wise_lr_decay_scales_each_group_from_the_top():
    model = zoo.create("resnet18", **get_entry("resnet18").test.config)
    groups = depth_groups(model)
    opt = finetune_optimizer(model, groups, "llrd", lr=1.0, weight_decay=0.05, layer_decay=0.5, optimizer="adamw")
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    for k, names in enumerate(reversed(groups)):
        assert {lr_of[id(params[n])] for n in names} == {0.5 ** k}
    # biases and norm scales are not decayed
    assert all(g["weight_decay"] == 0.0 for g in opt.param_groups if all(p.ndim == 1 for p in g["params"]))


@pytest.fixture
def pretrained_dir(tmp_path):
    torch.manual_seed(0)
    model = zoo.create("resnet18", base_channels=8)  # 3 channels, 1000 classes: like an ImageNet checkpoint
    return zoo.save_pretrained(model, tmp_path / "pre")


def _finetune(tmp_path, pretrained_dir, strategy, *extra):
    folder = tmp_path / "imgs"
    if not folder.exists():
        _write_folder(folder, n_per_class=10)
    out = tmp_path / f"ft-{strategy}"
    args = ["finetune", "resnet18", "--pretrained", str(pretrained_dir), "--data", str(folder), "--img-size", "32",
            "--epochs", "2", "--batch-size", "4", "--strategy", strategy, "--no-progress",
            "--save-model", str(out), *extra]
    assert zoo_main(args) == 0
    return load_file(out / "model.safetensors")


def test_cli_linear_probe_trains_only_the_new_head(tmp_path, pretrained_dir, capsys):
    before = load_file(pretrained_dir / "model.safetensors")
    after = _finetune(tmp_path, pretrained_dir, "linear")
    assert "classifier fc re-initialised for num_classes=2" in capsys.readouterr().out
    assert after["fc.weight"].shape == (2, 64)
    for k, v in after.items():
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked"):
            assert torch.equal(v, before[k]), f"{k} changed in a linear probe"  # BN statistics included


def test_cli_gradual_unfreezing_reaches_only_the_top_stages(tmp_path, pretrained_dir):
    before = load_file(pretrained_dir / "model.safetensors")
    after = _finetune(tmp_path, pretrained_dir, "gradual")  # epoch 1: head; epoch 2: head + layer4
    assert not torch.equal(after["layer4.1.conv2.weight"], before["layer4.1.conv2.weight"])
    assert torch.equal(after["layer3.1.conv2.weight"], before["layer3.1.conv2.weight"])
    assert torch.equal(after["conv1.weight"], before["conv1.weight"])


@pytest.mark.parametrize("strategy", ["full", "llrd"])
def test_cli_full_and_llrd_update_the_whole_network(tmp_path, pretrained_dir, strategy):
    before = load_file(pretrained_dir / "model.safetensors")
    after = _finetune(tmp_path, pretrained_dir, strategy)
    assert not torch.equal(after["conv1.weight"], before["conv1.weight"])


def test_same_class_count_still_gets_a_new_head(tmp_path, capsys):
    torch.manual_seed(0)
    pre = zoo.save_pretrained(zoo.create("resnet18", base_channels=8, num_classes=2), tmp_path / "pre2")
    before = load_file(pre / "model.safetensors")
    after = _finetune(tmp_path, pre, "linear", "--epochs", "1")
    assert "re-initialised for the new classes" in capsys.readouterr().out
    assert not torch.equal(after["fc.weight"], before["fc.weight"])


def test_finetune_needs_pretrained_weights():
    with pytest.raises(InvalidConfigError, match="needs --pretrained"):
        finetune_main(["--model", "resnet18"])


def test_run_returns_the_summary(tmp_path, pretrained_dir, capsys):
    _write_folder(tmp_path / "imgs", n_per_class=10)
    args = build_parser().parse_args(["--model", "resnet18", "--pretrained", str(pretrained_dir), "--data",
                                      str(tmp_path / "imgs"), "--img-size", "32", "--epochs", "1", "--batch-size", "4",
                                      "--strategy", "linear", "--no-progress"])
    summary = run(args)
    printed = json.loads(next(line for line in capsys.readouterr().out.splitlines() if line.startswith("{")))
    assert summary == printed and summary["model"] == "resnet18" and 0.0 <= summary["test/acc"] <= 1.0
