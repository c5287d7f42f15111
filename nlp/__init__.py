"""nlp domain: the BiLSTM-CRF tagger and its text pieces (CoNLL reader, schemes, span metric,
vocabularies, CRF). Importing the package registers ``bilstm_crf`` and ``bilstm_cnn_crf``."""

from . import bilstm_crf  # noqa: F401  (importing registers the models)
from . import transformer  # noqa: F401  (registers transformer_base, _big, _small, _tiny)
from . import bert  # noqa: F401  (registers bert, bert_base_uncased, bert_large_uncased, bert_tiny, ...)
from . import gpt2  # noqa: F401  (registers gpt2, gpt2_medium, gpt2_large, gpt2_xl, gpt2_mini, gpt_char)
from .bilstm_crf import BiLSTMCRF
from .crf import CRF

__all__ = ["BiLSTMCRF", "CRF"]
