"""The judge-quality figures on hand-made judgements and tables whose answers are known."""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from raq.analysis import results_table
from raq.judge_quality import cost, f1_agreement, failures, judge_agreement, judge_report, kendalls_w, position_bias
from raq.records import Answer, Judgement, Question


def judged(qid: str, order: str, ranks: list[float] | None = None, *, judge: str = "j", index: int = 0,
           attempts: int = 1) -> Judgement:
    """A judgement of the models in ``order`` (one letter each), ``ranks`` given in shown order
    (None: a failed judgement)."""
    models = list(order)
    return Judgement(question_id=qid, judge_id=judge, protocol="raq", order=models,
                     labels=[chr(ord("A") + i) for i in range(len(models))],
                     ranks=dict(zip(models, ranks)) if ranks is not None else {}, ok=ranks is not None,
                     attempts=attempts, raw_replies=["reply"] * attempts, order_index=index)


def two_sided_binomial_p(hits: int, n: int, p: float) -> float:
    """The exact two-sided binomial p-value: the probability of outcomes no likelier than ``hits``."""
    probabilities = [comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1)]
    return min(1.0, sum(q for q in probabilities if q <= probabilities[hits] * (1 + 1e-7)))


# --- position bias -------------------------------------------------------------------------
def test_first_position_win_rate_p_value_and_mean_rank_by_position():
    rotations = ["abc", "bca", "cab"]
    judgements = [judged(f"q{i}", rotations[i % 3], [1, 2, 3] if i < 7 else [2, 1, 3]) for i in range(10)]
    judgements.append(judged("q10", "abc", None, attempts=3))  # failed: not counted
    bias = position_bias(judgements)
    assert bias["judgements"] == 10 and bias["answers_per_question"] == 3
    assert bias["judgements_with_one_winner"] == 10
    assert bias["first_position_win_rate"] == pytest.approx(0.7)
    assert bias["chance"] == pytest.approx(1 / 3)
    assert bias["first_position_p_value"] == pytest.approx(sps.binomtest(7, 10, 1 / 3).pvalue)
    assert bias["first_position_p_value"] == pytest.approx(1161 / 3**10)  # P(X >= 7); P(X = 0) > P(X = 7)
    assert bias["first_position_p_value"] == pytest.approx(two_sided_binomial_p(7, 10, 1 / 3))
    assert bias["mean_rank_by_position"] == pytest.approx({"1": 1.3, "2": 1.7, "3": 3.0})
    assert bias["questions_with_several_orders"] == 0
    assert bias["winner_flip_rate"] is None and bias["ranking_flip_rate"] is None


def test_winner_and_ranking_flip_rates_over_questions_seen_in_several_orders():
    judgements = [
        judged("q1", "abc", [1, 2, 3]), judged("q1", "cba", [3, 2, 1], index=1),  # the same verdict
        judged("q2", "abc", [1, 2, 3]), judged("q2", "cba", [2, 3, 1], index=1),  # same winner, b and c swap
        judged("q3", "abc", [1, 2, 3]), judged("q3", "cba", [1, 2, 3], index=1),  # the winner changes
        judged("q4", "abc", [1, 2, 3]),                                            # one order only
        judged("q5", "abc", None), judged("q5", "cba", [1, 2, 3], index=1),       # one successful order
    ]
    bias = position_bias(judgements)
    assert bias["judgements"] == 8 and bias["questions_with_several_orders"] == 3
    assert bias["winner_flip_rate"] == pytest.approx(1 / 3)
    assert bias["ranking_flip_rate"] == pytest.approx(2 / 3)
    assert bias["first_position_win_rate"] == pytest.approx(6 / 8)
    assert bias["first_position_p_value"] == pytest.approx(sps.binomtest(6, 8, 1 / 3).pvalue)
    assert bias["mean_rank_by_position"] == pytest.approx({"1": 11 / 8, "2": 17 / 8, "3": 20 / 8})


def test_ties_for_first_are_no_win_and_no_flip():
    judgements = [
        judged("q1", "ab", [1.5, 1.5]), judged("q1", "ba", [1.5, 1.5], index=1),  # a tie, seen both ways
        judged("q2", "ab", [1, 2]), judged("q2", "ba", [2, 1], index=1),          # a wins in both orders
    ]
    bias = position_bias(judgements)
    assert bias["judgements"] == 4 and bias["judgements_with_one_winner"] == 2
    assert bias["first_position_win_rate"] == pytest.approx(0.5) and bias["chance"] == pytest.approx(0.5)
    assert bias["first_position_p_value"] == pytest.approx(1.0)
    assert bias["winner_flip_rate"] == 0 and bias["ranking_flip_rate"] == 0
    assert bias["mean_rank_by_position"] == pytest.approx({"1": 1.5, "2": 1.5})
    only_ties = position_bias(judgements[:2])
    assert only_ties["first_position_win_rate"] is None and only_ties["first_position_p_value"] is None


def test_orders_are_compared_within_one_judge():
    judgements = [judged("q1", "ab", [1, 2], judge="j1"), judged("q1", "ab", [2, 1], judge="j2")]
    bias = position_bias(judgements)
    assert bias["questions_with_several_orders"] == 0 and bias["winner_flip_rate"] is None


def test_position_bias_without_successful_judgements():
    assert position_bias([]) == {"note": "no successful judgements"}
    assert position_bias([judged("q1", "ab", None)]) == {"note": "no successful judgements"}


# --- Kendall's W ---------------------------------------------------------------------------
def test_kendalls_w_by_hand():
    # rank sums 4, 6, 8, 12 around their mean 7.5: S = 35, W = 12 S / (m^2 (k^3 - k)) = 420 / 540
    matrix = np.array([[1, 2, 3, 4], [2, 1, 3, 4], [1, 3, 2, 4]])
    assert kendalls_w(matrix) == pytest.approx(7 / 9)
    # tied ranks: sums 2.5, 3.5, 6 (S = 6.5), one tie of two (T = 6): W = 78 / (4 * 24 - 2 * 6) = 13 / 14
    assert kendalls_w(np.array([[1.5, 1.5, 3], [1, 2, 3]])) == pytest.approx(13 / 14)
    assert kendalls_w(np.array([[10, 10, 30], [1, 2, 3]])) == pytest.approx(13 / 14)  # scores are ranked first


def test_kendalls_w_extremes_and_degenerate_cases():
    assert kendalls_w(np.array([[1, 2, 3, 4]] * 5)) == pytest.approx(1.0)
    assert kendalls_w(np.array([[1, 2, 3, 4], [4, 3, 2, 1]])) == pytest.approx(0.0)
    assert kendalls_w(np.array([[1, 2, 3]])) is None  # one rater
    assert kendalls_w(np.array([[1], [1]])) is None  # one item
    assert kendalls_w(np.array([[1, 1, 1], [2, 2, 2]])) is None  # every rater ties everything


def test_kendalls_w_is_the_mean_spearman_rescaled():
    """Without ties, the mean pairwise Spearman correlation of m raters is (m W - 1) / (m - 1)."""
    rng = np.random.default_rng(7)
    matrix = np.array([rng.permutation(6) + 1 for _ in range(5)])
    m = len(matrix)
    mean_rho = np.mean([sps.spearmanr(a, b).statistic for a, b in combinations(matrix, 2)])
    assert kendalls_w(matrix) == pytest.approx((m * mean_rho + 1 - mean_rho) / m)


@pytest.mark.parametrize("matrix", [
    [[1, 2, 3, 4], [2, 1, 3, 4], [1, 3, 2, 4]],
    [[1, 1, 3, 4], [1, 2, 2, 4], [2, 1, 3, 3], [1, 2, 3, 4], [4, 4, 1, 2]],
    [[0.2, 0.9, 0.9], [0.5, 0.5, 0.1], [3, 2, 1], [1, 2, 2]],
])
def test_kendalls_w_is_friedmans_chi2_over_n_k_minus_1(matrix):
    """W = chi2_F / (n (k - 1)), with scipy's tie-corrected Friedman statistic (raters are its blocks)."""
    matrix = np.array(matrix, dtype=float)
    n, k = matrix.shape
    chi2 = sps.friedmanchisquare(*matrix.T).statistic
    assert kendalls_w(matrix) == pytest.approx(chi2 / (n * (k - 1)))


# --- agreement with F1 ---------------------------------------------------------------------
def f1_table(rows: list[tuple[str, str, float | None, float]], column: str = "rank") -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["question_id", "model_id", column, "f1"])


def test_f1_agreement_on_a_hand_made_table():
    table = f1_table([
        ("q1", "a", 1, 1.0), ("q1", "b", 2, 0.5), ("q1", "c", 3, 0.0),  # rho 1, the winner has the best F1
        ("q2", "a", 1, 0.0), ("q2", "b", 2, 0.5), ("q2", "c", 3, 1.0),  # rho -1, it has the worst
        ("q3", "a", 1, 0.5), ("q3", "b", 2, 0.5), ("q3", "c", 3, 0.5),  # F1 all tied: left out
        ("q4", "a", None, 1.0), ("q4", "b", None, 0.0), ("q4", "c", None, 0.5),  # not judged: left out
        ("q5", "a", 2, 1.0), ("q5", "b", 2, 0.0), ("q5", "c", 2, 0.5),  # ranks all tied: left out
        ("q6", "a", 1, 0.8), ("q6", "b", 3, 0.2), ("q6", "c", 2, 0.9),  # rho 1 - 6 * 2 / 24 = 0.5, not best
    ])
    result = f1_agreement(table)
    assert result["questions"] == 3
    assert result["mean_spearman"] == pytest.approx((1 - 1 + 0.5) / 3)
    assert result["winner_has_best_f1"] == pytest.approx(1 / 3)
    renamed = table.rename(columns={"rank": "rank.j1"})
    assert f1_agreement(renamed, "rank.j1") == result


def test_f1_agreement_with_winners_tied_for_first_does_not_depend_on_model_names():
    rows = [("q1", "a", 1.5, 1.0), ("q1", "b", 1.5, 0.0), ("q1", "c", 3, 0.0)]
    swapped = [("q1", "b", 1.5, 1.0), ("q1", "a", 1.5, 0.0), ("q1", "c", 3, 0.0)]
    result = f1_agreement(f1_table(rows))
    assert result["winner_has_best_f1"] == pytest.approx(0.5)  # one of the two tied winners has the best F1
    assert f1_agreement(f1_table(swapped).sort_values("model_id")) == result
    # rank 1.5, 1.5, 3 against -F1 ranked 1, 2.5, 2.5: the Spearman correlation of those ranks
    assert result["mean_spearman"] == pytest.approx(np.corrcoef([1.5, 1.5, 3], [1, 2.5, 2.5])[0, 1])


def test_f1_agreement_of_nothing():
    empty = {"questions": 0, "mean_spearman": None, "winner_has_best_f1": None}
    assert f1_agreement(f1_table([("q1", "a", 1, 1.0), ("q1", "b", 1, 0.0)])) == empty
    assert f1_agreement(pd.DataFrame()) == empty


# --- failures ------------------------------------------------------------------------------
def test_failures_before_and_after_retries():
    judgements = [judged("q1", "ab", [1, 2]), judged("q2", "ab", [1, 2], attempts=2),
                  judged("q3", "ab", None, attempts=3), judged("q4", "ab", [2, 1])]
    assert failures(judgements) == {"judgements": 4, "first_reply_invalid": 2, "failed_after_retries": 1,
                                    "failure_rate_before_retries": 0.5, "failure_rate_after_retries": 0.25}
    assert failures([]) == {"judgements": 0, "first_reply_invalid": 0, "failed_after_retries": 0,
                            "failure_rate_before_retries": None, "failure_rate_after_retries": None}


# --- agreement between judges --------------------------------------------------------------
def two_judges() -> list[Judgement]:
    return [
        judged("q1", "abc", [1, 2, 3], judge="j1"), judged("q1", "cab", [3, 1, 2], judge="j2"),  # agree: W 1
        judged("q2", "abc", [1, 2, 3], judge="j1"), judged("q2", "abc", [3, 2, 1], judge="j2"),  # reversed: W 0
        judged("q3", "abc", [1, 2, 3], judge="j1"), judged("q3", "abc", [1, 3, 2], judge="j2"),  # rho .5: W .75
        judged("q4", "abc", [1, 2, 3], judge="j1"),                                             # j2 missing
        judged("q5", "abc", [1, 2, 3], judge="j1"), judged("q5", "abc", None, judge="j2"),      # j2 failed
    ]


def test_judge_agreement_of_two_judges():
    result = judge_agreement(two_judges(), {"j1": 1, "j2": 1})
    assert result["questions"] == 3
    assert result["mean_kendalls_w"] == pytest.approx((1 + 0 + 0.75) / 3)
    # pooled over the three questions (models a, b, c each): j1 1 2 3 1 2 3 1 2 3, j2 1 2 3 3 2 1 1 3 2
    j1, j2 = sps.rankdata([1, 2, 3] * 3), sps.rankdata([1, 2, 3, 3, 2, 1, 1, 3, 2])
    assert result["pairwise_spearman"] == {"j1 vs j2": pytest.approx(np.corrcoef(j1, j2)[0, 1])}
    assert result["pairwise_spearman"]["j1 vs j2"] == pytest.approx(1 / 6)


def test_judge_agreement_uses_the_mean_rank_over_a_judges_orders():
    judgements = [judged("q1", "abc", [1, 2, 3], judge="j1"), judged("q1", "bac", [1, 2, 3], judge="j1", index=1),
                  judged("q1", "abc", [1, 2, 3], judge="j2"),
                  judged("q2", "abc", [1, 2, 3], judge="j1"), judged("q2", "abc", [1, 2, 3], judge="j2")]
    result = judge_agreement(judgements, {"j1": 2, "j2": 1})
    assert result["questions"] == 1  # q2 has only one of j1's two orders
    assert result["mean_kendalls_w"] == pytest.approx(13 / 14)  # j1: a 1.5, b 1.5, c 3; j2: 1, 2, 3


def test_judge_agreement_of_one_judge():
    assert judge_agreement(two_judges(), {"j1": 1}) == {"note": "one judge"}


# --- the whole report ----------------------------------------------------------------------
def answer(qid: str, model: str, text: str) -> Answer:
    return Answer(question_id=qid, model_id=model, text=text, prompt="p", template="chat", prompt_tokens=10,
                  generated_tokens=3, ttft_s=0.1, prompt_s=0.1, generation_s=0.2, total_s=0.3, prompt_tok_s=100.0,
                  generation_tok_s=15.0, words=len(text.split()), words_paper=len(text.split()),
                  words_per_s_paper=10.0, finish_reason="stop", max_tokens=32)


def study() -> tuple[list[Question], list[Answer]]:
    questions = [Question(f"q{i}", "Where is the Louvre?", "The Louvre is in Paris.", ["Paris"]) for i in (1, 2, 3)]
    texts = {"a": "Paris", "b": "in Paris France", "c": "London"}  # F1 1, 0.5 and 0
    return questions, [answer(q.question_id, m, t) for q in questions for m, t in texts.items()]


REPORT_KEYS = {"orders", "judgements", "first_reply_invalid", "failed_after_retries", "failure_rate_before_retries",
               "failure_rate_after_retries", "position_bias", "f1_agreement", "cost"}


def test_judge_report_of_two_judges():
    questions, answers = study()
    judgements, orders = two_judges(), {"j1": 1, "j2": 1}
    table = results_table(questions, answers, judgements, orders)
    assert list(table["f1"][:3]) == pytest.approx([1.0, 0.5, 0.0])
    report = judge_report(judgements, table, orders)
    assert set(report) == {"judges", "agreement", "aggregate_f1_agreement"}
    assert list(report["judges"]) == ["j1", "j2"]
    for judge_id, info in report["judges"].items():
        own = [j for j in judgements if j.judge_id == judge_id]
        assert set(info) == REPORT_KEYS and info["orders"] == 1
        assert {key: info[key] for key in failures(own)} == failures(own)
        assert info["position_bias"] == position_bias(own)
        assert info["f1_agreement"] == f1_agreement(table, f"rank.{judge_id}")
    assert report["judges"]["j1"]["f1_agreement"] == {"questions": 3, "mean_spearman": pytest.approx(1.0),
                                                      "winner_has_best_f1": 1.0}
    j2 = report["judges"]["j2"]["f1_agreement"]  # rho 1, -1 and 0.5 on q1, q2, q3; best F1 won only q1 and q3
    assert j2 == {"questions": 3, "mean_spearman": pytest.approx(0.5 / 3), "winner_has_best_f1": pytest.approx(2 / 3)}
    assert report["judges"]["j2"]["failed_after_retries"] == 1
    assert report["agreement"] == judge_agreement(judgements, orders)
    assert report["aggregate_f1_agreement"] == f1_agreement(table, "rank")


def test_judge_report_of_one_judge():
    questions, answers = study()
    judgements = [j for j in two_judges() if j.judge_id == "j2"]
    orders = {"j2": 1}
    table = results_table(questions, answers, judgements, orders)
    report = judge_report(judgements, table, orders)
    assert list(report["judges"]) == ["j2"] and set(report["judges"]["j2"]) == REPORT_KEYS
    assert report["judges"]["j2"]["f1_agreement"] == f1_agreement(table, "rank")
    assert report["agreement"] == {"note": "one judge"} and report["aggregate_f1_agreement"] is None


def _costed(question_id: str, seconds: float, sent: int | None, read: int | None) -> Judgement:
    return Judgement(question_id=question_id, judge_id="j", protocol="pointwise", order=["a", "b"], labels=[],
                     ranks={"a": 1.0, "b": 2.0}, ok=True, attempts=2, raw_replies=["yes", "no"], seconds=seconds,
                     prompt_tokens=sent, prompt_tokens_read=read)


def test_cost_is_per_question_judged_and_unknown_once_a_backend_did_not_say() -> None:
    judged = [_costed("q1", 2.0, 300, 120), _costed("q1", 1.0, 100, 30), _costed("q2", 3.0, 200, 50)]
    assert cost(judged) == {"questions": 2, "seconds_per_question": 3.0, "prompt_tokens_per_question": 300.0,
                            "prompt_tokens_read_per_question": 100.0}
    served = cost([*judged, _costed("q3", 3.0, 100, None)])
    assert served["prompt_tokens_per_question"] == pytest.approx(700 / 3)
    assert served["prompt_tokens_read_per_question"] is None
    assert cost([]) == {"questions": 0}
