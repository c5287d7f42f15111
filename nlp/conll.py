"""CoNLL-2003 files and the tag schemes of span labelling (IOB1, IOB2, BIOES).

A CoNLL-2003 file holds one token a line, ``word POS chunk NER``, a blank line between
sentences and ``-DOCSTART-`` lines between documents. ``read_conll`` returns the sentences with
the words and the tags of one column, chosen by name.

Entities are read from tags the way conlleval (and seqeval's default mode) reads them, whatever
the scheme: ``B-``/``S-`` always open an entity, ``I-``/``E-`` open one after ``O``, after an
``E-``/``S-`` or after a tag of another type (a stray ``I-`` is an entity, not an error), and
``E-``/``S-`` close one. The three schemes differ only in how they write the same entities:

- IOB1 (the original English files): ``I-`` everywhere; ``B-`` only on the first token of an
  entity that directly follows an entity of the same type.
- IOB2: ``B-`` on the first token of every entity, ``I-`` on the rest.
- BIOES: ``S-`` for a one-token entity, else ``B-`` ... ``I-`` ... ``E-``.

Every conversion goes through the spans, so converting never changes the set of entities.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from zoo.shared.errors import DatasetError

SCHEMES = ("IOB1", "IOB2", "BIOES")
CONLL2003_COLUMNS = ("word", "pos", "chunk", "ner")
_PREFIXES = {"IOB1": "BI", "IOB2": "BI", "BIOES": "BIES"}
_SPAN_COLUMNS = ("chunk", "ner")  # columns whose tags are spans in one of the schemes

Span = tuple[str, int, int]  # (type, start, end), end exclusive: tokens[start:end]


@dataclass
class Sentence:
    words: list[str]
    tags: list[str]
    doc: int = 0  # the document's index in its file: -DOCSTART- lines open documents 1, 2, ...

    def __len__(self) -> int:
        return len(self.words)


def _split(tag: str) -> tuple[str, str | None]:
    """``"B-PER"`` -> ``("B", "PER")``, ``"O"`` -> ``("O", None)``; else a DatasetError."""
    if tag == "O":
        return "O", None
    prefix, sep, type_ = tag.partition("-")
    if not sep or prefix not in ("B", "I", "E", "S") or not type_:
        raise DatasetError(
            f"tag {tag!r} is neither 'O' nor a prefix B-, I-, E- or S- followed by a type"
        )
    return prefix, type_


def _check_scheme(scheme: str | None) -> None:
    if scheme is not None and scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")


def spans(tags: Sequence[str], scheme: str | None = None) -> list[Span]:
    """The entities of one sentence as ``(type, start, end)`` (end exclusive), read as conlleval
    reads them.

    ``scheme`` (IOB1, IOB2, BIOES or None for any) only checks which prefixes may appear: ``E-`` and
    ``S-`` in an IOB file are a DatasetError. The reading itself is the same for every scheme.
    """
    _check_scheme(scheme)
    allowed = _PREFIXES[scheme] if scheme else "BIES"
    out: list[Span] = []
    prev, prev_type, start = "O", None, 0
    # the sentinel O closes an entity cut by the sentence end
    for i, tag in enumerate([*tags, "O"]):
        prefix, type_ = _split(tag)
        if prefix not in allowed and prefix != "O":
            raise DatasetError(
                f"tag {tag!r} at position {i} is not a {scheme} tag "
                f"(prefixes {', '.join(allowed)} and O)"
            )
        type_changed = type_ != prev_type
        ends = prev in "ES" or (prev in "BI" and prefix in "BSO") or (prev != "O" and type_changed)
        begins = prefix in "BS" or (prefix in "IE" and prev in "OES")
        begins = begins or (prefix != "O" and type_changed)
        if ends:
            out.append((prev_type, start, i))
        if begins:
            start = i
        prev, prev_type = prefix, type_
    return out


def tags_from_spans(entities: Iterable[Span], length: int, scheme: str = "IOB2") -> list[str]:
    """Entities (non-overlapping, end exclusive) as the tags of a sentence of ``length`` tokens."""
    _check_scheme(scheme)
    tags = ["O"] * length
    prev_end, prev_type = -1, None
    for type_, start, end in sorted(entities, key=lambda s: s[1]):
        if not 0 <= start < end <= length or start < prev_end:
            raise ValueError(
                f"span {(type_, start, end)} is empty, out of range or overlaps the one before"
            )
        n = end - start
        if scheme == "IOB2":
            tags[start:end] = [f"B-{type_}"] + [f"I-{type_}"] * (n - 1)
        elif scheme == "IOB1":
            first = "B" if start == prev_end and type_ == prev_type else "I"
            tags[start:end] = [f"{first}-{type_}"] + [f"I-{type_}"] * (n - 1)
        elif n == 1:
            tags[start] = f"S-{type_}"
        else:
            tags[start:end] = [f"B-{type_}"] + [f"I-{type_}"] * (n - 2) + [f"E-{type_}"]
        prev_end, prev_type = end, type_
    return tags


def convert(tags: Sequence[str], to: str, source: str | None = None) -> list[str]:
    """The same entities written in scheme ``to``; ``source`` (optional) checks the prefixes."""
    return tags_from_spans(spans(tags, source), len(tags), to)


def detect_scheme(sequences: Iterable[Sequence[str]]) -> str:
    """``"BIOES"`` if any ``E-``/``S-`` tag appears; else ``"IOB2"`` if more entities open with
    ``B-`` than with ``I-``, ``"IOB1"`` if more open with ``I-``. A majority decides, not the
    first exception: a real IOB2 file can hold a few entities that open with ``I-`` (conlleval
    reads them as entities all the same). A tie, no entity at all included, is a DatasetError."""
    opened = {"B": 0, "I": 0}
    for tags in sequences:
        prev, prev_type = "O", None
        for tag in tags:
            prefix, type_ = _split(tag)
            if prefix in "ES":
                return "BIOES"
            if prefix in "BI" and (prev == "O" or type_ != prev_type):
                opened[prefix] += 1  # an entity after O or another type: how this scheme opens one
            prev, prev_type = prefix, type_
    if opened["B"] == opened["I"]:
        raise DatasetError(
            f"cannot tell IOB1 from IOB2: {opened['B']} entities open with B- "
            f"and {opened['I']} with I-; "
            "pass the scheme explicitly"
        )
    return "IOB2" if opened["B"] > opened["I"] else "IOB1"


def read_conll(
    path: str | PathLike,
    column: str = "ner",
    *,
    scheme: str | None = None,
    columns: Sequence[str] = CONLL2003_COLUMNS,
    encoding: str = "utf-8",
) -> list[Sentence]:
    """The sentences of a CoNLL file with the words and the tags of ``column`` (a name in
    ``columns``), each with the index of its document (``-DOCSTART-`` lines separate them).

    ``scheme`` (IOB1, IOB2, BIOES) converts the ``ner``/``chunk`` tags to that scheme, the file's
    own scheme being detected; None keeps the tags as written. A line with the wrong number of
    columns, an empty token or a malformed tag is a DatasetError naming the file and the line.
    """
    _check_scheme(scheme)
    columns = tuple(columns)
    if column not in columns or "word" not in columns:
        raise DatasetError(
            f"column {column!r} is not one of the file's columns {columns} (or no 'word' column)"
        )
    if scheme is not None and column not in _SPAN_COLUMNS:
        raise DatasetError(
            f"column {column!r} holds no spans; a scheme applies only to {', '.join(_SPAN_COLUMNS)}"
        )
    path = Path(path)
    w, t = columns.index("word"), columns.index(column)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    doc = 0

    def flush():
        if words:
            sentences.append(Sentence(list(words), list(tags), doc))
            words.clear()
            tags.clear()

    try:
        with open(path, encoding=encoding) as f:
            for lineno, line in enumerate(f, 1):
                raw = line.rstrip("\r\n")
                if not raw.strip():
                    flush()
                    continue
                fields = raw.split()
                if fields[0] == "-DOCSTART-":
                    flush()
                    doc += 1
                    continue
                where = f"{path}, line {lineno}"
                if raw[0].isspace():
                    raise DatasetError(
                        f"{where}: empty token (the line starts with whitespace): {raw!r}"
                    )
                if len(fields) != len(columns):
                    raise DatasetError(
                        f"{where}: {len(fields)} columns, expected {len(columns)} {columns}: "
                        f"{raw!r}"
                    )
                if column in _SPAN_COLUMNS:
                    try:
                        _split(fields[t])
                    except DatasetError as e:
                        raise DatasetError(f"{where}: {e}") from None
                words.append(fields[w])
                tags.append(fields[t])
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not {encoding} text ({e}); pass encoding=") from None
    flush()
    if scheme is not None and any(tag != "O" for s in sentences for tag in s.tags):
        source = detect_scheme(s.tags for s in sentences)
        for s in sentences:
            s.tags = convert(s.tags, scheme, source)
    return sentences
