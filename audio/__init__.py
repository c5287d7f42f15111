"""Audio domain: waveform-in models with torchaudio front ends, wav2vec 2.0, CTC, FSDD recipes.

Importing the package registers ``mel_cnn`` and ``m5`` (spoken-word classifiers),
``wav2vec2_base``, ``wav2vec2_large`` and ``wav2vec2_large_lv60k`` (torchaudio's layout, Hugging
Face's through a key map) and ``mel_ctc`` (a small CTC recogniser). Audio files are read with
``soundfile`` (:mod:`zoo.audio.io`); spectrograms, resampling and masking are torchaudio's.
"""

from . import classifiers, recognizers, wav2vec2  # noqa: F401  (register the models)
from .classifiers import M5, MelCNN
from .ctc import Alphabet, character_error_rate, ctc_loss, greedy_decode
from .frontends import LogMel, MFCCFrontEnd, SpecAugment
from .io import fix_length, lengths_to_mask, load_audio, load_clips, pad_batch, read_audio
from .recognizers import MelCTC
from .wav2vec2 import Wav2Vec2, config_from_hf, from_hf_state_dict, from_huggingface, to_hf_state_dict

__all__ = ["M5", "MelCNN", "MelCTC", "Wav2Vec2", "LogMel", "MFCCFrontEnd", "SpecAugment", "Alphabet",
           "greedy_decode", "ctc_loss", "character_error_rate", "read_audio", "load_audio", "load_clips",
           "fix_length", "pad_batch", "lengths_to_mask", "config_from_hf", "from_hf_state_dict",
           "to_hf_state_dict", "from_huggingface"]
