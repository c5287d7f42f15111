"""A small CTC speech recogniser: log-mel -> 2-D convolutions -> dilated 1-D convolutions -> characters.

``mel_ctc``: log-mel spectrogram (torchaudio; uncentred frames, so a frame never reads padding),
each utterance standardised over its valid frames,
SpecAugment in training, two 3x3 conv/BN/ReLU blocks (the first halves frequency and time, the
second frequency), a linear projection of each frame, residual blocks of dilated 1-D convolution
over time (dilations 1, 2, 4, 8, ...: a receptive field of a whole word), layer norm and ReLU, and a
linear layer over the CTC labels (blank + characters, :class:`zoo.audio.ctc.Alphabet`). Padded
frames are zeroed after every block, as the convolution's own zero padding would be, so an item of
a padded batch gets the output it gets alone. Trained with
``F.ctc_loss`` and read with greedy decoding: a small, fully convolutional relative of Deep
Speech 2 (Amodei et al. 2016, arXiv:1512.02595) and Wav2Letter (Collobert et al. 2016,
arXiv:1609.03193); convolutions instead of a recurrent layer because they train several times
faster on a CPU.

``model(waveforms, lengths=None) -> (logits (batch, frames, num_classes), frame lengths)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.shared.errors import InputError
from zoo.shared.registry import Range, TestSpec, register_model

from .frontends import LogMel, SpecAugment, check_waveforms, frame_lengths
from .io import lengths_to_mask


class TemporalBlock(nn.Module):
    """``x + dropout(relu(norm(conv(x))))`` with a dilated convolution over time."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=dilation * (kernel_size - 1) // 2, dilation=dilation)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:  # x (batch, dim, frames), valid (batch, 1, frames)
        y = self.norm(self.conv(x).transpose(1, 2)).transpose(1, 2)
        return (x + self.dropout(torch.relu(y))) * valid


class MelCTC(nn.Module):
    def __init__(self, sample_rate: int = 8000, num_classes: int = 27, n_mels: int = 40, n_fft: int = 256,
                 win_length: int = 200, hop_length: int = 80, channels: int = 32, hidden_dim: int = 96,
                 dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2), kernel_size: int = 5, dropout: float = 0.1, freq_masks: int = 2, freq_width: int = 6,
                 time_masks: int = 2, time_width: int = 6):
        super().__init__()
        self.sample_rate, self.num_classes = sample_rate, num_classes
        self.frontend = LogMel(sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length, n_mels=n_mels,
                               top_db=None, center=False)
        self.specaugment = SpecAugment(freq_masks, freq_width, time_masks, time_width)
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True))
        freq = (n_mels + 1) // 2
        freq = (freq + 1) // 2
        self.proj = nn.Linear(channels * freq, hidden_dim)
        self.blocks = nn.ModuleList(TemporalBlock(hidden_dim, kernel_size, d, dropout) for d in dilations)
        self.classifier = nn.Linear(hidden_dim, num_classes)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Frames out for ``lengths`` samples in: STFT frames, then the stride-2 convolution."""
        frames = frame_lengths(lengths, self.frontend.hop_length, self.frontend.n_fft)
        return torch.div(frames - 1, 2, rounding_mode="floor") + 1

    def forward(self, waveforms: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        waveforms = check_waveforms(waveforms, "mel_ctc")
        if lengths is None:
            lengths = torch.full(waveforms.shape[:1], waveforms.shape[1], dtype=torch.long, device=waveforms.device)
        elif not isinstance(lengths, Tensor) or lengths.shape != waveforms.shape[:1]:
            raise InputError(f"mel_ctc: lengths must be a tensor of shape ({waveforms.shape[0]},), "
                             f"got {getattr(lengths, 'shape', type(lengths).__name__)}")
        spec = self.frontend(waveforms)  # (batch, n_mels, frames)
        frames = frame_lengths(lengths, self.frontend.hop_length, self.frontend.n_fft).clamp(max=spec.shape[-1])
        valid = lengths_to_mask(frames, spec.shape[-1])[:, None, :].to(spec.dtype)
        count = valid.sum(dim=(1, 2), keepdim=True) * spec.shape[1]
        mean = (spec * valid).sum(dim=(1, 2), keepdim=True) / count
        std = (((spec - mean) * valid).square().sum(dim=(1, 2), keepdim=True) / count).sqrt()
        spec = ((spec - mean) / (std + 1e-5)) * valid  # padded frames: 0
        x = self.specaugment(spec).unsqueeze(1)
        x = self.conv[:3](x)  # halves time: frame j reads frames 2j-1 .. 2j+1
        out_lengths = self.output_lengths(lengths).clamp(min=1, max=x.shape[-1])
        valid = lengths_to_mask(out_lengths, x.shape[-1])[:, None, None, :].to(x.dtype)
        x = self.conv[3:](x * valid) * valid  # (batch, channels, freq', frames')
        x = self.proj(x.flatten(1, 2).transpose(1, 2))  # (batch, frames', hidden)
        valid = valid[:, :, 0]
        x = x.transpose(1, 2) * valid  # (batch, hidden, frames)
        for block in self.blocks:
            x = block(x, valid)
        return self.classifier(x.transpose(1, 2)), out_lengths

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh output layer over ``num_classes`` CTC labels (blank included)."""
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.classifier.in_features, num_classes)


def _ctc_test_spec() -> TestSpec:
    def inputs(cfg: dict, batch: int) -> tuple:
        return (0.1 * torch.randn(batch, 4000),)

    # 4000 samples, window 256, hop 80 -> 47 frames -> 24 after the stride-2 convolution
    return TestSpec(config=dict(num_classes=6, n_mels=16, channels=4, hidden_dim=8, dilations=[1, 2]),
                    inputs=inputs, output_shape=lambda cfg, batch: (batch, 24, cfg["num_classes"]))


register_model(
    "mel_ctc", MelCTC, dict(sample_rate=8000, num_classes=27), ranges={"num_classes": Range(2, note="(blank + labels)")}, domain="audio", task="speech-recognition (ctc)",
    paper="CTC (Graves et al. 2006) over a small convolutional acoustic model (after Deep Speech 2, "
          "arXiv:1512.02595, and Wav2Letter, arXiv:1609.03193)",
    inputs="waveform (batch, time) at 8 kHz, optional lengths (batch,)", classifier="classifier",
    test=_ctc_test_spec(),
)
