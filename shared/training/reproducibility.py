"""Seeding, deterministic mode, and RNG state capture for checkpoints.

RNG states are converted to tensors, ints, floats and lists so that a
checkpoint holding them loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False, *, warn_only: bool = True) -> None:
    """Seed python, numpy and torch (all devices); optionally make torch deterministic.

    ``deterministic=True`` turns on ``torch.use_deterministic_algorithms``. With
    ``warn_only=True`` (default) an op that has no deterministic implementation
    warns instead of raising, so models that need such an op (e.g. CUDA scatter
    in graph nets) still train; pass ``warn_only=False`` to make it an error.
    ``deterministic=False`` switches deterministic algorithms back off.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA / MPS device
    if deterministic:
        # cuBLAS needs a fixed workspace for reproducible GEMMs; it is read when the
        # cuBLAS handle is created, so set it before the first CUDA matmul.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = deterministic
    # Only touch the global switch when it changes: the first call imports torch's
    # compiler stack (a few seconds), which non-deterministic runs need not pay.
    if deterministic or torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def get_rng_state() -> dict:
    """Snapshot of every RNG this process uses, in ``weights_only``-loadable types."""
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore a snapshot made by :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:  # a different number of visible GPUs: restore the ones we can
            for i, s in enumerate(cuda_states[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(s, i)
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])
