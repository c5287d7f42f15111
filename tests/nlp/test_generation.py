"""generate(): cached equals uncached, greedy equals transformers' generate (single and left-padded
batches, EOS), a left-padded prompt continues as it would alone, the sampling filters keep what
they should, sampling is reproducible with a generator, and bad arguments are clear errors."""

import pytest
import torch

from zoo.nlp.generation import KVCache, filter_logits, generate, lookup_draft
from zoo.nlp.gpt2 import gpt2, hf_key_map
from zoo.nlp.hf import gpt2_config_from_hf
from zoo.shared.errors import InputError

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=61, n_embd=32, n_layer=2, n_head=4, n_positions=48,
                                     bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.3)
    ref = transformers.GPT2LMHeadModel(config).eval()
    ours = gpt2(**gpt2_config_from_hf(config.to_dict())).eval()
    ours.load_state_dict(hf_key_map(ref.state_dict()), strict=True)
    return ref, ours


def prompts():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(3, 61, (3, 7), generator=g)
    mask = torch.ones_like(x)
    mask[1, :3] = 0
    mask[2, :5] = 0
    return x.masked_fill(mask == 0, 0), mask


def test_greedy_equals_transformers_generate(models):
    ref, ours = models
    x, mask = prompts()
    for ids, m in ((x[:1], None), (x, mask)):
        expected = ref.generate(ids, attention_mask=m if m is not None else torch.ones_like(ids), max_new_tokens=20,
                                do_sample=False, eos_token_id=None, pad_token_id=0)
        assert torch.equal(generate(ours, ids, m, max_new_tokens=20), expected)


def test_greedy_with_eos_equals_transformers_generate(models):
    ref, ours = models
    x, mask = prompts()
    # the EOS id: a token that greedy decoding actually produces in one of the rows
    free = generate(ours, x, mask, max_new_tokens=12)
    eos = int(free[1, 7 + 3])
    expected = ref.generate(x, attention_mask=mask, max_new_tokens=12, do_sample=False, eos_token_id=eos,
                            pad_token_id=0)
    got = generate(ours, x, mask, max_new_tokens=12, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(got, expected)
    assert (got[1, 7 + 4:] == 0).all()  # padded after its EOS


@pytest.mark.parametrize("sample", [False, True])
def test_cache_gives_the_same_tokens_as_recomputation(models, sample):
    _, ours = models
    x, mask = prompts()
    kw = dict(max_new_tokens=25, do_sample=sample, temperature=0.8, top_k=20, top_p=0.9)
    cached = generate(ours, x, mask, use_cache=True, generator=torch.Generator().manual_seed(5), **kw)
    plain = generate(ours, x, mask, use_cache=False, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(cached, plain)


def test_cached_logits_equal_full_forward(models):
    _, ours = models
    x, _ = prompts()
    cache = ours.new_cache(3, 7)
    with torch.no_grad():
        first = ours(x[:, :4], cache=cache)
        rest = ours(x[:, 4:], cache=cache)  # several new tokens at once over a filled cache
        full = ours(x)
    torch.testing.assert_close(torch.cat([first, rest], 1), full, atol=1e-5, rtol=0)
    assert cache.length == 7


def test_left_padded_rows_continue_as_alone(models):
    _, ours = models
    x, mask = prompts()
    batched = generate(ours, x, mask, max_new_tokens=15)
    for row, pads in ((1, 3), (2, 5)):
        alone = generate(ours, x[row:row + 1, pads:], max_new_tokens=15)
        assert torch.equal(batched[row, 7:], alone[0, 7 - pads:])


def test_sampling_is_reproducible_and_varies(models):
    _, ours = models
    x, _ = prompts()
    a = generate(ours, x[:1], max_new_tokens=30, do_sample=True, generator=torch.Generator().manual_seed(1))
    b = generate(ours, x[:1], max_new_tokens=30, do_sample=True, generator=torch.Generator().manual_seed(1))
    c = generate(ours, x[:1], max_new_tokens=30, do_sample=True, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # top_k=1 sampling is greedy
    greedy = generate(ours, x[:1], max_new_tokens=30)
    assert torch.equal(generate(ours, x[:1], max_new_tokens=30, do_sample=True, top_k=1), greedy)


def test_filters_keep_what_they_should():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 3.0]])
    kept = filter_logits(logits, top_k=2).isfinite()
    assert kept.tolist() == [[True, False, False, False, True]]
    probs = logits.softmax(-1)[0]  # sorted: 4 (0.64), 0 (0.24), 1 (0.09), ...
    kept = filter_logits(logits, top_p=0.7).isfinite()[0]
    assert kept.tolist() == [True, False, False, False, True] and probs[[4, 0]].sum() >= 0.7 > probs[4]
    assert filter_logits(logits, top_p=0.5).isfinite()[0].tolist() == [False, False, False, False, True]
    torch.testing.assert_close(filter_logits(logits, temperature=0.5), logits * 2)
    # against transformers' own warpers
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    scores = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    for ours_, theirs in ((filter_logits(scores, top_k=7), TopKLogitsWarper(7)(None, scores.clone())),
                          (filter_logits(scores, top_p=0.8), TopPLogitsWarper(0.8)(None, scores.clone()))):
        assert torch.equal(ours_.isfinite(), theirs.isfinite())


def test_max_new_tokens_and_stop_at_eos(models):
    _, ours = models
    x, _ = prompts()
    assert generate(ours, x, max_new_tokens=0).shape == (3, 7)
    assert generate(ours, x, max_new_tokens=5).shape == (3, 12)
    first = int(generate(ours, x[:1], max_new_tokens=1)[0, -1])
    out = generate(ours, x[:1], max_new_tokens=10, eos_token_id=first)
    assert out.shape == (1, 8)  # stopped at once: every sequence is done


def test_bad_arguments_are_clear_errors(models):
    _, ours = models
    x, mask = prompts()
    with pytest.raises(InputError, match="pad prompts on the LEFT"):
        generate(ours, x, mask.flip(1))
    with pytest.raises(InputError, match="position table"):
        generate(ours, x, max_new_tokens=42)
    with pytest.raises(InputError, match="top_p"):
        generate(ours, x, do_sample=True, top_p=1.5)
    with pytest.raises(InputError, match="temperature"):
        generate(ours, x, do_sample=True, temperature=0.0)
    with pytest.raises(InputError, match="do not fit"):
        cache = KVCache(2, 1, 4, 3, 8)
        with torch.no_grad():
            ours(x[:1, :4], cache=cache)


def _counting_forwards(model):
    calls = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[1]))
    return calls, handle


@pytest.mark.parametrize("num_tokens", [1, 3, 8])
def test_prompt_lookup_gives_greedys_tokens_in_fewer_forwards(models, num_tokens):
    _, ours = models
    x, mask = prompts()

    def drafted(ids, m):
        calls, handle = _counting_forwards(ours)
        try:
            out = generate(ours, ids, m, max_new_tokens=40, prompt_lookup_num_tokens=num_tokens)
        finally:
            handle.remove()
        assert torch.equal(out, generate(ours, ids, m, max_new_tokens=40))
        return calls

    alone = []
    for row in range(3):  # the random model repeats itself: accepted drafts, so 40 tokens take fewer forwards
        calls = drafted(x[row:row + 1, mask[row] == 1], None)
        assert max(calls[1:]) == num_tokens + 1 and len(calls) < 40  # drafts were tried at full width
        alone.append(len(calls))
    # left-padded together, each row keeps what greedy confirms of its own draft (the others' rejected
    # drafts leave holes in its cache, masked, then compacted away): the slowest row sets the count
    assert len(drafted(x, mask)) == max(alone)


def test_cache_compaction_keeps_each_rows_positions_in_order():
    cache = KVCache(1, 2, 1, 6, 1)
    keys = torch.tensor([[1.0, 2, 3, 4, 5], [11, 12, 13, 14, 15]]).reshape(2, 1, 5, 1)
    cache.update(0, keys, -keys)
    cache.advance(5)
    valid = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 1, 0, 0, 1, 0]], dtype=torch.bool)
    valid = cache.compact(valid)
    assert cache.length == 3  # the longest row's three positions
    assert valid.tolist() == [[True, True, True, False, False, False], [False, True, True, False, False, False]]
    assert cache.keys[0, 0, 0, :3, 0].tolist() == [1, 3, 4] and cache.keys[0, 1, 0, 1:3, 0].tolist() == [12, 15]
    assert cache.values[0, 0, 0, :3, 0].tolist() == [-1, -3, -4]
    assert cache.values[0, 1, 0, 1:3, 0].tolist() == [-12, -15]


def test_prompt_lookup_stops_at_eos_as_greedy_does(models):
    ref, ours = models
    x, mask = prompts()
    free = generate(ours, x, mask, max_new_tokens=30)
    for eos in (int(free[1, 7 + 3]), int(free[0, 7 + 20])):
        greedy = generate(ours, x, mask, max_new_tokens=30, eos_token_id=eos, pad_token_id=0)
        drafted = generate(ours, x, mask, max_new_tokens=30, eos_token_id=eos, pad_token_id=0,
                           prompt_lookup_num_tokens=4)
        assert torch.equal(drafted, greedy)
        expected = ref.generate(x, attention_mask=mask, max_new_tokens=30, do_sample=False, eos_token_id=eos,
                                pad_token_id=0)
        assert torch.equal(drafted, expected)
    # drafts copy earlier text, so an EOS inside accepted drafts needs an EOS token in the prompt: the
    # prompts here run into greedy's own output, and every token of it is tried as the EOS; generation
    # must stop at the EOS, not at the end of the accepted drafts
    unpadded = torch.randint(3, 61, (3, 7), generator=torch.Generator().manual_seed(3))
    for row in (unpadded[:1], unpadded[2:]):
        prompt = generate(ours, row, max_new_tokens=12)
        for eos in generate(ours, prompt, max_new_tokens=25)[0].unique().tolist():
            greedy = generate(ours, prompt, max_new_tokens=25, eos_token_id=eos)
            assert torch.equal(generate(ours, prompt, max_new_tokens=25, eos_token_id=eos, prompt_lookup_num_tokens=4),
                               greedy)


def test_lookup_draft_copies_what_followed_the_last_ngram():
    t = torch.tensor
    # "5 6" occurred at the start: the three tokens after it
    assert lookup_draft(t([5, 6, 7, 5, 6]), 3).tolist() == [7, 5, 6]
    # the longest n-gram wins: "2 3" points at 9, where the 1-gram "3" alone would also find 4
    assert lookup_draft(t([2, 3, 9, 3, 4, 2, 3]), 1).tolist() == [9]
    # the latest occurrence with a full draft after it; else the earliest (the longest draft)
    assert lookup_draft(t([1, 8, 1, 9, 1]), 1).tolist() == [9]
    assert lookup_draft(t([1, 8, 1, 9, 1]), 3).tolist() == [8, 1, 9]
    assert lookup_draft(t([1, 2, 3, 4]), 3) is None and lookup_draft(t([7]), 3) is None


def test_prompt_lookup_bad_arguments(models):
    _, ours = models
    x, _ = prompts()
    with pytest.raises(InputError, match="greedy"):
        generate(ours, x, do_sample=True, prompt_lookup_num_tokens=3)
    with pytest.raises(InputError, match="use_cache=True"):
        generate(ours, x, use_cache=False, prompt_lookup_num_tokens=3)
    with pytest.raises(InputError, match=">= 1"):
        generate(ours, x, prompt_lookup_num_tokens=0)
