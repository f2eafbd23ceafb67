"""Tests of raq.decision: the Pareto set, the recommendation's rules and wording, and the headline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pytest

from raq.decision import headline_best, pareto_set, recommendation
from raq.power import study_power
from raq.stats import rank_statistics
from raq.tradeoffs import tradeoffs

PERMUTATIONS = [(1, 2, 3), (1, 3, 2), (2, 1, 3), (2, 3, 1), (3, 1, 2), (3, 2, 1)]
SMOL, QWEN, GEMMA = "smollm2-135m", "qwen2.5-0.5b", "gemma-3-270m"
MODELS = (SMOL, QWEN, GEMMA)
# Questions per ranking of (SMOL, QWEN, GEMMA), in the order of PERMUTATIONS:
SEPARABLE = (20, 5, 5, 0, 0, 0)  # mean ranks 1.17, 2.00, 2.83 over 30 questions
TIED_TOP = (15, 16, 34, 16, 9, 10)  # mean ranks 1.88, 1.89, 2.23 over 100 questions (Friedman p = 0.019)
FLAT = (3, 2, 2, 2, 2, 1)  # mean ranks 1.83, 2.00, 2.17 over 12 questions (Friedman p = 0.72)
FIGURES = {SMOL: {"answers_per_s": 1.6, "memory_mib": 1000.0, "ttft_s": 0.4},
           QWEN: {"answers_per_s": 3.2, "memory_mib": 600.0, "ttft_s": 0.2},
           GEMMA: {"answers_per_s": 2.4, "memory_mib": 800.0, "ttft_s": 0.3}}
SPEED_MEMORY = {"answers_per_s": "higher", "memory_mib": "lower"}


def ranked(counts: Sequence[int]) -> pd.DataFrame:
    """The long rank table of questions ranked as ``counts`` says (question i is f"q{i}")."""
    rows, question = [], 0
    for ranks, count in zip(PERMUTATIONS, counts):
        for _ in range(count):
            rows += [(f"q{question}", model, rank) for model, rank in zip(MODELS, ranks)]
            question += 1
    return pd.DataFrame(rows, columns=["question_id", "model_id", "rank"])


def stats_of(counts: Sequence[int], **power: Any) -> dict[str, Any]:
    """rank_statistics of ``counts``; with ``power`` keywords, also the "power" entry as statistics() adds it."""
    result = rank_statistics(ranked(counts), n_boot=10)
    if power:
        result["power"] = study_power(result, **power)
    return result


def p_text(p: float) -> str:
    return "p < 0.0001" if p < 0.0001 else f"p = {p:.2g}"


def nemenyi(stats: dict[str, Any], a: str, b: str) -> float:
    return float(stats["blocked"]["nemenyi"]["p_values"][a][b])


# --- pareto_set ----------------------------------------------------------------------------------
def test_pareto_set_drops_models_another_beats_on_every_axis() -> None:
    quality = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.7}
    costs = {"a": {"answers_per_s": 2, "memory_mib": 500}, "b": {"answers_per_s": 3, "memory_mib": 400},
             "c": {"answers_per_s": 1, "memory_mib": 600},  # a is better on all three axes
             "d": {"answers_per_s": 3, "memory_mib": 400}}  # b: equal costs, higher quality
    assert pareto_set(quality, costs, SPEED_MEMORY) == ["a", "b"]


def test_pareto_set_keeps_exact_ties_and_orders_by_quality_then_id() -> None:
    quality = {"z": 0.5, "y": 0.5, "x": 0.9, "w": 0.5}
    costs = {"z": {"memory_mib": 400}, "y": {"memory_mib": 400}, "x": {"memory_mib": 900},
             "w": {"memory_mib": 401}}  # as good as y and z but for memory: dominated
    assert pareto_set(quality, costs, {"memory_mib": "lower"}) == ["x", "y", "z"]


def test_pareto_set_keeps_models_with_unknown_values_and_ignores_axes_nobody_has() -> None:
    quality = {"a": 0.9, "c": 0.7, "no_memory": 0.1, "no_costs": 0.2, "no_quality": math.nan}
    costs = {"a": {"answers_per_s": 2, "memory_mib": 500, "words": 3},
             "c": {"answers_per_s": 1, "memory_mib": 600, "words": 99},  # words: not an axis
             "no_memory": {"answers_per_s": 0.5}, "no_quality": {"answers_per_s": 0.1, "memory_mib": 999}}
    better = {**SPEED_MEMORY, "ttft_s": "lower"}  # no model has ttft_s: the axis is left out
    assert pareto_set(quality, costs, better) == ["a", "no_costs", "no_memory", "no_quality"]


def test_pareto_set_refuses_an_unknown_direction() -> None:
    with pytest.raises(ValueError, match="'higher' or 'lower'"):
        pareto_set({"a": 1.0}, {"a": {"memory_mib": 1.0}}, {"memory_mib": "smaller"})


def test_pareto_set_on_mean_ranks_of_a_study() -> None:
    stats = stats_of(TIED_TOP)
    quality = {m: -stats["summary"][m]["mean"] for m in stats["models"]}
    assert pareto_set(quality, FIGURES, SPEED_MEMORY) == [SMOL, QWEN]  # gemma: slower, more memory than qwen


# --- recommendation and headline_best: separable ------------------------------------------------
def test_a_model_significantly_better_than_all_others_is_named_best_on_quality_with_its_p_values() -> None:
    stats = stats_of(SEPARABLE)
    friedman = stats["blocked"]["friedman"]["p_value"]
    assert friedman < 0.0001 and nemenyi(stats, SMOL, QWEN) < 0.05 and nemenyi(stats, SMOL, GEMMA) < 0.0001
    rec = recommendation(stats, FIGURES)
    assert rec["model"] == SMOL and rec["basis"] == "quality"
    assert rec["sentence"] == (
        f"{SMOL}: best on quality (mean rank 1.17, next {QWEN} 2.00; Friedman p < 0.0001; "
        f"Nemenyi {p_text(nemenyi(stats, SMOL, QWEN))} against {QWEN}, p < 0.0001 against {GEMMA}). "
        f"Speed and memory: 2.0x slower and 67% more memory than {QWEN}.")
    evidence = rec["evidence"]
    assert evidence["p_against_lowest"] == {QWEN: nemenyi(stats, SMOL, QWEN), GEMMA: nemenyi(stats, SMOL, GEMMA)}
    assert evidence["not_significantly_worse"] == [SMOL] and evidence["friedman_p"] == friedman
    assert evidence["speed_ratios"] == pytest.approx({QWEN: 0.5, GEMMA: 1.6 / 2.4})
    assert evidence["memory_ratios"] == pytest.approx({QWEN: 1000 / 600, GEMMA: 1000 / 800})
    assert headline_best(stats) == SMOL
    assert evidence["p_best"] is None  # no Plackett-Luce fit in these statistics


def test_the_recommended_model_s_plackett_luce_p_best_is_stated_where_it_was_fitted() -> None:
    stats = {**stats_of(SEPARABLE), "plackett_luce": {"p_best": {SMOL: 0.934, QWEN: 0.066, GEMMA: 0.0}}}
    rec = recommendation(stats, FIGURES)
    assert rec["sentence"].endswith(f"than {QWEN}. Plackett-Luce: P(best) 0.93 for {SMOL}.")
    assert rec["evidence"]["p_best"] == 0.934
    flat = recommendation({**stats_of(FLAT), "plackett_luce": {"p_best": {SMOL: 0.5, QWEN: 0.2, GEMMA: 0.3}}},
                          FIGURES)
    assert flat["basis"] == "speed among equals"
    assert flat["sentence"].endswith(f"Plackett-Luce: P(best) {flat['evidence']['p_best']:.2f} for {flat['model']}.")


def test_the_separable_case_on_wilcoxon_holm_names_that_test() -> None:
    stats = stats_of(SEPARABLE)
    rec = recommendation(stats, {}, posthoc="wilcoxon_holm")
    p = stats["blocked"]["wilcoxon_holm"]["p_values"][SMOL][QWEN]
    assert rec["basis"] == "quality" and f"Wilcoxon-Holm {p_text(p)} against {QWEN}" in rec["sentence"]
    assert rec["sentence"].endswith(f"against {GEMMA}).")  # no figures: no speed clause
    assert headline_best(stats, posthoc="wilcoxon_holm") == SMOL
    with pytest.raises(ValueError, match="posthoc"):
        headline_best(stats, posthoc="dunn_holm")


# --- inseparable ---------------------------------------------------------------------------------
def test_headline_best_is_none_for_mean_ranks_1_88_and_1_89_even_with_a_significant_friedman() -> None:
    stats = stats_of(TIED_TOP)
    assert [round(stats["summary"][m]["mean"], 2) for m in MODELS] == [1.88, 1.89, 2.23]
    assert stats["blocked"]["friedman"]["p_value"] < 0.05 < nemenyi(stats, SMOL, QWEN)
    assert headline_best(stats) is None
    assert headline_best(stats_of(FLAT)) is None  # Friedman p = 0.72


def test_models_the_data_do_not_separate_get_a_choice_on_speed_never_called_best() -> None:
    stats = stats_of(TIED_TOP)
    rec = recommendation(stats, FIGURES)
    assert rec["model"] == QWEN and rec["basis"] == "speed among equals"
    friedman = stats["blocked"]["friedman"]["p_value"]
    assert rec["sentence"] == (
        f"The data do not separate {SMOL} and {QWEN} (Friedman {p_text(friedman)}; Nemenyi "
        f"{p_text(nemenyi(stats, SMOL, QWEN))} for {QWEN} against {SMOL}, the lowest mean rank; significantly "
        f"worse: {GEMMA} (Nemenyi {p_text(nemenyi(stats, SMOL, GEMMA))})); how many questions would separate "
        "them is not known (the power plan is for the Friedman test over all the models, which already rejects). "
        f"Fastest of them, a choice on speed, not on quality: {QWEN} (3.2 answers/s; 2.0x faster and 40% less "
        f"memory than {SMOL}, the lowest mean rank).")
    assert "best" not in rec["sentence"]
    evidence = rec["evidence"]
    assert evidence["not_significantly_worse"] == [SMOL, QWEN] and evidence["choice_axis"] == "answers_per_s"
    assert evidence["speed_ratios"] == pytest.approx({SMOL: 2.0})
    assert evidence["memory_ratios"] == pytest.approx({SMOL: 0.6})


def test_a_non_significant_friedman_gives_the_planned_number_of_questions() -> None:
    stats = stats_of(FLAT, n_sim=200)
    needed = stats["power"]["n_needed"]
    assert isinstance(needed, int) and needed > stats["n_questions"] == 12
    rec = recommendation(stats, FIGURES)
    assert rec["model"] == QWEN and rec["basis"] == "speed among equals"
    assert rec["sentence"].startswith(
        f"The data do not separate {SMOL}, {QWEN} and {GEMMA} (Friedman p = 0.72; Nemenyi "
        f"{p_text(nemenyi(stats, SMOL, QWEN))} for {QWEN}, {p_text(nemenyi(stats, SMOL, GEMMA))} for {GEMMA} "
        f"against {SMOL}, the lowest mean rank); about {needed} questions would (the planner's estimate for the "
        "Friedman test at 80% power at these mean ranks; this run judged 12). Fastest of them, a choice on "
        f"speed, not on quality: {QWEN} (3.2 answers/s;")
    assert "best" not in rec["sentence"] and rec["evidence"]["questions_needed"] == needed


def test_without_a_power_plan_the_number_of_questions_is_not_known() -> None:
    stats = stats_of(FLAT)
    assert "how many questions would separate them is not known (no power plan)" in recommendation(
        stats, FIGURES)["sentence"]
    stats["power"] = {"note": "study has 1 complete question(s): no power to compute"}
    rec = recommendation(stats, FIGURES)
    assert "not known (no power plan: study has 1 complete question(s): no power to compute)" in rec["sentence"]
    assert rec["evidence"]["questions_needed"] is None


def test_a_plan_that_does_not_reach_the_target_says_so() -> None:
    stats = stats_of(FLAT, n_sim=200, n_max=20)
    assert stats["power"]["n_needed"] is None
    sentence = recommendation(stats, FIGURES)["sentence"]
    assert "not even 20 questions would give the Friedman test 80% power at these mean ranks" in sentence


def test_the_fastest_of_the_lowest_mean_rank_is_compared_with_the_next_fastest() -> None:
    figures = {**FIGURES, SMOL: {"answers_per_s": 6.4, "memory_mib": 300.0}}
    rec = recommendation(stats_of(FLAT), figures)
    assert rec["model"] == SMOL and rec["basis"] == "speed among equals"
    assert rec["sentence"].endswith(f"{SMOL} (6.4 answers/s; 2.0x faster and 50% less memory than {QWEN}, "
                                    "the next fastest).")


def test_the_choice_falls_back_to_time_to_first_token_then_to_memory() -> None:
    stats = stats_of(FLAT)
    ttft = {m: {"ttft_s": f["ttft_s"], "memory_mib": f["memory_mib"]} for m, f in FIGURES.items()}
    ttft[GEMMA]["answers_per_s"] = 99.0  # not every model has answers_per_s: it is not used
    rec = recommendation(stats, ttft)
    assert rec["model"] == QWEN and rec["evidence"]["choice_axis"] == "ttft_s"
    assert (f"Fastest of them to the first token, a choice on speed, not on quality: {QWEN} (0.2 s to first "
            f"token; 2.0x faster to first token and 40% less memory than {SMOL}") in rec["sentence"]
    memory = {m: {"memory_mib": f["memory_mib"]} for m, f in FIGURES.items()}
    rec = recommendation(stats, memory)
    assert rec["model"] == QWEN and rec["basis"] == "speed among equals"
    assert rec["evidence"]["choice_axis"] == "memory_mib"
    assert rec["sentence"].endswith("Least memory of them (no speed figures for all), a choice on memory, not on "
                                    f"quality: {QWEN} (600 MiB peak memory; 40% less memory than {SMOL}, "
                                    "the lowest mean rank).")


def test_without_figures_for_all_equals_nothing_is_recommended() -> None:
    figures = {SMOL: {"answers_per_s": 1.0}, QWEN: {"memory_mib": 600.0}}
    rec = recommendation(stats_of(FLAT), figures)
    assert rec["model"] is None and rec["basis"] == "none"
    assert rec["sentence"].endswith("There are no speed or memory figures for all of them to choose by.")
    assert "best" not in rec["sentence"]


def test_empty_or_single_model_statistics_recommend_nothing() -> None:
    assert recommendation({}, FIGURES)["basis"] == "none" and headline_best({}) is None
    table = ranked(FLAT)
    one = rank_statistics(table[table["model_id"] == SMOL], n_boot=10)
    rec = recommendation(one, FIGURES)
    assert rec["model"] is None and rec["basis"] == "none" and "Only one model" in rec["sentence"]
    assert headline_best(one) is None


# --- tradeoffs -----------------------------------------------------------------------------------
# Four models; Plackett-Luce worths put a > b > c > d, the mean ranks c > b > a > d. On answers/s c is
# fastest and a slowest; b has the lowest TTFT and memory; d is the worst on everything.
TRADE_MODELS = ["a", "b", "c", "d"]
TRADE_FIGURES = {"a": {"answers_per_s": 1.0, "ttft_s": 0.5, "memory_mib": 900.0},
                 "b": {"answers_per_s": 2.0, "ttft_s": 0.2, "memory_mib": 500.0},
                 "c": {"answers_per_s": 3.0, "ttft_s": 0.3, "memory_mib": 700.0},
                 "d": {"answers_per_s": 0.5, "ttft_s": 0.6, "memory_mib": 1000.0}}
WORTHS = {"a": {"estimate": 1.0, "ci_low": 0.4, "ci_high": 1.6},
          "b": {"estimate": 0.0, "ci_low": -0.5, "ci_high": 0.6},
          "c": {"estimate": -0.4, "ci_low": -1.0, "ci_high": 0.1},
          "d": {"estimate": -0.6, "ci_low": -1.2, "ci_high": 0.0}}
MEAN_RANKS = {"a": {"mean": 2.5, "ci_low": 2.1, "ci_high": 2.9, "n": 20},
              "b": {"mean": 2.0, "ci_low": 1.6, "ci_high": 2.4, "n": 20},
              "c": {"mean": 1.5, "ci_low": 1.2, "ci_high": 1.9, "n": 20},
              "d": {"mean": 4.0, "ci_low": 3.8, "ci_high": 4.0, "n": 20}}
ALL_AXES = {"answers_per_s": "higher", "ttft_s": "lower", "memory_mib": "lower"}


def trade_stats(worths: dict[str, Any] | None = WORTHS) -> dict[str, Any]:
    stats: dict[str, Any] = {"models": TRADE_MODELS, "summary": MEAN_RANKS}
    if worths is not None:
        stats["plackett_luce"] = {"models": TRADE_MODELS, "worth": worths}
    return stats


def test_tradeoffs_use_the_plackett_luce_worths_with_their_intervals() -> None:
    result = tradeoffs(trade_stats(), TRADE_FIGURES)
    assert result["quality"] == {"measure": "plackett_luce_worth", "better": "higher", "per_model": WORTHS}
    assert result["figures"] == TRADE_FIGURES and result["better"] == ALL_AXES
    assert result["pareto"] == {
        "answers_per_s": ["a", "b", "c"],  # each faster than every better model: a trade, nobody beaten
        "ttft_s": ["a", "b"],  # c: b is better and quicker to the first token
        "memory_mib": ["a", "b"],  # c: b is better and smaller
        "all": ["a", "b", "c"],  # c is beaten on TTFT and memory but not on answers/s
    }


def test_tradeoffs_fall_back_to_mean_ranks_lower_better() -> None:
    for stats in (trade_stats(None), {**trade_stats(None), "plackett_luce": {"note": "no usable judgement"}}):
        result = tradeoffs(stats, TRADE_FIGURES)
        quality = result["quality"]
        assert quality["measure"] == "mean_rank" and quality["better"] == "lower"
        assert quality["per_model"] == {m: {"estimate": r["mean"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}
                                        for m, r in MEAN_RANKS.items()}
        # the lowest mean rank (c) is the best: it beats a and d on everything, b only on answers/s
        assert result["pareto"] == {"answers_per_s": ["c"], "ttft_s": ["c", "b"], "memory_mib": ["c", "b"],
                                    "all": ["c", "b"]}


def test_tradeoffs_leave_out_axes_no_model_has() -> None:
    per_model = {"a": {"answers_per_s": 1.0, "ttft_s": math.nan, "memory_mib": None},
                 "b": {"answers_per_s": 2.0, "ttft_s": math.inf},
                 "c": {"answers_per_s": 3.0, "memory_mib": "n/a"},
                 "d": {},
                 "stranger": {"answers_per_s": 99.0, "ttft_s": 0.1, "memory_mib": 1.0}}  # not in the study
    result = tradeoffs(trade_stats(), per_model)
    assert result["better"] == {"answers_per_s": "higher"}
    assert set(result["pareto"]) == {"answers_per_s", "all"}
    assert result["figures"] == {"a": {"answers_per_s": 1.0}, "b": {"answers_per_s": 2.0},
                                 "c": {"answers_per_s": 3.0}, "d": {}}
    assert "stranger" not in result["quality"]["per_model"]
    # d has no figure: it can be neither beaten nor beat anyone, so it stays
    assert result["pareto"]["answers_per_s"] == result["pareto"]["all"] == ["a", "b", "c", "d"]
    assert tradeoffs(trade_stats(), {})["better"] == {}
    assert tradeoffs(trade_stats(), {})["pareto"] == {"all": ["a"]}  # quality alone: only the best


def test_tradeoffs_on_a_rank_study_without_worths() -> None:
    stats = stats_of(TIED_TOP)
    result = tradeoffs(stats, FIGURES)
    assert result["quality"]["measure"] == "mean_rank"
    for model in MODELS:
        entry = result["quality"]["per_model"][model]
        assert entry["estimate"] == stats["summary"][model]["mean"]
        assert (entry["ci_low"], entry["ci_high"]) == (stats["summary"][model]["ci_low"],
                                                     stats["summary"][model]["ci_high"])
    assert result["pareto"]["all"] == pareto_set({m: -stats["summary"][m]["mean"] for m in MODELS}, FIGURES, ALL_AXES)
    assert result["pareto"]["all"] == [SMOL, QWEN]
