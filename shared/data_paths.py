"""Where recipes find their data: one rule for every domain.

``--data`` / ``--data-dir`` (an explicit path) first, then ``$ZOO_DATA/<name>``, then the zoo
cache ``$ZOO_CACHE/data/<name>`` (``~/.cache/zoo/data/<name>``), where a recipe downloads data
when it can. Nothing is looked up relative to this repository.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The zoo's cache: ``$ZOO_CACHE`` or ``~/.cache/zoo``."""
    return Path(os.environ.get("ZOO_CACHE") or Path.home() / ".cache" / "zoo")


def data_root(name: str, explicit: str | os.PathLike | None = None) -> Path:
    """The directory holding data set family ``name`` (e.g. ``"planetoid"``), by the rule above."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    if os.environ.get("ZOO_DATA"):
        return Path(os.environ["ZOO_DATA"]).expanduser() / name
    return cache_dir() / "data" / name
