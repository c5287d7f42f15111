"""Front ends: waveform -> features, as modules inside the models (torchaudio's transforms).

A model takes waveforms at its declared sample rate, so a saved or exported model needs no
separate feature script (torchaudio is imported when a front end is built, so ``zoo list`` stays
light). The front ends hold torchaudio's transforms and add nothing to their
maths: :class:`LogMel` is ``MelSpectrogram`` then ``AmplitudeToDB``, :class:`MFCCFrontEnd` is
``MFCC``. :class:`SpecAugment` is torchaudio's ``FrequencyMasking`` / ``TimeMasking`` with a mask
drawn per example, applied in training only.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from zoo.shared.errors import InputError


def check_waveforms(x, name: str) -> Tensor:
    """``(batch, time)`` float waveforms (``(batch, 1, time)`` is squeezed), else a clear InputError."""
    if not isinstance(x, Tensor):
        raise InputError(f"{name} expects a waveform tensor (batch, time), got {type(x).__name__}")
    if x.dim() == 3 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != 2:
        raise InputError(f"{name} expects mono waveforms of shape (batch, time), got {tuple(x.shape)}; "
                         "mix channels down with x.mean(dim=1) and add a batch dimension with x[None]")
    if not x.is_floating_point():
        raise InputError(f"{name} expects float waveforms in [-1, 1], got {x.dtype}; "
                         "divide 16-bit samples by 32768")
    return x


def _real_device():
    """torchaudio computes its filter banks when built, which a meta device (used to count parameters
    without allocating them) cannot do: build those few buffers on the CPU then."""
    return torch.device("cpu") if torch.empty(0).is_meta else contextlib.nullcontext()


def frame_lengths(lengths: Tensor, hop_length: int, n_fft: int | None = None) -> Tensor:
    """STFT frames for ``lengths`` samples: centred (``n_fft`` None), or the frames whose whole
    window lies inside the samples (``center=False``; at least 1)."""
    if n_fft is None:
        return torch.div(lengths, hop_length, rounding_mode="floor") + 1
    return (torch.div(lengths - n_fft, hop_length, rounding_mode="floor") + 1).clamp(min=1)


class LogMel(nn.Module):
    """``(batch, time)`` -> ``(batch, n_mels, frames)`` log-mel power in dB (torchaudio transforms)."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int, win_length: int | None = None,
                 f_min: float = 0.0, f_max: float | None = None, top_db: float | None = 80.0, center: bool = True):
        import torchaudio.transforms as T

        super().__init__()
        self.hop_length, self.n_fft, self.center = hop_length, n_fft, center
        with _real_device():
            self.mel = T.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, win_length=win_length,
                                        hop_length=hop_length, f_min=f_min, f_max=f_max, n_mels=n_mels, power=2.0,
                                        center=center)
        self.to_db = T.AmplitudeToDB(stype="power", top_db=top_db)

    def forward(self, waveform: Tensor) -> Tensor:
        return self.to_db(self.mel(waveform))


class MFCCFrontEnd(nn.Module):
    """``(batch, time)`` -> ``(batch, n_mfcc, frames)`` with torchaudio's ``MFCC``."""

    def __init__(self, sample_rate: int, n_mfcc: int, n_fft: int, hop_length: int, n_mels: int):
        import torchaudio.transforms as T

        super().__init__()
        self.hop_length = hop_length
        with _real_device():
            self.mfcc = T.MFCC(sample_rate=sample_rate, n_mfcc=n_mfcc, log_mels=False,
                               melkwargs=dict(n_fft=n_fft, hop_length=hop_length, n_mels=n_mels))

    def forward(self, waveform: Tensor) -> Tensor:
        return self.mfcc(waveform)


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al. 2019) on ``(batch, freq, frames)``, training only.

    ``freq_masks`` masks of up to ``freq_width`` bins and ``time_masks`` of up to ``time_width``
    frames, each drawn per example (torchaudio's ``iid_masks``); masked values become
    ``mask_value`` (the features' floor for dB features is a sensible choice; default 0)."""

    def __init__(self, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2, time_width: int = 10):
        import torchaudio.transforms as T

        super().__init__()
        self.freq = nn.ModuleList(T.FrequencyMasking(freq_width, iid_masks=True) for _ in range(freq_masks))
        self.time = nn.ModuleList(T.TimeMasking(time_width, iid_masks=True) for _ in range(time_masks))

    def forward(self, spec: Tensor, mask_value: float | Tensor = 0.0) -> Tensor:
        if not self.training:
            return spec
        x = spec.unsqueeze(1)  # iid_masks needs (batch, channel, freq, time)
        for mask in [*self.freq, *self.time]:
            x = mask(x, mask_value)
        return x.squeeze(1)
