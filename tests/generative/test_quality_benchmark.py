"""The quality benchmark's Fréchet distance against the textbook formula with scipy's matrix square root."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

scipy_linalg = pytest.importorskip("scipy.linalg")
_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "generative_quality.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("generative_quality", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_frechet_distance_equals_the_formula_with_a_matrix_square_root():
    fd = _benchmark().frechet_distance
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 0.5
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy_linalg.sqrtm(cov_a @ cov_b).real  # the non-symmetric product's root, the textbook way
    textbook = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)
    assert fd(a, b) == pytest.approx(textbook, rel=1e-8)
    assert fd(a, b) == pytest.approx(fd(b, a), rel=1e-8)
    assert fd(a, a) == pytest.approx(0, abs=1e-8)
    assert fd(a, a + 2.0) == pytest.approx(4.0 * 6, rel=1e-8)  # a shift adds only its squared length
