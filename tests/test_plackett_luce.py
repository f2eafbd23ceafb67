"""Tests of raq.plackett_luce: tie handling, the choix fit against an independent scipy fit of the same
penalised likelihood, recovery of known worths and coverage of the bootstrap intervals in simulations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.optimize import minimize, root
from scipy.special import expit, logsumexp

from raq.plackett_luce import ALPHA, _newton, _patterns, choice_events, fit_worths, plackett_luce
from raq.records import Judgement

MODELS = ["a", "b", "c", "d"]

# Rankings with ties of every kind (top, middle, bottom, all), over all models and over subsets;
# every model wins somewhere, so the likelihood alone has a finite maximum.
RANKINGS: list[dict[str, float]] = [
    {"a": 1, "b": 2, "c": 3, "d": 4},
    {"a": 1.5, "b": 1.5, "c": 3, "d": 4},
    {"b": 1, "a": 2, "d": 3, "c": 4},
    {"c": 1, "a": 2.5, "b": 2.5, "d": 4},
    {"d": 1, "c": 2, "a": 3.5, "b": 3.5},
    {"a": 1, "c": 2},
    {"d": 1, "b": 2},
    {"a": 2, "b": 2, "c": 2},
    {"c": 1, "b": 2, "a": 3},
]


def judgement(qid: str, ranks: dict[str, float], ok: bool = True, judge: str = "judge", order_index: int = 0):
    """A Judgement of question ``qid``; a failed one keeps ``ranks`` only if given (they must be ignored)."""
    return Judgement(question_id=qid, judge_id=judge, protocol="raq", order=sorted(ranks), labels=[],
                     ranks=dict(ranks), ok=ok, attempts=1, raw_replies=[], error="" if ok else "unreadable reply",
                     order_index=order_index)


def simulate(worths: dict[str, float], n_questions: int, rng: np.random.Generator) -> list[Judgement]:
    """Plackett-Luce rankings by the Gumbel trick: sorting w + Gumbel noise (descending) gives a PL ranking."""
    models, w = list(worths), np.array(list(worths.values()))
    scores = w + rng.gumbel(size=(n_questions, len(w)))
    ranks = np.argsort(np.argsort(-scores, axis=1), axis=1) + 1
    return [judgement(f"q{q}", {m: float(r) for m, r in zip(models, row)}) for q, row in enumerate(ranks)]


def scipy_worths(events, models, alpha: float) -> np.ndarray:
    """The same penalised PL likelihood, written out choice by choice, maximised by scipy: trust-exact, then
    root on the gradient."""
    index = {m: i for i, m in enumerate(models)}

    def terms(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        value, grad, hess = alpha * float(theta @ theta), 2 * alpha * theta, 2 * alpha * np.eye(len(theta))
        for winner, alternatives in events:
            idx = [index[m] for m in alternatives]
            lse = logsumexp(theta[idx])
            p = np.exp(theta[idx] - lse)
            value += lse - theta[index[winner]]
            grad[idx] += p
            grad[index[winner]] -= 1
            hess[np.ix_(idx, idx)] += np.diag(p) - np.outer(p, p)
        return value, grad, hess

    near = minimize(lambda t: terms(t)[0], np.zeros(len(models)), jac=lambda t: terms(t)[1],
                    hess=lambda t: terms(t)[2], method="trust-exact").x
    res = root(lambda t: terms(t)[1], near, jac=lambda t: terms(t)[2], tol=1e-14)  # polish: gradient = 0
    assert np.abs(terms(res.x)[1]).max() < 1e-10
    return res.x - res.x.mean()


def all_events(rankings):
    return [event for ranks in rankings for event in choice_events(ranks)]


def test_choice_events_without_ties_are_the_plackett_luce_stages():
    assert choice_events({"c": 3, "a": 1, "b": 2}) == [("a", ("a", "b", "c")), ("b", ("b", "c"))]


def test_choice_events_tie_at_the_top_gives_each_tied_model_a_choice_from_all():
    assert choice_events({"a": 1.5, "b": 1.5, "c": 3}) == [("a", ("a", "b", "c")), ("b", ("a", "b", "c"))]


def test_choice_events_tie_at_the_bottom_and_in_the_middle():
    assert choice_events({"a": 1, "b": 2.5, "c": 2.5}) == [("a", ("a", "b", "c")), ("b", ("b", "c")), ("c", ("b", "c"))]
    assert choice_events({"d": 4, "b": 2.5, "c": 2.5, "a": 1}) == [
        ("a", ("a", "b", "c", "d")), ("b", ("b", "c", "d")), ("c", ("b", "c", "d"))]


def test_choice_events_full_tie_single_model_and_empty():
    assert choice_events({"b": 2, "a": 2, "c": 2}) == [(m, ("a", "b", "c")) for m in "abc"]
    assert choice_events({"a": 1}) == []
    assert choice_events({}) == []
    with pytest.raises(ValueError, match="finite"):
        choice_events({"a": 1, "b": math.nan})


@pytest.mark.parametrize("alpha", [ALPHA, 0.3])
def test_choix_fit_equals_the_scipy_penalised_mle(alpha):
    events = all_events(RANKINGS)
    fitted = fit_worths(events, MODELS, alpha=alpha)
    assert list(fitted) == MODELS
    assert sum(fitted.values()) == pytest.approx(0, abs=1e-12)
    np.testing.assert_allclose([fitted[m] for m in MODELS], scipy_worths(events, MODELS, alpha), atol=1e-6)


@pytest.mark.parametrize("alpha", [ALPHA, 0.3])
def test_bootstrap_solver_equals_choix_on_the_full_sample(alpha):
    per_question = [choice_events(ranks) for ranks in RANKINGS]
    mask, winner, counts = _patterns(per_question, MODELS)
    assert counts.sum() == len(all_events(RANKINGS))
    mine = _newton(counts.sum(axis=0, keepdims=True), mask, winner, alpha, np.zeros(len(MODELS)))[0]
    fitted = fit_worths(all_events(RANKINGS), MODELS, alpha=alpha)
    np.testing.assert_allclose(mine, [fitted[m] for m in MODELS], atol=1e-7)


def test_fit_worths_refuses_unknown_models_and_empty_input():
    with pytest.raises(ValueError, match="not in"):
        fit_worths([("x", ("x", "a"))], ["a", "b"])
    with pytest.raises(ValueError, match="no choice"):
        fit_worths([], ["a", "b"])
    with pytest.raises(ValueError, match="at least 2"):
        fit_worths([("a", ("a", "b"))], ["a"])


def test_worths_recovered_from_simulated_rankings():
    truth = {"a": 0.9, "b": 0.3, "c": -0.2, "d": -1.0}
    judgements = simulate(truth, 300, np.random.default_rng(7))
    res = plackett_luce(judgements, list(truth), n_boot=100)
    assert res["events"] == 300 * 3 and res["questions"] == 300
    for m, w in truth.items():
        assert res["worth"][m]["estimate"] == pytest.approx(w, abs=0.2)
        assert res["worth"][m]["ci_low"] < res["worth"][m]["estimate"] < res["worth"][m]["ci_high"]


def test_bootstrap_intervals_cover_the_true_worths():
    truth = {"a": 0.6, "b": 0.0, "c": -0.6}
    rng = np.random.default_rng(2024)
    covered = {m: 0 for m in truth}
    reps = 40
    for rep in range(reps):
        res = plackett_luce(simulate(truth, 60, rng), list(truth), n_boot=300, seed=rep)
        for m, w in truth.items():
            covered[m] += res["worth"][m]["ci_low"] <= w <= res["worth"][m]["ci_high"]
    assert all(n / reps >= 0.85 for n in covered.values()), covered


def test_p_best_sums_to_one_and_favours_the_strongest():
    res = plackett_luce(simulate({"a": 1.0, "b": 0.0, "c": -1.0}, 50, np.random.default_rng(3)), ["a", "b", "c"],
                        n_boot=200)
    assert sum(res["p_best"].values()) == pytest.approx(1)
    assert res["p_best"]["a"] == max(res["p_best"].values())


def test_p_best_splits_ties_evenly():
    judgements = [judgement(f"q{q}", {"a": 2, "b": 2, "c": 2}) for q in range(5)]
    res = plackett_luce(judgements, ["a", "b", "c"], n_boot=50)
    assert res["events"] == 15
    assert all(v["estimate"] == pytest.approx(0, abs=1e-9) for v in res["worth"].values())
    assert res["p_best"] == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


def test_beats_is_the_head_to_head_probability_at_the_estimate():
    res = plackett_luce(simulate({"a": 0.5, "b": 0.0, "c": -0.5}, 40, np.random.default_rng(5)), ["a", "b", "c"],
                        n_boot=200)
    w = {m: v["estimate"] for m, v in res["worth"].items()}
    for i in res["models"]:
        for j in res["models"]:
            if i == j:
                assert j not in res["beats"][i]
                continue
            cell = res["beats"][i][j]
            assert cell["estimate"] == pytest.approx(expit(w[i] - w[j]))
            assert cell["estimate"] + res["beats"][j][i]["estimate"] == pytest.approx(1)
            assert cell["ci_low"] <= cell["ci_high"]
            assert cell["ci_low"] == pytest.approx(1 - res["beats"][j][i]["ci_high"], abs=1e-9)


def test_failed_judgements_are_ignored():
    base = simulate({"a": 0.5, "b": 0.0, "c": -0.5}, 30, np.random.default_rng(11))
    noise = [judgement("q0", {}, ok=False), judgement("q1", {"a": 3, "b": 1, "c": 2}, ok=False),
             judgement("q99", {"a": 1}), judgement("q98", {"x": 1, "y": 2})]
    clean = plackett_luce(base, ["a", "b", "c"], n_boot=100)
    noisy = plackett_luce(noise[:2] + base + noise[2:], ["a", "b", "c"], n_boot=100)
    assert noisy["judgements"] == 30 and noisy["judgements_ignored"] == 4 and clean["judgements_ignored"] == 0
    assert {k: v for k, v in noisy.items() if k != "judgements_ignored"} == {
        k: v for k, v in clean.items() if k != "judgements_ignored"}


def test_a_judgement_over_a_subset_of_models_is_used():
    base = simulate({"a": 0.0, "b": 0.0, "c": 0.0}, 30, np.random.default_rng(13))
    subset = [judgement(f"s{q}", {"c": 1, "a": 2}) for q in range(10)]
    subset += [judgement(f"s{q}", {"d": 1, "b": 2}, judge="other") for q in range(3)]
    subset += [judgement(f"t{q}", {"b": 1, "d": 2}) for q in range(2)]
    models = ["a", "b", "c", "d"]
    res = plackett_luce(base + subset, models, n_boot=100)
    assert res["events"] == 30 * 2 + 15 and res["judgements"] == 45 and res["questions"] == 42
    events = [e for j in base + subset for e in choice_events(j.ranks)]
    expected = fit_worths(events, models)
    assert {m: v["estimate"] for m, v in res["worth"].items()} == pytest.approx(expected, abs=1e-9)
    only_full = plackett_luce(base, ["a", "b", "c"], n_boot=0)["worth"]
    assert (res["worth"]["c"]["estimate"] - res["worth"]["a"]["estimate"]
            > only_full["c"]["estimate"] - only_full["a"]["estimate"])
    assert res["worth"]["d"]["ci_low"] < res["worth"]["d"]["ci_high"]


def test_models_not_listed_are_dropped_from_a_ranking():
    with_x = [judgement("q0", {"a": 1, "x": 2, "b": 3}), judgement("q1", {"b": 1, "a": 2})]
    without = [judgement("q0", {"a": 1, "b": 3}), judgement("q1", {"b": 1, "a": 2})]
    assert plackett_luce(with_x, ["a", "b"], n_boot=20) == plackett_luce(without, ["a", "b"], n_boot=20)


def test_a_model_that_always_wins_gets_a_finite_worth():
    judgements = [judgement(f"q{q}", {"a": 1, "b": 2 + q % 2, "c": 3 - q % 2}) for q in range(20)]
    res = plackett_luce(judgements, ["a", "b", "c"], n_boot=100)
    worth = res["worth"]["a"]
    assert all(math.isfinite(worth[key]) for key in ("estimate", "ci_low", "ci_high"))
    assert worth["estimate"] > 3
    assert res["p_best"]["a"] == 1


def test_on_a_judge_that_always_agrees_every_interval_holds_its_estimate():
    # every resample is the same data: the replicates sit at the optimum, and so must the estimate
    judgements = [judgement(f"q{q}", {"a": 1, "b": 2, "c": 3}) for q in range(12)]
    res = plackett_luce(judgements, ["a", "b", "c"], n_boot=50)
    for model, worth in res["worth"].items():
        assert worth["ci_low"] <= worth["estimate"] <= worth["ci_high"], model
        assert worth["estimate"] == pytest.approx(worth["ci_low"], abs=1e-8)


def test_result_is_json_ready_and_seeded():
    judgements = simulate({"a": 0.3, "b": 0.0, "c": -0.3}, 25, np.random.default_rng(17))
    res = plackett_luce(judgements, ["a", "b", "c"], n_boot=100, seed=5)
    assert json.loads(json.dumps(res)) == res
    assert res["n_boot"] == 100 and res["seed"] == 5 and res["ties"].startswith("Breslow")
    assert plackett_luce(judgements, ["a", "b", "c"], n_boot=100, seed=5) == res
    assert plackett_luce(judgements, ["a", "b", "c"], n_boot=100, seed=6)["worth"] != res["worth"]
    none = plackett_luce(judgements, ["a", "b", "c"], n_boot=0)
    assert none["worth"]["a"]["ci_low"] is None and none["p_best"]["a"] is None
    assert none["worth"]["a"]["estimate"] == res["worth"]["a"]["estimate"]


def test_plackett_luce_refuses_too_few_models_and_no_usable_judgement():
    good = [judgement("q0", {"a": 1, "b": 2})]
    with pytest.raises(ValueError, match="at least 2 models"):
        plackett_luce(good, ["a"])
    with pytest.raises(ValueError, match="no usable judgement"):
        plackett_luce([judgement("q0", {}, ok=False), judgement("q1", {"a": 1})], ["a", "b"])
    with pytest.raises(ValueError, match="no usable judgement"):
        plackett_luce([], ["a", "b"])
    with pytest.raises(ValueError, match=r"\['c'\] are ranked by no usable judgement"):
        plackett_luce(good, ["a", "b", "c"])
    with pytest.raises(ValueError, match="n_boot"):
        plackett_luce(good, ["a", "b"], n_boot=-1)
