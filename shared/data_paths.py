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
    """The directory holding data set family ``name`` (e.g. ``"planetoid"``), by the rule above:
    ``explicit`` if given; else ``$ZOO_DATA/<name>`` or the cache's ``data/<name>``, whichever
    exists first; else the cache's, where a recipe that can download puts it."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    found = find_data_dir(name)
    return found if found is not None else cache_dir() / "data" / name


def find_data_dir(name: str) -> Path | None:
    """``$ZOO_DATA/<name>``, then ``$ZOO_CACHE/data/<name>``: the first that is a directory, or None."""
    places = [Path(os.environ["ZOO_DATA"]).expanduser() / name] if os.environ.get("ZOO_DATA") else []
    places.append(cache_dir() / "data" / name)
    return next((p for p in places if p.is_dir()), None)
