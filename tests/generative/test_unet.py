"""The U-Net against diffusers' UNet2DModel: keys, shapes, parameter count, outputs, diffusers folders."""

import json

import pytest
import torch

import zoo
from zoo.generative.unet import UNet2D, config_from_diffusers, config_to_diffusers
from zoo.shared.errors import InputError, InvalidConfigError

diffusers = pytest.importorskip("diffusers")

# google/ddpm-cifar10-32's UNet2DModel configuration, as diffusers documents it (its config.json)
DDPM_CIFAR10 = dict(
    sample_size=32, in_channels=3, out_channels=3, layers_per_block=2, block_out_channels=(128, 256, 256, 256),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), attention_head_dim=None,
    downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, norm_num_groups=32, act_fn="silu",
    center_input_sample=False, mid_block_scale_factor=1, time_embedding_type="positional",
)
SMALL = dict(sample_size=16, in_channels=1, out_channels=2, layers_per_block=1, block_out_channels=(32, 64, 64),
             down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
             up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"), attention_head_dim=16,
             norm_num_groups=8, downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, norm_eps=1e-5)


def _randomized(model, seed=0):
    """Random weights everywhere (diffusers' init leaves biases and norms at 0 / 1), so every parameter matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def _pair(diffusers_config):
    torch.manual_seed(0)
    theirs = _randomized(diffusers.UNet2DModel(**diffusers_config)).eval()
    ours = zoo.create("unet2d_ddpm_cifar10", **config_from_diffusers(dict(theirs.config))).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


def test_the_cifar10_configuration_has_diffusers_keys_shapes_and_35746307_parameters():
    with torch.device("meta"):
        theirs = diffusers.UNet2DModel(**DDPM_CIFAR10)
        ours = zoo.create("unet2d_ddpm_cifar10")
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)
    assert sum(p.numel() for p in theirs.parameters()) == 35_746_307
    assert zoo.model_info("unet2d_ddpm_cifar10").num_params == 35_746_307


def test_small_configuration_outputs_equal_diffusers():
    ours, theirs = _pair(SMALL)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 16, 16, generator=g)
    for t in (torch.tensor([0, 17, 999]), torch.tensor(500), 3, torch.tensor([0.5, 10.25, 999.0])):
        with torch.no_grad():
            torch.testing.assert_close(ours(x, t), theirs(x, t).sample, rtol=0, atol=1e-5)


def test_scale_shift_and_mid_scale_options_equal_diffusers():
    ours, theirs = _pair({**SMALL, "resnet_time_scale_shift": "scale_shift", "mid_block_scale_factor": 1.414,
                          "center_input_sample": True})
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, torch.tensor([3, 400])), theirs(x, torch.tensor([3, 400])).sample,
                                   rtol=0, atol=1e-5)


@pytest.mark.slow
def test_cifar10_configuration_outputs_equal_diffusers():
    ours, theirs = _pair(DDPM_CIFAR10)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([10, 900])
    with torch.no_grad():
        a, b = ours(x, t), theirs(x, t).sample
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    # the same kernels on the same memory layouts: bitwise equal (the attention's GroupNorm runs on
    # (B, C, HW) as diffusers' does; a 4-D GroupNorm on channels-last input rounds differently)
    assert torch.equal(a, b)
    _assert_training_step_bitwise_equal(ours, theirs, x, t)


def _assert_training_step_bitwise_equal(ours, theirs, x, t):
    """Train mode, forward and backward: the same outputs and the same gradients, bit for bit (the
    1x1 shortcut convs see a contiguous input in training, as diffusers gives them)."""
    ours.train(), theirs.train()
    a, b = ours(x, t), theirs(x, t).sample
    assert torch.equal(a, b)
    a.square().mean().backward()
    b.square().mean().backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.equal(p.grad, q.grad), f"{name}: {(p.grad - q.grad).abs().max():.1e}"


def test_gradients_equal_diffusers():
    ours, theirs = _pair(SMALL)
    x, t = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(3)), torch.tensor([5, 700])
    _assert_training_step_bitwise_equal(ours, theirs, x, t)


def test_a_diffusers_folder_loads_with_create(tmp_path):
    """diffusers' save_pretrained writes config.json + diffusion_pytorch_model.safetensors."""
    torch.manual_seed(0)
    theirs = _randomized(diffusers.UNet2DModel(**{**config_to_diffusers(zoo.model_info("unet2d_small").config)}))
    theirs.save_pretrained(tmp_path / "unet")
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    ours = zoo.create("unet2d_small", pretrained=tmp_path / "unet").eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, torch.tensor([1, 2])), theirs.eval()(x, torch.tensor([1, 2])).sample,
                                   rtol=0, atol=1e-5)
    # any other configuration: its config.json says how to build it (the registry's foreign_config hook)
    other = _randomized(diffusers.UNet2DModel(**SMALL))
    other.save_pretrained(tmp_path / "other")
    ours = zoo.create("unet2d_small", pretrained=tmp_path / "other").eval()
    assert ours.zoo_config["block_out_channels"] == [32, 64, 64] and ours.zoo_config["out_channels"] == 2
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, 7), other.eval()(x, 7).sample, rtol=0, atol=1e-5)


def test_config_from_diffusers_reads_the_hub_config_json(tmp_path):
    hub = {"_class_name": "UNet2DModel", "_diffusers_version": "0.0.4", **DDPM_CIFAR10,
           "block_out_channels": [128, 256, 256, 256], "resnet_num_groups": 32}
    (tmp_path / "config.json").write_text(json.dumps(hub))
    config = config_from_diffusers(tmp_path)
    assert config["block_out_channels"] == (128, 256, 256, 256) and config["downsample_padding"] == 0
    with torch.device("meta"):
        model = zoo.create("unet2d_ddpm_cifar10", **config)
    assert sum(p.numel() for p in model.parameters()) == 35_746_307
    with pytest.raises(InvalidConfigError, match="time_embedding_type"):
        config_from_diffusers({**hub, "time_embedding_type": "fourier"})
    with pytest.raises(InvalidConfigError, match="UNet2DModel"):
        config_from_diffusers({"_class_name": "UNet2DConditionModel"})


def test_bad_configs_and_inputs_are_refused():
    with pytest.raises(InvalidConfigError, match="one entry per resolution"):
        zoo.create("unet2d_small", block_out_channels=(32, 64))
    with pytest.raises(InvalidConfigError, match="unsupported block types"):
        zoo.create("unet2d_small", down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"))
    with pytest.raises(InvalidConfigError, match="norm_num_groups"):
        zoo.create("unet2d_small", norm_num_groups=48)
    model = zoo.create("unet2d_small", block_out_channels=(16, 32, 32), norm_num_groups=8)
    with pytest.raises(InputError, match="multiples of 4"):
        model(torch.randn(1, 1, 30, 30), 1)
    with pytest.raises(InputError, match=r"\(batch, 1, height, width\)"):
        model(torch.randn(1, 3, 32, 32), 1)
    with pytest.raises(InputError, match="one per image"):
        model(torch.randn(2, 1, 32, 32), torch.tensor([1, 2, 3]))
    assert isinstance(model, UNet2D)
