"""The CRF layer: exact against the enumeration of every path, equal to pytorch-crf, clear on bad
input."""

from __future__ import annotations

import itertools
import math
import re

import pytest
import torch

from zoo.nlp.crf import CRF, allowed_transitions
from zoo.shared.errors import InputError, InvalidConfigError

NUM_TAGS = 5
SCHEMES = {  # five tags each, so enumeration covers 5**4 = 625 paths at most
    "BIO": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    "BIOES": ["O", "B-PER", "I-PER", "E-PER", "S-PER"],
}


def make_crf(scheme=None, batch_first=True, seed=0):
    torch.manual_seed(seed)
    constraints = allowed_transitions(SCHEMES[scheme], scheme) if scheme else None
    crf = CRF(NUM_TAGS, batch_first=batch_first, constraints=constraints).double()
    with torch.no_grad():  # wider than the default init so the distribution is far from uniform
        for p in crf.parameters():
            p.normal_(0, 1.0)
    return crf


# -- brute force: every path of one sequence -------------------------------------------------
def enumerate_paths(crf, emissions, length):
    """{path: score} over every path of ``length`` that the CRF's constraints allow."""
    start, end, trans = crf.start_transitions, crf.end_transitions, crf.transitions
    allowed = crf.allowed
    out = {}
    for path in itertools.product(range(NUM_TAGS), repeat=length):
        if allowed is not None and not (
                crf.allowed_start[path[0]] and crf.allowed_end[path[-1]]
                and all(allowed[a, b] for a, b in zip(path, path[1:]))):
            continue
        s = start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
        s = s + sum(trans[a, b] for a, b in zip(path, path[1:]))
        out[path] = s.item()
    return out


def batch_case(lengths, seed=1):
    """Batch-first emissions (B, T, N) with masks for the given lengths, T = max(lengths)."""
    g = torch.Generator().manual_seed(seed)
    batch, seq_len = len(lengths), max(lengths)
    emissions = 2 * torch.randn(batch, seq_len, NUM_TAGS, generator=g, dtype=torch.float64)
    mask = torch.arange(seq_len).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return emissions, mask


CASES = [  # (lengths in one batch, pass the mask?)
    ([1], False), ([2], False), ([3], False), ([4], False),
    ([4, 1, 3, 2], True), ([2, 2, 1], True),
]


@pytest.mark.parametrize("scheme", [None, "BIO", "BIOES"])
@pytest.mark.parametrize("lengths,masked", CASES)
def test_crf_equals_enumeration_of_every_path(lengths, masked, scheme):
    crf = make_crf(scheme)
    emissions, mask = batch_case(lengths)
    m = mask if masked else None
    log_z = crf.log_partition(emissions, m)
    marginals = crf.marginals(emissions, m)
    k = 7
    nbest = crf.decode_nbest(emissions, m, k=k)
    best = crf.decode(emissions, m)
    gold_tags = torch.zeros(emissions.shape[:2], dtype=torch.long)
    expected_gold = []
    for b, length in enumerate(lengths):
        paths = enumerate_paths(crf, emissions[b], length)
        scores = torch.tensor(list(paths.values()), dtype=torch.float64)
        # partition function
        assert log_z[b].item() == pytest.approx(torch.logsumexp(scores, 0).item(), abs=1e-9)
        # marginals: p(y_t = j) summed over the paths through j at t
        probs = (scores - torch.logsumexp(scores, 0)).exp()
        want = torch.zeros(emissions.shape[1], NUM_TAGS, dtype=torch.float64)
        for (path, _), p in zip(paths.items(), probs):
            for t, y in enumerate(path):
                want[t, y] += p
        torch.testing.assert_close(marginals[b], want, atol=1e-9, rtol=0)
        # top-k paths, best first, with their scores; fewer when fewer paths are allowed
        ranked = sorted(paths.items(), key=lambda kv: -kv[1])[:k]
        assert [p for p, _ in nbest[b]] == [list(p) for p, _ in ranked]
        assert [s for _, s in nbest[b]] == pytest.approx([s for _, s in ranked], abs=1e-9)
        assert best[b] == list(ranked[0][0])
        # gold score of an allowed path that is not the best one
        gold = ranked[len(ranked) // 2][0]
        gold_tags[b, :length] = torch.tensor(gold)
        expected_gold.append(paths[gold])
    expected_gold = torch.tensor(expected_gold, dtype=torch.float64)
    torch.testing.assert_close(crf.score(emissions, gold_tags, m), expected_gold, atol=1e-9, rtol=0)
    llh = crf(emissions, gold_tags, m, reduction="none")
    torch.testing.assert_close(llh, expected_gold - log_z, atol=1e-9, rtol=0)


def test_nbest_returns_every_path_when_k_exceeds_their_number():
    crf = make_crf("BIO")
    emissions, _ = batch_case([2])
    nbest = crf.decode_nbest(emissions, k=100)[0]
    assert len(nbest) == len(enumerate_paths(crf, emissions[0], 2)) < 25


def test_marginals_are_the_gradient_of_log_partition():
    crf = make_crf("BIOES")
    emissions, mask = batch_case([4, 2, 3])
    emissions.requires_grad_(True)
    (grad,) = torch.autograd.grad(crf.log_partition(emissions, mask).sum(), emissions)
    torch.testing.assert_close(crf.marginals(emissions, mask), grad, atol=1e-9, rtol=0)


@pytest.mark.parametrize("scheme", [None, "BIO"])
def test_log_likelihood_gradcheck_float64(scheme):
    crf = make_crf(scheme)
    emissions, mask = batch_case([3, 1, 2])
    tags = torch.tensor([[0, 1, 2], [3, 0, 0], [1, 0, 0]])  # allowed under BIO
    names = [n for n, _ in crf.named_parameters()]

    def llh(emissions, *params):
        return torch.func.functional_call(crf, dict(zip(names, params)),
                                          (emissions, tags, mask), {"reduction": "none"})

    inputs = (emissions.requires_grad_(True),
              *(p.detach().clone().requires_grad_(True) for p in crf.parameters()))
    assert torch.autograd.gradcheck(llh, inputs)


def test_constraints_forbid_what_the_scheme_forbids():
    names = SCHEMES["BIO"] + ["B-ORG", "I-ORG"]
    allowed = allowed_transitions(names, "BIO")
    i = {n: k for k, n in enumerate(names)}
    assert not allowed.transitions[i["O"], i["I-PER"]]
    assert not allowed.transitions[i["B-LOC"], i["I-PER"]]
    assert not allowed.transitions[i["I-ORG"], i["I-PER"]]
    assert allowed.transitions[i["B-PER"], i["I-PER"]]
    assert allowed.transitions[i["I-PER"], i["I-PER"]]
    assert allowed.transitions[i["I-PER"], i["B-PER"]] and allowed.transitions[i["I-PER"], i["O"]]
    assert not allowed.start[i["I-PER"]] and allowed.start[i["B-PER"]] and allowed.start[i["O"]]
    assert allowed.end.all()

    names = SCHEMES["BIOES"] + ["S-LOC"]
    allowed = allowed_transitions(names, "BIOES")
    i = {n: k for k, n in enumerate(names)}
    assert not allowed.transitions[i["O"], i["E-PER"]]
    assert not allowed.transitions[i["B-PER"], i["O"]]      # an open chunk must be closed
    assert not allowed.transitions[i["B-PER"], i["S-LOC"]]
    assert allowed.transitions[i["B-PER"], i["E-PER"]]
    assert allowed.transitions[i["E-PER"], i["S-LOC"]]
    assert not allowed.start[i["E-PER"]] and not allowed.end[i["B-PER"]] and allowed.end[i["S-LOC"]]


def test_constrained_decoding_never_uses_a_forbidden_transition():
    names = SCHEMES["BIO"]
    crf = CRF(NUM_TAGS, batch_first=True)
    with torch.no_grad():  # make O -> I-PER and starting in I-PER the most attractive moves
        crf.transitions[0, 2] = 50.0
        crf.start_transitions[2] = 50.0
    emissions = torch.randn(4, 6, NUM_TAGS)
    assert any(2 in p for p in crf.decode(emissions))
    crf.set_constraints(allowed_transitions(names, "BIO"))
    for path in crf.decode(emissions):
        assert path[0] != 2 and all(not (a == 0 and b == 2) for a, b in zip(path, path[1:]))
    crf.set_constraints(None)
    assert any(2 in p for p in crf.decode(emissions))


def test_state_dict_is_pytorch_crfs_and_constraints_do_not_enter_it():
    crf = CRF(7, constraints=allowed_transitions(["O"] + [f"{p}-X{k}" for k in range(3)
                                                          for p in "BI"], "BIO"))
    shapes = {k: tuple(v.shape) for k, v in crf.state_dict().items()}
    assert shapes == {"start_transitions": (7,), "end_transitions": (7,), "transitions": (7, 7)}
    for p in crf.parameters():
        assert p.abs().max() <= 0.1 and p.std() > 0


# -- pytorch-crf parity --------------------------------------------------------------------
try:
    import torchcrf
except ImportError:  # the parity test alone needs it
    torchcrf = None


@pytest.mark.skipif(torchcrf is None, reason="pytorch-crf (the reference) is not installed; "
                                             "install the dev dependencies")
@pytest.mark.filterwarnings("ignore:where received a uint8")  # pytorch-crf's own default mask
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("num_tags", [5, 17])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_pytorch_crf(batch_first, num_tags, masked):
    torch.manual_seed(num_tags)
    ours = CRF(num_tags, batch_first=batch_first)
    ref = torchcrf.CRF(num_tags, batch_first=batch_first)
    ref.load_state_dict(ours.state_dict())
    lengths = torch.tensor([12, 1, 7, 12, 3, 9])
    batch, seq_len = len(lengths), int(lengths.max())
    emissions = 3 * torch.randn(batch, seq_len, num_tags)
    tags = torch.randint(num_tags, (batch, seq_len))
    mask = (torch.arange(seq_len) < lengths.unsqueeze(1)) if masked else None
    if not batch_first:
        emissions, tags = emissions.transpose(0, 1), tags.transpose(0, 1)
        mask = mask.transpose(0, 1) if masked else None
    for reduction in ("none", "sum", "mean", "token_mean"):
        e1, e2 = emissions.clone().requires_grad_(True), emissions.clone().requires_grad_(True)
        a, b = ours(e1, tags, mask, reduction=reduction), ref(e2, tags, mask, reduction=reduction)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        a.sum().backward(), b.sum().backward()
        torch.testing.assert_close(e1.grad, e2.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours(emissions, tags, mask), ref(emissions, tags, mask))  # sum
    assert ours.decode(emissions, mask) == ref.decode(emissions, mask)


# -- bad input -----------------------------------------------------------------------------
def good(batch=3, seq_len=4):
    emissions = torch.randn(batch, seq_len, NUM_TAGS)
    tags = torch.randint(NUM_TAGS, (batch, seq_len))
    mask = torch.ones(batch, seq_len, dtype=torch.bool)
    return emissions, tags, mask


def _first_off():
    e, t, m = good()
    m[1, 0] = False
    return e, t, m


def _tag_high():
    e, t, m = good()
    t[2, 1] = NUM_TAGS
    return e, t, m


def _tag_negative():
    e, t, m = good()
    t[0, 3] = -1
    return e, t, m


def _gap():
    e, t, m = good()
    m[0, 1] = False
    return e, t, m


BAD = {
    "mask off at the first step": (_first_off, "first step of sequence(s) [1]"),
    "tag too large": (_tag_high, "tags out of range: 5 in sequence 2 at position 1"),
    "negative tag": (_tag_negative, "tags out of range: -1 in sequence 0 at position 3"),
    "mask with a hole": (_gap, "turns on again"),
    "wrong num_tags": (lambda: (torch.randn(3, 4, 6), *good()[1:]), "num_tags=5"),
    "tags batch": (lambda: (good()[0], good(batch=2)[1], None), "tags have batch size 2"),
    "tags length": (lambda: (good()[0], good(seq_len=5)[1], None), "tags have length 5"),
    "mask batch": (lambda: (*good()[:2], good(batch=4)[2]), "mask have batch size 4"),
    "mask length": (lambda: (*good()[:2], good(seq_len=2)[2]), "mask have length 2"),
    "empty batch": (lambda: good(batch=0), "empty batch"),
    "no positions": (lambda: good(seq_len=0), "length 0"),
    "2-d emissions": (lambda: (good()[0][0], *good()[1:]), "3-d tensor"),
    "float mask": (lambda: (*good()[:2], good()[2].float()), "mask must be bool"),
    "float tags": (lambda: (good()[0], good()[1].float(), None), "integer tag indices"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_named(case):
    make, message = BAD[case]
    emissions, tags, mask = make()
    crf = CRF(NUM_TAGS, batch_first=True)
    with pytest.raises(InputError, match=re.escape(message)):
        crf(emissions, tags, mask)
    if "tag" not in case:  # the same checks guard decoding and the marginals
        for call in (crf.decode, crf.marginals, lambda e, m: crf.decode_nbest(e, m, k=2)):
            with pytest.raises(InputError, match=re.escape(message)):
                call(emissions, mask)


def test_padding_tags_are_ignored():
    crf = CRF(NUM_TAGS, batch_first=True)
    emissions, tags, _ = good()
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]).bool()
    padded = tags.masked_fill(~mask, -100)
    torch.testing.assert_close(crf(emissions, padded, mask), crf(emissions, tags, mask))


def test_gold_path_must_be_allowed():
    crf = CRF(NUM_TAGS, batch_first=True, constraints=allowed_transitions(SCHEMES["BIO"], "BIO"))
    emissions = torch.randn(2, 3, NUM_TAGS)
    with pytest.raises(InputError, match="sequence 1 moves 0 -> 2 at position 2"):
        crf(emissions, torch.tensor([[1, 2, 0], [0, 0, 2]]))
    with pytest.raises(InputError, match=r"sequence\(s\) \[0\] start with"):
        crf(emissions, torch.tensor([[2, 2, 0], [0, 0, 0]]))


def test_bad_arguments():
    for kwargs in ({"num_tags": 0}, {"num_tags": 2.0}, {"num_tags": True},
                   {"num_tags": 3, "batch_first": "yes"},
                   {"num_tags": 3, "constraints": allowed_transitions(["O", "B-X"], "BIO")}):
        with pytest.raises(InvalidConfigError):
            CRF(**kwargs)
    with pytest.raises(InvalidConfigError, match="'BIOES'"):
        allowed_transitions(["O"], "IOB9")
    with pytest.raises(InvalidConfigError, match="'X-PER' is not a BIO tag"):
        allowed_transitions(["O", "X-PER"], "BIO")
    crf = CRF(NUM_TAGS)
    emissions, tags, _ = good()
    with pytest.raises(InputError, match="reduction='avg'"):
        crf(emissions, tags, reduction="avg")
    with pytest.raises(InputError, match="k=0"):
        crf.decode_nbest(emissions, k=0)
    assert math.isfinite(crf(emissions, tags).item())
