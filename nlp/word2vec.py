"""Word vectors pretrained on the tagger's own training text: skip-gram word2vec (Mikolov et al. 2013,
arXiv:1310.4546), trained by gensim, written in the word2vec text format that
``BiLSTMCRF.load_pretrained_vectors`` reads.

    path = train_word_vectors([s.words for s in train_sentences], "w2v.txt", dim=100, lowercase=True)
    coverage = tagger.load_pretrained_vectors(path)

The words are normalised as the tagger's vocabulary normalises them (digits to 0, lowercased with
``lowercase``), so every training word has a vector and no other text is read: the issue allows
pretraining on the unlabelled text of the training files, and nothing from eng.testa/testb enters.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from zoo.shared.atomic import atomic_open, make_dirs

from .vocab import normalize


def train_word_vectors(sentences: Iterable[Sequence[str]], path: str | PathLike, dim: int = 100, *,
                       lowercase: bool = False, zeros: bool = True, seed: int = 0, epochs: int = 20,
                       window: int = 5, negative: int = 10) -> Path:
    """Train skip-gram vectors (every word, however rare; one worker, so a seed gives the same
    vectors) and write them to ``path``; returns the path.

    The vectors are rescaled to a standard deviation of 1 over all their values: the scale of the
    ``nn.Embedding`` rows (N(0, 1)) they replace, so the recipe's learning rate and dropout meet the
    inputs they were chosen for. Rescaling all values by one factor keeps every cosine similarity.
    """
    try:
        from gensim.models import Word2Vec
    except ImportError as e:  # pragma: no cover - gensim is a dev dependency
        raise ImportError("pretraining word vectors needs gensim: pip install gensim") from e

    text = [[normalize(w, lowercase, zeros) for w in s] for s in sentences]
    text = [s for s in text if s]
    if not text:
        raise ValueError("train_word_vectors got no words: pass the training sentences as lists of words")
    model = Word2Vec(text, vector_size=dim, window=window, min_count=1, sg=1, negative=negative, epochs=epochs,
                     workers=1, seed=seed)
    vectors = model.wv.vectors.astype(np.float64)
    vectors /= vectors.std()
    path = Path(path)
    make_dirs(path.parent)
    lines = [f"{len(model.wv.index_to_key)} {dim}"]
    lines += [word + " " + " ".join(f"{v:.6f}" for v in vec) for word, vec in zip(model.wv.index_to_key, vectors)]
    with atomic_open(path) as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8"))
    return path
