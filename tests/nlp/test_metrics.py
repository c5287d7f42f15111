"""Entity-level P/R/F1: hand-counted cases, and equality with seqeval's default (conlleval) mode
on hand cases and on the real eng.testb gold tags against corrupted predictions."""

import random
import warnings

import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from zoo.nlp.conll import convert, read_conll
from zoo.nlp.metrics import Score, span_scores
from zoo.shared.errors import DatasetError


def assert_equals_seqeval(gold, pred):
    ours = span_scores(gold, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns where a denominator is zero (both give 0)
        report = classification_report(gold, pred, output_dict=True)
        assert ours.overall.f1 == pytest.approx(f1_score(gold, pred), abs=1e-12)
        assert ours.overall.precision == pytest.approx(precision_score(gold, pred), abs=1e-12)
        assert ours.overall.recall == pytest.approx(recall_score(gold, pred), abs=1e-12)
    micro = report.pop("micro avg")
    for key in ("macro avg", "weighted avg"):
        report.pop(key)
    assert sorted(ours.per_type) == sorted(report)
    for name, s in [*ours.per_type.items(), ("micro", ours.overall)]:
        ref = micro if name == "micro" else report[name]
        got = (s.precision, s.recall, s.f1, s.support)
        expected = (ref["precision"], ref["recall"], ref["f1-score"], ref["support"])
        assert got == pytest.approx(expected, abs=1e-12), name
    return ours


# (gold, predicted, {type: (correct, predicted, gold)}) counted by hand.
HAND = {
    "exact match": (
        [["B-PER", "I-PER", "O", "B-LOC"]],
        [["B-PER", "I-PER", "O", "B-LOC"]],
        {"PER": (1, 1, 1), "LOC": (1, 1, 1)},
    ),
    "nested-looking spans": (  # a span inside the gold one, and one around it: neither is exact
        [["B-ORG", "I-ORG", "I-ORG", "O", "B-PER", "O"]],
        [["O", "B-ORG", "O", "O", "B-PER", "I-PER"]],
        {"ORG": (0, 1, 1), "PER": (0, 1, 1)},
    ),
    "span cut by the sentence end": (  # the sentence break closes an entity; it never runs on
        [["O", "B-PER"], ["I-PER", "O"]],
        [["O", "B-PER"], ["B-PER", "O"]],
        {"PER": (2, 2, 2)},
    ),
    "type change inside a span": (
        [["B-ORG", "I-ORG", "I-ORG"]],
        [["B-ORG", "I-LOC", "I-ORG"]],  # three entities: ORG, LOC, ORG
        {"ORG": (0, 2, 1), "LOC": (0, 1, 0)},
    ),
    "I- after O": ([["O", "B-MISC", "I-MISC"]], [["O", "I-MISC", "I-MISC"]], {"MISC": (1, 1, 1)}),
    "empty predictions": ([["B-PER", "O"], ["B-LOC"]], [["O", "O"], ["O"]], {"PER": (0, 0, 1), "LOC": (0, 0, 1)}),
    "no gold entity": ([["O", "O"]], [["B-PER", "O"]], {"PER": (0, 1, 0)}),
    "nothing at all": ([["O"], []], [["O"], []], {}),
    "IOB1 adjacent same type": (  # B- separates two PER entities in IOB1
        [["I-PER", "I-PER", "B-PER", "O"]],
        [["I-PER", "I-PER", "I-PER", "O"]],
        {"PER": (0, 1, 2)},
    ),
    "BIOES": ([["S-PER", "B-LOC", "E-LOC"]], [["S-PER", "B-LOC", "I-LOC"]], {"PER": (1, 1, 1), "LOC": (1, 1, 1)}),
}


@pytest.mark.parametrize("case", HAND)
def test_hand_cases(case):
    gold, pred, counts = HAND[case]
    ours = assert_equals_seqeval(gold, pred)
    assert {t: (s.correct, s.predicted, s.support) for t, s in ours.per_type.items()} == counts
    c, p, g = (sum(v[i] for v in counts.values()) for i in range(3))
    assert ours.overall == Score.from_counts(c, p, g)


def test_score_arithmetic():
    s = Score.from_counts(correct=3, predicted=4, support=6)
    assert (s.precision, s.recall, s.f1) == pytest.approx((0.75, 0.5, 0.6))
    assert Score.from_counts(0, 0, 0) == Score(0.0, 0.0, 0.0, 0, 0, 0)


def test_iob1_scores_equal_their_iob2_conversion():
    gold = [["I-ORG", "I-ORG", "B-ORG", "O", "I-LOC"], ["I-PER", "I-MISC"]]
    pred = [["I-ORG", "B-ORG", "B-ORG", "O", "I-LOC"], ["I-PER", "O"]]
    iob1 = span_scores(gold, pred, "IOB1")
    iob2 = span_scores([convert(s, "IOB2") for s in gold], [convert(s, "IOB2") for s in pred], "IOB2")
    assert iob1 == iob2
    # correct: ORG 2-3, LOC, PER
    assert (iob1.overall.correct, iob1.overall.predicted, iob1.overall.support) == (3, 5, 5)


def test_table():
    ours = span_scores(*HAND["type change inside a span"][:2])
    lines = ours.table().splitlines()
    assert lines[0].split() == ["type", "precision", "recall", "f1", "support", "predicted"]
    assert lines[2].split() == ["LOC", "0.00", "0.00", "0.00", "0", "1"]
    assert lines[-1].split() == ["overall", "0.00", "0.00", "0.00", "1", "3"]
    perfect = span_scores(*HAND["exact match"][:2])
    assert str(perfect).splitlines()[-1].split() == ["overall", "100.00", "100.00", "100.00", "2", "2"]
    assert perfect.as_dict()["per_type"]["PER"]["f1"] == 1.0 and perfect.f1 == 1.0


def test_bad_input():
    with pytest.raises(DatasetError, match="sentence 1: 2 gold tags but 1 predicted"):
        span_scores([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(DatasetError, match="2 gold sentences but 1 predicted"):
        span_scores([["O"], ["O"]], [["O"]])
    with pytest.raises(DatasetError, match="lists of sentences"):
        span_scores(["B-PER", "O"], ["B-PER", "O"])
    with pytest.raises(DatasetError, match="not a IOB2 tag"):
        span_scores([["S-PER"]], [["O"]], "IOB2")


def corrupt(sentences, rate, rng):
    """Predictions a tagger could make: tags swapped for random ones, boundaries moved, types changed."""
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    out = []
    for sent in sentences:
        sent = list(sent)
        for i in range(len(sent)):
            r = rng.random()
            if r < rate:
                sent[i] = rng.choice(tags)
            elif r < 2 * rate and i + 1 < len(sent):
                sent[i], sent[i + 1] = sent[i + 1], sent[i]
            elif r < 3 * rate and sent[i] != "O":
                sent[i] = sent[i][:2] + rng.choice(["PER", "LOC", "ORG", "MISC"])
        out.append(sent)
    return out


def test_real_test_set_with_corrupted_predictions(shared_data):
    path = shared_data / "conll2003" / "eng.testb"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    gold = [s.tags for s in read_conll(path)]
    rng = random.Random(13)
    assert span_scores(gold, gold).overall == Score.from_counts(5648, 5648, 5648)
    for rate in (0.01, 0.05, 0.2):
        pred = corrupt(gold, rate, rng)
        ours = assert_equals_seqeval(gold, pred)
        assert 0.0 < ours.f1 < 1.0
        # IOB1 input gives the same scores (conlleval reads both alike)
        iob1 = span_scores([convert(s, "IOB1") for s in gold], [convert(s, "IOB1") for s in pred], "IOB1")
        assert iob1 == ours
