"""Entity-level precision, recall and F1 (the CoNLL shared-task measure).

An entity counts as found only when a predicted span has exactly the gold span's type, start and
end. Spans are read as conlleval reads them (``zoo.nlp.conll.spans``), so the scores equal
conlleval's on IOB1 or IOB2 input and seqeval's default mode (``f1_score``,
``classification_report``); precision, recall or F1 whose denominator is zero is 0, as in both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from zoo.nlp.conll import spans
from zoo.shared.errors import DatasetError


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    f1: float
    support: int  # gold entities
    predicted: int
    correct: int

    @classmethod
    def from_counts(cls, correct: int, predicted: int, support: int) -> Score:
        p = correct / predicted if predicted else 0.0
        r = correct / support if support else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        return cls(p, r, f1, support, predicted, correct)


@dataclass(frozen=True)
class SpanScores:
    overall: Score  # micro average over every entity
    per_type: dict[str, Score]  # every type that occurs in the gold or the predicted tags, sorted

    @property
    def f1(self) -> float:
        return self.overall.f1

    def as_dict(self) -> dict:
        per_type = {t: asdict(s) for t, s in self.per_type.items()}
        return {"overall": asdict(self.overall), "per_type": per_type}

    def table(self, digits: int = 2) -> str:
        """Precision / recall / F1 in percent per type and overall, gold and predicted counts."""
        rows = [(t, s) for t, s in self.per_type.items()] + [("overall", self.overall)]
        width = max(8, *(len(t) for t, _ in rows))
        head = (
            f"{'type':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8} "
            f"{'predicted':>9}"
        )
        lines = [head, "-" * len(head)]
        for name, s in rows:
            if name == "overall":
                lines.append("-" * len(head))
            lines.append(
                f"{name:<{width}} {100 * s.precision:>9.{digits}f} {100 * s.recall:>9.{digits}f} "
                f"{100 * s.f1:>9.{digits}f} {s.support:>8} {s.predicted:>9}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def span_scores(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], scheme: str | None = None
) -> SpanScores:
    """Scores of ``predicted`` against ``gold``, both a list of sentences of tags (any scheme,
    or the one named by ``scheme``, which checks the prefixes). Sentences must pair up in length."""
    if any(isinstance(x, str) for x in (gold, predicted, *gold[:1], *predicted[:1])):
        raise DatasetError("gold and predicted must be lists of sentences, each a list of tags")
    if len(gold) != len(predicted):
        raise DatasetError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    n_gold, n_pred, n_correct = Counter(), Counter(), Counter()
    for i, (g, p) in enumerate(zip(gold, predicted)):
        if len(g) != len(p):
            raise DatasetError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
        g_spans, p_spans = set(spans(g, scheme)), set(spans(p, scheme))
        n_gold.update(t for t, _, _ in g_spans)
        n_pred.update(t for t, _, _ in p_spans)
        n_correct.update(t for t, _, _ in g_spans & p_spans)
    per_type = {
        t: Score.from_counts(n_correct[t], n_pred[t], n_gold[t]) for t in sorted(n_gold | n_pred)
    }
    overall = Score.from_counts(sum(n_correct.values()), sum(n_pred.values()), sum(n_gold.values()))
    return SpanScores(overall, per_type)
