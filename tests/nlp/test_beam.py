"""Greedy and beam search: cache == recomputation, beam 1 == greedy, a beam as wide as every
sequence == brute-force enumeration, EOS per hypothesis, the length penalty, errors."""

import itertools

import pytest
import torch

from zoo.nlp.beam import beam_search, greedy_decode, length_penalty
from zoo.nlp.transformer import Transformer
from zoo.shared.errors import InputError

torch.set_num_threads(1)

PAD, BOS, EOS = 0, 1, 2


def _model(seed=0, vocab=6, sharp=3.0):
    torch.manual_seed(seed)
    model = Transformer(src_vocab_size=9, tgt_vocab_size=vocab, dim=16, num_heads=2, ffn_dim=32,
                        num_encoder_layers=1, num_decoder_layers=2, dropout=0.0, max_len=16, tie_output=False)
    with torch.no_grad():  # a peakier output layer: more varied, less uniform sequence scores
        model.generator.weight.mul_(sharp)
    return model.eval()


def _sources(batch=4, length=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, 9, (batch, length), generator=g)
    src[1, 3:] = PAD
    return src


def _log_prob(model, src, tokens: list[int], finished: bool) -> float:
    """log P(tokens [+ EOS]) under the model, scored with one teacher-forced pass."""
    seq = tokens + ([EOS] if finished else [])
    tgt = torch.tensor([[BOS] + seq[:-1]])
    with torch.no_grad():
        logp = model(src[None], tgt).log_softmax(-1)[0]
    return float(logp[torch.arange(len(seq)), torch.tensor(seq)].sum())


def _brute_force(model, src, max_len, alpha):
    """Every sequence the search can produce: EOS after 0..max_len-1 tokens, or max_len tokens."""
    words = range(3, model.tgt_vocab_size)
    best = None
    for n in range(max_len + 1):
        for tokens in itertools.product(words, repeat=n):
            finished = n < max_len
            length = n + 1 if finished else n
            score = _log_prob(model, src, list(tokens), finished) / length_penalty(length, alpha)
            if best is None or score > best[1]:
                best = (list(tokens), score)
    return best


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_beam_as_wide_as_every_sequence_finds_the_brute_force_best(alpha, seed):
    model = _model(seed, vocab=5)  # 2 ordinary tokens + EOS
    src = _sources(2, seed=seed)
    max_len = 3
    every = sum(2 ** n for n in range(max_len + 1))  # 15 sequences in all
    hyps = beam_search(model, src, beam_size=every, max_len=max_len, alpha=alpha, nbest=every)
    for b in range(len(src)):
        tokens, score = _brute_force(model, src[b], max_len, alpha)
        assert hyps[b][0].tokens == tokens
        assert hyps[b][0].score == pytest.approx(score, abs=1e-4)
        assert len(hyps[b]) == every  # the wide beam sees every complete sequence once
        assert len({tuple(h.tokens) for h in hyps[b]}) == every


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_beam_of_one_equals_greedy(seed):
    model = _model(seed)
    src = _sources(seed=seed)
    greedy = greedy_decode(model, src, max_len=10)
    beam = beam_search(model, src, beam_size=1, max_len=10, alpha=0.0)
    assert [h[0].tokens for h in beam] == greedy


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_cached_search_equals_search_by_recomputation(search):
    model = _model(3)
    src = _sources(6, seed=3)
    if search == "greedy":
        assert greedy_decode(model, src, 12) == greedy_decode(model, src, 12, use_cache=False)
    else:
        a = beam_search(model, src, 4, 12, nbest=4)
        b = beam_search(model, src, 4, 12, nbest=4, use_cache=False)
        assert [[h.tokens for h in x] for x in a] == [[h.tokens for h in x] for x in b]
        for x, y in zip(a, b):
            assert [h.score for h in x] == pytest.approx([h.score for h in y], abs=1e-5)


def test_batched_beam_search_equals_one_source_at_a_time():
    model = _model(4)
    src = _sources(5, seed=4)
    together = beam_search(model, src, 3, 10, nbest=3)
    for b in range(len(src)):
        alone = beam_search(model, src[b : b + 1], 3, 10, nbest=3)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[b]]


def test_hypothesis_scores_are_their_log_probabilities_over_the_length_penalty():
    model = _model(5)
    src = _sources(3, seed=5)
    max_len = 8
    for b, hyps in enumerate(beam_search(model, src, 4, max_len, alpha=0.8, nbest=4)):
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            finished = len(h.tokens) < max_len
            assert h.log_prob == pytest.approx(_log_prob(model, src[b], h.tokens, finished), abs=1e-4)
            length = len(h.tokens) + finished
            assert h.score == pytest.approx(h.log_prob / ((5 + length) / 6) ** 0.8, abs=1e-5)
            assert PAD not in h.tokens and BOS not in h.tokens and EOS not in h.tokens


def test_a_larger_length_penalty_favours_longer_hypotheses():
    model = _model(6)
    src = _sources(8, seed=6)
    short = beam_search(model, src, 5, 12, alpha=0.0)
    long = beam_search(model, src, 5, 12, alpha=3.0)
    assert sum(len(h[0].tokens) for h in long) >= sum(len(h[0].tokens) for h in short)


def test_greedy_stops_each_sequence_at_its_own_eos():
    model = _model(7)
    src = _sources(4, seed=7)
    out = greedy_decode(model, src, 6)
    assert all(len(row) <= 6 and EOS not in row and PAD not in row for row in out)
    # each row is the argmax path of its own: re-scoring token by token agrees
    for b, row in enumerate(out):
        tgt = torch.tensor([[BOS] + row])
        with torch.no_grad():
            logp = model(src[b : b + 1], tgt).log_softmax(-1)[0]
        logp[:, [PAD, BOS]] = float("-inf")
        expected = logp.argmax(-1).tolist()
        assert expected[: len(row)] == row
        if len(row) < 6:
            assert expected[len(row)] == EOS


def test_bad_arguments():
    model = _model()
    src = _sources()
    with pytest.raises(InputError, match="max_len 16 .* exceeds the model's 16 positions"):
        greedy_decode(model, src, 16)
    with pytest.raises(InputError, match="nbest <= beam_size"):
        beam_search(model, src, 2, 5, nbest=3)
    with pytest.raises(InputError, match="alpha"):
        beam_search(model, src, 2, 5, alpha=-1.0)
    with pytest.raises(InputError, match="token ids must lie"):
        greedy_decode(model, src + 20, 5)


def _plain_beam(model, src, k, max_len, alpha):
    """A one-source beam search in plain Python that never stops early: the oracle of the stopping
    rule (it keeps every finished hypothesis and runs all max_len steps)."""
    beams, finished = [([], 0.0)], []
    for t in range(1, max_len + 1):
        cands = []
        for tokens, score in beams:
            tgt = torch.tensor([[BOS] + tokens])
            with torch.no_grad():
                logp = model(src[None], tgt)[0, -1].log_softmax(-1)
            for tok in [EOS, *range(3, model.tgt_vocab_size)]:
                cands.append((score + float(logp[tok]), tokens, tok))
        cands.sort(key=lambda c: -c[0])
        cands = cands[: 2 * k]
        finished += [(tokens, s / length_penalty(t, alpha)) for s, tokens, tok in cands[:k] if tok == EOS]
        beams = [(tokens + [tok], s) for s, tokens, tok in cands if tok != EOS][:k]
    finished += [(tokens, s / length_penalty(max_len, alpha)) for tokens, s in beams]
    return sorted(finished, key=lambda h: -h[1])


@pytest.mark.parametrize("alpha", [0.0, 1.0, 3.0])
def test_stopping_early_loses_nothing_against_a_beam_that_runs_to_max_len(alpha):
    model = _model(8, sharp=1.5)
    src = _sources(6, seed=8)
    for b, hyps in enumerate(beam_search(model, src, 3, 7, alpha=alpha, nbest=3)):
        expected = _plain_beam(model, src[b], 3, 7, alpha)[:3]
        assert [h.tokens for h in hyps] == [tokens for tokens, _ in expected]
        assert [h.score for h in hyps] == pytest.approx([s for _, s in expected], abs=1e-4)
