"""Audio classifiers that take waveforms: a log-mel CNN and M5.

``mel_cnn``: log-mel spectrogram (torchaudio ``MelSpectrogram`` + ``AmplitudeToDB``), each
utterance normalised to zero mean and unit variance, SpecAugment in training, then stages of
3x3 convolution, batch norm, ReLU and 2x2 max pooling, global average + max pooling and a linear
classifier.

``m5``: Dai, Dai, Qu, Li & Das, "Very Deep Convolutional Neural Networks for Raw Waveforms",
ICASSP 2017 (arXiv:1610.00087). Raw samples at 8 kHz -> a wide first convolution (80 samples,
stride 4: a 10 ms receptive field) -> four conv/BN/ReLU/max-pool(4) stages (128, 128, 256, 512
channels) -> global average pooling -> linear.

Both take ``(batch, time)`` waveforms at ``sample_rate`` and return ``(batch, num_classes)`` logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from zoo.shared.registry import TestSpec, Variant, register_model

from .frontends import LogMel, SpecAugment, check_waveforms


class MelCNN(nn.Module):
    def __init__(self, sample_rate: int = 8000, num_classes: int = 10, n_mels: int = 40, n_fft: int = 256,
                 win_length: int = 200, hop_length: int = 80, channels: tuple[int, ...] = (16, 32, 64, 128),
                 dropout: float = 0.2, freq_masks: int = 2, freq_width: int = 6, time_masks: int = 2,
                 time_width: int = 8):
        super().__init__()
        self.sample_rate, self.num_classes = sample_rate, num_classes
        self.frontend = LogMel(sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length,
                               n_mels=n_mels)
        self.specaugment = SpecAugment(freq_masks, freq_width, time_masks, time_width)
        stages, cin = [], 1
        for i, cout in enumerate(channels):
            stages += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if i < len(channels) - 1:
                stages.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*stages)
        self.num_features = cin
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(cin, num_classes) if num_classes > 0 else nn.Identity()

    def spectrogram(self, waveform: Tensor) -> Tensor:
        """``(batch, n_mels, frames)``: log-mel in dB, each utterance standardised."""
        spec = self.frontend(waveform)
        mean = spec.mean(dim=(1, 2), keepdim=True)
        std = spec.std(dim=(1, 2), keepdim=True)
        return (spec - mean) / (std + 1e-5)

    def forward_features(self, waveform: Tensor) -> Tensor:
        x = self.spectrogram(check_waveforms(waveform, "mel_cnn"))
        x = self.specaugment(x)  # identity in eval mode
        return self.features(x.unsqueeze(1))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x.mean(dim=(2, 3)) + x.amax(dim=(2, 3))
        x = self.dropout(x)
        return x if pre_logits else self.classifier(x)

    def forward(self, waveform: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(waveform))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


class M5(nn.Module):
    def __init__(self, sample_rate: int = 8000, num_classes: int = 10,
                 channels: tuple[int, ...] = (128, 128, 256, 512), first_kernel: int = 80, first_stride: int = 4,
                 pool: int = 4, dropout: float = 0.0):
        super().__init__()
        self.sample_rate, self.num_classes = sample_rate, num_classes
        layers, cin = [], 1
        for i, cout in enumerate(channels):
            kernel, stride = (first_kernel, first_stride) if i == 0 else (3, 1)
            layers += [nn.Conv1d(cin, cout, kernel, stride=stride), nn.BatchNorm1d(cout), nn.ReLU(inplace=True),
                       nn.MaxPool1d(pool)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.num_features = cin
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(cin, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, waveform: Tensor) -> Tensor:
        return self.features(check_waveforms(waveform, "m5").unsqueeze(1))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(x.mean(dim=-1))
        return x if pre_logits else self.classifier(x)

    def forward(self, waveform: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(waveform))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


def waveform_test_spec(config: dict, seconds: float = 0.5) -> TestSpec:
    """The registry suite's spec for a waveform classifier: random waveforms of ``seconds`` at the
    config's sample rate, logits of shape (batch, num_classes)."""

    def inputs(cfg: dict, batch: int) -> tuple:
        return (0.1 * torch.randn(batch, int(seconds * cfg["sample_rate"])),)

    return TestSpec(config=config, inputs=inputs, output_shape=lambda cfg, batch: (batch, cfg["num_classes"]))


@dataclass(frozen=True, kw_only=True)
class MelCNNVariant(Variant):
    sample_rate: int = 8000
    num_classes: int = 10
    n_mels: int = 40
    channels: tuple[int, ...] = (16, 32, 64, 128)


@dataclass(frozen=True, kw_only=True)
class M5Variant(Variant):
    sample_rate: int = 8000
    num_classes: int = 10
    channels: tuple[int, ...] = (128, 128, 256, 512)


WAVEFORM_INPUTS = "waveform (batch, time) float in [-1, 1] at the config's sample_rate"
_TINY = dict(sample_rate=8000, num_classes=5)

register_model(
    "mel_cnn", MelCNN, MelCNNVariant().config(), domain="audio", task="audio-classification",
    paper="log-mel CNN with SpecAugment (Park et al. 2019, arXiv:1904.08779)", inputs=WAVEFORM_INPUTS,
    classifier="classifier", test=waveform_test_spec({**_TINY, "n_mels": 16, "channels": [4, 8]}),
)
register_model(
    "m5", M5, M5Variant(paper="Dai et al. 2017, Very Deep CNNs for Raw Waveforms (arXiv:1610.00087)").config(),
    domain="audio", task="audio-classification",
    paper="Dai et al. 2017, Very Deep Convolutional Neural Networks for Raw Waveforms (arXiv:1610.00087)",
    inputs=WAVEFORM_INPUTS, classifier="classifier", test=waveform_test_spec({**_TINY, "channels": [4, 4, 8, 8]}),
)
