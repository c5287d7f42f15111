"""The Free Spoken Digit Dataset (github.com/Jakobovski/free-spoken-digit-dataset): files, splits,
datasets with waveform augmentation.

Recordings are ``{digit}_{speaker}_{index}.wav`` at 8 kHz, 50 per digit and speaker. The official
split puts indexes 0-4 in the test set and 5-49 in training; validation here is indexes 5-9 (so
train is 10-49), the same shape as the test set and disjoint from it. The speaker-held-out split
tests on every recording of one speaker and trains on the others (validation: their indexes 0-4).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from zoo.shared.errors import DatasetError

from .io import fix_length, load_clips

SAMPLE_RATE = 8000
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NAME = re.compile(r"(\d)_([A-Za-z]+)_(\d+)\.wav")


@dataclass(frozen=True)
class Recording:
    path: Path
    digit: int
    speaker: str
    index: int

    @property
    def word(self) -> str:
        return WORDS[self.digit]


def list_recordings(folder: str | Path) -> list[Recording]:
    """Every ``{digit}_{speaker}_{index}.wav`` in ``folder`` (sorted); a DatasetError when the folder
    is missing, holds none, or holds a .wav named otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder; pass --data DIR holding FSDD's recordings "
                           "({digit}_{speaker}_{index}.wav), or set $ZOO_DATA so that $ZOO_DATA/fsdd holds them")
    recordings = []
    for path in sorted(folder.glob("*.wav")):
        found = _NAME.fullmatch(path.name)
        if not found:
            raise DatasetError(f"{path}: not an FSDD file name ({{digit}}_{{speaker}}_{{index}}.wav); "
                               "move it out of the data folder")
        recordings.append(Recording(path, int(found.group(1)), found.group(2), int(found.group(3))))
    if not recordings:
        raise DatasetError(f"{folder}: no .wav recordings; FSDD's are in the 'recordings' folder of the repository")
    return recordings


def official_split(recordings: Sequence[Recording]) -> dict[str, list[Recording]]:
    """test: indexes 0-4; val: 5-9; train: 10-49 (FSDD's train set is 5-49, validation carved from it)."""
    return {"train": [r for r in recordings if r.index >= 10],
            "val": [r for r in recordings if 5 <= r.index < 10],
            "test": [r for r in recordings if r.index < 5]}


def speaker_split(recordings: Sequence[Recording], held_out: str) -> dict[str, list[Recording]]:
    """test: every recording of ``held_out``; val: the other speakers' indexes 0-4; train: the rest."""
    speakers = sorted({r.speaker for r in recordings})
    if held_out not in speakers:
        raise DatasetError(f"speaker {held_out!r} is not in the data (speakers: {', '.join(speakers)})")
    others = [r for r in recordings if r.speaker != held_out]
    return {"train": [r for r in others if r.index >= 5], "val": [r for r in others if r.index < 5],
            "test": [r for r in recordings if r.speaker == held_out]}


@dataclass
class Augment:
    """Waveform augmentation for training: random gain (dB), random placement in the window (time
    shift), background noise mixed at a random SNR (white noise, or clips from ``noise``)."""

    gain_db: float = 6.0  # uniform in [-gain_db, +gain_db]
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (10.0, 40.0)
    noise: Sequence[Tensor] = ()

    def __call__(self, clip: Tensor, length: int) -> Tensor:
        spare = length - clip.shape[-1]
        offset = int(torch.randint(0, abs(spare) + 1, ()))
        x = torch.nn.functional.pad(clip, (offset, spare - offset)) if spare >= 0 else clip[offset:offset + length]
        x = x * 10 ** (float(torch.empty(()).uniform_(-self.gain_db, self.gain_db)) / 20)
        if float(torch.rand(())) < self.noise_prob:
            noise = self._noise(length)
            snr = float(torch.empty(()).uniform_(*self.snr_db))
            signal = x.square().mean().clamp(min=1e-10)
            x = x + noise * torch.sqrt(signal / (noise.square().mean().clamp(min=1e-10) * 10 ** (snr / 10)))
        return x

    def _noise(self, length: int) -> Tensor:
        if not self.noise:
            return torch.randn(length)
        clip = self.noise[int(torch.randint(len(self.noise), ()))]
        if clip.shape[-1] < length:
            clip = clip.repeat(math.ceil(length / clip.shape[-1]))
        start = int(torch.randint(clip.shape[-1] - length + 1, ()))
        return clip[start:start + length]


class DigitClips(Dataset):
    """``(waveform (length,), digit)`` pairs, or ``(waveform (time,), word)`` with ``fixed=False`` (CTC).

    With ``augment`` each item is drawn afresh (from torch's global RNG, which the Trainer seeds and
    checkpoints); without, a clip is cropped or zero-padded at the end to ``length``."""

    def __init__(self, recordings: Sequence[Recording], length: int | None = SAMPLE_RATE,
                 augment: Augment | None = None, sample_rate: int = SAMPLE_RATE, clips: Sequence[Tensor] | None = None):
        self.recordings = list(recordings)
        self.clips = list(clips) if clips is not None else load_clips([r.path for r in self.recordings], sample_rate)
        self.length, self.augment = length, augment

    def __len__(self) -> int:
        return len(self.recordings)

    def __getitem__(self, i: int):
        clip, rec = self.clips[i], self.recordings[i]
        length = self.length or clip.shape[-1]
        x = self.augment(clip, length) if self.augment is not None else fix_length(clip, length)
        return (x, rec.digit) if self.length else (x, rec.word)
