"""BERT: Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding" (arXiv:1810.04805).

A post-norm Transformer encoder over word + position + segment embeddings. Each layer:

    h = LayerNorm(x + Dropout(W_o MultiHeadAttention(x)))
    y = LayerNorm(h + Dropout(W_2 GELU(W_1 h)))

The pooler is tanh(W h_[CLS]). Task heads: masked-LM (dense, GELU, LayerNorm, then the word
embedding matrix transposed plus a bias), sequence classification (on the pooled [CLS]) and token
classification (on every position).

Checkpoint layout: Hugging Face's ``BertModel`` (``embeddings.word_embeddings.weight``,
``encoder.layer.N.attention.self.query.weight``, ``pooler.dense.weight``) and, with a head, its
``BertForMaskedLM`` / ``BertForSequenceClassification`` / ``BertForTokenClassification``
(the encoder under ``bert.``, then ``cls.predictions.*`` or ``classifier.*``). A folder written
by ``transformers`` loads strictly: see :mod:`zoo.nlp.hf`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from zoo.shared.errors import InputError
from zoo.shared.layers.attention import attention, merge_heads, split_heads
from zoo.shared.registry import AT_LEAST_ONE, POSITIVE, TestSpec, Variant, WeightSource, register_model

from .hf import ACTIVATIONS, activation, registry_hook

Head = Literal["none", "mlm", "sequence", "token"]


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_dim: int = 3072
    max_positions: int = 512
    type_vocab_size: int = 2
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_token_id: int = 0
    head: Head = "none"
    num_classes: int = 2
    classifier_dropout: float | None = None  # None: hidden_dropout


def check_ids(input_ids: Tensor, vocab_size: int, max_positions: int, name: str, offset: int = 0) -> None:
    """Raise an InputError for ids outside the vocabulary or a sequence longer than the position
    table. Skipped while torch.compile / torch.export trace (a data-dependent check breaks the graph)."""
    if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
        got = f"{input_ids.dtype} {tuple(input_ids.shape)}" if isinstance(input_ids, Tensor) else type(input_ids)
        raise InputError(f"{name} expects integer token ids of shape (batch, length), got {got}.")
    if offset + input_ids.shape[1] > max_positions:
        raise InputError(f"{name}: a sequence of {offset + input_ids.shape[1]} tokens is longer than the position "
                         f"table ({max_positions} positions); truncate the input to {max_positions} tokens.")
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or input_ids.numel() == 0:
        return
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= vocab_size:
        raise InputError(f"{name}: token ids must be in [0, {vocab_size}) (the vocabulary size), got ids from "
                         f"{low} to {high}; was the text encoded with this model's tokenizer?")


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_dim, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_positions, cfg.hidden_dim)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_dim)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_dim, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        segments = (self.token_type_embeddings.weight[0] if token_type_ids is None  # segment A everywhere
                    else self.token_type_embeddings(token_type_ids))
        # words + segments, then + positions: transformers' order, so the sums round as its do
        x = self.word_embeddings(input_ids) + segments + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.dropout_p = cfg.attention_dropout
        self.query = nn.Linear(cfg.hidden_dim, cfg.hidden_dim)
        self.key = nn.Linear(cfg.hidden_dim, cfg.hidden_dim)
        self.value = nn.Linear(cfg.hidden_dim, cfg.hidden_dim)

    def forward(self, x: Tensor, pad: Tensor | None) -> Tensor:
        q, k, v = (split_heads(f(x), self.num_heads) for f in (self.query, self.key, self.value))
        out = attention(q, k, v, key_padding_mask=pad, dropout_p=self.dropout_p if self.training else 0.0)
        return merge_heads(out)


class BertSelfOutput(nn.Module):
    """The residual + LayerNorm after a sublayer (the paper's post-norm)."""

    def __init__(self, cfg: BertConfig, in_dim: int):
        super().__init__()
        self.dense = nn.Linear(in_dim, cfg.hidden_dim)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_dim, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, h: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(h)))


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg, cfg.hidden_dim)

    def forward(self, x: Tensor, pad: Tensor | None) -> Tensor:
        return self.output(self.self(x, pad), x)


class BertIntermediate(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_dim, cfg.intermediate_dim)
        self.act = activation(cfg.hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertSelfOutput(cfg, cfg.intermediate_dim)

    def forward(self, x: Tensor, pad: Tensor | None) -> Tensor:
        h = self.attention(x, pad)
        return self.output(self.intermediate(h), h)


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_layers))

    def forward(self, x: Tensor, pad: Tensor | None) -> Tensor:
        for layer in self.layer:
            x = layer(x, pad)
        return x


class BertPooler(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_dim, cfg.hidden_dim)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.dense(hidden[:, 0]).tanh()


class BertModel(nn.Module):
    """The encoder: ``forward(input_ids, attention_mask=None, token_type_ids=None)`` ->
    ``(last_hidden_state (B, T, H), pooled (B, H))``; ``attention_mask`` is 1 for a token, 0 for padding."""

    def __init__(self, cfg: BertConfig, pooler: bool = True):
        super().__init__()
        self.config = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg) if pooler else None
        self.apply(_init_weights)

    def forward_features(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                         token_type_ids: Tensor | None = None) -> Tensor:
        cfg = self.config
        check_ids(input_ids, cfg.vocab_size, cfg.max_positions, "BERT")
        pad = None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise InputError(f"BERT: attention_mask has shape {tuple(attention_mask.shape)}, the input ids "
                                 f"{tuple(input_ids.shape)}; give one 1/0 (token/padding) per id.")
            pad = attention_mask == 0
        return self.encoder(self.embeddings(input_ids, token_type_ids), pad)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        hidden = self.forward_features(input_ids, attention_mask, token_type_ids)
        return hidden, (self.pooler(hidden) if self.pooler is not None else None)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_dim, cfg.hidden_dim)
        self.act = activation(cfg.hidden_act)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_dim, eps=cfg.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, cfg: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.transform = BertPredictionHeadTransform(cfg)
        self.decoder = nn.Linear(cfg.hidden_dim, cfg.vocab_size)
        self.decoder.weight = word_embeddings.weight  # tied input/output embeddings
        self.decoder.bias = self.bias  # HF keeps the bias under both names

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.transform(x))


class BertOnlyMLMHead(nn.Module):
    def __init__(self, cfg: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = BertLMPredictionHead(cfg, word_embeddings)

    def forward(self, x: Tensor) -> Tensor:
        return self.predictions(x)


class BertForMaskedLM(nn.Module):
    """Masked-LM logits (B, T, vocab_size)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.config = cfg
        self.bert = BertModel(cfg, pooler=False)
        self.cls = BertOnlyMLMHead(cfg, self.bert.embeddings.word_embeddings)
        self.cls.apply(_init_weights)
        nn.init.zeros_(self.cls.predictions.bias)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        return self.cls(self.bert.forward_features(input_ids, attention_mask, token_type_ids))


class BertForSequenceClassification(nn.Module):
    """Logits (B, num_classes) from the pooled [CLS] state."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.config = cfg
        self.num_classes = cfg.num_classes
        self.bert = BertModel(cfg, pooler=True)
        p = cfg.hidden_dropout if cfg.classifier_dropout is None else cfg.classifier_dropout
        self.dropout = nn.Dropout(p)
        self.reset_classifier(cfg.num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = self.config.num_classes = num_classes
        self.classifier = nn.Linear(self.config.hidden_dim, num_classes) if num_classes else nn.Identity()
        self.classifier.apply(_init_weights)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        _, pooled = self.bert(input_ids, attention_mask, token_type_ids)
        return self.classifier(self.dropout(pooled))


class BertForTokenClassification(BertForSequenceClassification):
    """Logits (B, T, num_classes), one row per token."""

    def __init__(self, cfg: BertConfig):
        nn.Module.__init__(self)
        self.config = cfg
        self.num_classes = cfg.num_classes
        self.bert = BertModel(cfg, pooler=False)
        p = cfg.hidden_dropout if cfg.classifier_dropout is None else cfg.classifier_dropout
        self.dropout = nn.Dropout(p)
        self.reset_classifier(cfg.num_classes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        return self.classifier(self.dropout(self.bert.forward_features(input_ids, attention_mask, token_type_ids)))


HEADS = {"none": BertModel, "mlm": BertForMaskedLM, "sequence": BertForSequenceClassification,
         "token": BertForTokenClassification}


def _init_weights(module: nn.Module) -> None:
    """BERT's initialisation: normal(0, 0.02) weights, zero biases, unit LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def bert(vocab_size: int = 30522, hidden_dim: int = 768, num_layers: int = 12, num_heads: int = 12,
         intermediate_dim: int = 3072, max_positions: int = 512, type_vocab_size: int = 2,
         hidden_act: str = "gelu", layer_norm_eps: float = 1e-12, hidden_dropout: float = 0.1,
         attention_dropout: float = 0.1, pad_token_id: int = 0, head: Head = "none", num_classes: int = 2,
         classifier_dropout: float | None = None) -> nn.Module:
    """BERT with the chosen ``head``: "none" (``BertModel``: hidden states and pooled [CLS]),
    "mlm" (masked-LM logits), "sequence" / "token" (classification logits over ``num_classes``)."""
    return HEADS[head](BertConfig(**locals()))


# ------------------------------------------------------------------------------------------------
# Hugging Face checkpoints
# ------------------------------------------------------------------------------------------------

_MLM_TIED = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")


def hf_key_map(state: dict) -> dict:
    """A Hugging Face BERT state dict as ours: the ``bert.`` prefix added when the encoder keys come
    without it beside a task head; the tied entries ``save_pretrained`` leaves out
    (``cls.predictions.decoder.weight`` / ``.bias``) restored from the ones they are tied to; the
    non-persistent buffers older files carry (``embeddings.position_ids``) dropped. A pretraining
    file (``BertForPreTraining``) loads into the bare encoder (its ``bert.`` part) or the masked LM."""
    state = {k: v for k, v in state.items() if not k.endswith(("position_ids", "token_type_ids"))}
    has_head = any(k.startswith(("cls.", "classifier.")) for k in state)
    if has_head and any(k.startswith("embeddings.") for k in state):
        state = {(k if k.startswith(("cls.", "classifier.")) else "bert." + k): v for k, v in state.items()}
    if any(k.startswith("cls.predictions.") for k in state):
        # a BertForPreTraining file (the hub's bert-base-uncased) as a masked LM: without the
        # next-sentence head and the pooler that only feeds it
        state = {k: v for k, v in state.items() if not k.startswith(("cls.seq_relationship.", "bert.pooler."))}
        state.setdefault(_MLM_TIED[0], state.get("bert.embeddings.word_embeddings.weight"))
        state.setdefault(_MLM_TIED[1], state.get("cls.predictions.bias"))
        state = {k: v for k, v in state.items() if v is not None}
    return state


# ------------------------------------------------------------------------------------------------
# Variants
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class BertVariant(Variant):
    hidden_dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_dim: int = 3072


DEVLIN = ("Devlin et al. 2019, BERT: Pre-training of Deep Bidirectional Transformers for Language "
          "Understanding (arXiv:1810.04805)")
TURC = ("Turc et al. 2019, Well-Read Students Learn Better: On the Importance of Pre-training Compact Models "
        "(arXiv:1908.08962)")



def _google(repo: str, size: str) -> WeightSource:
    return WeightSource(tag="hf", hf_hub_id=f"google-bert/{repo}", layout="hf", license="apache-2.0",
                        description=f"Google's BERT-{size} uncased (English Wikipedia + BooksCorpus), the "
                                    "BertForPreTraining file: loads into the encoder or the masked LM")


VARIANTS = {
    "bert": BertVariant(paper=DEVLIN),
    "bert_base_uncased": BertVariant(paper=DEVLIN, weights=[_google("bert-base-uncased", "base")]),
    "bert_large_uncased": BertVariant(hidden_dim=1024, num_layers=24, num_heads=16, intermediate_dim=4096,
                                      paper=DEVLIN, weights=[_google("bert-large-uncased", "large")]),
    "bert_tiny": BertVariant(hidden_dim=128, num_layers=2, num_heads=2, intermediate_dim=512, paper=TURC),
    "bert_mini": BertVariant(hidden_dim=256, num_layers=4, num_heads=4, intermediate_dim=1024, paper=TURC),
    "bert_small": BertVariant(hidden_dim=512, num_layers=4, num_heads=8, intermediate_dim=2048, paper=TURC),
    "bert_medium": BertVariant(hidden_dim=512, num_layers=8, num_heads=8, intermediate_dim=2048, paper=TURC),
}


def _test_inputs(cfg: dict, batch: int) -> tuple:
    g = torch.Generator().manual_seed(batch)
    ids = torch.randint(1, cfg["vocab_size"], (batch, 7), generator=g)
    mask = torch.ones(batch, 7, dtype=torch.long)
    mask[::2, 5:] = 0  # every other sequence padded: masks take part in every check
    return ids, mask


TEST_SPEC = TestSpec(
    config=dict(vocab_size=50, hidden_dim=16, num_layers=2, num_heads=2, intermediate_dim=32, max_positions=16,
                head="sequence", num_classes=3),
    inputs=_test_inputs, output_shape=lambda cfg, b: (b, cfg["num_classes"]))


def _heads_divide(cfg: dict) -> str | None:
    if cfg["hidden_dim"] % cfg["num_heads"]:
        return f"hidden_dim {cfg['hidden_dim']} must be a multiple of num_heads {cfg['num_heads']}."
    if cfg["hidden_act"] not in ACTIVATIONS:
        return f"hidden_act {cfg['hidden_act']!r} is not one of {', '.join(ACTIVATIONS)}."
    if not 0 <= cfg["pad_token_id"] < cfg["vocab_size"]:
        return f"pad_token_id {cfg['pad_token_id']} is outside the vocabulary (vocab_size {cfg['vocab_size']})."
    return None


FAMILY = dict(
    domain="nlp", task="text-encoding",
    inputs="input_ids (B, T) int64[, attention_mask (B, T) 1/0, token_type_ids (B, T)]",
    key_maps={"hf": hf_key_map}, classifier="classifier", test=TEST_SPEC,
    ranges={**{k: AT_LEAST_ONE for k in ("vocab_size", "max_positions", "type_vocab_size")},
            "layer_norm_eps": POSITIVE},
    checks=[_heads_divide],
    **registry_hook("bert"),
)

for _name, _v in VARIANTS.items():
    register_model(_name, bert, _v.config(), paper=_v.paper, weights=_v.weights, **FAMILY)

__all__ = ["BertConfig", "BertModel", "BertForMaskedLM", "BertForSequenceClassification",
           "BertForTokenClassification", "bert", "hf_key_map"]
