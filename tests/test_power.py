"""Tests of raq.power against enumeration, scipy, raq.stats and the noncentral chi2 approximation."""

from __future__ import annotations

import math
from itertools import permutations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from raq.power import (
    TESTS,
    expected_mean_ranks,
    fit_worths,
    format_plan,
    friedman_chi2,
    kruskal_h,
    null_rejection_rates,
    plan_sample_size,
    sample_rankings,
    simulate_power,
    study_power,
)
from raq.stats import rank_statistics

REF = [1.81, 2.05, 2.1]  # the reference study's mean ranks (Mistral, Gemma, Llama); they sum to 5.96
REF6 = np.array(REF) + (6 - sum(REF)) / 3  # renormalised: the same constant added to each


def enumerated_mean_ranks(w: np.ndarray) -> np.ndarray:
    """Expected ranks under Plackett-Luce by summing over all k! orderings (order[0] = best)."""
    k, out = len(w), np.zeros(len(w))
    for order in permutations(range(k)):
        rest, prob = w.sum(), 1.0
        for i in order:
            prob *= w[i] / rest
            rest -= w[i]
        out[list(order)] += prob * np.arange(1, k + 1)
    return out


def ncx2_friedman_power(mean_ranks, n: int, alpha: float = 0.05) -> float:
    """Large-n power of Friedman: chi2(k-1) with noncentrality 12 n |mean rank - (k+1)/2|^2 / (k(k+1))."""
    t = np.asarray(mean_ranks, float)
    k = t.size
    lam = 12 * n * ((t - (k + 1) / 2) ** 2).sum() / (k * (k + 1))
    return float(stats.ncx2.sf(stats.chi2.isf(alpha, k - 1), k - 1, lam))


def long_df(study: np.ndarray) -> pd.DataFrame:
    n, k = study.shape
    return pd.DataFrame({"question_id": np.repeat(np.arange(n), k), "model_id": np.tile(list("abcdef"[:k]), n),
                         "rank": study.ravel().astype(float)})


@pytest.mark.parametrize("target", [REF6, [1.5, 2.5, 2.0], [1.3, 2.2, 2.9, 3.6], [1.2, 5.8, 3.1, 3.0, 4.4, 3.5]])
def test_fitted_worths_reproduce_exact_expected_ranks(target):
    w = fit_worths(target)
    assert np.all(w > 0) and math.prod(w) == pytest.approx(1.0)
    assert np.abs(enumerated_mean_ranks(w) - np.asarray(target)).max() < 0.005
    assert np.abs(expected_mean_ranks(w) - np.asarray(target)).max() < 1e-9


def test_closed_form_expectation_matches_enumeration_and_sampler():
    w = np.array([3.0, 1.0, 0.5, 0.2])
    assert expected_mean_ranks(w) == pytest.approx(enumerated_mean_ranks(w), abs=1e-12)
    draws = sample_rankings(w, 40_000, seed=1)[0]
    assert np.all(np.sort(draws, axis=1) == np.arange(1, 5))  # every draw is a permutation
    assert draws.mean(axis=0) == pytest.approx(expected_mean_ranks(w), abs=0.02)


def test_rounding_gap_is_closed_by_a_constant_shift():
    w = fit_worths(REF)  # sums to 5.96: accepted, each shifted by +0.0133
    assert enumerated_mean_ranks(w) == pytest.approx(REF6, abs=1e-9)
    assert fit_worths([2, 2, 2]) == pytest.approx([1, 1, 1])
    assert fit_worths([2.5] * 4) == pytest.approx([1] * 4)


@pytest.mark.parametrize("bad, message", [
    ([1.0, 2.0, 2.5], "sum to 5.5"),
    ([0.5, 2.5, 3.0], r"lie in \[1, 3\]"),
    ([1.0, 2.5, 2.5], "not reachable"),  # a model ranked first every time: infinite worth
    ([1.2, 1.2, 3.8, 3.8], "not reachable"),  # two models cannot both average better than ranks 1 and 2
    ([2.0], "at least 2"),
    ([1.5, float("nan"), 2.5], "finite"),
])
def test_invalid_mean_ranks_raise_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        fit_worths(bad)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="unknown test"):
        simulate_power(REF, 60, test="anova")
    with pytest.raises(ValueError, match="n_questions"):
        simulate_power(REF, 1)
    with pytest.raises(ValueError, match="alpha"):
        simulate_power(REF, 60, alpha=1.5)


@pytest.mark.parametrize("k, n", [(3, 12), (3, 60), (4, 25), (5, 40)])
def test_vectorised_friedman_and_kruskal_equal_scipy(k, n):
    w = fit_worths(np.linspace(1.5, k - 0.5, k)[::-1])
    studies = sample_rankings(w, n, n_sim=3, seed=k * n)
    sums = studies.sum(axis=1)
    for study, chi2, h in zip(studies, friedman_chi2(sums, n), kruskal_h(sums, n)):
        assert chi2 == pytest.approx(stats.friedmanchisquare(*study.T).statistic)
        assert h == pytest.approx(stats.kruskal(*study.T).statistic)
        assert h == pytest.approx(chi2 * (n * k - 1) / (n * (k - 1)))  # exact for untied blocked ranks


def test_simulated_decisions_equal_raq_stats_study_by_study():
    """The studies `_simulate` draws are `sample_rankings` with the same seed; their rejection rates
    must be what raq.stats decides on each of them."""
    target, n, n_sim, seed = [1.75, 2.05, 2.2], 40, 16, 7
    studies = sample_rankings(fit_worths(target), n, n_sim=n_sim, seed=seed)
    decided = {t: [] for t in TESTS}
    for study in studies:
        res = rank_statistics(long_df(study), n_boot=1)
        decided["friedman"].append(res["blocked"]["friedman"]["p_value"] < 0.05)
        decided["kruskal"].append(res["paper"]["kruskal"]["p_value"] < 0.05)
        for test, (family, key) in {"nemenyi_any": ("blocked", "nemenyi"), "dunn_holm_any": ("paper", "dunn_holm"),
                                    "wilcoxon_holm_any": ("blocked", "wilcoxon_holm")}.items():
            sig = res[family][key]["significant"]
            decided[test].append(any(v for row in sig.values() for v in row.values()))
    rates = {t: np.mean(v) for t, v in decided.items()}
    assert 0 < rates["friedman"] < 1 and 0 < rates["wilcoxon_holm_any"] < 1  # a test that can tell them apart
    for test in TESTS:
        assert simulate_power(target, n, test, n_sim=n_sim, seed=seed) == pytest.approx(rates[test]), test


def test_studies_are_nested_in_n_with_the_same_seed():
    w = fit_worths(REF)
    assert np.array_equal(sample_rankings(w, 30, 5, seed=3)[:, :20], sample_rankings(w, 20, 5, seed=3))


def test_null_friedman_holds_alpha_kruskal_does_not():
    rates = null_rejection_rates(k=3, n_questions=60, n_sim=4000, seed=2024)
    se = math.sqrt(0.05 * 0.95 / 4000)
    assert abs(rates["friedman"] - 0.05) < 3 * se
    assert 0.02 <= rates["nemenyi_any"] <= 0.07 and 0.02 <= rates["wilcoxon_holm_any"] <= 0.07
    # H = chi2_F (nk - 1) / (n (k - 1)), about 1.49 x a chi2(2): rejects P(chi2(2) > 5.99 / 1.49) = 13.5%
    expected_kw = stats.chi2.sf(stats.chi2.isf(0.05, 2) * 60 * 2 / (60 * 3 - 1), 2)
    assert abs(rates["kruskal"] - expected_kw) < 0.02 and rates["kruskal"] > rates["friedman"] + 0.05
    assert 0.08 <= rates["dunn_holm_any"] <= 0.17


def test_power_is_monotone_in_n_and_in_effect_size():
    by_n = [simulate_power(REF, n, n_sim=1000, seed=5) for n in (15, 30, 60, 120, 240)]
    assert all(b >= a - 0.02 for a, b in zip(by_n, by_n[1:])) and by_n[-1] > by_n[0] + 0.5
    centre = np.full(3, 2.0)
    by_effect = [simulate_power(centre + s * (REF6 - centre), 60, n_sim=1000, seed=5) for s in (0, 0.5, 1, 1.5, 2)]
    assert all(b >= a - 0.02 for a, b in zip(by_effect, by_effect[1:])) and by_effect[-1] > 0.8
    assert by_effect[0] == pytest.approx(0.05, abs=0.02)


def test_reference_effect_power_and_plan():
    """At the reference study's mean ranks Friedman has ~31% power at n = 60 and needs ~200 questions
    (the noncentral chi2 gives 0.31 and 200); the independent-sample Kruskal-Wallis seems stronger
    (~50% at 60, ~140 for 80%) only because it ignores the blocking (it also rejects 13.5% under H0)."""
    friedman60 = simulate_power(REF, 60, n_sim=2000)
    assert friedman60 == pytest.approx(ncx2_friedman_power(REF6, 60), abs=0.04)
    assert 0.25 <= friedman60 <= 0.37
    assert 0.42 <= simulate_power(REF, 60, "kruskal", n_sim=2000) <= 0.58
    plan = plan_sample_size(REF, n_sim=1000)
    n80 = optimize.brentq(lambda n: ncx2_friedman_power(REF6, n) - 0.8, 10, 1000)
    assert 170 <= plan["n_questions"] <= 240 and abs(plan["n_questions"] - n80) < 0.15 * n80
    curve = dict(plan["curve"])
    assert curve[plan["n_questions"]] >= 0.8 and plan["power"] == curve[plan["n_questions"]]
    assert all(p < 0.8 for n, p in curve.items() if n < plan["n_questions"])
    assert set(plan) >= {"n_questions", "power", "test", "alpha", "mean_ranks", "n_sim", "seed", "curve"}
    assert plan["mean_ranks"] == pytest.approx(REF6)
    assert 110 <= plan_sample_size(REF, test="kruskal", n_sim=1000)["n_questions"] <= 175
    text = format_plan(plan)
    assert f"{plan['n_questions']} questions" in text and "Friedman" in text and "1.823" in text


def test_plan_not_reached_and_format():
    plan = plan_sample_size(REF, n_sim=300, n_max=50)
    assert plan["n_questions"] is None and plan["note"] and max(n for n, _ in plan["curve"]) == 50
    assert "not reached within 50 questions" in format_plan(plan)


def test_study_power_from_rank_statistics():
    study = sample_rankings(fit_worths(REF), 60, seed=11)[0]
    res = rank_statistics(long_df(study), n_boot=1)
    out = study_power(res, n_sim=500)
    means = [res["summary"][m]["mean"] for m in res["models"]]
    assert out["mean_ranks"] == pytest.approx(dict(zip(res["models"], means)))
    assert out["n_questions"] == 60 and set(out["power"]) == {"friedman", "kruskal"}
    assert out["power"]["friedman"] == pytest.approx(simulate_power(means, 60, n_sim=500))
    assert out["n_needed"] == out["plan"]["n_questions"]
    # a model ranked first every time is on the boundary: pulled slightly inward instead of refused
    always = np.column_stack([np.ones(20), np.tile([2, 3], 10), np.tile([3, 2], 10)])
    edge = study_power(rank_statistics(long_df(always), n_boot=1), n_sim=200, n_max=16)
    assert edge["power"]["friedman"] > 0.9 and edge["mean_ranks"]["a"] > 1
    with pytest.raises(ValueError, match="rank statistics"):
        study_power({**res, "value": "f1"})
