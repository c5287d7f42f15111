"""Helpers shared by the vision tests."""

import torch


def randomize_bn(model: torch.nn.Module) -> torch.nn.Module:
    """BatchNorm starts at identity statistics; give it values so comparisons exercise them."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model


def load_torchvision_checkpoint(name: str, tmp_path, reference: torch.nn.Module, x: torch.Tensor):
    """The checks every torchvision-layout family shares: our state dict has the reference's keys
    (in order) and shapes, the reference's bare .pth (what torchvision publishes) loads through
    ``zoo.create(name, pretrained=file)``, and the outputs agree to 1e-5. Returns our loaded model."""
    import zoo

    ref_sd, our_sd = reference.state_dict(), zoo.create(name).state_dict()
    assert list(our_sd) == list(ref_sd)
    assert {k: tuple(v.shape) for k, v in our_sd.items()} == {k: tuple(v.shape) for k, v in ref_sd.items()}
    path = tmp_path / f"{name}-torchvision.pth"
    torch.save(ref_sd, path)
    loaded = zoo.create(name, pretrained=path).eval()
    assert loaded.load_report.layout in ("torchvision", "zoo")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), reference(x), atol=1e-5, rtol=1e-5)
    return loaded
