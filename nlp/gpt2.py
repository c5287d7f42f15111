"""GPT-2: Radford et al. 2019, "Language Models are Unsupervised Multitask Learners".

A decoder-only, pre-norm Transformer language model over learned token and position embeddings:

    x = x + Dropout(W_o CausalSelfAttention(LayerNorm(x)))
    x = x + Dropout(W_2 GELU(W_1 LayerNorm(x)))

with a final LayerNorm and the token embedding matrix, transposed, as the output layer (tied
input/output embeddings).

Checkpoint layout: Hugging Face's ``GPT2LMHeadModel`` (``transformer.wte.weight``,
``transformer.h.N.attn.c_attn.weight``, ``lm_head.weight``). Its projections are OpenAI's
``Conv1D``: a weight stored ``[in, out]`` (transposed against ``nn.Linear``), kept here as is so
checkpoints load with no transposing key map. The hub's ``gpt2`` files (``GPT2Model`` keys without
``transformer.``, the old ``attn.bias`` mask buffers, no ``lm_head``) load through :func:`hf_key_map`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.shared.errors import InputError
from zoo.shared.layers.attention import attention, merge_heads, split_heads
from zoo.shared.registry import AT_LEAST_ONE, POSITIVE, TestSpec, Variant, WeightSource, register_model

from .bert import check_ids
from .generation import KVCache, generate
from .hf import ACTIVATIONS, activation, registry_hook


@dataclass
class GPT2Config:
    vocab_size: int = 50257
    max_positions: int = 1024
    embed_dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    mlp_dim: int | None = None  # None: 4 * embed_dim
    activation: str = "gelu_new"
    layer_norm_eps: float = 1e-5
    resid_dropout: float = 0.1
    embed_dropout: float = 0.1
    attention_dropout: float = 0.1
    tie_embeddings: bool = True


# oneDNN's fp32 matrix product (the op Inductor's CPU freezing uses), None where torch lacks it
_ONEDNN_LINEAR = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x weight^T + bias`` (``weight`` is ``[out, in]``, any strides), the same maths as ``F.linear``.

    Inference on the CPU in float32 (no autograd, no tracing, no autocast) runs oneDNN's kernel
    instead of the BLAS that ``F.linear`` / ``addmm`` call (MKL in torch's x86 wheels). On this
    project's AMD EPYC machine MKL's products with a few rows -- a generation step's 2 to 88 -- cost
    about one pass over the weight per row, oneDNN's one pass in all: GPT-2's projections and output
    layer at 8 rows, weights out of cache, take 71 ms with MKL and 42 ms with oneDNN on 2 threads.
    A single row on a single thread stays with MKL, whose matrix-vector product is the faster there
    (33 against 37 ms; on 2 threads 33 against 23). Results agree with ``F.linear`` to float rounding
    (the sums run in another order).
    """
    if (_ONEDNN_LINEAR is not None and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and type(x) is Tensor and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling()
            and (x.numel() > x.shape[-1] or torch.get_num_threads() > 1)):
        return _ONEDNN_LINEAR(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


class Conv1D(nn.Module):
    """OpenAI's name for a linear layer with the weight stored ``[in, out]``: y = x W + b."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight.t(), self.bias)  # outside oneDNN's case: addmm(b, x, W), as OpenAI's


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPT2Config, layer: int):
        super().__init__()
        self.layer, self.num_heads, self.embed_dim = layer, cfg.num_heads, cfg.embed_dim
        self.dropout_p = cfg.attention_dropout
        self.c_attn = Conv1D(cfg.embed_dim, 3 * cfg.embed_dim)
        self.c_proj = Conv1D(cfg.embed_dim, cfg.embed_dim)
        self.resid_dropout = nn.Dropout(cfg.resid_dropout)

    def forward(self, x: Tensor, blocked: Tensor | None, cache: KVCache | None) -> Tensor:
        q, k, v = (split_heads(t, self.num_heads) for t in self.c_attn(x).split(self.embed_dim, dim=2))
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        # no mask: causal over the whole sequence (SDPA's is_causal); else the model's mask says it all
        out = attention(q, k, v, causal=blocked is None and q.shape[2] > 1, attn_mask=blocked,
                        dropout_p=self.dropout_p if self.training else 0.0)
        return self.resid_dropout(self.c_proj(merge_heads(out)))


class MLP(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        hidden = cfg.mlp_dim or 4 * cfg.embed_dim
        self.c_fc = Conv1D(cfg.embed_dim, hidden)
        self.c_proj = Conv1D(hidden, cfg.embed_dim)
        self.act = activation(cfg.activation)
        self.dropout = nn.Dropout(cfg.resid_dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPT2Config, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln_2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor, blocked: Tensor | None, cache: KVCache | None) -> Tensor:
        x = x + self.attn(self.ln_1(x), blocked, cache)
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.wpe = nn.Embedding(cfg.max_positions, cfg.embed_dim)
        self.drop = nn.Dropout(cfg.embed_dropout)
        self.h = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))
        self.ln_f = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: Tensor, position_ids: Tensor, blocked: Tensor | None,
                cache: KVCache | None) -> Tensor:
        x = self.drop(self.wte(input_ids) + self.wpe(position_ids))
        for block in self.h:
            x = block(x, blocked, cache)
        return self.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    """``forward(input_ids, attention_mask=None, position_ids=None, cache=None, last_only=False)`` ->
    next-token logits (B, T, vocab_size) (only the last position with ``last_only``).
    ``attention_mask`` is 1 for a token, 0 for padding (left padding for generation)."""

    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.config = cfg
        self.transformer = GPT2Model(cfg)
        self.lm_head = nn.Linear(cfg.embed_dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init: the projections into the residual stream by 1 / sqrt(2 * layers)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.num_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def new_cache(self, batch: int, max_length: int) -> KVCache:
        cfg, p = self.config, self.lm_head.weight
        return KVCache(cfg.num_layers, batch, cfg.num_heads, max_length, cfg.embed_dim // cfg.num_heads,
                       dtype=p.dtype, device=p.device)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
                cache: KVCache | None = None, last_only: bool = False) -> Tensor:
        cfg = self.config
        past = cache.length if cache is not None else 0
        check_ids(input_ids, cfg.vocab_size, cfg.max_positions, "GPT-2", offset=past)
        length = input_ids.shape[1]
        if position_ids is None:
            position_ids = torch.arange(past, past + length, device=input_ids.device).expand_as(input_ids)
        blocked = None
        if attention_mask is not None or (past and length > 1):
            total = past + length
            if attention_mask is not None and attention_mask.shape != (input_ids.shape[0], total):
                raise InputError(f"GPT-2: attention_mask must cover the cached and new tokens, shape "
                                 f"({input_ids.shape[0]}, {total}), got {tuple(attention_mask.shape)}.")
            # key j is blocked for query i when it lies in i's future or is padding
            query = torch.arange(past, total, device=input_ids.device)
            blocked = (torch.arange(total, device=input_ids.device) > query[:, None])[None, None]
            if attention_mask is not None:
                blocked = blocked | (attention_mask == 0)[:, None, None, :]
        hidden = self.transformer(input_ids, position_ids, blocked, cache)
        if cache is not None:
            cache.advance(length)
        if last_only:
            hidden = hidden[:, -1:]
        head = self.lm_head  # deploy's int8 quantization swaps in a module of another type
        return linear(hidden, head.weight) if type(head) is nn.Linear else head(hidden)

    def generate(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs) -> Tensor:
        """See :func:`zoo.nlp.generation.generate`."""
        return generate(self, input_ids, attention_mask, **kwargs)


def gpt2(vocab_size: int = 50257, max_positions: int = 1024, embed_dim: int = 768, num_layers: int = 12,
         num_heads: int = 12, mlp_dim: int | None = None, activation: str = "gelu_new", layer_norm_eps: float = 1e-5,
         resid_dropout: float = 0.1, embed_dropout: float = 0.1, attention_dropout: float = 0.1,
         tie_embeddings: bool = True) -> GPT2LMHeadModel:
    """GPT-2 language model; the defaults are the 124M ``gpt2``."""
    return GPT2LMHeadModel(GPT2Config(**locals()))


# ------------------------------------------------------------------------------------------------
# Hugging Face checkpoints
# ------------------------------------------------------------------------------------------------

def hf_key_map(state: dict) -> dict:
    """A Hugging Face GPT-2 state dict as ours: ``transformer.`` added to ``GPT2Model`` keys (the
    hub's ``gpt2`` files), the causal-mask buffers of old files (``attn.bias``, ``attn.masked_bias``)
    dropped, and the tied ``lm_head.weight`` that ``save_pretrained`` leaves out restored from
    ``transformer.wte.weight``."""
    out = {}
    for key, value in state.items():
        if key.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        out[key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key] = value
    if "lm_head.weight" not in out and "transformer.wte.weight" in out:
        out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


# ------------------------------------------------------------------------------------------------
# Variants
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class GPT2Variant(Variant):
    vocab_size: int = 50257
    max_positions: int = 1024
    embed_dim: int = 768
    num_layers: int = 12
    num_heads: int = 12


RADFORD = "Radford et al. 2019, Language Models are Unsupervised Multitask Learners (OpenAI report)"



def _openai(repo: str) -> list[WeightSource]:
    return [WeightSource(tag="openai", hf_hub_id=f"openai-community/{repo}", layout="hf", license="mit",
                         description=f"OpenAI's {repo} (WebText), as published on the Hugging Face hub")]


VARIANTS = {
    "gpt2": GPT2Variant(paper=RADFORD, weights=_openai("gpt2")),
    "gpt2_medium": GPT2Variant(embed_dim=1024, num_layers=24, num_heads=16, paper=RADFORD,
                               weights=_openai("gpt2-medium")),
    "gpt2_large": GPT2Variant(embed_dim=1280, num_layers=36, num_heads=20, paper=RADFORD,
                              weights=_openai("gpt2-large")),
    "gpt2_xl": GPT2Variant(embed_dim=1600, num_layers=48, num_heads=25, paper=RADFORD, weights=_openai("gpt2-xl")),
    "gpt2_mini": GPT2Variant(embed_dim=256, num_layers=4, num_heads=4, paper=RADFORD),
    # nanoGPT's Shakespeare-on-a-CPU model: characters (65 in Tiny Shakespeare), context 64
    "gpt_char": GPT2Variant(vocab_size=65, max_positions=64, embed_dim=128, num_layers=4, num_heads=4,
                            paper=RADFORD),
}


def _test_inputs(cfg: dict, batch: int) -> tuple:
    g = torch.Generator().manual_seed(batch)
    return (torch.randint(0, cfg["vocab_size"], (batch, 9), generator=g),)


TEST_SPEC = TestSpec(config=dict(vocab_size=40, max_positions=16, embed_dim=16, num_layers=2, num_heads=2),
                     inputs=_test_inputs, output_shape=lambda cfg, b: (b, 9, cfg["vocab_size"]))


def _checks(cfg: dict) -> str | None:
    if cfg["embed_dim"] % cfg["num_heads"]:
        return f"embed_dim {cfg['embed_dim']} must be a multiple of num_heads {cfg['num_heads']}."
    if cfg["activation"] not in ACTIVATIONS:
        return f"activation {cfg['activation']!r} is not one of {', '.join(ACTIVATIONS)}."
    if cfg["mlp_dim"] is not None and cfg["mlp_dim"] < 1:
        return f"mlp_dim must be >= 1 or None (4 * embed_dim), got {cfg['mlp_dim']}."
    return None


FAMILY = dict(
    domain="nlp", task="language-modelling",
    inputs="input_ids (B, T) int64[, attention_mask (B, T) 1/0, position_ids (B, T)]",
    key_maps={"hf": hf_key_map}, test=TEST_SPEC,
    ranges={"vocab_size": AT_LEAST_ONE, "max_positions": AT_LEAST_ONE, "layer_norm_eps": POSITIVE},
    checks=[_checks],
    **registry_hook("gpt2"),
)

for _name, _v in VARIANTS.items():
    register_model(_name, gpt2, _v.config(), paper=_v.paper, weights=_v.weights, **FAMILY)

__all__ = ["GPT2Config", "GPT2LMHeadModel", "Conv1D", "gpt2", "hf_key_map"]
