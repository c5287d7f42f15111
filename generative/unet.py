"""The DDPM U-Net in the layout of diffusers' ``UNet2DModel``.

Paper: Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020
(arXiv:2006.11239), appendix B: a PixelCNN++-style U-Net with wide residual blocks, group norm,
a sinusoidal time embedding added inside every residual block, and self-attention at 16x16.

Checkpoint layout: diffusers' ``UNet2DModel`` (``conv_in``, ``time_embedding.linear_{1,2}``,
``down_blocks.N.resnets.M.*`` / ``.attentions.M.{group_norm,to_q,to_k,to_v,to_out.0}`` /
``.downsamplers.0.conv``, ``mid_block.*``, ``up_blocks.N.*``, ``conv_norm_out``, ``conv_out``). With
the google/ddpm-cifar10-32 configuration (``unet2d_ddpm_cifar10``) the model has 35,746,307
parameters, the ``state_dict`` has exactly diffusers' keys and shapes, and the outputs equal
diffusers' with the same weights. A diffusers folder (``config.json`` +
``diffusion_pytorch_model.safetensors``) loads with ``create(name, pretrained=folder)``, built with
the configuration its ``config.json`` describes (:func:`config_from_diffusers`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.shared.errors import InputError, InvalidConfigError
from zoo.shared.layers.attention import merge_heads, split_heads
from zoo.shared.registry import TestSpec, register_model

DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D")
UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D")


def timestep_embedding(t: Tensor, dim: int, flip_sin_to_cos: bool = False, freq_shift: float = 1.0,
                       max_period: float = 10000.0) -> Tensor:
    """Transformer-style sinusoids of the timestep: frequencies ``max_period ** (-i / (dim/2 - shift))``,
    ``[sin, cos]`` (``[cos, sin]`` when flipped), zero-padded to an odd ``dim``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
                      / (half - freq_shift))
    angles = t[:, None].float() * freqs[None]
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimestepEmbedding(nn.Module):
    """The sinusoids through an MLP: Linear -> SiLU -> Linear."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3, plus the projected time embedding (added, or as scale and shift
    after the second norm), GroupNorm -> SiLU -> dropout -> conv3x3; a 1x1 conv on the shortcut
    when the width changes; the sum divided by ``output_scale``."""

    def __init__(self, cin: int, cout: int, temb_dim: int, groups: int, eps: float, dropout: float = 0.0,
                 output_scale: float = 1.0, scale_shift: bool = False):
        super().__init__()
        self.scale_shift, self.output_scale = scale_shift, output_scale
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_dim, 2 * cout if scale_shift else cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        t = self.time_emb_proj(F.silu(temb))[:, :, None, None]
        if self.scale_shift:
            scale, shift = t.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + t)
        h = self.conv2(self.dropout(F.silu(h)))
        shortcut = x
        if self.conv_shortcut is not None:
            # training: the 1x1 conv on a contiguous input, as diffusers runs it (a channels-last input
            # takes another kernel, whose bias gradient sums in another order)
            shortcut = self.conv_shortcut(x.contiguous() if self.training else x)
        out = shortcut + h
        return out if self.output_scale == 1.0 else out / self.output_scale


class AttentionBlock(nn.Module):
    """Self-attention over the H*W positions: GroupNorm, q/k/v projections, softmax(q k^T / sqrt(d)) v
    per head, the output projection, the residual; the sum divided by ``output_scale``."""

    def __init__(self, channels: int, head_dim: int, groups: int | None, eps: float, output_scale: float = 1.0):
        super().__init__()
        if channels % head_dim:
            raise InvalidConfigError(f"attention_head_dim {head_dim} does not divide the {channels} channels")
        self.heads, self.output_scale = channels // head_dim, output_scale
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps) if groups else None
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])  # diffusers' key: to_out.0

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        # GroupNorm over (B, C, HW) as diffusers does: on a channels-last x a 4-D GroupNorm takes
        # another kernel, equal only to rounding
        seq = x.flatten(2) if self.group_norm is None else self.group_norm(x.flatten(2))
        seq = seq.transpose(1, 2)  # (B, HW, C)
        q, k, v = (split_heads(proj(seq), self.heads) for proj in (self.to_q, self.to_k, self.to_v))
        out = self.to_out[0](merge_heads(F.scaled_dot_product_attention(q, k, v)))
        out = out.transpose(1, 2).reshape(b, c, h, w) + x
        return out if self.output_scale == 1.0 else out / self.output_scale


class Downsample(nn.Module):
    """A stride-2 3x3 conv; ``padding=0`` pads right and bottom only (the original DDPM code)."""

    def __init__(self, channels: int, padding: int):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)) if self.padding == 0 else x)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """``layers`` residual blocks (each followed by attention in an AttnDownBlock2D), then a
    downsample unless last. Returns the output and every intermediate for the skip connections."""

    def __init__(self, cin: int, cout: int, layers: int, attention: bool, downsample: bool, res: dict,
                 head_dim: int | None, padding: int):
        super().__init__()
        # attentions first: diffusers' state_dict order
        self.attentions = nn.ModuleList(
            AttentionBlock(cout, head_dim or cout, res["groups"], res["eps"], res["output_scale"]) for _ in range(layers)
        ) if attention else None
        self.resnets = nn.ModuleList(ResnetBlock(cin if i == 0 else cout, cout, **res) for i in range(layers))
        self.downsamplers = nn.ModuleList([Downsample(cout, padding)]) if downsample else None

    def forward(self, x: Tensor, temb: Tensor) -> tuple[Tensor, list[Tensor]]:
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    """``layers`` residual blocks, each on the concatenation of the running features and one skip
    (attention after each in an AttnUpBlock2D), then an upsample unless last."""

    def __init__(self, cin: int, cprev: int, cout: int, layers: int, attention: bool, upsample: bool, res: dict,
                 head_dim: int | None):
        super().__init__()
        self.attentions = nn.ModuleList(
            AttentionBlock(cout, head_dim or cout, res["groups"], res["eps"], res["output_scale"]) for _ in range(layers)
        ) if attention else None
        self.resnets = nn.ModuleList(
            ResnetBlock((cprev if i == 0 else cout) + (cin if i == layers - 1 else cout), cout, **res)
            for i in range(layers))
        self.upsamplers = nn.ModuleList([Upsample(cout)]) if upsample else None

    def forward(self, x: Tensor, skips: list[Tensor], temb: Tensor) -> Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb)
            if self.attentions is not None:
                x = self.attentions[i](x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class MidBlock(nn.Module):
    """ResNet -> attention -> ResNet at the lowest resolution. (With scale-shift time conditioning
    diffusers' mid-block attention has no group norm.)"""

    def __init__(self, channels: int, res: dict, head_dim: int | None, attention: bool):
        super().__init__()
        groups = None if res["scale_shift"] else res["groups"]
        self.attentions = nn.ModuleList(
            [AttentionBlock(channels, head_dim or channels, groups, res["eps"], res["output_scale"])]
        ) if attention else None
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, **res), ResnetBlock(channels, channels, **res)])

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        x = self.resnets[0](x, temb)
        if self.attentions is not None:
            x = self.attentions[0](x)
        return self.resnets[1](x, temb)


class UNet2D(nn.Module):
    """``model(x, t)`` -> the prediction (noise, or v) for noisy images ``x`` (B, C, H, W) at
    integer or fractional timesteps ``t`` (a scalar or one per image). H and W must be divisible by
    ``2 ** (len(block_out_channels) - 1)``."""

    def __init__(self, sample_size: int = 32, in_channels: int = 3, out_channels: int = 3,
                 block_out_channels: tuple[int, ...] = (128, 256, 256, 256), layers_per_block: int = 2,
                 down_block_types: tuple[str, ...] = ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                 up_block_types: tuple[str, ...] = ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                 attention_head_dim: int | None = None, norm_num_groups: int = 32, norm_eps: float = 1e-6,
                 downsample_padding: int = 0, flip_sin_to_cos: bool = False, freq_shift: int = 1,
                 mid_block_scale_factor: float = 1.0, dropout: float = 0.0, center_input_sample: bool = False,
                 resnet_time_scale_shift: str = "default", add_attention: bool = True):
        super().__init__()
        problem = _config_problem(dict(block_out_channels=block_out_channels, down_block_types=down_block_types,
                                       up_block_types=up_block_types, norm_num_groups=norm_num_groups,
                                       resnet_time_scale_shift=resnet_time_scale_shift))
        if problem:
            raise InvalidConfigError(f"UNet2D: {problem}")
        self.sample_size, self.in_channels, self.out_channels = sample_size, in_channels, out_channels
        self.center_input_sample, self.flip_sin_to_cos, self.freq_shift = center_input_sample, flip_sin_to_cos, freq_shift
        ch = list(block_out_channels)
        temb_dim = ch[0] * 4
        res = dict(temb_dim=temb_dim, groups=norm_num_groups, eps=norm_eps, dropout=dropout, output_scale=1.0,
                   scale_shift=resnet_time_scale_shift == "scale_shift")

        self.conv_in = nn.Conv2d(in_channels, ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], temb_dim)
        self.down_blocks = nn.ModuleList()
        self.up_blocks = nn.ModuleList()  # registered before mid_block: diffusers' state_dict order
        cout = ch[0]
        for i, kind in enumerate(down_block_types):
            cin, cout = cout, ch[i]
            self.down_blocks.append(DownBlock(cin, cout, layers_per_block, kind == "AttnDownBlock2D",
                                              i < len(ch) - 1, res, attention_head_dim, downsample_padding))
        self.mid_block = MidBlock(ch[-1], {**res, "output_scale": mid_block_scale_factor}, attention_head_dim,
                                  add_attention)
        rev = ch[::-1]
        cout = rev[0]
        for i, kind in enumerate(up_block_types):
            cprev, cout, cin = cout, rev[i], rev[min(i + 1, len(ch) - 1)]
            self.up_blocks.append(UpBlock(cin, cprev, cout, layers_per_block + 1, kind == "AttnUpBlock2D",
                                          i < len(ch) - 1, res, attention_head_dim))
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, ch[0], eps=norm_eps)
        self.conv_out = nn.Conv2d(ch[0], out_channels, 3, padding=1)
        self.downsampling = 2 ** (len(ch) - 1)

    def forward(self, x: Tensor, t: Tensor | float | int) -> Tensor:
        self._check(x)
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        elif t.shape != (x.shape[0],):
            raise InputError(f"UNet2D: timesteps must be a scalar or one per image ({x.shape[0]}), got shape "
                             f"{tuple(t.shape)}")
        if self.center_input_sample:
            x = 2 * x - 1.0
        temb = self.time_embedding(timestep_embedding(t, self.conv_in.out_channels, self.flip_sin_to_cos,
                                                      self.freq_shift).to(x.dtype))
        h = self.conv_in(x)
        skips = [h]
        for block in self.down_blocks:
            h, block_skips = block(h, temb)
            skips += block_skips
        h = self.mid_block(h, temb)
        for block in self.up_blocks:
            h = block(h, skips, temb)
        return self.conv_out(F.silu(self.conv_norm_out(h)))

    def _check(self, x) -> None:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(f"UNet2D expects images of shape (batch, {self.in_channels}, height, width), got {got}.")
        if x.shape[-1] % self.downsampling or x.shape[-2] % self.downsampling:
            raise InputError(f"UNet2D: height and width must be multiples of {self.downsampling} (the U-Net halves "
                             f"them {len(self.down_blocks) - 1} times), got {tuple(x.shape[-2:])}; resize or pad "
                             "the images.")


def _config_problem(cfg: dict) -> str | None:
    """The first thing wrong with a U-Net config, or None."""
    ch, down, up = cfg["block_out_channels"], cfg["down_block_types"], cfg["up_block_types"]
    if not (len(ch) == len(down) == len(up)):
        return (f"block_out_channels, down_block_types and up_block_types need one entry per resolution, got "
                f"{len(ch)}, {len(down)} and {len(up)}")
    bad = [b for b in down if b not in DOWN_BLOCKS] + [b for b in up if b not in UP_BLOCKS]
    if bad:
        return (f"unsupported block types {bad}; down blocks are one of {DOWN_BLOCKS}, up blocks one of {UP_BLOCKS}")
    groups = cfg["norm_num_groups"]
    if any(c % groups for c in ch):
        return f"norm_num_groups {groups} must divide every entry of block_out_channels {list(ch)}"
    if cfg["resnet_time_scale_shift"] not in ("default", "scale_shift"):
        return f"resnet_time_scale_shift must be 'default' or 'scale_shift', got {cfg['resnet_time_scale_shift']!r}"
    return None


# diffusers' UNet2DModel options we build; the others must keep the value named here
_DIFFUSERS_KEYS = ("sample_size", "in_channels", "out_channels", "block_out_channels", "layers_per_block",
                   "down_block_types", "up_block_types", "attention_head_dim", "norm_num_groups", "norm_eps",
                   "downsample_padding", "flip_sin_to_cos", "freq_shift", "mid_block_scale_factor", "dropout",
                   "center_input_sample", "resnet_time_scale_shift", "add_attention")
_DIFFUSERS_FIXED = {"time_embedding_type": "positional", "act_fn": "silu", "downsample_type": "conv",
                    "upsample_type": "conv", "class_embed_type": None, "num_class_embeds": None,
                    "time_embedding_dim": None, "attn_norm_num_groups": None, "mid_block_type": "UNetMidBlock2D"}
# diffusers' defaults where they differ from ours, for configs that leave them out
_DIFFUSERS_DEFAULTS = {"freq_shift": 0, "flip_sin_to_cos": True, "downsample_padding": 1, "norm_eps": 1e-5,
                       "attention_head_dim": 8, "block_out_channels": (224, 448, 672, 896),
                       "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                       "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")}


def config_from_diffusers(config: dict | str | Path) -> dict:
    """Our keyword arguments for a diffusers ``UNet2DModel`` config (a dict, a ``config.json`` or the
    folder holding it). An option this U-Net does not build is an InvalidConfigError naming it."""
    if not isinstance(config, dict):
        path = Path(config)
        path = path / "config.json" if path.is_dir() else path
        config = json.loads(path.read_text())
    kind = config.get("_class_name", "UNet2DModel")
    if kind != "UNet2DModel":
        raise InvalidConfigError(f"config_from_diffusers reads a UNet2DModel config, got a {kind!r} config")
    for key, value in _DIFFUSERS_FIXED.items():
        if key in config and config[key] != value:
            raise InvalidConfigError(f"UNet2D does not build diffusers' {key}={config[key]!r} (only {value!r})")
    if isinstance(config.get("sample_size"), (list, tuple)):
        config = {**config, "sample_size": config["sample_size"][0]}
    out = {k: config.get(k, _DIFFUSERS_DEFAULTS.get(k)) for k in _DIFFUSERS_KEYS
           if k in config or k in _DIFFUSERS_DEFAULTS}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in out.items()}


def diffusers_folder_config(folder) -> dict | None:
    """The registry's ``foreign_config`` hook: our config for a diffusers ``UNet2DModel`` folder
    (its ``config.json``), so ``create(name, pretrained=folder)`` builds the U-Net the folder
    describes; None for anything else (a hub name: no hub lookup for diffusers repos here)."""
    path = Path(str(folder))
    if str(folder).startswith("hf-hub:") or not (path / "config.json").is_file():
        return None
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or config.get("_class_name") != "UNet2DModel":
        return None
    return config_from_diffusers(config)


def config_to_diffusers(config: dict) -> dict:
    """The diffusers ``UNet2DModel`` keyword arguments for one of our configs (the inverse)."""
    full = {**_unet_defaults(), **config}
    return {**{k: full[k] for k in _DIFFUSERS_KEYS}, "time_embedding_type": "positional", "act_fn": "silu"}


def _unet_defaults() -> dict:
    import inspect

    return {k: p.default for k, p in inspect.signature(UNet2D).parameters.items()}


def _test_inputs(cfg: dict, batch: int) -> tuple:
    size = cfg["sample_size"]
    g = torch.Generator().manual_seed(0)
    return (torch.randn(batch, cfg["in_channels"], size, size, generator=g), torch.randint(0, 1000, (batch,), generator=g))


_TEST = TestSpec(
    config=dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
                down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                norm_num_groups=8),
    inputs=_test_inputs,
    output_shape=lambda cfg, b: (b, cfg["out_channels"], cfg["sample_size"], cfg["sample_size"]),
    atol=1e-4,
)
_FAMILY = dict(domain="generative", task="denoising-diffusion", inputs="(noisy images (B, C, H, W), timesteps (B,))",
               paper="Ho et al. 2020, Denoising Diffusion Probabilistic Models (arXiv:2006.11239)", test=_TEST,
               checks=[_config_problem], foreign_config=diffusers_folder_config)

# google/ddpm-cifar10-32's configuration (diffusers' UNet2DModel), 35,746,307 parameters
register_model("unet2d_ddpm_cifar10", UNet2D, dict(sample_size=32, in_channels=3, out_channels=3), **_FAMILY)
# a small U-Net for 32x32 digits: 64-128-128 channels, attention at 16x16, about 3.5 M parameters
SMALL = dict(sample_size=32, in_channels=1, out_channels=1, block_out_channels=(64, 128, 128), layers_per_block=1,
             down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
             up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
register_model("unet2d_small", UNet2D, SMALL, **_FAMILY)
