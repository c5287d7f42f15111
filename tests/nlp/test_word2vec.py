"""Skip-gram vectors pretrained on the training text: every normalised training word, the embedding
scale, one seed one file, and a file the tagger's reader takes."""

import numpy as np
import pytest

from zoo.nlp.bilstm_crf import read_word_vectors
from zoo.nlp.vocab import Vocab

pytest.importorskip("gensim", reason="pretraining word vectors needs gensim (a dev dependency)")

from zoo.nlp.word2vec import train_word_vectors  # noqa: E402

SENTENCES = [["EU", "rejects", "German", "call", "in", "1996"], ["Peter", "Blackburn", "said", "eu", "call"],
             ["German", "lamb", "in", "Brussels", "on", "22-08-1996"]] * 20


def _read(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0], {line.split(" ")[0]: np.array(line.split(" ")[1:], dtype=float) for line in lines[1:]}


def test_every_normalised_training_word_gets_a_vector_at_the_embeddings_scale(tmp_path):
    path = train_word_vectors(SENTENCES, tmp_path / "sub" / "w2v.txt", dim=8, lowercase=True, seed=0)
    header, vectors = _read(path)
    expected = {"eu", "rejects", "german", "call", "in", "0000", "peter", "blackburn", "said", "lamb", "brussels",
                "on", "00-00-0000"}  # lowercased, digits to 0, as the vocabulary writes them
    assert header == f"{len(expected)} 8" and set(vectors) == expected
    values = np.stack(list(vectors.values()))
    assert values.std() == pytest.approx(1.0, abs=1e-4)  # nn.Embedding's N(0, 1) scale


def test_case_is_kept_without_lowercase_and_the_seed_fixes_the_file(tmp_path):
    a = train_word_vectors(SENTENCES, tmp_path / "a.txt", dim=8, seed=3)
    b = train_word_vectors(SENTENCES, tmp_path / "b.txt", dim=8, seed=3)
    c = train_word_vectors(SENTENCES, tmp_path / "c.txt", dim=8, seed=4)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert {"EU", "eu", "German"} <= set(_read(a)[1])


def test_the_tagger_reads_the_file_for_its_vocabulary(tmp_path):
    path = train_word_vectors(SENTENCES, tmp_path / "w2v.txt", dim=8, lowercase=True)
    vocab = Vocab.build([w for s in SENTENCES for w in s], "word", lowercase=True)
    rows, coverage = read_word_vectors(path, vocab, 8)
    assert coverage == 1.0
    np.testing.assert_allclose(rows[vocab.index("German")].numpy(), _read(path)[1]["german"], atol=1e-6)


def test_no_words_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no words"):
        train_word_vectors([[], []], tmp_path / "w2v.txt")
