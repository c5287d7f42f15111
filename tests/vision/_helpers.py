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
