"""Vision Transformer (ViT).

Paper:
  Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at
  Scale", ICLR 2021 (arXiv:2010.11929).

The image is cut into non-overlapping P x P patches, each linearly embedded (a strided conv);
a learned class token is prepended, learned absolute position embeddings are added, and a
stack of pre-norm Transformer encoder blocks follows:

    x = x + DropPath(Attn(LN(x)))
    x = x + DropPath(MLP(LN(x)))

The class token (or the mean of the patch tokens) after a final LayerNorm feeds a linear head.

Checkpoint layout: timm's ``vision_transformer`` — ``cls_token``, ``pos_embed`` (class token
included), ``patch_embed.proj``, ``blocks.N.norm1``, ``blocks.N.attn.qkv`` / ``attn.proj``,
``blocks.N.norm2``, ``blocks.N.mlp.fc1`` / ``fc2``, ``norm`` (``fc_norm`` with average pooling),
``head``. torchvision's ``vit_b_16`` / ``vit_b_32`` / ``vit_l_16`` load through the
``"torchvision"`` key map (:func:`torchvision_to_timm`, inverse :func:`timm_to_torchvision`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from zoo.shared.errors import InputError, InvalidConfigError
from zoo.shared.features import take_indices
from zoo.shared.layers import (DropPath, Mlp, attention, checkpoint_seq, init_weights_vit_style, merge_heads,
                           resample_abs_pos_embed, split_heads, trunc_normal_)
from zoo.shared.registry import POSITIVE, Variant, WeightSource, register_model

from .common import (INCEPTION_MEAN, INCEPTION_STD, check_images, classifier_test_spec, data_config,
                     torchvision_weights)

LN_EPS = 1e-6  # timm, torchvision and the JAX original all use 1e-6


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    v = tuple(int(i) for i in v)
    if len(v) != 2:
        raise InvalidConfigError(f"expected an int or (height, width), got {v}")
    return v


def config_problem(cfg: dict) -> str | None:
    """What is wrong with a ViT config (None: nothing). The registry runs it before building (the
    family's ``checks``); the constructor runs it again for direct use."""
    if cfg["global_pool"] not in ("token", "avg"):
        return f"global_pool must be 'token' or 'avg', got {cfg['global_pool']!r}"
    if cfg["global_pool"] == "token" and not cfg["class_token"]:
        return "global_pool='token' needs class_token=True; use global_pool='avg' without a class token"
    try:
        img_hw, patch_hw = _pair(cfg["img_size"]), _pair(cfg["patch_size"])
    except InvalidConfigError as exc:
        return f"img_size / patch_size: {exc}"
    if img_hw[0] % patch_hw[0] or img_hw[1] % patch_hw[1]:
        return (f"img_size {img_hw} is not divisible by patch_size {patch_hw}: "
                "pick an image size that is a multiple of the patch size")
    if cfg["embed_dim"] % cfg["num_heads"]:
        return f"embed_dim ({cfg['embed_dim']}) must be a multiple of num_heads ({cfg['num_heads']})"
    return None


# ------------------------------------------------------------------------------------------------
# Blocks
# ------------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Split the image into patches and embed each one: a Conv2d with kernel = stride = patch size."""

    def __init__(self, img_size: tuple[int, int], patch_size: tuple[int, int], in_chans: int, embed_dim: int):
        super().__init__()
        self.img_size, self.patch_size = img_size, patch_size
        self.grid_size = (img_size[0] // patch_size[0], img_size[1] // patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H/P, W/P, D): the grid is kept so the caller knows its shape."""
        return self.proj(x).permute(0, 2, 3, 1)


class Attention(nn.Module):
    """Multi-head self-attention with timm's parameter names: one fused ``qkv`` Linear (rows q | k | v,
    heads contiguous inside each) and the output ``proj``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) -> (B, N, dim)."""
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        out = attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(merge_heads(out)))


class Block(nn.Module):
    """Pre-norm Transformer encoder block: multi-head self-attention, then an MLP, each residual."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 proj_drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


# ------------------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------------------


class VisionTransformer(nn.Module):
    """ViT: patch embedding, [class token] + position embeddings, encoder blocks, norm, head.

    Args:
        img_size: input resolution (int or (H, W)); must be a multiple of ``patch_size``.
        patch_size: side of the square patches.
        in_chans: input channels.
        num_classes: classifier outputs (0 leaves the head as identity).
        global_pool: ``"token"`` (class token) or ``"avg"`` (mean of patch tokens; the final norm
            then comes after the pooling, as ``fc_norm``, like timm).
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: the encoder.
        class_token: prepend a learned class token.
        drop_rate: dropout before the head.
        pos_drop_rate: dropout after adding the position embeddings.
        proj_drop_rate: dropout after the attention projection and in the MLP.
        attn_drop_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth, rising linearly from 0 to this over the blocks.
        dynamic_img_size: accept any input size that is a multiple of the patch size, resampling
            the position embeddings on the fly; otherwise the input must be ``img_size``.
    """

    def __init__(self, img_size: int | Sequence[int] = 224, patch_size: int = 16, in_chans: int = 3,
                 num_classes: int = 1000, global_pool: str = "token", embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True, class_token: bool = True,
                 drop_rate: float = 0.0, pos_drop_rate: float = 0.0, proj_drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0, dynamic_img_size: bool = False):
        super().__init__()
        problem = config_problem(dict(global_pool=global_pool, class_token=class_token, img_size=img_size,
                                      patch_size=patch_size, embed_dim=embed_dim, num_heads=num_heads))
        if problem:
            raise InvalidConfigError(problem)
        img_hw, patch_hw = _pair(img_size), _pair(patch_size)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1 if class_token else 0
        self.dynamic_img_size = dynamic_img_size
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(img_hw, patch_hw, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + self.num_prefix_tokens, embed_dim))
        self.pos_drop = nn.Dropout(pos_drop_rate)

        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear 0 -> drop_path_rate
        self.blocks = nn.Sequential(*[
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, proj_drop_rate, attn_drop_rate, rates[i])
            for i in range(depth)
        ])
        # With average pooling the final norm moves after the pool (timm's ``fc_norm``).
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS) if global_pool == "token" else nn.Identity()
        self.fc_norm = nn.LayerNorm(embed_dim, eps=LN_EPS) if global_pool == "avg" else nn.Identity()
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        # one feature stage per block: its patch tokens as a (D, H/P, W/P) map
        self.feature_info = [{"num_chs": embed_dim, "reduction": patch_hw[0], "module": f"blocks.{i}"}
                             for i in range(depth)]
        self._init_weights()

    def _init_weights(self) -> None:
        trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        init_weights_vit_style(self)  # Linear ~ trunc_normal(0.02), LayerNorm 1 / 0

    # -- timm-style interface -------------------------------------------------------------------

    @property
    def default_cfg(self) -> dict:
        """Data config: the pretrained tag's when built with one, else timm's ViT defaults; the model's
        own resolution (``img_size=``) wins."""
        return data_config(self, {"input_size": (3, 224, 224), "mean": INCEPTION_MEAN, "std": INCEPTION_STD,
                                  "interpolation": "bicubic", "crop_pct": 0.9}, input_size=self.patch_embed.img_size)

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` (0: identity)."""
        self.num_classes = num_classes
        if num_classes > 0:
            self.head = nn.Linear(self.num_features, num_classes, device=self.pos_embed.device)
            trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)
        else:
            self.head = nn.Identity()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward instead of storing them."""
        self.grad_checkpointing = enable

    def _check_input(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        check_images(x, self.in_chans, name)
        hw, ph, pw = tuple(x.shape[-2:]), *self.patch_embed.patch_size
        if self.dynamic_img_size:
            if hw[0] % ph or hw[1] % pw or hw[0] < ph or hw[1] < pw:
                raise InputError(f"{name} needs height and width that are multiples of the patch size "
                                 f"{(ph, pw)}, got {hw}.")
        elif hw != self.patch_embed.img_size:
            raise InputError(
                f"{name} was built for {self.patch_embed.img_size} images, got {hw}. Resize the input, build the "
                f"model with img_size={hw[0] if hw[0] == hw[1] else list(hw)} (pretrained position embeddings are "
                "resampled), or pass dynamic_img_size=True."
            )

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h, w, D) patch grid -> (B, prefix + h*w, D) tokens with position embeddings added."""
        b, h, w, d = x.shape
        pos_embed = self.pos_embed
        if (h, w) != self.patch_embed.grid_size:  # only reachable with dynamic_img_size
            pos_embed = resample_abs_pos_embed(pos_embed, (h, w), self.patch_embed.grid_size, self.num_prefix_tokens)
        x = x.reshape(b, h * w, d)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
        return self.pos_drop(x + pos_embed)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> normalised tokens (B, prefix + N, D)."""
        self._check_input(x)
        x = self._pos_embed(self.patch_embed(x))
        x = checkpoint_seq(self.blocks, x, self.grad_checkpointing)
        return self.norm(x)

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, intermediates_only: bool = False):
        """Outputs of the blocks ``indices`` selects (an int n: the last n; negative allowed) as NCHW
        maps ``(B, D, H/P, W/P)`` of the patch tokens (prefix tokens dropped); ``norm`` applies the final
        norm to each. Returns the list, or ``(final, list)`` unless ``intermediates_only``, ``final``
        being what ``forward_features`` returns (of the last block run when ``stop_early``)."""
        self._check_input(x)
        take = take_indices(len(self.blocks), indices)
        x = self.patch_embed(x)
        b, h, w, _ = x.shape
        x = self._pos_embed(x)
        out = []
        for i, block in enumerate(self.blocks[:max(take) + 1] if stop_early else self.blocks):
            x = checkpoint_seq([block], x, self.grad_checkpointing)
            if i in take:
                y = self.norm(x) if norm else x
                out.append(y[:, self.num_prefix_tokens:].reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous())
        return out if intermediates_only else (self.norm(x), out)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x[:, 0] if self.global_pool == "token" else x[:, self.num_prefix_tokens:].mean(dim=1)
        x = self.head_drop(self.fc_norm(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------------------
# Checkpoint adaptation and the torchvision key map
# ------------------------------------------------------------------------------------------------


def checkpoint_filter_fn(state: dict[str, torch.Tensor], model: VisionTransformer) -> dict[str, torch.Tensor]:
    """Fit a timm-layout state dict to ``model``'s image size.

    A ``pos_embed`` made for another patch grid (a 224 checkpoint into an ``img_size=384`` model)
    is resampled bicubically to the model's grid; the class-token embedding is kept as it is.
    The checkpoint's grid is taken to be square. Everything else is returned unchanged.
    """
    state = dict(state)
    pos = state.get("pos_embed")
    if pos is not None and pos.dim() == 3 and pos.shape[1] != model.pos_embed.shape[1]:
        prefix = model.num_prefix_tokens
        old = math.isqrt(pos.shape[1] - prefix)
        if old * old == pos.shape[1] - prefix:  # otherwise leave it: the strict load names the mismatch
            state["pos_embed"] = resample_abs_pos_embed(pos, model.patch_embed.grid_size, old, prefix)
    return state


def _adapt_img_size(state: dict[str, torch.Tensor], model: VisionTransformer):
    """Registry adapter for ``img_size=``: resample ``pos_embed`` and say so in the load report."""
    before = state.get("pos_embed")
    state = checkpoint_filter_fn(state, model)
    after = state.get("pos_embed")
    if before is None or after.shape == before.shape:
        return state, None
    return state, (f"pos_embed resampled from {tuple(before.shape)} to {tuple(after.shape)} "
                   f"for a {tuple(model.patch_embed.grid_size)} patch grid")


_TV_TO_TIMM_BLOCK = {
    "ln_1": "norm1",
    "self_attention.in_proj_weight": "attn.qkv.weight",
    "self_attention.in_proj_bias": "attn.qkv.bias",
    "self_attention.out_proj": "attn.proj",
    "ln_2": "norm2",
    "mlp.0": "mlp.fc1",
    "mlp.3": "mlp.fc2",
    "mlp.linear_1": "mlp.fc1",  # torchvision < 0.13
    "mlp.linear_2": "mlp.fc2",
}
_TV_TO_TIMM_TOP = {
    "class_token": "cls_token",
    "conv_proj": "patch_embed.proj",
    "encoder.pos_embedding": "pos_embed",
    "encoder.ln": "norm",
    "heads.head": "head",
}
_TV_LAYER = re.compile(r"^encoder\.layers\.encoder_layer_(\d+)\.(.+)$")
_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _rename(key: str, table: dict[str, str]) -> str | None:
    """Replace the longest prefix of ``key`` (whole dotted components) found in ``table``."""
    for old in sorted(table, key=len, reverse=True):
        if key == old or key.startswith(old + "."):
            return table[old] + key[len(old):]
    return None


def _remap(state: dict[str, torch.Tensor], block: re.Pattern, block_prefix: str, block_table: dict[str, str],
           top_table: dict[str, str]) -> dict[str, torch.Tensor]:
    """Rename keys: per-block keys (matched by ``block``) through ``block_table`` under
    ``block_prefix + index``, the rest through ``top_table``; unknown keys pass through."""
    out = {}
    for key, value in state.items():
        m = block.match(key)
        if m:
            new = _rename(m.group(2), block_table)
            out[f"{block_prefix}{m.group(1)}.{new}" if new else key] = value
        else:
            out[_rename(key, top_table) or key] = value
    return out


def torchvision_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ``VisionTransformer`` keys -> ours (timm's). Unknown keys pass through unchanged.

    ``nn.MultiheadAttention``'s ``in_proj_weight`` is already q | k | v stacked like ``qkv``, so the
    map is a pure renaming: no tensor is changed.
    """
    return _remap(state, _TV_LAYER, "blocks.", _TV_TO_TIMM_BLOCK, _TV_TO_TIMM_TOP)


def timm_to_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Ours (timm's) -> torchvision's current layout (``mlp.0`` / ``mlp.3``); inverse of the above."""
    block = {v: k for k, v in _TV_TO_TIMM_BLOCK.items() if "linear_" not in k}
    top = {v: k for k, v in _TV_TO_TIMM_TOP.items()}
    return _remap(state, _TIMM_BLOCK, "encoder.layers.encoder_layer_", block, top)


# ------------------------------------------------------------------------------------------------
# Registered variants
# ------------------------------------------------------------------------------------------------


def _timm(arch: str, tag: str, size: int = 224, crop_pct: float = 0.9, description: str = "") -> WeightSource:
    return WeightSource(
        tag=tag, hf_hub_id=f"timm/{arch}.{tag}", layout="timm", num_classes=1000, input_size=(3, size, size),
        mean=INCEPTION_MEAN, std=INCEPTION_STD, interpolation="bicubic", crop_pct=crop_pct, license="apache-2.0",
        description=description or f"timm {tag} weights (Steiner et al. 2021, How to train your ViT)",
    )


_tv = torchvision_weights

_SWAG = dict(interpolation="bicubic", license="CC-BY-NC-4.0", what="SWAG (IG-3.6B pretrained, ImageNet-1k)")


@dataclass(frozen=True, kw_only=True)
class ViTVariant(Variant):
    """A row of the table below: ``VisionTransformer``'s keyword arguments, the paper and the weights
    (the first tag is the default)."""

    img_size: int = 224
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    num_classes: int = 1000
    in_chans: int = 3
    paper: str = ("Dosovitskiy et al. 2021, An Image is Worth 16x16 Words: Transformers for Image Recognition "
                  "at Scale (arXiv:2010.11929)")


VARIANTS = {
    "vit_tiny_patch16_224": ViTVariant(
        patch_size=16, embed_dim=192, depth=12, num_heads=3,
        weights=[_timm("vit_tiny_patch16_224", "augreg_in21k_ft_in1k")]),
    "vit_small_patch16_224": ViTVariant(
        patch_size=16, embed_dim=384, depth=12, num_heads=6,
        weights=[_timm("vit_small_patch16_224", "augreg_in21k_ft_in1k"), _timm("vit_small_patch16_224", "augreg_in1k")]),
    "vit_base_patch16_224": ViTVariant(
        patch_size=16, embed_dim=768, depth=12, num_heads=12,
        weights=[_timm("vit_base_patch16_224", "augreg2_in21k_ft_in1k"),
                 _timm("vit_base_patch16_224", "augreg_in21k_ft_in1k"),
                 _timm("vit_base_patch16_224", "augreg_in1k"),
                 _tv("vit_b_16-c867db91.pth", 81.072),
                 _tv("vit_b_16_lc_swag-4e70ced5.pth", 81.886, "tv_swag_lc_in1k", resize=224, **_SWAG)]),
    "vit_base_patch32_224": ViTVariant(
        patch_size=32, embed_dim=768, depth=12, num_heads=12,
        weights=[_timm("vit_base_patch32_224", "augreg_in21k_ft_in1k"),
                 _timm("vit_base_patch32_224", "augreg_in1k"),
                 _tv("vit_b_32-d86f8d99.pth", 75.912)]),
    "vit_large_patch16_224": ViTVariant(
        patch_size=16, embed_dim=1024, depth=24, num_heads=16,
        weights=[_timm("vit_large_patch16_224", "augreg_in21k_ft_in1k"),
                 _tv("vit_l_16-852ce7e3.pth", 79.662, resize=242),
                 _tv("vit_l_16_lc_swag-4d563306.pth", 85.146, "tv_swag_lc_in1k", resize=224, **_SWAG)]),
    "vit_base_patch16_384": ViTVariant(
        img_size=384, patch_size=16, embed_dim=768, depth=12, num_heads=12,
        weights=[_timm("vit_base_patch16_384", "augreg_in21k_ft_in1k", 384, 1.0),
                 _timm("vit_base_patch16_384", "orig_in21k_ft_in1k", 384, 1.0,
                       "timm port of the original JAX ViT-B/16 (ImageNet-21k, fine-tuned at 384)"),
                 _tv("vit_b_16_swag-9ac1b537.pth", 85.304, "tv_swag_e2e_in1k", size=384, resize=384, **_SWAG)]),
}

# What every variant shares; the test config is tiny enough for the registry-wide suite, with every
# part of the layout (class token, 2 blocks).
FAMILY = dict(
    domain="vision",
    task="image-classification",
    inputs="float images (batch, in_chans, img_size, img_size), normalised with the tag's mean/std",
    key_maps={"torchvision": torchvision_to_timm},
    adapters={"img_size": _adapt_img_size},
    classifier="head",
    first_conv="patch_embed.proj.weight",
    test=classifier_test_spec(dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)),
    ranges={"mlp_ratio": POSITIVE},  # sizes, counts and drop rates: the registry's common rules
    checks=[config_problem],
)

for _name, _v in VARIANTS.items():
    register_model(_name, VisionTransformer, _v.config(), paper=_v.paper, weights=_v.weights, **FAMILY)
