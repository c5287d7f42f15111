"""wav2vec 2.0 (Baevski, Zhou, Mohamed & Auli, NeurIPS 2020, arXiv:2006.11477), with a CTC head.

    waveform (batch, time) at 16 kHz
      -> feature encoder: 7 convolutions (512 channels; kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2:
         one frame per 20 ms), GELU; group norm after the first ("group_norm", base / large) or
         layer norm after each ("layer_norm", large LV-60k)
      -> feature projection: layer norm, linear to embed_dim, dropout
      -> context network: a grouped convolutional position embedding added to the input, then
         Transformer layers (post-norm, or pre-norm with ``layer_norm_first``), LayerDrop in training
      -> optional linear head over the CTC vocabulary (``num_classes``; the fine-tuned ``_asr`` models)

Checkpoint layout: torchaudio's ``torchaudio.models.wav2vec2_model`` (``wav2vec2_base``,
``wav2vec2_large``, ``wav2vec2_large_lv60k`` and their ``aux_num_out`` / ``_asr`` variants):
``feature_extractor.conv_layers.N.conv``, ``encoder.feature_projection``,
``encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original0/1``,
``encoder.transformer.layers.N.attention.{k,v,q,out}_proj``, ..., ``aux``. The module tree is the
same, so a torchaudio state dict loads as is; older files with ``weight_g`` / ``weight_v`` and
Hugging Face's ``Wav2Vec2Model`` / ``Wav2Vec2ForCTC`` go through :func:`from_hf_state_dict`
(:func:`to_hf_state_dict` goes back). Hugging Face's ``masked_spec_embed`` and the pre-training
heads (``quantizer``, ``project_q``, ``project_hid``) are used only in pre-training and have no
place in this model; the key map leaves them out. :func:`config_from_hf` reads a Hugging Face
``config.json``; :func:`from_huggingface` builds the model a Hugging Face folder describes.

Padded batches: ``model(waveforms, lengths)`` masks the padded frames out of attention, as
torchaudio does. With the group-norm feature encoder it also computes the first layer's
normalisation over each item's own samples, so a padded batch gives every item the output it
gets alone (torchaudio and Hugging Face normalise over the padding too, so their padded outputs
depend on how much padding there is). Without ``lengths``, or when no item is padded, the
computation is torchaudio's.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.shared.errors import InputError, InvalidConfigError
from zoo.shared.layers.attention import attention, merge_heads, split_heads
from zoo.shared.registry import PROBABILITY, TestSpec, Variant, register_model

from .frontends import check_waveforms
from .io import lengths_to_mask

FEATURE_ENCODER = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2


# ------------------------------------------------------------------------------------------------
# Feature encoder
# ------------------------------------------------------------------------------------------------


class ChannelLayerNorm(nn.LayerNorm):
    """Layer norm over the channels of a ``(batch, channels, frames)`` tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(-2, -1)).transpose(-2, -1)


def masked_group_norm(x: Tensor, norm: nn.GroupNorm, lengths: Tensor) -> Tensor:
    """``norm(x)`` with each item's statistics taken over its first ``lengths`` frames only."""
    batch, channels, frames = x.shape
    groups = norm.num_groups
    valid = lengths_to_mask(lengths, frames)[:, None, None, :].to(x.dtype)  # (B, 1, 1, T)
    xg = x.reshape(batch, groups, channels // groups, frames)
    count = lengths.clamp(min=1).to(x.dtype)[:, None, None, None] * (channels // groups)
    mean = (xg * valid).sum(dim=(2, 3), keepdim=True) / count
    var = ((xg - mean).square() * valid).sum(dim=(2, 3), keepdim=True) / count
    y = ((xg - mean) * torch.rsqrt(var + norm.eps)).reshape(batch, channels, frames)
    return y * norm.weight[:, None] + norm.bias[:, None]


class ConvLayerBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, bias: bool,
                 layer_norm: nn.Module | None):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.layer_norm = layer_norm  # registered first: torchaudio's key order
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, bias=bias)

    def forward(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        x = self.conv(x)
        if lengths is not None:  # an output frame is valid when its whole window lies in the input
            lengths = (torch.div(lengths - self.kernel_size, self.stride, rounding_mode="floor") + 1).clamp(min=0)
        if isinstance(self.layer_norm, nn.GroupNorm) and lengths is not None and bool((lengths < x.shape[-1]).any()):
            x = masked_group_norm(x, self.layer_norm, lengths)  # statistics over time: keep padding out
        elif self.layer_norm is not None:
            x = self.layer_norm(x)
        return F.gelu(x), lengths


class FeatureExtractor(nn.Module):
    def __init__(self, mode: str, layers, bias: bool):
        super().__init__()
        blocks, cin = [], 1
        for i, (cout, kernel, stride) in enumerate(layers):
            if mode == "group_norm":
                norm = nn.GroupNorm(cout, cout) if i == 0 else None  # one group per channel
            else:
                norm = ChannelLayerNorm(cout)
            blocks.append(ConvLayerBlock(cin, cout, kernel, stride, bias, norm))
            cin = cout
        self.conv_layers = nn.ModuleList(blocks)

    def forward(self, waveforms: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        x = waveforms.unsqueeze(1)
        for layer in self.conv_layers:
            x, lengths = layer(x, lengths)
        return x.transpose(1, 2), lengths  # (batch, frames, channels)


# ------------------------------------------------------------------------------------------------
# Context network
# ------------------------------------------------------------------------------------------------


class FeatureProjection(nn.Module):
    def __init__(self, in_features: int, out_features: int, dropout: float):
        super().__init__()
        self.layer_norm = nn.LayerNorm(in_features)
        self.projection = nn.Linear(in_features, out_features)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.projection(self.layer_norm(x)))


class ConvolutionalPositionalEmbedding(nn.Module):
    """Relative positions from a grouped convolution over time (weight-normalised over the kernel)."""

    def __init__(self, embed_dim: int, kernel_size: int, groups: int):
        super().__init__()
        self.embed_dim = embed_dim
        conv = nn.Conv1d(embed_dim, embed_dim, kernel_size, padding=kernel_size // 2, groups=groups)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.num_remove = 1 if kernel_size % 2 == 0 else 0  # an even kernel gives one frame too many

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x.transpose(1, 2))
        if self.num_remove:
            x = x[..., : -self.num_remove]
        return F.gelu(x).transpose(1, 2)


class SelfAttention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, dropout: float):
        super().__init__()
        if embed_dim % num_heads:
            raise InvalidConfigError(f"wav2vec2: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        q, k, v = (split_heads(proj(x), self.num_heads) for proj in (self.q_proj, self.k_proj, self.v_proj))
        out = attention(q, k, v, key_padding_mask=padding_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(merge_heads(out))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, hidden_dropout: float, dropout: float):
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, hidden)
        self.intermediate_dropout = nn.Dropout(hidden_dropout)
        self.output_dense = nn.Linear(hidden, dim)
        self.output_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.intermediate_dropout(F.gelu(self.intermediate_dense(x)))
        return self.output_dropout(self.output_dense(x))


class EncoderLayer(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, ff_dim: int, attention_dropout: float, ff_dropout: float,
                 dropout: float, layer_norm_first: bool):
        super().__init__()
        self.attention = SelfAttention(embed_dim, num_heads, attention_dropout)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.layer_norm_first = layer_norm_first
        self.feed_forward = FeedForward(embed_dim, ff_dim, ff_dropout, dropout)
        self.final_layer_norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        if self.layer_norm_first:  # pre-norm (large LV-60k)
            x = x + self.dropout(self.attention(self.layer_norm(x), padding_mask))
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.layer_norm(x + self.dropout(self.attention(x, padding_mask)))  # post-norm (base, large)
        return self.final_layer_norm(x + self.feed_forward(x))


class Transformer(nn.Module):
    def __init__(self, embed_dim: int, num_layers: int, num_heads: int, ff_dim: int, pos_conv_kernel: int,
                 pos_conv_groups: int, layer_norm_first: bool, attention_dropout: float, ff_dropout: float,
                 dropout: float, layer_drop: float):
        super().__init__()
        self.pos_conv_embed = ConvolutionalPositionalEmbedding(embed_dim, pos_conv_kernel, pos_conv_groups)
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.layer_norm_first, self.layer_drop = layer_norm_first, layer_drop
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(embed_dim, num_heads, ff_dim, attention_dropout, ff_dropout, dropout, layer_norm_first)
            for _ in range(num_layers))

    def _start(self, x: Tensor) -> Tensor:
        x = x + self.pos_conv_embed(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        return self.dropout(x)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        x = self._start(x)
        for layer in self.layers:
            if not (self.training and torch.rand(1).item() <= self.layer_drop):  # LayerDrop
                x = layer(x, padding_mask)
        return self.layer_norm(x) if self.layer_norm_first else x

    def intermediate_outputs(self, x: Tensor, padding_mask: Tensor | None = None,
                             num_layers: int | None = None) -> list[Tensor]:
        """Each of the first ``num_layers`` layers' outputs (all by default), without LayerDrop."""
        x, outputs = self._start(x), []
        for layer in self.layers[:num_layers]:
            x = layer(x, padding_mask)
            outputs.append(x)
        return outputs


class Encoder(nn.Module):
    def __init__(self, in_features: int, embed_dim: int, projection_dropout: float, **transformer):
        super().__init__()
        self.feature_projection = FeatureProjection(in_features, embed_dim, projection_dropout)
        self.transformer = Transformer(embed_dim, **transformer)

    def _start(self, features: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        x = self.feature_projection(features)
        if lengths is None:
            return x, None
        padding_mask = ~lengths_to_mask(lengths, x.shape[1])
        return x.masked_fill(padding_mask[..., None], 0.0), padding_mask  # zeros: nothing leaks through pos_conv

    def forward(self, features: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.transformer(*self._start(features, lengths))

    def extract_features(self, features: Tensor, lengths: Tensor | None = None,
                         num_layers: int | None = None) -> list[Tensor]:
        return self.transformer.intermediate_outputs(*self._start(features, lengths), num_layers)


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------


class Wav2Vec2(nn.Module):
    """``model(waveforms, lengths=None) -> (features or CTC logits (batch, frames, C), frame lengths or None)``."""

    def __init__(self, extractor_mode: str = "group_norm",
                 conv_layers: tuple[tuple[int, int, int], ...] = FEATURE_ENCODER, conv_bias: bool = False,
                 embed_dim: int = 768, num_layers: int = 12, num_heads: int = 12, ff_dim: int = 3072,
                 pos_conv_kernel: int = 128, pos_conv_groups: int = 16, layer_norm_first: bool = False,
                 projection_dropout: float = 0.1, attention_dropout: float = 0.1, ff_dropout: float = 0.1,
                 dropout: float = 0.1, layer_drop: float = 0.1, num_classes: int = 0, sample_rate: int = 16000):
        super().__init__()
        if extractor_mode not in ("group_norm", "layer_norm"):
            raise InvalidConfigError(f"wav2vec2: extractor_mode must be 'group_norm' or 'layer_norm', "
                                     f"got {extractor_mode!r}")
        self.sample_rate, self.num_classes, self.embed_dim = sample_rate, num_classes, embed_dim
        self.feature_extractor = FeatureExtractor(extractor_mode, conv_layers, conv_bias)
        self.encoder = Encoder(conv_layers[-1][0], embed_dim, projection_dropout, num_layers=num_layers,
                               num_heads=num_heads, ff_dim=ff_dim, pos_conv_kernel=pos_conv_kernel,
                               pos_conv_groups=pos_conv_groups, layer_norm_first=layer_norm_first,
                               attention_dropout=attention_dropout, ff_dropout=ff_dropout, dropout=dropout,
                               layer_drop=layer_drop)
        self.aux = nn.Linear(embed_dim, num_classes) if num_classes > 0 else None

    def _check(self, waveforms, lengths) -> tuple[Tensor, Tensor | None]:
        waveforms = check_waveforms(waveforms, "wav2vec2")
        if lengths is not None:
            if not isinstance(lengths, Tensor) or lengths.shape != waveforms.shape[:1]:
                raise InputError(f"wav2vec2: lengths must be a tensor of shape ({waveforms.shape[0]},), one valid "
                                 f"length per waveform, got {getattr(lengths, 'shape', type(lengths).__name__)}")
            if bool((lengths > waveforms.shape[1]).any()) or bool((lengths < 1).any()):
                raise InputError(f"wav2vec2: lengths must be between 1 and the padded length {waveforms.shape[1]}, "
                                 f"got {lengths.tolist()}")
        return waveforms, lengths

    def extract_features(self, waveforms: Tensor, lengths: Tensor | None = None,
                         num_layers: int | None = None) -> tuple[list[Tensor], Tensor | None]:
        """The outputs of the first ``num_layers`` Transformer layers (as torchaudio's ``extract_features``)."""
        waveforms, lengths = self._check(waveforms, lengths)
        x, lengths = self.feature_extractor(waveforms, lengths)
        return self.encoder.extract_features(x, lengths, num_layers), lengths

    def forward(self, waveforms: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        waveforms, lengths = self._check(waveforms, lengths)
        x, lengths = self.feature_extractor(waveforms, lengths)
        x = self.encoder(x, lengths)
        if self.aux is not None:
            x = self.aux(x)
        return x, lengths

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh CTC head over ``num_classes`` labels (0: none, the encoder's features come out)."""
        self.num_classes = num_classes
        self.aux = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else None


# ------------------------------------------------------------------------------------------------
# Other layouts: torchaudio's older weight-norm names, Hugging Face
# ------------------------------------------------------------------------------------------------

_POS_CONV = "pos_conv_embed.conv."
_LEGACY_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
# Hugging Face parts used only in pre-training (masking, quantised targets): no place in this model
_HF_TRAINING_ONLY = re.compile(r"^(wav2vec2\.)?masked_spec_embed$|^(quantizer|project_q|project_hid)\.")


def _modern_weight_norm(key: str) -> str:
    for old, new in _LEGACY_WEIGHT_NORM.items():
        if key.endswith(_POS_CONV + old):
            return key[: -len(old)] + new
    return key


def from_torchaudio_legacy(state: dict) -> dict:
    """torchaudio files saved with ``nn.utils.weight_norm`` (``weight_g`` / ``weight_v``) -> ours."""
    return {_modern_weight_norm(k): v for k, v in state.items()}


def from_hf_state_dict(state: dict) -> dict:
    """Hugging Face ``Wav2Vec2Model`` / ``Wav2Vec2ForCTC`` (or ``ForPreTraining``) -> ours."""
    out = {}
    for key, value in state.items():
        if _HF_TRAINING_ONLY.search(key):
            continue
        key = _modern_weight_norm(key.removeprefix("wav2vec2."))
        if key.startswith("lm_head."):
            key = "aux." + key[len("lm_head."):]
        elif key.startswith("feature_projection."):
            key = "encoder." + key
        elif key.startswith("encoder."):
            key = "encoder.transformer." + key[len("encoder."):]
        out[key] = value
    return out


def to_hf_state_dict(state: dict) -> dict:
    """Ours -> Hugging Face: ``Wav2Vec2ForCTC`` when there is a CTC head (``aux``), else ``Wav2Vec2Model``."""
    ctc = any(k.startswith("aux.") for k in state)
    out = {}
    for key, value in state.items():
        if key.startswith("aux."):
            out["lm_head." + key[len("aux."):]] = value
            continue
        if key.startswith("encoder.feature_projection."):
            key = key[len("encoder."):]
        elif key.startswith("encoder.transformer."):
            key = "encoder." + key[len("encoder.transformer."):]
        out[("wav2vec2." if ctc else "") + key] = value
    return out


def config_from_hf(hf: dict) -> dict:
    """Our keyword arguments from a Hugging Face ``Wav2Vec2Config`` (``config.json`` as a dict)."""
    if hf.get("model_type", "wav2vec2") != "wav2vec2":
        raise InvalidConfigError(f"config.json describes a {hf.get('model_type')!r} model, not wav2vec2")
    for key in ("hidden_act", "feat_extract_activation"):
        if hf.get(key, "gelu") != "gelu":
            raise InvalidConfigError(f"config.json: {key}={hf[key]!r}; this wav2vec2 implements gelu only")
    if hf.get("do_stable_layer_norm") and hf.get("feat_extract_norm") != "layer":
        raise InvalidConfigError("config.json: do_stable_layer_norm needs feat_extract_norm='layer'")
    dims = hf.get("conv_dim", [512] * 7)
    ctc = any(a.endswith("ForCTC") for a in hf.get("architectures") or [])
    return dict(
        extractor_mode=f"{hf.get('feat_extract_norm', 'group')}_norm",
        conv_layers=[[int(c), int(k), int(s)] for c, k, s in zip(dims, hf.get("conv_kernel", [10, 3, 3, 3, 3, 2, 2]),
                                                                 hf.get("conv_stride", [5, 2, 2, 2, 2, 2, 2]))],
        conv_bias=bool(hf.get("conv_bias", False)), embed_dim=hf.get("hidden_size", 768),
        num_layers=hf.get("num_hidden_layers", 12), num_heads=hf.get("num_attention_heads", 12),
        ff_dim=hf.get("intermediate_size", 3072), pos_conv_kernel=hf.get("num_conv_pos_embeddings", 128),
        pos_conv_groups=hf.get("num_conv_pos_embedding_groups", 16),
        layer_norm_first=bool(hf.get("do_stable_layer_norm", False)),
        projection_dropout=float(hf.get("feat_proj_dropout", 0.0)),
        attention_dropout=float(hf.get("attention_dropout", 0.1)), ff_dropout=float(hf.get("activation_dropout", 0.1)),
        dropout=float(hf.get("hidden_dropout", 0.1)), layer_drop=float(hf.get("layerdrop", 0.1)),
        num_classes=int(hf.get("vocab_size", 32)) if ctc else 0,
    )


def from_huggingface(source: str | os.PathLike, **overrides):
    """The model a Hugging Face folder (``config.json`` + ``model.safetensors`` / ``pytorch_model.bin``)
    or ``hf-hub:org/name`` describes, with its weights loaded strictly through the key map.

    The registered name is the one whose shape matches (``wav2vec2_large_lv60k`` for pre-norm
    models, ``wav2vec2_large`` for 1024-wide ones, else ``wav2vec2_base``); ``overrides`` change
    the config read from the file."""
    from zoo.shared.factory import create
    from zoo.shared.weights import find_weight_file, hub_folder

    spec = str(source)
    directory = hub_folder(spec) if spec.startswith("hf-hub:") else Path(spec).expanduser()
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise InvalidConfigError(f"{directory} has no config.json; pass a Hugging Face wav2vec2 folder, or build "
                                 "the model with zoo.create('wav2vec2_base', pretrained=weights_file)")
    config = {**config_from_hf(json.loads(config_path.read_text())), **overrides}
    name = ("wav2vec2_large_lv60k" if config["layer_norm_first"] else
            "wav2vec2_large" if config["embed_dim"] == 1024 else "wav2vec2_base")
    return create(name, pretrained=str(find_weight_file(directory)), **config)


def hf_folder_config(source) -> dict | None:
    """The registry's ``foreign_config`` hook: our config from the Hugging Face ``config.json`` of a
    folder or ``hf-hub:org/name`` (None when there is none, or it is a zoo ``save_pretrained`` file),
    so ``zoo.create("wav2vec2_base", pretrained=hf_folder)`` builds the model the folder describes."""
    from zoo.shared.weights import hub_folder

    spec = str(source)
    directory = hub_folder(spec) if spec.startswith("hf-hub:") else Path(spec).expanduser()
    path = directory / "config.json"
    if not path.is_file():
        return None
    hf = json.loads(path.read_text())
    if "architecture" in hf or "model_type" not in hf:  # ours, or not a transformers config
        return None
    return config_from_hf(hf)


# ------------------------------------------------------------------------------------------------
# Registered variants
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Wav2Vec2Variant(Variant):
    extractor_mode: str = "group_norm"
    conv_bias: bool = False
    embed_dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ff_dim: int = 3072
    layer_norm_first: bool = False
    attention_dropout: float = 0.1
    dropout: float = 0.1
    num_classes: int = 0


VARIANTS = {
    "wav2vec2_base": Wav2Vec2Variant(),
    "wav2vec2_large": Wav2Vec2Variant(embed_dim=1024, num_layers=24, num_heads=16, ff_dim=4096),
    "wav2vec2_large_lv60k": Wav2Vec2Variant(extractor_mode="layer_norm", conv_bias=True, embed_dim=1024,
                                            num_layers=24, num_heads=16, ff_dim=4096, layer_norm_first=True,
                                            attention_dropout=0.0, dropout=0.0),  # torchaudio's defaults
}
_PAPER = "Baevski et al. 2020, wav2vec 2.0 (arXiv:2006.11477)"


def _tiny(**extra) -> TestSpec:
    config = dict(conv_layers=[[8, 10, 5], [8, 3, 2], [8, 2, 2]], embed_dim=16, num_layers=2, num_heads=2,
                  ff_dim=32, pos_conv_kernel=8, pos_conv_groups=2, layer_drop=0.0, **extra)  # every layer trains

    def inputs(cfg: dict, batch: int) -> tuple:
        return (0.1 * torch.randn(batch, 800),)

    def shape(cfg: dict, batch: int) -> tuple:
        return batch, 39, cfg["num_classes"] or cfg["embed_dim"]  # 800 samples -> 159 -> 79 -> 39 frames

    return TestSpec(config=config, inputs=inputs, output_shape=shape)


for _name, _variant in VARIANTS.items():
    register_model(
        _name, Wav2Vec2, _variant.config(), domain="audio", task="speech-representation / ctc",
        paper=_PAPER, inputs="waveform (batch, time) at 16 kHz, optional lengths (batch,)",
        key_maps={"huggingface": from_hf_state_dict, "torchaudio_legacy": from_torchaudio_legacy},
        classifier="aux", ranges={"layer_drop": PROBABILITY}, foreign_config=hf_folder_config,
        test=_tiny(num_classes=5, extractor_mode=_variant.extractor_mode, conv_bias=_variant.conv_bias,
                   layer_norm_first=_variant.layer_norm_first),
    )
