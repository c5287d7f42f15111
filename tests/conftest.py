import os
from pathlib import Path

import pytest

# Tests never reach a network: hub lookups stay in the local cache.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it lies beside the checkout in CI)")
    return SHARED_DATA


@pytest.fixture
def zoo_cache(tmp_path, monkeypatch) -> Path:
    """An empty zoo weight cache, offline."""
    cache = tmp_path / "zoo-cache"
    monkeypatch.setenv("ZOO_CACHE", str(cache))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return cache
