"""Device selection and mixed precision (``torch.amp`` only).

Rules for ``TrainConfig.amp``:

- ``"auto"``: float16 autocast + ``GradScaler`` on CUDA; off on CPU and MPS.
- ``True``: on CUDA float16 + ``GradScaler``; on CPU bfloat16 (CPU autocast is
  bf16-native and needs no scaler); on MPS float16.
- ``False``: full precision.
- ``amp_dtype`` (or a dtype name given as ``amp``) picks the dtype. A loss scaler
  is used only for float16 on CUDA; bfloat16 has float32's range and needs none.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from .config import AMP_DTYPES


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda > mps > cpu. Under torchrun, CUDA means ``cuda:LOCAL_RANK``."""
    spec = str(spec)
    if spec == "auto":
        if torch.cuda.is_available():
            spec = "cuda"
        elif torch.backends.mps.is_available():
            spec = "mps"
        else:
            spec = "cpu"
    device = torch.device(spec)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


@dataclass(frozen=True)
class AmpSettings:
    enabled: bool
    dtype: torch.dtype | None  # autocast dtype when enabled
    use_scaler: bool  # float16 on CUDA: scale the loss to avoid gradient underflow

    def autocast(self, device: torch.device):
        """Autocast context for the forward pass (a no-op context when disabled)."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.amp.autocast(device_type=device.type, dtype=self.dtype)


def resolve_amp(amp: bool | str, amp_dtype: str | None, device: torch.device) -> AmpSettings:
    """Turn the config's ``amp`` / ``amp_dtype`` into concrete settings for ``device``."""
    if isinstance(amp, str) and amp in AMP_DTYPES:  # amp="bf16" means amp=True, amp_dtype="bf16"
        amp, amp_dtype = True, amp_dtype or amp
    if amp == "auto":
        enabled = device.type == "cuda"
    elif isinstance(amp, bool):
        enabled = amp
    else:
        raise ValueError(f"amp must be a bool, 'auto' or one of {sorted(AMP_DTYPES)}, got {amp!r}")
    if not enabled:
        return AmpSettings(False, None, False)

    if amp_dtype is not None:
        if amp_dtype not in AMP_DTYPES:
            raise ValueError(f"amp_dtype must be one of {sorted(AMP_DTYPES)}, got {amp_dtype!r}")
        dtype = getattr(torch, AMP_DTYPES[amp_dtype])
    else:
        dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    return AmpSettings(True, dtype, use_scaler=(dtype == torch.float16 and device.type == "cuda"))


def make_grad_scaler(settings: AmpSettings, device: torch.device) -> torch.amp.GradScaler | None:
    """A ``torch.amp.GradScaler`` when the settings need one, else ``None``."""
    return torch.amp.GradScaler(device.type) if settings.use_scaler else None
