"""Word, character and tag vocabularies, as the BiLSTM-CRF papers build them.

Built from the training sentences only: every digit becomes ``0`` (Lample et al. 2016), words may
be lowercased, words seen fewer than ``min_count`` times map to UNK. Index 0 is PAD and index 1 is
UNK in word and character vocabularies; a tag vocabulary has neither, and an unknown tag is an
error. Words of the validation or test files enter only through ``extend`` — the papers add the
words their pretrained vectors cover — never through ``build``.

A vocabulary saves as JSON with its settings and a fingerprint; loading one checks that the file is
what the caller expects (kind, size, fingerprint) and says what differs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from zoo.shared.errors import DatasetError

PAD, UNK = "<pad>", "<unk>"
FORMAT = 1
_DIGIT = re.compile(r"\d")


def normalize(token: str, lowercase: bool = False, zeros: bool = True) -> str:
    """``"Sept. 1996"`` -> ``"Sept. 0000"`` (and ``"sept. 0000"`` with ``lowercase``)."""
    if zeros:
        token = _DIGIT.sub("0", token)
    return token.lower() if lowercase else token


@dataclass
class Vocab:
    kind: str  # "word", "char" or "tag"
    tokens: list[str]  # index -> token; PAD and UNK first where present
    lowercase: bool = False
    zeros: bool = True
    # training count of each token (0: a special or an extended token)
    counts: list[int] = field(default_factory=list)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.kind not in ("word", "char", "tag"):
            raise DatasetError(f"vocabulary kind {self.kind!r} is not 'word', 'char' or 'tag'")
        self._index = {t: i for i, t in enumerate(self.tokens)}
        if len(self._index) != len(self.tokens):
            dup = [t for t, n in Counter(self.tokens).items() if n > 1]
            raise DatasetError(f"{self.kind} vocabulary lists {dup[:5]} more than once")
        self.counts = list(self.counts) or [0] * len(self.tokens)
        if len(self.counts) != len(self.tokens):
            raise DatasetError(f"{len(self.counts)} counts for {len(self.tokens)} tokens")
        if self.has_specials and self.tokens[:2] != [PAD, UNK]:
            raise DatasetError(
                f"a {self.kind} vocabulary starts with {PAD!r}, {UNK!r}; "
                f"this one with {self.tokens[:2]}"
            )

    @property
    def has_specials(self) -> bool:
        return self.kind != "tag"

    @property
    def pad_index(self) -> int:
        return 0

    @property
    def unk_index(self) -> int:
        return 1

    @classmethod
    def build(
        cls,
        tokens: Iterable[str],
        kind: str = "word",
        *,
        min_count: int = 1,
        lowercase: bool = False,
        zeros: bool = True,
    ) -> Vocab:
        """Tokens seen at least ``min_count`` times (after normalising), most frequent first, ties
        alphabetical. A tag vocabulary keeps every tag, unnormalised, in sorted order."""
        if kind == "tag":
            counter = Counter(tokens)
            kept = sorted(counter)
            return cls("tag", kept, lowercase=False, zeros=False, counts=[counter[t] for t in kept])
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        counter = Counter(normalize(t, lowercase, zeros) for t in tokens)
        kept = [t for t, n in counter.items() if n >= min_count]
        kept.sort(key=lambda t: (-counter[t], t))
        return cls(kind, [PAD, UNK, *kept], lowercase, zeros, [0, 0, *(counter[t] for t in kept)])

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return self._normalize(token) in self._index

    def _normalize(self, token: str) -> str:
        return normalize(token, self.lowercase, self.zeros)

    def index(self, token: str) -> int:
        """The token's index after normalising; UNK if absent (a tag vocabulary raises instead)."""
        i = self._index.get(self._normalize(token))
        if i is None:
            if not self.has_specials:
                raise DatasetError(f"tag {token!r} is not in the tag vocabulary {self.tokens}")
            return self.unk_index
        return i

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.index(t) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]

    def extend(self, tokens: Iterable[str]) -> int:
        """Add tokens (normalised) that are absent, e.g. the words pretrained vectors cover; returns
        how many were added. Their count stays 0: they were not seen in training."""
        added = 0
        for t in tokens:
            t = self._normalize(t)
            if t not in self._index:
                self._index[t] = len(self.tokens)
                self.tokens.append(t)
                self.counts.append(0)
                added += 1
        return added

    def singletons(self) -> list[int]:
        """Indices of tokens seen once in training (Lample et al. replace them by UNK, p=0.5)."""
        return [i for i, n in enumerate(self.counts) if n == 1]

    @property
    def fingerprint(self) -> str:
        """sha256 of the tokens and settings: equal fingerprints encode every token alike."""
        state = json.dumps([self.kind, self.lowercase, self.zeros, self.tokens], ensure_ascii=False)
        return hashlib.sha256(state.encode()).hexdigest()[:16]

    def state_dict(self) -> dict:
        return {
            "format": FORMAT,
            "kind": self.kind,
            "lowercase": self.lowercase,
            "zeros": self.zeros,
            "tokens": list(self.tokens),
            "counts": list(self.counts),
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_state_dict(cls, state: dict, source: str = "vocabulary") -> Vocab:
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise DatasetError(
                f"{source}: not a zoo vocabulary of format {FORMAT} (format {found!r})"
            )
        try:
            vocab = cls(
                state["kind"],
                list(state["tokens"]),
                bool(state["lowercase"]),
                bool(state["zeros"]),
                list(state.get("counts", [])),
            )
        except KeyError as e:
            raise DatasetError(f"{source}: the vocabulary lacks the field {e}") from None
        except DatasetError as e:
            raise DatasetError(f"{source}: {e}") from None
        if state.get("fingerprint") not in (None, vocab.fingerprint):
            raise DatasetError(
                f"{source}: the tokens or settings were changed after saving (fingerprint differs)"
            )
        return vocab

    def save(self, path: str | PathLike) -> None:
        Path(path).write_text(json.dumps(self.state_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(
        cls,
        path: str | PathLike,
        *,
        kind: str | None = None,
        size: int | None = None,
        fingerprint: str | None = None,
    ) -> Vocab:
        """Read a saved vocabulary; ``kind``, ``size`` (e.g. a model's embedding rows) and
        ``fingerprint`` (recorded with a model) are checked when given."""
        try:
            state = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DatasetError(f"{path}: cannot read a vocabulary ({e})") from None
        vocab = cls.from_state_dict(state, str(path))
        wanted = {"kind": kind, "size": size, "fingerprint": fingerprint}
        found = {"kind": vocab.kind, "size": len(vocab), "fingerprint": vocab.fingerprint}
        wrong = [
            f"{k} {found[k]!r}, expected {v!r}"
            for k, v in wanted.items()
            if v is not None and v != found[k]
        ]
        if wrong:
            raise DatasetError(f"{path}: the saved vocabulary does not match: {'; '.join(wrong)}")
        return vocab


def build_vocabs(
    sentences: Sequence,
    *,
    min_count: int = 1,
    lowercase: bool = False,
    zeros: bool = True,
    char_min_count: int = 1,
) -> tuple[Vocab, Vocab, Vocab]:
    """Word, character and tag vocabularies of training sentences (objects with ``words`` and
    ``tags``, such as ``zoo.nlp.conll.read_conll``'s). Characters keep their case (a feature of
    the papers' character models) but follow ``zeros``."""
    words = Vocab.build((w for s in sentences for w in s.words), "word",
                        min_count=min_count, lowercase=lowercase, zeros=zeros)
    chars = Vocab.build((c for s in sentences for w in s.words for c in w), "char",
                        min_count=char_min_count, lowercase=False, zeros=zeros)
    tags = Vocab.build((t for s in sentences for t in s.tags), "tag")
    return words, chars, tags
