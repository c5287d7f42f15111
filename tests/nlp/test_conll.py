"""CoNLL reader and tag schemes: span reading equal to seqeval's (conlleval's), span-preserving
conversions, file errors naming the line, and the real CoNLL-2003 files."""

import itertools
import random

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from zoo.nlp.conll import SCHEMES, convert, detect_scheme, read_conll, spans, tags_from_spans
from zoo.shared.errors import DatasetError

# The same sentences written in each scheme (canonical forms, so conversions round-trip exactly).
CASES = {
    "adjacent same type": {
        "IOB1": ["I-PER", "I-PER", "B-PER", "O", "I-LOC"],
        "IOB2": ["B-PER", "I-PER", "B-PER", "O", "B-LOC"],
        "BIOES": ["B-PER", "E-PER", "S-PER", "O", "S-LOC"],
    },
    "type change without O": {
        "IOB1": ["I-ORG", "I-ORG", "I-ORG", "I-LOC", "O", "I-MISC"],
        "IOB2": ["B-ORG", "I-ORG", "I-ORG", "B-LOC", "O", "B-MISC"],
        "BIOES": ["B-ORG", "I-ORG", "E-ORG", "S-LOC", "O", "S-MISC"],
    },
    "cut by the sentence end": {
        "IOB1": ["O", "I-PER", "B-PER", "I-PER"],
        "IOB2": ["O", "B-PER", "B-PER", "I-PER"],
        "BIOES": ["O", "S-PER", "B-PER", "E-PER"],
    },
    "no entity": {s: ["O", "O"] for s in SCHEMES},
    "empty sentence": {s: [] for s in SCHEMES},
}
CASE_SPANS = {
    "adjacent same type": [("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 5)],
    "type change without O": [("ORG", 0, 3), ("LOC", 3, 4), ("MISC", 5, 6)],
    "cut by the sentence end": [("PER", 1, 2), ("PER", 2, 4)],
    "no entity": [],
    "empty sentence": [],
}


def seqeval_spans(tags):
    """seqeval's entities (inclusive end) as ours (exclusive end)."""
    return [(t, s, e + 1) for t, s, e in get_entities(list(tags))]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_spans_of_each_scheme(case, scheme):
    tags = CASES[case][scheme]
    assert spans(tags, scheme) == CASE_SPANS[case]
    assert spans(tags) == seqeval_spans(tags)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("source,target", list(itertools.permutations(SCHEMES, 2)))
def test_conversion_round_trips(case, source, target):
    tags = CASES[case][source]
    converted = convert(tags, target, source)
    assert converted == CASES[case][target]
    assert convert(converted, source, target) == tags


# Tags that no scheme writes but that conlleval reads all the same: each opens or closes an entity.
STRAY = [
    (["O", "I-PER", "I-PER"], [("PER", 1, 3)]),  # I- after O opens an entity
    (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)]),  # a type change inside a span
    (["I-PER", "I-LOC", "B-LOC"], [("PER", 0, 1), ("LOC", 1, 2), ("LOC", 2, 3)]),
    (["B-PER", "I-PER", "E-PER", "I-PER"], [("PER", 0, 3), ("PER", 3, 4)]),  # I- after E- opens one
    (["S-PER", "E-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
    (["E-PER", "O", "B-LOC"], [("PER", 0, 1), ("LOC", 2, 3)]),  # B- without E- at the end still counts
    (["B-ORG", "O", "I-ORG"], [("ORG", 0, 1), ("ORG", 2, 3)]),
]


@pytest.mark.parametrize("tags,expected", STRAY)
def test_stray_tags_read_as_conlleval(tags, expected):
    assert spans(tags) == expected == seqeval_spans(tags)
    for target in SCHEMES:  # conversion keeps exactly those entities
        assert spans(convert(tags, target)) == expected


def test_random_sequences_match_seqeval_and_convert_losslessly():
    rng = random.Random(0)
    vocab = ["O", "O", "O"] + [f"{p}-{t}" for p in "BIES" for t in ("PER", "LOC")]
    for _ in range(2000):
        tags = [rng.choice(vocab) for _ in range(rng.randint(0, 8))]
        expected = seqeval_spans(tags)
        assert spans(tags) == expected, tags
        for target in SCHEMES:
            out = convert(tags, target)
            assert spans(out, target) == expected, (tags, target)
            if expected:
                assert detect_scheme([out]) == target


def test_scheme_checks_prefixes_and_tags():
    with pytest.raises(DatasetError, match="not a IOB2 tag"):
        spans(["S-PER"], "IOB2")
    for bad in ["PER", "X-PER", "B-", "B_PER", ""]:
        with pytest.raises(DatasetError, match="neither 'O' nor"):
            spans(["O", bad])
    with pytest.raises(ValueError, match="unknown tag scheme"):
        convert(["O"], "BIO")


@pytest.mark.parametrize(
    "sequences,expected",
    [
        ([CASES["adjacent same type"]["IOB1"], CASES["type change without O"]["IOB1"]], "IOB1"),
        ([CASES["adjacent same type"]["IOB2"], CASES["type change without O"]["IOB2"]], "IOB2"),
        ([["O"], CASES["cut by the sentence end"]["BIOES"]], "BIOES"),
        ([["B-PER", "O"], ["B-LOC"], ["O", "I-PER"]], "IOB2"),  # a few I- openings do not outvote B-
        ([["I-PER", "O"], ["I-LOC"], ["B-PER"]], "IOB1"),
    ],
)
def test_detect_scheme(sequences, expected):
    assert detect_scheme(sequences) == expected


def test_detect_scheme_refuses_to_guess():
    with pytest.raises(DatasetError, match="cannot tell IOB1 from IOB2"):
        detect_scheme([["O", "O"], []])
    with pytest.raises(DatasetError, match="cannot tell"):
        detect_scheme([["B-PER"], ["I-LOC"]])


def test_tags_from_spans_refuses_overlaps():
    with pytest.raises(ValueError, match="overlaps"):
        tags_from_spans([("PER", 0, 2), ("LOC", 1, 3)], 4)
    with pytest.raises(ValueError, match="out of range"):
        tags_from_spans([("PER", 2, 5)], 4)


TINY = """-DOCSTART- -X- -X- O


EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER
Smith NNP I-NP B-PER
-DOCSTART- -X- -X- O
BRUSSELS NNP I-NP I-LOC
1996-08-22 CD I-NP O"""  # two blank lines; -DOCSTART- with no blank line around it; none at the end


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TINY)
    return path


def test_reader_numbers_the_documents(tiny):
    assert [s.doc for s in read_conll(tiny)] == [1, 1, 2]  # -DOCSTART- opens a document, even mid-sentence


def test_reader_on_a_tiny_file(tiny):
    sentences = read_conll(tiny)
    assert [s.words for s in sentences] == [
        ["EU", "rejects", "German", "call", "."],
        ["Peter", "Blackburn", "Smith"],
        ["BRUSSELS", "1996-08-22"],
    ]
    assert [s.tags for s in sentences] == [
        ["I-ORG", "O", "I-MISC", "O", "O"],
        ["I-PER", "I-PER", "B-PER"],
        ["I-LOC", "O"],
    ]
    assert [s.tags for s in read_conll(tiny, "pos")][1] == ["NNP"] * 3
    assert [s.tags for s in read_conll(tiny, "chunk")][0] == ["I-NP", "I-VP", "I-NP", "I-NP", "O"]
    assert detect_scheme(s.tags for s in sentences) == "IOB1"
    iob2 = read_conll(tiny, scheme="IOB2")
    assert [s.tags for s in iob2][1] == ["B-PER", "I-PER", "B-PER"]
    bioes = read_conll(tiny, scheme="BIOES")
    assert [s.tags for s in bioes][:2] == [["S-ORG", "O", "S-MISC", "O", "O"], ["B-PER", "E-PER", "S-PER"]]
    for a, b in zip(sentences, bioes):
        assert spans(a.tags) == spans(b.tags) and a.words == b.words


def test_reader_other_column_layouts(tmp_path):
    path = tmp_path / "two.txt"
    path.write_text("Paris\tB-LOC\nis\tO\n\nOK\tO\n")
    sentences = read_conll(path, columns=("word", "ner"))
    assert [(s.words, s.tags) for s in sentences] == [(["Paris", "is"], ["B-LOC", "O"]), (["OK"], ["O"])]


@pytest.mark.parametrize(
    "line,message",
    [
        ("Smith NNP I-NP", "3 columns, expected 4"),
        ("Smith NNP I-NP I-PER extra", "5 columns, expected 4"),
        (" NNP I-NP I-PER", "empty token"),
        ("Smith NNP I-NP PER", "neither 'O' nor"),
    ],
)
def test_reader_names_the_bad_line(tiny, line, message):
    lines = TINY.split("\n")
    lines[9] = line  # the "Peter" line
    tiny.write_text("\n".join(lines))
    with pytest.raises(DatasetError, match=message) as info:
        read_conll(tiny)
    assert f"{tiny}, line 10" in str(info.value)


def test_reader_bad_arguments(tiny):
    with pytest.raises(DatasetError, match="'lemma' is not one of"):
        read_conll(tiny, "lemma")
    with pytest.raises(DatasetError, match="holds no spans"):
        read_conll(tiny, "pos", scheme="IOB2")
    tiny.write_bytes(b"caf\xe9 NN I-NP O\n")
    with pytest.raises(DatasetError, match="not utf-8 text"):
        read_conll(tiny)
    assert read_conll(tiny, encoding="latin-1")[0].words == ["café"]


@pytest.fixture
def conll2003(shared_data):
    root = shared_data / "conll2003"
    if not (root / "eng.testb").is_file():
        pytest.skip(f"CoNLL-2003 files are absent from {root}")
    return root


def test_real_files(conll2003):
    # This copy is IOB2 (a handful of entities in eng.train open with I-), so detection must vote.
    counts = {}
    for name in ("eng.train", "eng.testa", "eng.testb"):
        sentences = read_conll(conll2003 / name)
        assert detect_scheme(s.tags for s in sentences) == "IOB2"
        counts[name] = sum(len(spans(s.tags)) for s in sentences)
        assert counts[name] == len(get_entities([s.tags for s in sentences]))
    assert counts["eng.testb"] == 5648  # the standard test-set entity count
    assert counts["eng.testa"] == 5942
    testb = read_conll(conll2003 / "eng.testb")
    assert len(testb) == 3453 and sum(map(len, testb)) == 46435
    assert testb[0].doc == 1 and testb[-1].doc == 231  # the test set's 231 documents
    for scheme in SCHEMES:
        converted = read_conll(conll2003 / "eng.testb", scheme=scheme)
        assert detect_scheme(s.tags for s in converted) == scheme
        assert [spans(s.tags) for s in converted] == [spans(s.tags) for s in testb]
