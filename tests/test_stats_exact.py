"""raq's exact Wilcoxon signed-rank p-value gives scipy's ``method="auto"`` value, also where
scipy runs its slow sign-flip permutation test (ties or zeros among at most 13 differences)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from raq.stats import wilcoxon_p


def scipy_p(d: np.ndarray) -> float:
    return float(stats.wilcoxon(d, zero_method="wilcox", method="auto").pvalue)


def cases(count: int, max_n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    found = []
    while len(found) < count:
        n = int(rng.integers(1, max_n + 1))
        d = [rng.integers(-2, 3, n).astype(float), rng.integers(-3, 4, n) / 2.0,
             np.round(rng.normal(size=n), 1)][len(found) % 3]
        if np.any(d != 0):
            found.append(d)
    return found


@pytest.mark.parametrize("d", cases(40, 9, seed=1), ids=lambda d: " ".join(f"{v:g}" for v in d))
def test_the_same_p_value_as_scipy(d: np.ndarray) -> None:
    assert wilcoxon_p(d) == scipy_p(d)


@pytest.mark.parametrize("d", [np.array([1, -1, 2, 0, 1, -2, 1, 1, -1, 2, 1, 1], float),  # ties and a zero
                               np.arange(1.0, 14.0),  # 13 distinct: scipy's exact distribution
                               np.array([0.5] * 7 + [-0.5] * 7),  # 14 with ties: the normal approximation
                               np.array([-1.0] * 6)])  # one model always ranked better
def test_the_boundaries_of_the_exact_test(d: np.ndarray) -> None:
    assert wilcoxon_p(d) == pytest.approx(scipy_p(d), rel=1e-12, abs=0)


def test_ranks_of_three_models_over_twelve_questions_are_fast() -> None:
    import time

    d = np.random.default_rng(3).integers(-2, 3, 12).astype(float)
    start = time.perf_counter()
    for _ in range(20):
        wilcoxon_p(d)
    assert time.perf_counter() - start < 1.0  # scipy takes about a second for one
