"""Power and sample size of RAQ rank studies, by simulation.

Per-question rankings of k models are drawn from a Plackett-Luce model: model i has a worth
w_i and a ranking picks the best, then the next best among the rest, ..., each with probability
proportional to worth (sampled by the Gumbel trick: order log w_i + Gumbel noise). Its pairwise
marginals are Bradley-Terry, P(i before j) = w_i / (w_i + w_j), so the expected rank of i is
exactly 1 + sum_{j != i} w_j / (w_i + w_j) for any k; :func:`fit_worths` solves that for the worths.

Simulated studies are reduced to rank sums (and, for Wilcoxon, counts of each rank difference)
and every test is computed in closed form, vectorised over studies, as :mod:`raq.stats` does it
(Holm over all pairs, so "any pair" means m * min p < alpha; Wilcoxon by its tie-corrected normal
approximation, as scipy for n > 13). One seed draws questions in the same order, so a study of n
questions is the start of any longer one with that seed and ``n_sim``: power curves are smooth in n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["TESTS", "fit_worths", "expected_mean_ranks", "sample_rankings", "friedman_chi2", "kruskal_h",
           "simulate_power", "plan_sample_size", "study_power", "null_rejection_rates", "format_plan"]

TESTS = ("friedman", "kruskal", "nemenyi_any", "dunn_holm_any", "wilcoxon_holm_any")
TEST_NAMES = {"friedman": "Friedman", "kruskal": "Kruskal-Wallis", "nemenyi_any": "Nemenyi (any pair)",
              "dunn_holm_any": "Dunn-Holm (any pair)", "wilcoxon_holm_any": "Wilcoxon-Holm (any pair)"}
_DRAWS_PER_BLOCK = 1_000_000  # Gumbel draws held in memory at once


def _check_mean_ranks(mean_ranks: Sequence[float], tol: float = 0.1, shrink: float = 0.0) -> np.ndarray:
    """Validated mean ranks, shifted to sum to k(k+1)/2 when within ``tol`` of it.

    With ``shrink`` > 0, mean ranks on the boundary (e.g. a model always first) are pulled that
    fraction towards the centre (k+1)/2 instead of refused.
    """
    t = np.asarray(mean_ranks, dtype=float)
    if t.ndim != 1 or t.size < 2 or not np.all(np.isfinite(t)):
        raise ValueError(f"mean ranks must be a flat sequence of at least 2 finite numbers, got {mean_ranks!r}")
    k, total = t.size, t.size * (t.size + 1) / 2
    if abs(t.sum() - total) > tol:
        raise ValueError(f"mean ranks sum to {t.sum():.4g}, but ranks 1..{k} of every question sum to {total:g} "
                         f"(a rounding gap up to {tol} is corrected, this one is not)")
    t = t + (total - t.sum()) / k
    if t.min() < 1 - 1e-9 or t.max() > k + 1e-9:
        raise ValueError(f"mean ranks must lie in [1, {k}] for {k} models, got {np.round(t, 4).tolist()}")
    s = np.arange(1, k)
    gap = np.cumsum(np.sort(t))[:-1] - s * (s + 1) / 2  # the s best models can at best take ranks 1..s
    if shrink > 0 and -1e-9 < gap.min() <= 1e-9:
        return (k + 1) / 2 + (1 - shrink) * (t - (k + 1) / 2)
    if gap.min() <= 1e-9:
        i = int(np.argmin(gap))
        raise ValueError(f"mean ranks {np.round(t, 4).tolist()} are not reachable with finite worths: the best "
                         f"{s[i]} model(s) average ranks summing to {gap[i] + s[i] * (s[i] + 1) / 2:.4g}, but even "
                         f"ranks 1..{s[i]} in every question only reach {s[i] * (s[i] + 1) // 2}")
    return t


def expected_mean_ranks(worths: Sequence[float]) -> np.ndarray:
    """Exact expected rank of each model under Plackett-Luce: 1 + sum_{j != i} w_j / (w_i + w_j)."""
    w = np.asarray(worths, dtype=float)
    return 0.5 + (w[None, :] / (w[:, None] + w[None, :])).sum(axis=1)


def fit_worths(mean_ranks: Sequence[float], tol: float = 0.1) -> np.ndarray:
    """Plackett-Luce worths (geometric mean 1) whose exact expected mean ranks are ``mean_ranks``.

    Mean ranks must lie in [1, k] and sum to k(k+1)/2; a gap up to ``tol`` (rounding: the
    reference study's 1.81 + 2.05 + 2.1 = 5.96) is closed by adding the same constant to each,
    which keeps their differences; a larger gap, a value outside [1, k], or ranks no finite
    worths reach (e.g. mean rank exactly 1) raise ValueError. Solved by damped Newton steps.
    """
    t = _check_mean_ranks(mean_ranks, tol)
    theta = np.zeros(t.size)

    def resid(th: np.ndarray) -> np.ndarray:
        return expected_mean_ranks(np.exp(th)) - t

    r = resid(theta)
    for _ in range(200):
        if np.abs(r).max() < 1e-12:
            break
        p = 1 / (1 + np.exp(theta[:, None] - theta[None, :]))  # P(j before i)
        g = p * (1 - p)
        step = np.linalg.lstsq(g - np.diag(g.sum(axis=1)), -r, rcond=None)[0]
        a = 1.0
        while a > 1e-6 and np.linalg.norm(resid(theta + a * step)) >= np.linalg.norm(r):
            a /= 2
        theta = theta + a * step
        theta -= theta.mean()
        r = resid(theta)
    return np.exp(theta)


def _ranks(log_w: np.ndarray, rng: np.random.Generator, n_questions: int, n_sim: int) -> np.ndarray:
    """Plackett-Luce ranks (1 = best), shape (n_questions, n_sim, k), questions drawn in order."""
    score = log_w + rng.gumbel(size=(n_questions, n_sim, log_w.size))
    return np.argsort(np.argsort(-score, axis=-1), axis=-1) + 1


def sample_rankings(worths: Sequence[float], n_questions: int, n_sim: int = 1, seed: int | None = None) -> np.ndarray:
    """``n_sim`` simulated studies of ``n_questions`` rankings: int array (n_sim, n_questions, k)."""
    return _ranks(np.log(np.asarray(worths, float)), np.random.default_rng(seed), n_questions, n_sim).swapaxes(0, 1)


def friedman_chi2(rank_sums: np.ndarray, n: int) -> np.ndarray:
    """Friedman chi2 from per-model rank sums (..., k) of n questions ranked without ties."""
    r = np.asarray(rank_sums, float)
    k = r.shape[-1]
    return 12 / (n * k * (k + 1)) * (r**2).sum(axis=-1) - 3 * n * (k + 1)


def kruskal_h(rank_sums: np.ndarray, n: int) -> np.ndarray:
    """Tie-corrected Kruskal-Wallis H of the pooled ranks (each rank value occurs n times)."""
    r = np.asarray(rank_sums, float)
    k = r.shape[-1]
    big_n = n * k
    mean_mid = r - n + (n + 1) / 2  # mean pooled mid-rank: rank value v has mid-rank (v - 1) n + (n + 1) / 2
    h = 12 / (big_n * (big_n + 1)) * n * (mean_mid**2).sum(axis=-1) - 3 * (big_n + 1)
    return h / (1 - k * (n**3 - n) / (big_n**3 - big_n))


def _wilcoxon_p(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Two-sided tie-corrected normal-approximation Wilcoxon p from counts of d = +v / -v, v = 1..k-1."""
    c = pos + neg
    n = c.sum(axis=-1)
    mid = np.cumsum(c, axis=-1) - c + (c + 1) / 2  # mid-rank of |d| = v
    t_plus = (pos * mid).sum(axis=-1)
    var = (n * (n + 1) * (2 * n + 1) - (c**3 - c).sum(axis=-1) / 2) / 24
    return 2 * stats.norm.sf(np.abs(t_plus - n * (n + 1) / 4) / np.sqrt(var))


def _simulate(worths: np.ndarray, n: int, tests: Sequence[str], alpha: float, n_sim: int,
              seed: int) -> dict[str, float]:
    """Rejection rates of ``tests`` over ``n_sim`` simulated studies of ``n`` questions."""
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n_questions must be an integer >= 2, got {n!r}")
    if not 0 < alpha < 1 or n_sim < 1:
        raise ValueError(f"need 0 < alpha < 1 and n_sim >= 1, got alpha={alpha!r}, n_sim={n_sim!r}")
    bad = [t for t in tests if t not in TESTS]
    if bad:
        raise ValueError(f"unknown test(s) {bad}; choose from {list(TESTS)}")
    log_w, k = np.log(worths), len(worths)
    pairs = np.array(list(combinations(range(k), 2)))
    m = len(pairs)
    rng = np.random.default_rng(seed)
    sums = np.zeros((n_sim, k))
    pos = np.zeros((n_sim, m, k - 1))
    neg = np.zeros((n_sim, m, k - 1))
    block = max(1, _DRAWS_PER_BLOCK // (n_sim * k))
    for start in range(0, n, block):
        r = _ranks(log_w, rng, min(block, n - start), n_sim)
        sums += r.sum(axis=0)
        if "wilcoxon_holm_any" in tests:
            d = r[..., pairs[:, 0]] - r[..., pairs[:, 1]]  # (b, n_sim, m)
            for v in range(1, k):
                pos[..., v - 1] += (d == v).sum(axis=0)
                neg[..., v - 1] += (d == -v).sum(axis=0)
    spread = sums.max(axis=1) - sums.min(axis=1)  # largest |R_i - R_j|
    out: dict[str, Any] = {}
    for test in tests:
        if test == "friedman":
            rej = stats.chi2.sf(friedman_chi2(sums, n), k - 1) < alpha
        elif test == "kruskal":
            rej = stats.chi2.sf(kruskal_h(sums, n), k - 1) < alpha
        elif test == "nemenyi_any":
            q = spread / n / math.sqrt(k * (k + 1) / (6 * n)) * math.sqrt(2)
            rej = q > stats.studentized_range.ppf(1 - alpha, k, np.inf)
        elif test == "dunn_holm_any":
            big_n = n * k
            se = math.sqrt((big_n * (big_n + 1) / 12 - k * (n**3 - n) / (12 * (big_n - 1))) * 2 / n)
            rej = m * 2 * stats.norm.sf(spread / se) < alpha
        else:
            rej = m * _wilcoxon_p(pos, neg).min(axis=1) < alpha
        out[test] = float(np.mean(rej))
    return out


def simulate_power(mean_ranks: Sequence[float], n_questions: int, test: str = "friedman", alpha: float = 0.05,
                   n_sim: int = 2000, seed: int = 2024) -> float:
    """Share of ``n_sim`` simulated studies (Plackett-Luce at ``mean_ranks``) in which ``test``
    rejects at ``alpha``; for the ``*_any`` post-hoc tests: in which any pair is significant."""
    return _simulate(fit_worths(mean_ranks), n_questions, (test,), alpha, n_sim, seed)[test]


def plan_sample_size(mean_ranks: Sequence[float], power: float = 0.8, alpha: float = 0.05, test: str = "friedman",
                     n_sim: int = 2000, seed: int = 2024, n_max: int = 2000, n_start: int = 8) -> dict[str, Any]:
    """Smallest number of questions whose simulated power reaches ``power``: doubling from
    ``n_start``, then bisection, every n with the same seed. ``n_questions`` is None (with a
    ``note``) when ``n_max`` questions do not reach it. ``curve`` lists every (n, power) tried."""
    if not 0 < power < 1 or n_max < 2:
        raise ValueError(f"need 0 < power < 1 and n_max >= 2, got power={power!r}, n_max={n_max!r}")
    worths, t = fit_worths(mean_ranks), _check_mean_ranks(mean_ranks)
    tried: dict[int, float] = {}

    def pw(n: int) -> float:
        if n not in tried:
            tried[n] = _simulate(worths, n, (test,), alpha, n_sim, seed)[test]
        return tried[n]

    lo, n = 1, max(2, min(n_start, n_max))
    while pw(n) < power and n < n_max:
        lo, n = n, min(2 * n, n_max)
    found = pw(n) >= power
    while found and n - lo > 1:
        mid = (lo + n) // 2
        lo, n = (lo, mid) if pw(mid) >= power else (mid, n)
    return {"n_questions": n if found else None, "power": tried[n], "target_power": float(power), "test": test,
            "alpha": float(alpha), "mean_ranks": [float(v) for v in t], "worths": worths.tolist(),
            "n_sim": int(n_sim), "seed": seed, "n_max": int(n_max), "curve": sorted(tried.items()),
            "note": None if found else f"power {tried[n]:.3f} at n_max = {n_max} is below the target"}


def study_power(stats_result: dict[str, Any], power: float = 0.8, n_sim: int = 2000, seed: int = 2024,
                n_max: int = 2000) -> dict[str, Any]:
    """Power of a finished study (a :func:`raq.stats.rank_statistics` result) at its observed mean
    ranks and number of questions, for Friedman and Kruskal-Wallis at the study's alpha, and the
    number of questions Friedman needs for ``power``. Observed mean ranks on the boundary (a model
    always first or last) are pulled 0.1% towards the centre so that worths are finite."""
    if stats_result.get("value", "rank") != "rank":
        raise ValueError(f"study_power needs rank statistics, not {stats_result.get('value')!r}")
    models, n = list(stats_result["models"]), int(stats_result["n_questions"])
    means = [stats_result["summary"][mdl]["mean"] for mdl in models]
    if n < 2 or any(v is None for v in means):
        raise ValueError(f"study has {n} complete question(s): no power to compute")
    alpha = float(stats_result.get("alpha", 0.05))
    t = _check_mean_ranks(means, shrink=1e-3)
    rates = _simulate(fit_worths(t.tolist()), n, ("friedman", "kruskal"), alpha, n_sim, seed)
    plan = plan_sample_size(t.tolist(), power, alpha, "friedman", n_sim, seed, n_max)
    return {"models": models, "mean_ranks": dict(zip(models, t.tolist())), "n_questions": n, "alpha": alpha,
            "power": rates, "target_power": float(power), "n_needed": plan["n_questions"], "plan": plan,
            "n_sim": int(n_sim), "seed": seed}


def null_rejection_rates(k: int = 3, n_questions: int = 60, n_sim: int = 2000, seed: int = 2024,
                         alpha: float = 0.05) -> dict[str, float]:
    """Rejection rate of every test in :data:`TESTS` when no model is better (uniform random
    permutations per question): the blocked tests hold ``alpha``, Kruskal-Wallis and Dunn do not."""
    if k < 2:
        raise ValueError(f"need at least 2 models, got k={k!r}")
    return _simulate(np.ones(k), n_questions, TESTS, alpha, n_sim, seed)


def format_plan(plan: dict[str, Any]) -> str:
    """A few human-readable lines describing a :func:`plan_sample_size` result."""
    name = TEST_NAMES.get(plan["test"], plan["test"])
    head = f"{name} at alpha {plan['alpha']:g}, target power {plan['target_power']:.2f}: "
    if plan["n_questions"] is None:
        head += f"not reached within {plan['n_max']} questions (power {plan['power']:.3f} there)."
    else:
        head += f"{plan['n_questions']} questions (simulated power {plan['power']:.3f})."
    ranks = ", ".join(f"{v:.3f}" for v in plan["mean_ranks"])
    curve = ", ".join(f"{n}: {p:.2f}" for n, p in plan["curve"])
    return "\n".join([head, f"Mean ranks (1 = best): {ranks}; {plan['n_sim']} simulated studies per n, "
                            f"seed {plan['seed']}.",
                      f"Power by number of questions: {curve}."])
