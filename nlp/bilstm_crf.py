"""BiLSTM-CRF tagger: Lample et al., "Neural Architectures for Named Entity Recognition", NAACL 2016
(arXiv:1603.01360), with the character CNN of Ma & Hovy, "End-to-end Sequence Labeling via
Bi-directional LSTM-CNNs-CRF", ACL 2016 (arXiv:1603.01354) as the other character encoder.

    word embedding (+ character features: char-BiLSTM final states, or char-CNN max-pooled)
    -> dropout -> BiLSTM over the sentences (as if packed) -> dropout -> linear emissions -> CRF

API: ``model(words, chars, mask)`` -> emissions ``(B, T, num_tags)``;
``model(words, chars, mask, tags)`` -> log-likelihood of each sentence ``(B,)``;
``model.loss(...)`` (negative log-likelihood summed over the batch); ``model.decode(...)`` (Viterbi);
``model.tag([["EU", "rejects", "German", "call"]])`` on raw tokens, once the model carries its
vocabularies. Inputs: word ids ``(B, T)``, char ids ``(B, T, L)`` (0 is padding), mask ``(B, T)``.

The vocabularies (``zoo.nlp.vocab``) travel in the config (``vocab={"words": ..., "chars": ...,
"tags": ...}``, each a ``Vocab.state_dict()``), so ``save_pretrained`` / ``from_pretrained`` keep
them; the weights record their fingerprints, so weights loaded into a model whose vocabulary
differs are an error. Known tag names (IOB2 or BIOES) also constrain the CRF (no ``O -> I-X``).

Checkpoint layout: ours; the CRF is pytorch-crf's (``crf.start_transitions``, ...).
"""

from __future__ import annotations

from os import PathLike
from typing import Literal, NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from zoo.shared.errors import CheckpointError, DatasetError, InputError
from zoo.shared.registry import AT_LEAST_ONE, TestSpec, register_model

from .conll import spans
from .crf import CRF, allowed_transitions
from .vocab import Vocab

VOCAB_KINDS = {"words": "word", "chars": "char", "tags": "tag"}


def vocab_config(words: Vocab, chars: Vocab, tags: Vocab) -> dict:
    """The ``vocab=`` config of a model: the three vocabularies without their training counts."""
    out = {}
    for key, v in (("words", words), ("chars", chars), ("tags", tags)):
        state = v.state_dict()
        state.pop("counts")
        out[key] = state
    return out


def _fingerprint_ids(vocabs: dict[str, Vocab] | None) -> Tensor:
    """The vocabularies' fingerprints as three int64 (0 without vocabularies), kept in the weights."""
    if vocabs is None:
        return torch.zeros(3, dtype=torch.long)
    return torch.tensor([int(vocabs[k].fingerprint[:15], 16) for k in VOCAB_KINDS], dtype=torch.long)


class Tagged(NamedTuple):
    tokens: list[str]
    tags: list[str]
    entities: list[tuple[str, int, int, str]]  # (type, start, end exclusive, text)


def _exporting() -> bool:
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting()


def padded_bilstm(lstm: nn.LSTM, x: Tensor, lengths: Tensor, groups: int = 1) -> tuple[Tensor, Tensor]:
    """A one-layer bidirectional batch-first ``lstm`` over right-padded sequences ``x`` ``(B, T, D)``
    of ``lengths`` ``(B,)`` (each >= 1): the outputs ``(B, T, 2H)``, zero past each length, and the
    final states ``(B, 2H)`` (forward after the last real step, backward after the first), equal to
    running ``lstm`` on the packed sequences.

    Why not pack: on CPU a packed LSTM runs step by step through autograd (a slice, and in backward
    a zero-filled full-size gradient, per step), while a dense one runs oneDNN's fused kernel in
    both directions. Padding only ever follows the real steps, so the forward direction is exact as
    it is, and the backward direction runs forward over each sequence reversed within its own
    length. ``groups > 1`` sorts the sequences by length and runs that many groups, each padded only
    to its own longest (less padding; not while exporting, whose shapes must not depend on data).
    Other LSTMs (dynamically quantized ones, stacked ones) take the packed path, and so does
    inference outside an exporter: without autograd the packed path has no per-step cost to shed and
    does no work on padding (tagging eng.testb: packed 1815 sentences/s, dense 1561).
    """
    B, T, _ = x.shape
    lengths = lengths.to(x.device)
    exporting = _exporting()
    inference = not torch.is_grad_enabled() and not exporting  # packed is faster without autograd
    if inference or type(lstm) is not nn.LSTM or lstm.num_layers != 1 or lstm.proj_size or not lstm.bidirectional:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=T)
        H = out.shape[-1] // 2
        last = (lengths - 1).view(B, 1, 1).expand(B, 1, H)
        return out, torch.cat([out[..., :H].gather(1, last), out[:, 0, None, H:]], dim=-1).squeeze(1)
    if groups > 1 and B > 1 and not exporting:
        order = lengths.argsort()
        parts = []
        for part in order.chunk(groups):
            longest = int(lengths[part].max())
            out, final = _dense_bilstm(lstm, x[part, :longest], lengths[part])
            parts.append((nn.functional.pad(out, (0, 0, 0, T - longest)), final))
        unsort = order.argsort()
        return torch.cat([o for o, _ in parts])[unsort], torch.cat([f for _, f in parts])[unsort]
    return _dense_bilstm(lstm, x, lengths)


def _dense_bilstm(lstm: nn.LSTM, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    B, T, _ = x.shape
    steps = torch.arange(T, device=x.device)
    real = steps < lengths[:, None]  # (B, T)
    flip = torch.where(real, lengths[:, None] - 1 - steps, steps)  # reverses each real part; its own inverse
    weights, H = lstm._flat_weights, lstm.hidden_size
    zeros = x.new_zeros(1, B, H)
    half = len(weights) // 2
    forward = torch.lstm(x, (zeros, zeros), weights[:half], lstm.bias, 1, 0.0, lstm.training, False, True)[0]
    reverse = torch.lstm(x.gather(1, flip[..., None].expand_as(x)), (zeros, zeros), weights[half:], lstm.bias,
                         1, 0.0, lstm.training, False, True)[0]
    last = (lengths - 1).view(B, 1, 1).expand(B, 1, H)
    final = torch.cat([forward.gather(1, last), reverse.gather(1, last)], dim=-1).squeeze(1)
    out = torch.cat([forward, reverse.gather(1, flip[..., None].expand(B, T, H))], dim=-1)
    return out.masked_fill(~real[..., None], 0.0), final


class CharLSTM(nn.Module):
    """Lample et al.: the final forward and backward states of a BiLSTM over a word's characters."""

    def __init__(self, num_chars: int, char_dim: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.lstm = nn.LSTM(char_dim, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def forward(self, chars: Tensor) -> Tensor:  # (N, L) -> (N, 2 * hidden)
        if _exporting() or len(chars) == 0:  # exporters: no data-dependent shapes
            return self.encode(chars)
        # Each distinct word once (a batch repeats a third of its words): the same result, faster.
        unique, inverse = torch.unique(chars, dim=0, return_inverse=True)
        return self.encode(unique)[inverse]

    def encode(self, chars: Tensor) -> Tensor:
        lengths = (chars != 0).sum(-1).clamp(min=1)
        return padded_bilstm(self.lstm, self.embed(chars), lengths, groups=4)[1]  # each word's last real step


class CharCNN(nn.Module):
    """Ma & Hovy: a convolution over a word's character embeddings, max-pooled over its characters."""

    def __init__(self, num_chars: int, char_dim: int, filters: int, kernel_size: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)  # Ma & Hovy: dropout before the CNN
        self.conv = nn.Conv1d(char_dim, filters, kernel_size, padding=kernel_size // 2)
        self.out_dim = filters

    def forward(self, chars: Tensor) -> Tensor:  # (N, L) -> (N, filters)
        x = self.conv(self.dropout(self.embed(chars)).transpose(1, 2))[..., : chars.shape[1]]
        pad = (chars == 0).unsqueeze(1)
        pad = pad & ~pad.all(-1, keepdim=True)  # a word of padding only: pool over everything
        return x.masked_fill(pad, float("-inf")).amax(-1)


# Word shapes of the casing feature (``case_dim`` > 0); 0 is padding.
CASES = ("pad", "lower", "upper", "title", "mixed", "numeric", "other")


def char_kinds(chars: Vocab | None, num_chars: int) -> Tensor:
    """For each character id: 1 a lowercase letter, 2 an uppercase one, 3 a digit, 0 anything else
    (padding, unknown, punctuation). Without a vocabulary every character is 0."""
    kinds = torch.zeros(num_chars, dtype=torch.long)
    for i, c in enumerate(chars.tokens if chars is not None else []):
        if len(c) == 1:
            kinds[i] = 1 if c.islower() else 2 if c.isupper() else 3 if c.isdigit() else 0
    return kinds


class LockedDropout(nn.Module):
    """Variational dropout (Gal & Ghahramani 2016) over a batch-first sequence ``(B, T, D)``: one
    mask per sequence, the same at every time step, so a dropped feature stays dropped for the whole
    sentence (Reimers & Gurevych 2017 found it the better dropout for LSTM taggers)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        scale = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p).div_(1 - self.p)  # 0 or 1 / (1 - p)
        return x * scale


class BiLSTMCRF(nn.Module):
    def __init__(self, num_words: int = 20000, num_chars: int = 100, num_tags: int = 9,
                 word_dim: int = 100, char_dim: int = 25, char_hidden_dim: int = 25,
                 char_encoder: Literal["lstm", "cnn"] = "lstm", char_kernel_size: int = 3,
                 hidden_dim: int = 100, dropout: float = 0.5, constrained: bool = True,
                 case_dim: int = 0, variational_dropout: bool = False, vocab: dict | None = None):
        super().__init__()
        self.num_words, self.num_chars, self.num_tags = num_words, num_chars, num_tags
        self.vocabs = None if vocab is None else {
            k: Vocab.from_state_dict(vocab[k], f"vocab[{k!r}]") for k in VOCAB_KINDS}
        self.word_embed = nn.Embedding(num_words, word_dim, padding_idx=0)
        # The casing feature (Collobert et al. 2011; Chiu & Nichols 2016): each word's shape
        # (lower, UPPER, Title, mIxed, numeric, other) read off its characters, embedded. With a
        # lowercased word vocabulary it gives the BiLSTM back the case the word ids lost.
        self.case_embed = nn.Embedding(len(CASES), case_dim, padding_idx=0) if case_dim else None
        self.register_buffer("char_kinds", char_kinds(self.vocabs and self.vocabs["chars"], num_chars),
                             persistent=False)
        if char_encoder == "lstm":
            self.char_encoder = CharLSTM(num_chars, char_dim, char_hidden_dim)
        else:
            self.char_encoder = CharCNN(num_chars, char_dim, char_hidden_dim, char_kernel_size, dropout)
        # before and after the BiLSTM: a fresh mask per token (the papers), or per sentence
        self.dropout = LockedDropout(dropout) if variational_dropout else nn.Dropout(dropout)
        self.lstm = nn.LSTM(word_dim + self.char_encoder.out_dim + case_dim, hidden_dim, batch_first=True,
                            bidirectional=True)
        self.emissions = nn.Linear(2 * hidden_dim, num_tags)
        self.crf = CRF(num_tags, batch_first=True)
        self.register_buffer("vocab_fingerprint", _fingerprint_ids(self.vocabs))
        self.scheme = None
        if self.vocabs is not None:
            names = self.vocabs["tags"].tokens
            self.scheme = "BIOES" if any(t[:2] in ("E-", "S-") for t in names) else "BIO"
            if constrained:
                self.crf.set_constraints(allowed_transitions(names, self.scheme))

    def load_pretrained_vectors(self, path: str | PathLike) -> float:
        """Initialise word embeddings from a GloVe / word2vec text file, matching each vocabulary
        word exactly, else lowercased (as the papers do); returns the share of words covered."""
        if self.vocabs is None:
            raise InputError("load_pretrained_vectors needs a model built with vocab=")
        vectors, coverage = read_word_vectors(path, self.vocabs["words"], self.word_embed.embedding_dim)
        with torch.no_grad():
            found = ~torch.isnan(vectors[:, 0])
            self.word_embed.weight[found] = vectors[found].to(self.word_embed.weight)
        return coverage

    # -- the network -----------------------------------------------------------------------------
    def features(self, words: Tensor, chars: Tensor, mask: Tensor) -> Tensor:
        """Emissions ``(B, T, num_tags)``; padded positions hold the bias alone."""
        _check_inputs(words, chars, mask, self.num_words, self.num_chars)
        mask = mask.bool()
        emb = self.word_embed(words)
        char_feats = emb.new_zeros(*words.shape, self.char_encoder.out_dim)
        char_feats[mask] = self.char_encoder(chars[mask])  # the real words only
        parts = [emb, char_feats]
        if self.case_embed is not None:
            parts.append(self.case_embed(self.casing(chars, mask)))
        x = self.dropout(torch.cat(parts, dim=-1))
        out = padded_bilstm(self.lstm, x, mask.sum(-1).clamp(min=1), groups=4)[0]
        return self.emissions(self.dropout(out))

    def casing(self, chars: Tensor, mask: Tensor) -> Tensor:
        """Each word's index in ``CASES`` ``(B, T)`` from its characters ``(B, T, L)``; 0 where ``mask`` is off."""
        kinds = self.char_kinds[chars]
        lower, upper = (kinds == 1).any(-1), (kinds == 2).any(-1)
        digit, title = (kinds == 3).any(-1), (kinds[..., 0] == 2) & lower
        case = torch.full_like(chars[..., 0], CASES.index("other"))
        case = case.masked_fill(digit & ~lower & ~upper, CASES.index("numeric"))
        case = case.masked_fill(lower & ~upper, CASES.index("lower"))
        case = case.masked_fill(upper & ~lower, CASES.index("upper"))
        case = case.masked_fill(upper & lower & ~title, CASES.index("mixed"))
        case = case.masked_fill(title, CASES.index("title"))
        return case.masked_fill(~mask, 0)

    def forward(self, words: Tensor, chars: Tensor, mask: Tensor, tags: Tensor | None = None) -> Tensor:
        """Emissions ``(B, T, num_tags)``; with ``tags``, the log-likelihood of each sentence ``(B,)``."""
        emissions = self.features(words, chars, mask)
        if tags is None:
            return emissions
        return self.crf(emissions, tags, mask=mask.bool(), reduction="none")

    def loss(self, words: Tensor, chars: Tensor, mask: Tensor, tags: Tensor) -> Tensor:
        """Negative log-likelihood summed over the sentences of the batch."""
        return -self(words, chars, mask, tags).sum()

    @torch.no_grad()
    def decode(self, words: Tensor, chars: Tensor, mask: Tensor) -> list[list[int]]:
        """The best tag path (Viterbi) of each sentence, as lists of tag ids of its own length."""
        return self.crf.decode(self.features(words, chars, mask), mask=mask.bool())

    # -- raw text --------------------------------------------------------------------------------
    def encode(self, sentences: Sequence[Sequence[str]]) -> tuple[Tensor, Tensor, Tensor]:
        """Tokens -> ``(words, chars, mask)`` with the model's vocabularies."""
        if self.vocabs is None:
            raise InputError("this model carries no vocabularies (build it with vocab=, or load a "
                             "tagger saved by the recipe); it cannot encode raw tokens")
        return encode_batch(sentences, self.vocabs["words"], self.vocabs["chars"],
                            device=self.word_embed.weight.device)

    @torch.no_grad()
    def tag(self, sentences: Sequence[Sequence[str]]) -> list[Tagged]:
        """Tag raw tokenised sentences: their tags and entity spans ``(type, start, end, text)``."""
        if isinstance(sentences, str) or any(isinstance(s, str) for s in sentences):
            raise InputError("tag() takes a list of sentences, each a list of tokens")
        was_training = self.training
        self.eval()
        try:
            out = [None] * len(sentences)
            keep = [i for i, s in enumerate(sentences) if len(s)]
            if keep:
                paths = self.decode(*self.encode([sentences[i] for i in keep]))
                for i, path in zip(keep, paths):
                    out[i] = self.vocabs["tags"].decode(path)
        finally:
            self.train(was_training)
        result = []
        for tokens, tags in zip(sentences, out):
            tokens, tags = list(tokens), tags or []
            ents = [(t, s, e, " ".join(tokens[s:e])) for t, s, e in spans(tags)]
            result.append(Tagged(tokens, tags, ents))
        return result

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights trained with other vocabularies would read every id as another token
        key = prefix + "vocab_fingerprint"
        if key in state_dict and not torch.equal(state_dict[key].cpu(), self.vocab_fingerprint.cpu()):
            theirs, ours = state_dict[key].tolist(), self.vocab_fingerprint.tolist()
            differ = [k for k, a, b in zip(VOCAB_KINDS, theirs, ours) if a != b]
            raise CheckpointError(
                f"the weights were trained with other {', '.join(differ)} vocabularies than this "
                "model's vocab= (fingerprints differ); load the saved tagger with "
                "zoo.from_pretrained(dir) so its own vocabularies come with it")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _check_inputs(words, chars, mask, num_words, num_chars):
    if words.dim() != 2 or chars.dim() != 3 or chars.shape[:2] != words.shape or mask.shape != words.shape:
        raise InputError(f"expected words (B, T), chars (B, T, L), mask (B, T); got "
                         f"{tuple(words.shape)}, {tuple(chars.shape)}, {tuple(mask.shape)}")
    if words.numel() and (int(words.max()) >= num_words or int(words.min()) < 0):
        raise InputError(f"word ids must lie in [0, {num_words}); got up to {int(words.max())}")
    if chars.numel() and (int(chars.max()) >= num_chars or int(chars.min()) < 0):
        raise InputError(f"char ids must lie in [0, {num_chars}); got up to {int(chars.max())}")


def encode_batch(sentences: Sequence[Sequence[str]], words: Vocab, chars: Vocab,
                 device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """Sentences of tokens -> word ids ``(B, T)``, char ids ``(B, T, L)``, mask ``(B, T)``."""
    b, t = len(sentences), max((len(s) for s in sentences), default=0)
    length = max((len(w) for s in sentences for w in s), default=0)
    w_ids = torch.zeros(b, max(t, 1), dtype=torch.long)
    c_ids = torch.zeros(b, max(t, 1), max(length, 1), dtype=torch.long)
    for i, sent in enumerate(sentences):
        if len(sent):
            w_ids[i, : len(sent)] = torch.tensor(words.encode(sent))
        for j, word in enumerate(sent):
            if word:
                c_ids[i, j, : len(word)] = torch.tensor(chars.encode(word))
    mask = torch.zeros(w_ids.shape, dtype=torch.bool)
    for i, sent in enumerate(sentences):
        mask[i, : len(sent)] = True
    return w_ids.to(device), c_ids.to(device), mask.to(device)


def read_word_vectors(path: str | PathLike, vocab: Vocab, dim: int) -> tuple[Tensor, float]:
    """Rows of ``vocab`` from a GloVe / word2vec text file (``word v1 ... vdim`` a line; a word2vec
    ``count dim`` header line is skipped); a word is matched as written, else lowercased. Rows not
    covered are NaN. Returns the rows and the share of vocabulary words (PAD/UNK aside) covered."""
    wanted: dict[str, list[int]] = {}
    for i, tok in enumerate(vocab.tokens[2:], 2):
        wanted.setdefault(tok, []).append(i)
        if tok.lower() != tok:
            wanted.setdefault(tok.lower(), []).append(-i)  # negative: a lowercase fallback
    rows = torch.full((len(vocab), dim), float("nan"))
    exact = torch.zeros(len(vocab), dtype=torch.bool)
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.rstrip().split(" ")
            if lineno == 1 and len(fields) == 2:
                continue  # word2vec header
            if fields[0] not in wanted:
                continue
            if len(fields) != dim + 1:
                raise DatasetError(f"{path}, line {lineno}: {len(fields) - 1} values, expected {dim}")
            vec = torch.tensor([float(x) for x in fields[1:]])
            for i in wanted[fields[0]]:
                if i > 0:
                    rows[i], exact[i] = vec, True
                elif not exact[-i]:
                    rows[-i] = vec
    covered = int((~torch.isnan(rows[2:, 0])).sum()) if len(vocab) > 2 else 0
    return rows, covered / max(len(vocab) - 2, 1)


# ------------------------------------------------------------------------------------------------
# Registered variants and their tiny test config
# ------------------------------------------------------------------------------------------------
_TEST_TAGS = ["B-ORG", "B-PER", "I-ORG", "I-PER", "O"]
_TEST_VOCAB = vocab_config(
    Vocab.build("EU rejects German call to boycott British lamb".split(), "word"),
    Vocab.build("EU rejects German call to boycott British lamb", "char"),
    Vocab.build(_TEST_TAGS, "tag"),
)
_TEST_PATH = [1, 3, 4, 0, 4, 4]  # B-PER I-PER O B-ORG O O: allowed by the constraints


def _test_inputs(cfg: dict, batch: int) -> tuple:
    g = torch.Generator().manual_seed(batch)
    lengths = [6 - (i % 3) for i in range(batch)]  # variable lengths: padding is exercised
    t, l = max(lengths), 5
    words = torch.randint(2, cfg["num_words"], (batch, t), generator=g)
    chars = torch.randint(1, cfg["num_chars"], (batch, t, l), generator=g)
    chars[..., 3:] *= (torch.rand(batch, t, 1, generator=g) > 0.5).long()  # short and long words
    mask = torch.zeros(batch, t, dtype=torch.bool)
    tags = torch.tensor([_TEST_PATH[:t]] * batch)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    words, chars = words * mask, chars * mask.unsqueeze(-1)
    tags[:, 3:] = 4  # O from position 3 on: every prefix ends legally
    return words, chars, mask, tags


def _test_spec(char_encoder: str) -> TestSpec:
    config = dict(num_words=len(_TEST_VOCAB["words"]["tokens"]),
                  num_chars=len(_TEST_VOCAB["chars"]["tokens"]), num_tags=len(_TEST_TAGS), word_dim=6, char_dim=4, char_hidden_dim=3, hidden_dim=5,
                  char_encoder=char_encoder, vocab=_TEST_VOCAB)
    return TestSpec(config=config, inputs=_test_inputs, output_shape=lambda cfg, b: (b,))


def _vocab_matches_sizes(cfg: dict) -> str | None:
    vocab = cfg.get("vocab")
    if vocab is None:
        return None
    if not isinstance(vocab, dict) or set(vocab) != set(VOCAB_KINDS):
        return f"vocab must be a dict with the keys {sorted(VOCAB_KINDS)}"
    for key, size in (("words", "num_words"), ("chars", "num_chars"), ("tags", "num_tags")):
        n = len(vocab[key].get("tokens", [])) if isinstance(vocab[key], dict) else -1
        if n != cfg[size]:
            return f"vocab[{key!r}] holds {n} tokens but {size}={cfg[size]}"
    return None


FAMILY = dict(
    domain="nlp",
    task="sequence-labelling",
    inputs="words (B, T) int64, chars (B, T, L) int64 (0: padding), mask (B, T) bool[, tags (B, T)]",
    ranges={k: AT_LEAST_ONE for k in ("num_words", "num_chars", "num_tags", "char_kernel_size")},
    checks=[_vocab_matches_sizes],
)
LAMPLE = "Lample et al. 2016, Neural Architectures for Named Entity Recognition (arXiv:1603.01360)"
MA_HOVY = ("Ma & Hovy 2016, End-to-end Sequence Labeling via Bi-directional LSTM-CNNs-CRF "
           "(arXiv:1603.01354)")

register_model("bilstm_crf", BiLSTMCRF,
               dict(word_dim=100, char_dim=25, char_hidden_dim=25, char_encoder="lstm", hidden_dim=100,
                    dropout=0.5),
               paper=LAMPLE, test=_test_spec("lstm"), **FAMILY)
register_model("bilstm_cnn_crf", BiLSTMCRF,
               dict(word_dim=100, char_dim=30, char_hidden_dim=30, char_encoder="cnn", char_kernel_size=3,
                    hidden_dim=200, dropout=0.5),
               paper=MA_HOVY, test=_test_spec("cnn"), **FAMILY)
