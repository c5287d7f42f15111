"""CTC (Graves et al. 2006): characters, greedy decoding, the loss, the character error rate.

Label 0 is the blank. :class:`Alphabet` maps text to labels 1..N and back. Greedy decoding takes
the best label per frame, collapses repeats and drops blanks; the loss is PyTorch's
``F.ctc_loss``; the character error rate is torchaudio's edit distance over the reference length.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.shared.errors import InputError

BLANK = 0
LETTERS = "abcdefghijklmnopqrstuvwxyz"


class Alphabet:
    """Characters <-> CTC labels; label 0 is the blank, ``chars[i]`` is label ``i + 1``."""

    def __init__(self, chars: str = LETTERS):
        if len(set(chars)) != len(chars):
            raise InputError(f"Alphabet: repeated characters in {chars!r}")
        self.chars = chars
        self.index = {c: i + 1 for i, c in enumerate(chars)}

    @property
    def num_labels(self) -> int:
        """Outputs a CTC head needs: the characters and the blank."""
        return len(self.chars) + 1

    def encode(self, text: str) -> list[int]:
        unknown = sorted({c for c in text if c not in self.index})
        if unknown:
            raise InputError(f"{text!r} holds characters outside the alphabet: {unknown} (alphabet {self.chars!r})")
        return [self.index[c] for c in text]

    def decode(self, labels: Sequence[int]) -> str:
        return "".join(self.chars[i - 1] for i in labels if i != BLANK)


def greedy_decode(logits: Tensor, lengths: Tensor | None = None, blank: int = BLANK) -> list[list[int]]:
    """Best path of ``(batch, frames, labels)`` scores: per item, the frame-wise argmax over its
    first ``lengths`` frames, repeats collapsed, blanks dropped."""
    if logits.dim() != 3:
        raise InputError(f"greedy_decode expects (batch, frames, labels) scores, got {tuple(logits.shape)}")
    best = logits.argmax(dim=-1)
    frames = best.shape[1]
    lengths = lengths.tolist() if lengths is not None else [frames] * best.shape[0]
    out = []
    for path, n in zip(best.tolist(), lengths):
        path = path[:n]
        out.append([label for t, label in enumerate(path) if label != blank and (t == 0 or label != path[t - 1])])
    return out


def ctc_loss(logits: Tensor, lengths: Tensor, targets: Sequence[Sequence[int]], blank: int = BLANK) -> Tensor:
    """Mean over the batch of ``F.ctc_loss`` per item divided by its target length (PyTorch's
    ``reduction="mean"``); ``logits`` ``(batch, frames, labels)``, ``targets`` lists of labels."""
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (frames, batch, labels)
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    flat = torch.tensor([label for t in targets for label in t], dtype=torch.long)
    return F.ctc_loss(log_probs, flat, lengths.cpu(), target_lengths, blank=blank, reduction="mean",
                      zero_infinity=True)


def character_error_rate(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Total edit (Levenshtein) distance over the total reference length (torchaudio's edit_distance)."""
    import torchaudio.functional as AF

    errors = sum(AF.edit_distance(h, r) for h, r in zip(hypotheses, references, strict=True))
    return errors / max(sum(len(r) for r in references), 1)
