"""The BiLSTM-CRF tagger beyond the registry suite: vocabularies saved with the weights, tagging raw
tokens, the wrong-vocabulary error, packing, scheme constraints and pretrained word vectors."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import zoo
from zoo.nlp.bilstm_crf import CASES, encode_batch, padded_bilstm, vocab_config
from zoo.nlp.conll import Sentence
from zoo.nlp.vocab import build_vocabs

TRAIN = [
    Sentence("EU rejects German call to boycott British lamb .".split(),
             ["S-ORG", "O", "S-MISC", "O", "O", "O", "S-MISC", "O", "O"]),
    Sentence("Peter Blackburn".split(), ["B-PER", "E-PER"]),
    Sentence("BRUSSELS 1996-08-22".split(), ["S-LOC", "O"]),
    Sentence("The European Commission said on Thursday".split(),
             ["O", "B-ORG", "E-ORG", "O", "O", "O"]),
    Sentence("Germany 's representative to the European Union".split(),
             ["S-LOC", "O", "O", "O", "O", "B-ORG", "E-ORG"]),
]
SMALL = dict(word_dim=8, char_dim=4, char_hidden_dim=3, hidden_dim=6)


def make(name="bilstm_crf", sentences=TRAIN, **kw):
    words, chars, tags = build_vocabs(sentences)
    torch.manual_seed(0)
    return zoo.create(name, num_words=len(words), num_chars=len(chars), num_tags=len(tags),
                      vocab=vocab_config(words, chars, tags), **{**SMALL, **kw})


@pytest.mark.parametrize("name", ["bilstm_crf", "bilstm_cnn_crf"])
def test_save_load_round_trip_keeps_the_vocabularies_and_tags_raw_text(name, tmp_path):
    model = make(name).eval()
    zoo.save_pretrained(model, tmp_path / "tagger")
    again = zoo.from_pretrained(tmp_path / "tagger")
    for kind in ("words", "chars", "tags"):
        assert again.vocabs[kind].tokens == model.vocabs[kind].tokens
    sentences = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn", "unseen-word"], []]
    tagged, expected = again.tag(sentences), model.tag(sentences)
    assert tagged == expected
    assert [t.tokens for t in tagged] == [list(s) for s in sentences]
    assert [len(t.tags) for t in tagged] == [4, 3, 0]
    assert all(tag in model.vocabs["tags"].tokens for t in tagged for tag in t.tags)
    for t in tagged:  # the entities are the spans of the tags, with their text
        for type_, start, end, text in t.entities:
            assert text == " ".join(t.tokens[start:end]) and t.tags[start][2:] == type_
    assert again.training  # tag() restores the mode it found


def test_tag_reads_the_entities_of_the_decoded_tags(monkeypatch):
    model = make()
    tags = model.vocabs["tags"]
    path = tags.encode(["S-ORG", "O", "B-PER", "E-PER"])
    monkeypatch.setattr(model, "decode", lambda *a: [path])
    (out,) = model.tag([["EU", "rejects", "Peter", "Blackburn"]])
    assert out.tags == ["S-ORG", "O", "B-PER", "E-PER"]
    assert out.entities == [("ORG", 0, 1, "EU"), ("PER", 2, 4, "Peter Blackburn")]


def test_weights_loaded_with_another_vocabulary_are_an_error(tmp_path):
    model = make()
    zoo.save_pretrained(model, tmp_path / "tagger")
    vocab = vocab_config(*build_vocabs(TRAIN))
    tokens = vocab["words"]["tokens"]
    tokens[2], tokens[3] = tokens[3], tokens[2]
    vocab["words"].pop("fingerprint")  # the same words and size, in another order
    with pytest.raises(zoo.CheckpointError, match="other words vocabularies"):
        zoo.create("bilstm_crf", pretrained=tmp_path / "tagger", vocab=vocab)
    with pytest.raises(zoo.CheckpointError, match="words, chars, tags"):  # weights without vocabularies
        zoo.create("bilstm_crf", pretrained=tmp_path / "tagger", vocab=None)


def test_a_vocabulary_that_disagrees_with_the_sizes_is_a_config_error():
    words, chars, tags = build_vocabs(TRAIN)
    with pytest.raises(zoo.InvalidConfigError, match="num_words"):
        zoo.create("bilstm_crf", num_words=len(words) + 1, num_chars=len(chars), num_tags=len(tags),
                   vocab=vocab_config(words, chars, tags))


def test_tag_without_vocabularies_says_why():
    with pytest.raises(zoo.InputError, match="no vocabularies"):
        zoo.create("bilstm_crf", num_words=10, **SMALL).tag([["a"]])


@pytest.mark.parametrize("name", ["bilstm_crf", "bilstm_cnn_crf"])
def test_packed_batch_equals_each_sentence_alone_unpadded(name):
    model = make(name).eval()
    sentences = [s.words for s in TRAIN]
    words, chars, mask = model.encode(sentences)
    with torch.no_grad():
        batch = model(words, chars, mask)
        for i, sent in enumerate(sentences):
            alone = model(*encode_batch([sent], model.vocabs["words"], model.vocabs["chars"]))
            # alone: no padding at all, neither of words nor (for its longest word) of characters
            assert alone.shape[1] == len(sent)
            torch.testing.assert_close(batch[i, : len(sent)], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("groups", [1, 3])
def test_padded_bilstm_equals_the_packed_lstm_outputs_final_states_and_gradients(groups):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(5, 4, batch_first=True, bidirectional=True).double()
    lengths = torch.tensor([6, 1, 3, 4, 2])
    x = torch.randn(5, 6, 5, dtype=torch.double)
    x[torch.arange(6) >= lengths[:, None]] = 7.0  # loud padding: must never reach a real step
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, (h, _) = lstm(packed)
    out = pad_packed_sequence(out, batch_first=True, total_length=6)[0]
    expected_grads = torch.autograd.grad((out * out).sum() + h.sum(), list(lstm.parameters()))
    ours, final = padded_bilstm(lstm, x, lengths, groups=groups)
    torch.testing.assert_close(ours, out, atol=1e-12, rtol=0)
    torch.testing.assert_close(final, torch.cat([h[0], h[1]], dim=-1), atol=1e-12, rtol=0)
    grads = torch.autograd.grad((ours * ours).sum() + final.sum(), list(lstm.parameters()))
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, atol=1e-10, rtol=0)


def test_char_lstm_encodes_each_distinct_word_once_with_the_same_result():
    encoder = make("bilstm_crf").char_encoder.double()
    chars = torch.tensor([[3, 4, 5, 0], [6, 0, 0, 0], [3, 4, 5, 0], [7, 8, 9, 10], [6, 0, 0, 0]])
    torch.testing.assert_close(encoder(chars), encoder.encode(chars), atol=1e-12, rtol=0)
    calls = []
    encoder.lstm.register_forward_pre_hook(lambda *_: calls.append(1))  # only the packed path calls it
    assert torch.equal(encoder(chars)[0], encoder(chars)[2]) and not calls


def _violations(tags: list[str], scheme: str) -> int:
    """Transitions the scheme forbids: I-X (E-X) not after B-X / I-X; in BIOES also an open B-X /
    I-X that is not continued (and a sentence ending inside one)."""
    prev, bad = "O", 0
    for tag in tags:
        if tag[:2] in ("I-", "E-") and (prev[:2] not in ("B-", "I-") or prev[2:] != tag[2:]):
            bad += 1
        if scheme == "BIOES" and prev[:2] in ("B-", "I-") and not (tag[:2] in ("I-", "E-")
                                                                 and tag[2:] == prev[2:]):
            bad += 1
        prev = tag
    return bad + (scheme == "BIOES" and prev[:2] in ("B-", "I-"))


@pytest.mark.parametrize("scheme", ["IOB2", "BIOES"])
def test_constrained_decoding_never_continues_an_entity_that_was_not_opened(scheme):
    from zoo.nlp.conll import convert

    sentences = [Sentence(s.words, convert(s.tags, scheme, "BIOES")) for s in TRAIN]
    found = {}
    for constrained in (True, False):
        model = make(sentences=sentences, constrained=constrained).eval()
        tag_names = model.vocabs["tags"].tokens
        with torch.no_grad():  # transitions that favour O -> I-X, B-X -> O and I-X first
            for i, name in enumerate(tag_names):
                for j, nxt in enumerate(tag_names):
                    model.crf.transitions[i, j] = 3.0 if (name == "O") != (nxt == "O") else -3.0
                model.crf.start_transitions[i] = 3.0 if name[:2] in ("I-", "E-") else 0.0
        words = "EU rejects German call to boycott British lamb".split()
        tagged = model.tag([words[: 1 + k % 8] for k in range(16)])
        found[constrained] = sum(_violations(t.tags, scheme) for t in tagged)
    assert found[False] > 0  # without constraints these transitions do produce O -> I-X
    assert found[True] == 0


def test_pretrained_vectors_match_case_insensitively_and_report_coverage(tmp_path):
    model = make(word_dim=3)
    path = tmp_path / "vectors.txt"
    path.write_text("2 3\nEU 7 8 9\nrejects 4 5 6\neu 1 2 3\nzzz 0 0 0\n", encoding="utf-8")
    words = model.vocabs["words"]
    before = model.word_embed.weight.detach().clone()
    coverage = model.load_pretrained_vectors(path)
    weight = model.word_embed.weight.detach()
    assert weight[words.index("EU")].tolist() == [7, 8, 9]  # the exact case wins over lowercase
    assert weight[words.index("rejects")].tolist() == [4, 5, 6]
    assert torch.equal(weight[words.index("German")], before[words.index("German")])  # not covered
    assert coverage == pytest.approx(2 / (len(words) - 2))


def test_lowercase_fallback_of_pretrained_vectors(tmp_path):
    model = make(word_dim=2)
    path = tmp_path / "glove.txt"
    path.write_text("german 1 2\n", encoding="utf-8")
    model.load_pretrained_vectors(path)
    assert model.word_embed.weight[model.vocabs["words"].index("German")].tolist() == [1, 2]


def test_loss_is_the_negative_log_likelihood_and_decode_gives_each_sentence_its_length():
    model = make().eval()
    words, chars, mask = model.encode([s.words for s in TRAIN])
    tags = torch.zeros_like(words)
    for i, s in enumerate(TRAIN):
        tags[i, : len(s)] = torch.tensor(model.vocabs["tags"].encode(s.tags))
    llh = model(words, chars, mask, tags)
    assert llh.shape == (len(TRAIN),) and (llh < 0).all()
    torch.testing.assert_close(model.loss(words, chars, mask, tags), -llh.sum())
    assert [len(p) for p in model.decode(words, chars, mask)] == [len(s) for s in TRAIN]


def test_casing_feature_reads_each_word_shape_off_its_characters(tmp_path):
    sentences = [Sentence("the EU German iPhone 1996 . McDonald F-16 0-0".split(), ["O"] * 9)]
    model = make(sentences=sentences, case_dim=3)
    words, chars, mask = model.encode([sentences[0].words, ["the"]])
    names = [[CASES[i] for i in row] for row in model.casing(chars, mask).tolist()]
    assert names[0] == ["lower", "upper", "title", "mixed", "numeric", "other", "title", "upper", "numeric"]
    assert names[1] == ["lower"] + ["pad"] * 8
    # the feature reaches the emissions, and only through the word's case
    base = model.eval().features(words, chars, mask)
    with torch.no_grad():
        model.case_embed.weight[CASES.index("title")] += 1.0
    moved = (model.features(words, chars, mask) - base).abs().sum(-1)[0] > 0
    assert moved.all()  # the BiLSTM carries a Title word's change to every position
    zoo.save_pretrained(model, tmp_path / "tagger")
    again = zoo.from_pretrained(tmp_path / "tagger").eval()
    assert torch.equal(again.features(words, chars, mask), model.features(words, chars, mask))


def test_variational_dropout_keeps_one_mask_per_sentence():
    from zoo.nlp.bilstm_crf import LockedDropout

    drop = LockedDropout(0.5).train()
    torch.manual_seed(0)
    out = drop(torch.ones(4, 7, 50))
    assert set(out.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - p)
    assert torch.equal(out, out[:, :1].expand_as(out))  # the same features dropped at every step
    assert not torch.equal(out[0], out[1])  # each sentence its own mask
    assert torch.equal(drop.eval()(out), out)
    model = make(variational_dropout=True).train()
    assert isinstance(model.dropout, LockedDropout)
    words, chars, mask = model.encode([["EU", "rejects", "German", "call"]])
    torch.manual_seed(1)
    outside = model.vocabs["tags"].encode(["O"] * 4)
    model(words, chars, mask, torch.tensor([outside])).sum().backward()
    assert model.word_embed.weight.grad.abs().sum() > 0
