"""Tests of raq.length_bias on simulated judges: one that prefers long answers, one that ranks by
token F1 alone, hand-computed least squares, the notes and the report sentence."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from raq.length_bias import F1_NOTE, length_effect, length_sentence


def simulated_run(lengths: dict[str, float], *, length_weight: float, n_questions: int = 150, noise: float = 0.3,
                  f1_of_length: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A results table: each model's answer length scatters around its typical length, token F1 is
    uniform (plus ``f1_of_length`` per doubling, clipped to [0, 1]), and the judge ranks each
    question's answers by F1 + ``length_weight`` * log2(words + 1) + normal noise (rank 1 best)."""
    rng = np.random.default_rng(seed)
    models = list(lengths)
    rows = []
    for i in range(n_questions):
        words = np.maximum(1, np.round([lengths[m] * 2 ** rng.normal(0, 0.5) for m in models]))
        log_len = np.log2(words + 1)
        f1 = np.clip(rng.uniform(0, 1, len(models)) * 0.6 + f1_of_length * (log_len - 3), 0, 1)
        score = f1 + length_weight * log_len + rng.normal(0, noise, len(models))
        ranks = rankdata(-score)
        rows += [{"question_id": f"q{i:03d}", "model_id": m, "judged": True, "rank": float(r), "words": int(w),
                  "f1": float(f)} for m, r, w, f in zip(models, ranks, words, f1)]
    return pd.DataFrame(rows)


FOUR_MODELS = {"tiny": 4.0, "small": 8.0, "medium": 14.0, "verbose": 28.0}  # sevenfold spread, as in the study


def by_hand(table: pd.DataFrame) -> tuple[np.ndarray, pd.Series]:
    """OLS through numpy's lstsq on the within-question demeaned values, and each model's
    length-controlled mean rank, written out directly."""
    data = table[table["judged"]].copy()
    data["log_len"] = np.log2(data["words"] + 1)
    centred = data[["rank", "log_len", "f1"]] - data.groupby("question_id")[["rank", "log_len", "f1"]].transform("mean")
    x = centred[["log_len", "f1"]].to_numpy()
    beta = np.linalg.lstsq(x, centred["rank"].to_numpy(), rcond=None)[0]
    controlled = (data["rank"] - beta[0] * centred["log_len"]).groupby(data["model_id"]).mean()
    return beta, controlled


def test_a_judge_preferring_long_answers_at_equal_f1_gives_a_negative_effect():
    result = length_effect(simulated_run(FOUR_MODELS, length_weight=0.4))
    effect = result["per_doubling"]
    assert effect["ci_low"] <= effect["estimate"] <= effect["ci_high"] < 0
    assert result["f1"]["ci_high"] < 0  # a higher F1 is ranked better too
    assert result["questions"] == 150 and result["answers"] == 600
    assert result["replicates"] == result["n_boot"] == 1000
    assert "longer answers ranked better" in length_sentence(result)


def test_a_judge_ranking_by_f1_alone_gives_an_interval_containing_zero():
    result = length_effect(simulated_run(FOUR_MODELS, length_weight=0.0))
    effect = result["per_doubling"]
    assert effect["ci_low"] < 0 < effect["ci_high"]
    assert abs(effect["estimate"]) < 0.1
    assert result["f1"]["ci_high"] < 0
    assert "no length preference was detected" in length_sentence(result)


def test_controlling_for_f1_separates_length_from_quality_when_longer_answers_are_better():
    # Longer answers have a higher F1 and the judge ranks by F1 alone: with F1 hidden (constant within
    # questions, so the length effect is fitted on length alone) length looks preferred; with it, not.
    table = simulated_run(FOUR_MODELS, length_weight=0.0, f1_of_length=0.2)
    hidden = length_effect(table.assign(f1=0.5))
    assert hidden["f1_note"] == F1_NOTE and hidden["f1"]["estimate"] is None
    assert hidden["per_doubling"]["ci_high"] < -0.2
    controlled = length_effect(table)["per_doubling"]
    assert controlled["ci_low"] < 0 < controlled["ci_high"]


def test_controlled_ranks_remove_a_pure_length_advantage():
    # Two models of the same F1; "long" answers about seven times longer, and the judge likes length.
    table = simulated_run({"short": 6.0, "long": 42.0}, length_weight=0.3, noise=0.6, n_questions=300, seed=3)
    ranks = length_effect(table)["mean_rank"]
    raw_gap = ranks["short"]["raw"] - ranks["long"]["raw"]
    controlled_gap = ranks["short"]["controlled"]["estimate"] - ranks["long"]["controlled"]["estimate"]
    assert raw_gap > 0.3
    assert abs(controlled_gap) < 0.1
    for model in ("short", "long"):
        interval = ranks[model]["controlled"]
        assert interval["ci_low"] < 1.5 < interval["ci_high"]


def test_estimates_match_least_squares_on_demeaned_values():
    table = simulated_run(FOUR_MODELS, length_weight=0.2, n_questions=40, seed=7)
    result = length_effect(table, n_boot=50)
    beta, controlled = by_hand(table)
    assert result["per_doubling"]["estimate"] == pytest.approx(beta[0])
    assert result["f1"]["estimate"] == pytest.approx(beta[1])
    for model, value in controlled.items():
        assert result["mean_rank"][model]["controlled"]["estimate"] == pytest.approx(value)
        assert result["mean_rank"][model]["raw"] == pytest.approx(table.loc[table["model_id"] == model, "rank"].mean())


def test_unjudged_answers_and_single_answer_questions_are_left_out():
    table = simulated_run(FOUR_MODELS, length_weight=0.2, n_questions=40, seed=7)
    extra = pd.DataFrame([
        {"question_id": "unjudged", "model_id": m, "judged": False, "rank": np.nan, "words": 50 * (j + 1), "f1": 0.0}
        for j, m in enumerate(FOUR_MODELS)
    ] + [{"question_id": "lonely", "model_id": "tiny", "judged": True, "rank": 1.0, "words": 3, "f1": 1.0}])
    result = length_effect(pd.concat([table, extra], ignore_index=True), n_boot=50)
    assert result == length_effect(table, n_boot=50)
    assert result["questions"] == 40 and result["answers"] == 160


def test_the_same_seed_gives_the_same_result_and_another_seed_other_intervals():
    table = simulated_run(FOUR_MODELS, length_weight=0.2, n_questions=60, seed=5)
    first = length_effect(table, n_boot=200, seed=11)
    assert length_effect(table, n_boot=200, seed=11) == first
    other = length_effect(table, n_boot=200, seed=12)
    assert other["per_doubling"]["estimate"] == first["per_doubling"]["estimate"]
    assert other["per_doubling"]["ci_low"] != first["per_doubling"]["ci_low"]


def test_the_result_is_json_ready():
    result = length_effect(simulated_run(FOUR_MODELS, length_weight=0.2, n_questions=30), n_boot=100)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert set(result) >= {"per_doubling", "f1", "questions", "answers", "mean_rank", "method"}
    assert set(result["mean_rank"]) == set(FOUR_MODELS)


def test_without_a_bootstrap_the_estimates_come_without_intervals():
    result = length_effect(simulated_run(FOUR_MODELS, length_weight=0.4, n_questions=30), n_boot=0)
    assert result["per_doubling"]["ci_low"] is None and result["per_doubling"]["estimate"] < 0
    assert length_sentence(result).endswith("(no bootstrap interval).")


def test_too_few_judged_questions_give_a_note():
    table = simulated_run(FOUR_MODELS, length_weight=0.4, n_questions=3)
    others = table["question_id"] != "q000"
    table.loc[others, "judged"] = False
    table.loc[others, "rank"] = np.nan
    result = length_effect(table)
    assert set(result) == {"note"} and "too few judged questions" in result["note"]
    assert length_effect(pd.DataFrame())["note"].startswith("no judged answers")
    assert length_sentence(result) == f"The judge's length preference was not estimated: {result['note']}."


def test_no_length_variation_within_questions_gives_a_note():
    table = simulated_run(FOUR_MODELS, length_weight=0.0, n_questions=20)
    table["words"] = table["question_id"].str[1:].astype(int) + 1  # lengths differ only between questions
    assert length_effect(table) == {"note": "answer length does not vary within any judged question"}


def test_length_and_f1_moving_together_exactly_give_a_note():
    table = simulated_run(FOUR_MODELS, length_weight=0.4, n_questions=20)
    table["f1"] = np.log2(table["words"] + 1) / 10
    assert "cannot be told apart" in length_effect(table)["note"]


def test_invalid_arguments_are_refused():
    table = simulated_run(FOUR_MODELS, length_weight=0.0, n_questions=5)
    with pytest.raises(ValueError, match="alpha"):
        length_effect(table, alpha=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        length_effect(table, n_boot=-1)


def interval(estimate: float, low: float, high: float) -> dict:
    return {"per_doubling": {"estimate": estimate, "ci_low": low, "ci_high": high}, "alpha": 0.05}


def test_the_sentence_says_which_answers_the_judge_prefers():
    lead = "Per doubling of answer length at equal token F1 the judge's rank moves by"
    assert length_sentence(interval(-0.214, -0.351, -0.081)) == (
        f"{lead} -0.21 [-0.35, -0.08] (longer answers ranked better).")
    assert length_sentence(interval(0.3, 0.1, 0.5)) == f"{lead} 0.30 [0.10, 0.50] (shorter answers ranked better)."
    assert length_sentence(interval(-0.05, -0.2, 0.1)) == (
        f"{lead} -0.05 [-0.20, 0.10]: no length preference was detected (the 95% interval contains 0).")
