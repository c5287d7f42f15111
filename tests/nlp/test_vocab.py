"""Vocabularies: built from training sentences only, digits to 0, min count, lowercase, PAD/UNK,
a JSON round trip, and clear errors for a saved vocabulary that does not match."""

import json

import pytest

from zoo.nlp.conll import Sentence, read_conll
from zoo.nlp.vocab import PAD, UNK, Vocab, build_vocabs, normalize
from zoo.shared.errors import DatasetError

TRAIN = [
    Sentence(["EU", "rejects", "German", "call"], ["B-ORG", "O", "B-MISC", "O"]),
    Sentence(["The", "eu", "said", "1996", "and", "1997"], ["O", "B-ORG", "O", "O", "O", "O"]),
    Sentence(["German", "said"], ["B-MISC", "O"]),
]


def test_normalize():
    assert normalize("Sept. 1996-08-22") == "Sept. 0000-00-00"
    assert normalize("Sept. 1996", lowercase=True) == "sept. 0000"
    assert normalize("A1", zeros=False) == "A1"


def test_word_vocabulary():
    words, chars, tags = build_vocabs(TRAIN)
    assert words.tokens[:2] == [PAD, UNK] and (words.pad_index, words.unk_index) == (0, 1)
    # most frequent first, ties alphabetical; 1996 and 1997 are one word after normalising
    assert words.tokens[2:5] == ["0000", "German", "said"]
    assert words.counts[2:5] == [2, 2, 2]
    assert "EU" in words and "eu" in words and "2001" in words and "Berlin" not in words
    assert words.encode(["German", "2001", "Berlin"]) == [3, 2, 1]
    assert words.decode(words.encode(["said", "German"])) == ["said", "German"]
    assert sorted(words.decode(words.singletons())) == ["EU", "The", "and", "call", "eu", "rejects"]


def test_min_count_and_lowercase():
    words, _, _ = build_vocabs(TRAIN, min_count=2, lowercase=True)
    assert words.tokens == [PAD, UNK, "0000", "eu", "german", "said"]
    assert words.index("EU") == words.index("Eu") == 3 and words.index("rejects") == words.unk_index


def test_char_and_tag_vocabularies():
    _, chars, tags = build_vocabs(TRAIN, lowercase=True)
    assert chars.tokens[:5] == [PAD, UNK, "0", "a", "e"]  # 8 digits, all 0; a and e 6 times each
    assert "E" in chars and "0" in chars and "9" in chars  # case kept, digits become 0
    assert chars.encode("9") == chars.encode("0") and chars.index("Q") == chars.unk_index
    assert tags.tokens == ["B-MISC", "B-ORG", "O"] and tags.encode(["O", "B-ORG"]) == [2, 1]
    with pytest.raises(DatasetError, match="'I-PER' is not in the tag vocabulary"):
        tags.index("I-PER")


def test_extend_adds_only_new_words():
    words, _, _ = build_vocabs(TRAIN, lowercase=True)
    n = len(words)
    assert words.extend(["Berlin", "german", "BERLIN", "2002"]) == 1  # german and 0000 exist already
    assert len(words) == n + 1 and words.index("berlin") == n and words.counts[-1] == 0


def test_save_and_load_round_trip(tmp_path):
    for vocab in build_vocabs(TRAIN, min_count=1, lowercase=True):
        path = tmp_path / f"{vocab.kind}.json"
        vocab.save(path)
        loaded = Vocab.load(path, kind=vocab.kind, size=len(vocab), fingerprint=vocab.fingerprint)
        assert loaded == vocab and loaded.fingerprint == vocab.fingerprint
        sample = {"word": ["GERMAN", "Berlin", "1999"], "char": "Gé9", "tag": vocab.tokens}[vocab.kind]
        assert loaded.encode(sample) == vocab.encode(sample)  # settings (lowercase, zeros) came back too


def test_fingerprint_tells_settings_apart():
    cased = Vocab.build(["eu", "said"])
    again = Vocab.build(["eu", "said"])
    lower = Vocab.build(["eu", "said"], lowercase=True)  # the same tokens, but "EU" now reads as "eu"
    assert cased.tokens == lower.tokens and cased.index("EU") != lower.index("EU")
    assert cased.fingerprint == again.fingerprint != lower.fingerprint


def test_mismatched_saved_vocabulary(tmp_path):
    words, chars, _ = build_vocabs(TRAIN)
    path = tmp_path / "words.json"
    words.save(path)
    with pytest.raises(DatasetError, match=r"kind 'word', expected 'char'"):
        Vocab.load(path, kind="char")
    with pytest.raises(DatasetError, match=rf"size {len(words)}, expected 100"):
        Vocab.load(path, size=100)
    with pytest.raises(DatasetError, match="fingerprint"):
        Vocab.load(path, fingerprint=chars.fingerprint)
    state = json.loads(path.read_text())
    state["tokens"][2], state["tokens"][3] = state["tokens"][3], state["tokens"][2]  # edited by hand
    path.write_text(json.dumps(state))
    with pytest.raises(DatasetError, match="changed after saving"):
        Vocab.load(path)


@pytest.mark.parametrize(
    "content,message",
    [
        ("{not json", "cannot read a vocabulary"),
        ('["a", "b"]', "not a zoo vocabulary of format 1"),
        ('{"format": 2, "kind": "word"}', "format 2"),
        ('{"format": 1, "kind": "word", "tokens": []}', "lacks the field 'lowercase'"),
        ('{"format": 1, "kind": "word", "tokens": ["a", "b"], "lowercase": false, "zeros": true}', "starts with"),
        ('{"format": 1, "kind": "tag", "tokens": ["O", "O"], "lowercase": false, "zeros": true}', "more than once"),
        ('{"format": 1, "kind": "bpe", "tokens": [], "lowercase": false, "zeros": true}', "kind 'bpe'"),
    ],
)
def test_bad_vocabulary_files(tmp_path, content, message):
    path = tmp_path / "v.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message) as info:
        Vocab.load(path)
    assert str(path) in str(info.value)
    with pytest.raises(DatasetError, match="cannot read"):
        Vocab.load(tmp_path / "absent.json")


def test_real_training_vocabulary_excludes_test_words(shared_data):
    root = shared_data / "conll2003"
    if not (root / "eng.train").is_file():
        pytest.skip(f"CoNLL-2003 files are absent from {root}")
    train, testb = read_conll(root / "eng.train"), read_conll(root / "eng.testb")
    words, chars, tags = build_vocabs(train)
    train_words = {normalize(w) for s in train for w in s.words}
    assert set(words.tokens[2:]) == train_words
    test_only = {normalize(w) for s in testb for w in s.words} - train_words
    assert test_only and not any(w in words for w in test_only)  # nothing from the test file entered
    assert tags.tokens == sorted({t for s in train for t in s.tags}) and len(tags) == 9
