"""nlp domain: the BiLSTM-CRF tagger and its text pieces (CoNLL reader, schemes, span metric,
vocabularies, CRF), the encoder-decoder Transformer with beam search, BERT and GPT-2 in Hugging
Face's layouts (``nlp.hf`` reads their folders and tokenizers). Importing the package registers
the models; the recipes are ``nlp.train`` (tagger), ``nlp.train_g2p`` and ``nlp.train_gpt``."""

from . import bilstm_crf  # noqa: F401  (importing registers the models)
from . import transformer  # noqa: F401  (registers transformer_base, _big, _small, _tiny)
from . import bert  # noqa: F401  (registers bert, bert_base_uncased, bert_large_uncased, bert_tiny, ...)
from . import gpt2  # noqa: F401  (registers gpt2, gpt2_medium, gpt2_large, gpt2_xl, gpt2_mini, gpt_char)
from .bilstm_crf import BiLSTMCRF
from .crf import CRF

__all__ = ["BiLSTMCRF", "CRF"]
