"""Reading audio files into waveforms a model takes, and batching them.

Files are read with ``soundfile`` (wav, flac, ogg, ... whatever libsndfile reads), mixed down to
mono and resampled with ``torchaudio.functional.resample`` to the rate the model declares. A file
that cannot be used — unreadable, empty, or a WAV whose data chunk ends before its header says — is
a :class:`~zoo.shared.errors.DatasetError` naming the file. :func:`load_clips` reads a whole list
and says (a ``UserWarning``) when files of other rates were resampled.

Batches of unequal lengths are padded with zeros and carry their lengths (:func:`pad_batch`);
:func:`lengths_to_mask` turns lengths into the ``(batch, time)`` boolean mask of valid samples.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from zoo.shared.errors import DatasetError, InputError


def _wav_truncation(path: Path) -> str | None:
    """Why a RIFF/WAVE file is cut short, or None. libsndfile reads a truncated WAV without a word
    (it returns the frames that are there), so the data chunk's declared size is checked here."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None  # not a plain RIFF WAV (RF64, W64, ...): libsndfile's checks only
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk, length = struct.unpack("<4sI", f.read(8))
            if chunk == b"data":
                if length == 0xFFFFFFFF:  # a stream written without knowing its length
                    return None
                missing = offset + 8 + length - size
                return (f"its data chunk declares {length} bytes but only {length - missing} are in the file"
                        if missing > 0 else None)
            offset += 8 + length + (length & 1)  # chunks are padded to an even size
        return "it has no data chunk"


def read_audio(path: str | os.PathLike) -> tuple[Tensor, int]:
    """``(waveform (channels, time) float32 in [-1, 1], sample_rate)`` of an audio file.

    Raises DatasetError naming the file when it is missing, unreadable, truncated or empty."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as exc:
        raise DatasetError(f"{path}: not a readable audio file ({exc}); re-encode it as wav/flac/ogg") from None
    if path.suffix.lower() == ".wav":
        problem = _wav_truncation(path)
        if problem:
            raise DatasetError(f"{path}: truncated audio file ({problem}); copy or record it again")
    if data.shape[0] == 0:
        raise DatasetError(f"{path}: empty audio file (0 samples); remove it from the data folder")
    return torch.from_numpy(data.T.copy()), int(rate)


def to_mono(waveform: Tensor) -> Tensor:
    """``(channels, time)`` -> ``(time,)``: the mean of the channels."""
    return waveform.mean(dim=0) if waveform.dim() == 2 else waveform


def resample(waveform: Tensor, rate: int, target: int) -> Tensor:
    """``waveform`` (``(..., time)``) from ``rate`` to ``target`` Hz (torchaudio's windowed sinc)."""
    if rate == target:
        return waveform
    import torchaudio.functional as AF

    return AF.resample(waveform, rate, target)


def load_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[Tensor, int]:
    """A file as a mono ``(time,)`` waveform at ``sample_rate`` (its own rate when None);
    returns the waveform and the rate the file had."""
    waveform, rate = read_audio(path)
    waveform = to_mono(waveform)
    return (resample(waveform, rate, sample_rate) if sample_rate else waveform), rate


def load_clips(paths: Sequence[str | os.PathLike], sample_rate: int) -> list[Tensor]:
    """Every file as a mono waveform at ``sample_rate``. When some files have another rate they are
    resampled and a UserWarning says how many, from which rates."""
    clips, rates = [], Counter()
    for path in paths:
        waveform, rate = load_audio(path, sample_rate)
        clips.append(waveform)
        rates[rate] += 1
    other = {r: n for r, n in rates.items() if r != sample_rate}
    if other:
        described = ", ".join(f"{n} at {r} Hz" for r, n in sorted(other.items()))
        warnings.warn(f"resampled {sum(other.values())} of {len(clips)} files to {sample_rate} Hz ({described})",
                      UserWarning, stacklevel=2)
    return clips


def fix_length(waveform: Tensor, length: int, offset: int = 0) -> Tensor:
    """``(..., time)`` cropped to ``length`` samples from ``offset``, or zero-padded at the end."""
    if length < 1:
        raise InputError(f"fix_length: length must be >= 1 sample, got {length}")
    time = waveform.shape[-1]
    if time >= length:
        offset = min(max(offset, 0), time - length)
        return waveform[..., offset:offset + length]
    return torch.nn.functional.pad(waveform, (0, length - time))


def pad_batch(clips: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """``(batch (N, T_max) zero-padded, lengths (N,))`` from 1-D waveforms of any lengths."""
    if not clips:
        raise InputError("pad_batch: no clips to batch")
    lengths = torch.tensor([c.shape[-1] for c in clips], dtype=torch.long)
    batch = clips[0].new_zeros(len(clips), int(lengths.max()))
    for i, clip in enumerate(clips):
        batch[i, : clip.shape[-1]] = clip
    return batch, lengths


def lengths_to_mask(lengths: Tensor, max_length: int | None = None) -> Tensor:
    """``(N, T)`` boolean mask, True at the valid (not padded) positions."""
    max_length = int(lengths.max()) if max_length is None else max_length
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]
