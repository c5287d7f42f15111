"""nlp domain: the BiLSTM-CRF tagger and its text pieces (CoNLL reader, schemes, span metric,
vocabularies, CRF). Importing the package registers ``bilstm_crf`` and ``bilstm_cnn_crf``."""

from . import bilstm_crf  # noqa: F401  (importing registers the models)
from . import transformer  # noqa: F401  (registers transformer_base, _big, _small, _tiny)
from .bilstm_crf import BiLSTMCRF
from .crf import CRF

__all__ = ["BiLSTMCRF", "CRF"]
