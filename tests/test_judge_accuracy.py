"""The judge-check metrics on hand-made ladders and judgements whose answers are known."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pytest
from scipy import stats as sps

from raq.judge_accuracy import ABSTENTION_METRIC, METRICS, check_metrics, meets
from raq.judge_ladder import (
    ABSTAIN,
    ABSTAIN_SENTENCE,
    ANSWERABLE_TIERS,
    GOLD_SENTENCE,
    UNANSWERABLE_TIERS,
    WRONG_SENTENCE,
    Ladder,
    Rung,
)
from raq.records import Judgement, Question

TEXTS = {"gold": "Denver Broncos", "gold_alt": "Broncos of Denver", "partial": "Denver",
         "gold_sentence": GOLD_SENTENCE.format(answer="Denver Broncos"), "wrong": "Carolina Panthers",
         "wrong_sentence": WRONG_SENTENCE.format(answer="Carolina Panthers"), "abstain": ABSTAIN}
LADDER = ("gold", "gold_alt", "gold_sentence", "wrong", "wrong_sentence", "abstain")
PERFECT = LADDER  # best first


def ladder(qid: str, names: Sequence[str] = LADDER) -> Ladder:
    question = Question(qid, "Who won?", "Denver Broncos beat Carolina Panthers.", ["Denver Broncos"])
    return Ladder(question, tuple(Rung(name, TEXTS[name], ANSWERABLE_TIERS[name]) for name in names))


def ranks_of(best_first: Sequence[str | tuple[str, ...]]) -> dict[str, float]:
    """Ranks from rungs best first; a tuple is a group of tied rungs (they share the mean rank)."""
    ranks: dict[str, float] = {}
    position = 1
    for group in best_first:
        members = (group,) if isinstance(group, str) else group
        for rung in members:
            ranks[rung] = position + (len(members) - 1) / 2
        position += len(members)
    return ranks


def judged(qid: str, best_first: Sequence[str | tuple[str, ...]] | None = PERFECT, index: int = 0, *,
           seconds: float = 1.0, details: list[dict[str, Any]] | None = None, judge: str = "j") -> Judgement:
    """A judgement of ``qid`` ranking ``best_first`` (None: a failed judgement)."""
    ranks = ranks_of(best_first) if best_first is not None else {}
    return Judgement(question_id=qid, judge_id=judge, protocol="raq", order=sorted(ranks), labels=[], ranks=ranks,
                     ok=best_first is not None, attempts=1, raw_replies=["reply"], seconds=seconds,
                     order_index=index, details=details or [])


def check(ladders, judgements, repeats=(), orders=1, **kwargs):
    return check_metrics(ladders, judgements, list(repeats), orders=orders, **kwargs)


def mean(result: dict[str, Any], metric: str) -> Any:
    return result[metric]["mean"]


def plain(value: Any) -> bool:
    """Whether ``value`` is made of JSON's own types only (no numpy scalars)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


# --- the accuracy metrics --------------------------------------------------------------------------
def test_a_perfect_judge_scores_best():
    ladders = [ladder(f"q{i}") for i in range(10)]
    judgements = [judged(f"q{i}", PERFECT, k) for i in range(10) for k in range(3)]
    repeats = [judged(f"q{i}") for i in range(4)]
    result = check(ladders, judgements, repeats, orders=3)
    for metric in ("pairwise_accuracy", "pairwise_accuracy_strict", "all_correct_above_wrong",
                   "position_consistency", "winner_consistency", "stability"):
        assert mean(result, metric) == 1.0, metric
    assert mean(result, "wrong_first") == 0.0
    best_strict_tau = sps.kendalltau(range(6), [0, 0, 0, 2, 2, 2]).statistic  # 9 / sqrt(15 * 9)
    assert mean(result, "kendall_tau") == pytest.approx(best_strict_tau) == pytest.approx(9 / math.sqrt(135))
    assert result["stability"]["n"] == 4 and result["kendall_tau"]["n"] == 10
    assert result["rungs"]["gold"] == {"mean_rank": 1.0, "ranked_first": 1.0, "n": 10}
    assert result["rungs"]["abstain"]["mean_rank"] == 6.0
    assert meets(result, 0.9) and meets(result, 1.0)
    assert result["questions"] == result["questions_judged"] == 10 and result["failure_rate"] == 0.0
    assert json.loads(json.dumps(result)) == result and plain(result)


def test_tau_reaches_one_when_the_judge_ties_each_tier():
    tied = (("gold", "gold_alt", "gold_sentence"), ("wrong", "wrong_sentence", "abstain"))
    result = check([ladder("q0"), ladder("q1")], [judged("q0", tied), judged("q1", tied)])
    assert mean(result, "kendall_tau") == pytest.approx(1.0) and mean(result, "pairwise_accuracy") == 1.0


def test_a_judge_that_puts_the_long_wrong_sentence_first():
    order = ("wrong_sentence", "gold", "gold_alt", "gold_sentence", "wrong", "abstain")
    result = check([ladder(f"q{i}") for i in range(5)], [judged(f"q{i}", order) for i in range(5)])
    assert mean(result, "pairwise_accuracy") == pytest.approx(6 / 9) == mean(result, "pairwise_accuracy_strict")
    assert mean(result, "all_correct_above_wrong") == 0.0
    assert mean(result, "wrong_first") == 1.0
    assert mean(result, "kendall_tau") < sps.kendalltau(range(6), [0, 0, 0, 2, 2, 2]).statistic
    assert result["rungs"]["wrong_sentence"]["ranked_first"] == 1.0
    assert not meets(result, 0.7) and meets(result, 0.6)


def test_a_judge_that_prefers_length():
    by_length = sorted(LADDER, key=lambda rung: -len(TEXTS[rung]))
    result = check([ladder(f"q{i}") for i in range(4)], [judged(f"q{i}", by_length) for i in range(4)])
    for metric in ("length_preference", "length_preference_correct", "length_preference_wrong"):
        assert mean(result, metric) == 1.0, metric
    # correct: gold, gold_alt, gold_sentence pairwise; wrong: wrong vs wrong_sentence (abstain is no answer)
    assert result["length_preference_correct"]["pairs"] == 4 * 3 and result["length_preference_wrong"]["pairs"] == 4
    assert result["length_preference"]["pairs"] == 16
    assert mean(result, "pairwise_accuracy") < 1.0 and mean(result, "wrong_first") == 1.0
    perfect = check([ladder("q0"), ladder("q1")], [judged("q0"), judged("q1")])
    assert mean(perfect, "length_preference") == 0.0  # the perfect ladder order puts the shorter first


def test_ties_count_one_half():
    everything = (tuple(LADDER),)
    result = check([ladder("q0"), ladder("q1")], [judged("q0", everything), judged("q1", everything)])
    assert mean(result, "pairwise_accuracy") == 0.5 and mean(result, "pairwise_accuracy_strict") == 0.0
    assert mean(result, "all_correct_above_wrong") == 0.0 and mean(result, "wrong_first") == 0.5
    assert mean(result, "length_preference") == 0.5
    assert result["kendall_tau"] == {"mean": None, "ci_low": None, "ci_high": None, "n": 0}  # undefined: left out
    assert result["rungs"]["gold"]["ranked_first"] == pytest.approx(1 / 6)
    shared_first = (("gold", "wrong_sentence"), "gold_alt", "gold_sentence", "wrong", "abstain")
    result = check([ladder("q0")], [judged("q0", shared_first)])
    assert mean(result, "pairwise_accuracy") == pytest.approx(6.5 / 9)
    assert mean(result, "pairwise_accuracy_strict") == pytest.approx(6 / 9)
    assert mean(result, "wrong_first") == 0.5 and mean(result, "all_correct_above_wrong") == 0.0


def test_equal_tier_orderings_never_count_against_the_judge():
    orders = [("wrong_sentence", "gold", "gold_alt", "gold_sentence", "wrong", "abstain"),
              ("gold", "wrong", "gold_alt", "abstain", "gold_sentence", "wrong_sentence")]
    for order in orders:
        swapped = tuple({"gold": "gold_sentence", "gold_sentence": "gold"}.get(r, r) for r in order)
        regrouped = tuple({"wrong": "abstain", "abstain": "wrong"}.get(r, r) for r in swapped)
        results = [check([ladder("q0")], [judged("q0", o)]) for o in (order, swapped, regrouped)]
        for metric in ("pairwise_accuracy", "pairwise_accuracy_strict", "kendall_tau", "wrong_first",
                       "all_correct_above_wrong"):
            assert len({mean(r, metric) for r in results}) == 1, metric


def test_partial_rungs_are_in_no_pair():
    names = ("gold", "partial", "wrong", "abstain")
    first = check([ladder("q0", names)], [judged("q0", ("partial", "gold", "wrong", "abstain"))])
    last = check([ladder("q0", names)], [judged("q0", ("gold", "wrong", "abstain", "partial"))])
    assert mean(first, "pairwise_accuracy") == mean(last, "pairwise_accuracy") == 1.0
    assert mean(first, "wrong_first") == 0.0
    assert mean(first, "kendall_tau") != mean(last, "kendall_tau")  # tau does see the partial tier


def test_failed_judgements_are_counted_and_their_questions_left_out():
    ladders = [ladder(f"q{i}") for i in range(5)]
    judgements = [judged(f"q{i}", PERFECT, k, seconds=2.0) for i in range(5) for k in range(2)
                  if (i, k) != (1, 0)]
    judgements += [judged("q0", None, 1, seconds=5.0),  # q0: order 1 failed; its order 1 is missing
                   judged("q1", None, 0, seconds=1.0), judged("q1", PERFECT, 0, seconds=2.0)]  # retried: ok
    judgements = [j for j in judgements if not (j.question_id == "q0" and j.order_index == 1 and j.ok)]
    result = check(ladders, judgements, orders=2)
    assert result["questions"] == 5 and result["questions_judged"] == 4
    assert result["judgements"] == 11 and result["failed_judgements"] == 2
    assert result["failure_rate"] == pytest.approx(2 / 11)
    assert result["pairwise_accuracy"]["n"] == 4
    assert result["seconds"] == 8 * 2.0 + 5.0 + 1.0 + 2.0 and result["seconds_per_question"] == 24.0 / 5


def test_position_consistency_over_listwise_orders():
    consistent = [PERFECT] * 3
    same_winner = [PERFECT, ("gold", "gold_sentence", "gold_alt", "wrong", "wrong_sentence", "abstain"), PERFECT]
    new_winner = [PERFECT, ("gold_alt", "gold", "gold_sentence", "wrong", "wrong_sentence", "abstain"), PERFECT]
    plans = [consistent, same_winner, new_winner, consistent]
    judgements = [judged(f"q{i}", order, k) for i, plan in enumerate(plans) for k, order in enumerate(plan)]
    result = check([ladder(f"q{i}") for i in range(4)], judgements, orders=3)
    assert mean(result, "position_consistency") == 0.5 and mean(result, "winner_consistency") == 0.75
    assert result["shown"] == "listwise" and result["position_consistency"]["n"] == 4
    assert mean(result, "pairwise_accuracy") == 1.0  # the verdict is the mean rank over the orders
    assert result["rungs"]["gold"]["mean_rank"] == pytest.approx((1 + 1 + 4 / 3 + 1) / 4)
    one_order = check([ladder("q0"), ladder("q1")], [judged("q0"), judged("q1")])
    assert mean(one_order, "position_consistency") is None
    assert one_order["position_consistency"]["note"] == "one order per question"


def pair_details(winners: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
    return [{"shown": list(shown), "reply": "A", "winner": winner, "attempts": 1, "probs": None}
            for shown, winner in winners.items()]


def test_position_consistency_from_pairwise_details():
    names = ("gold", "wrong", "abstain")
    follows_position = {("gold", "wrong"): "gold", ("wrong", "gold"): "gold",  # the same winner
                        ("gold", "abstain"): "gold", ("abstain", "gold"): "abstain",  # the first shown wins
                        ("wrong", "abstain"): "wrong", ("abstain", "wrong"): "wrong"}
    steady = {**follows_position, ("abstain", "gold"): "gold"}
    judgements = [judged("q0", ("gold", "wrong", "abstain"), details=pair_details(follows_position)),
                  judged("q1", ("gold", "wrong", "abstain"), details=pair_details(steady))]
    result = check([ladder("q0", names), ladder("q1", names)], judgements)
    assert result["shown"] == "pairwise"
    assert mean(result, "position_consistency") == pytest.approx((2 / 3 + 1) / 2)
    assert mean(result, "winner_consistency") is None and "pairwise" in result["winner_consistency"]["note"]


def test_pointwise_judgements_show_no_order():
    details = [{"model": rung, "reply": "2", "grade": 2, "grade_probs": None, "attempts": 1} for rung in LADDER]
    judgements = [judged(f"q{i}", details=details) for i in range(3)]
    result = check([ladder(f"q{i}") for i in range(3)], judgements)
    assert result["shown"] == "pointwise"
    assert mean(result, "position_consistency") is None and result["position_consistency"]["n"] == 0
    assert result["position_consistency"]["note"] == "no order is shown"


def test_stability_compares_each_repeat_with_the_first_order():
    ladders = [ladder(f"q{i}") for i in range(4)]
    judgements = [judged(f"q{i}") for i in range(4)]
    other = ("gold_alt", "gold", "gold_sentence", "wrong", "wrong_sentence", "abstain")
    repeats = [judged("q0", seconds=3.0), judged("q1", other), judged("q2", None)]
    result = check(ladders, judgements, repeats)
    assert mean(result, "stability") == 0.5 and result["stability"]["n"] == 2
    assert result["repeats"] == {"judgements": 3, "failed": 1, "seconds": 5.0}
    assert result["seconds"] == 9.0 and result["seconds_per_question"] == 1.0
    none = check(ladders, judgements)
    assert mean(none, "stability") is None and none["stability"]["note"] == "no successful repeats"


Ranking = Sequence[str | tuple[str, ...]]


def test_intervals_contain_the_means_and_need_two_questions():
    orders: list[Ranking] = [PERFECT, ("wrong_sentence", "gold", "gold_alt", "gold_sentence", "wrong", "abstain"),
              (tuple(LADDER),), ("gold", "wrong", "gold_alt", "abstain", "gold_sentence", "wrong_sentence")]
    n = 40
    ladders = [ladder(f"q{i}") for i in range(n)]
    judgements = [judged(f"q{i}", orders[i % 4 if i % 7 else 1]) for i in range(n)]
    repeats = [judged(f"q{i}", orders[(i + i // 3) % 4]) for i in range(0, n, 2)]
    result = check(ladders, judgements, repeats)
    for metric in METRICS:
        entry = result[metric]
        if entry["n"] >= 2:
            assert entry["ci_low"] - 1e-12 <= entry["mean"] <= entry["ci_high"] + 1e-12, metric
    assert result["pairwise_accuracy"]["ci_low"] < result["pairwise_accuracy"]["ci_high"]
    assert check(ladders, judgements, repeats) == result  # the same seed, the same intervals
    wider = check(ladders, judgements, repeats, alpha=0.01)["pairwise_accuracy"]
    assert wider["ci_low"] <= result["pairwise_accuracy"]["ci_low"] <= result["pairwise_accuracy"]["ci_high"]
    single = check(ladders[:1], judgements[:1])
    assert single["pairwise_accuracy"] == {"mean": pytest.approx(6 / 9), "ci_low": None, "ci_high": None, "n": 1}


def test_nothing_judged():
    result = check([ladder("q0")], [judged("q0", None)])
    assert result["questions_judged"] == 0 and result["failure_rate"] == 1.0
    assert mean(result, "pairwise_accuracy") is None and result["rungs"] == {}
    assert not meets(result, 0.0) and not meets({}, 0.0)
    empty = check([], [])
    assert empty["failure_rate"] is None and empty["seconds_per_question"] is None


def test_inputs_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="no ladder"):
        check([ladder("q0")], [judged("q9")])
    with pytest.raises(ValueError, match="not of the ladder's rungs"):
        check([ladder("q0", ("gold", "wrong"))], [judged("q0")])
    with pytest.raises(ValueError, match="order_index 2"):
        check([ladder("q0")], [judged("q0", PERFECT, 2)], orders=2)
    with pytest.raises(ValueError, match="at least 1"):
        check([ladder("q0")], [], orders=0)
    with pytest.raises(ValueError, match="several judges"):
        check([ladder("q0")], [judged("q0")], [judged("q0", judge="other")])


# --- ladders of questions without gold answers ---------------------------------------------------
NO_ANSWER_TEXTS = {"abstain": ABSTAIN, "abstain_sentence": ABSTAIN_SENTENCE, "invented": "Carolina Panthers",
                   "invented_sentence": WRONG_SENTENCE.format(answer="Carolina Panthers")}
NO_ANSWER_LADDER = ("abstain", "abstain_sentence", "invented", "invented_sentence")  # best first
#: The figures' keys before unanswerable ladders existed; a check without them still has exactly these.
KEYS = ["questions", "questions_judged", "orders", "shown", "judgements", "failed_judgements", "failure_rate",
        "repeats", "seconds", "seconds_per_question", "alpha", "bootstrap", *METRICS, "rungs"]


def no_answer(qid: str, names: Sequence[str] = NO_ANSWER_LADDER) -> Ladder:
    question = Question(qid, "Who lost in 2020?", "Denver Broncos beat Carolina Panthers in 2016.", [])
    return Ladder(question, tuple(Rung(name, NO_ANSWER_TEXTS[name], UNANSWERABLE_TIERS[name]) for name in names))


def test_without_unanswerable_ladders_the_figures_keep_their_keys():
    result = check([ladder("q0"), ladder("q1")], [judged("q0"), judged("q1", PERFECT)], [judged("q0")])
    assert list(result) == KEYS and "subsets" not in result and ABSTENTION_METRIC not in result


def test_abstain_is_correct_on_an_unanswerable_ladder_and_each_subset_has_its_figures():
    abstains_first = ("abstain", "gold", "gold_alt", "gold_sentence", "wrong", "wrong_sentence")  # an abstainer
    ladders = [ladder(f"q{i}") for i in range(4)] + [no_answer(f"u{i}") for i in range(4)]
    judgements = ([judged(f"q{i}", abstains_first) for i in range(4)]
                  + [judged(f"u{i}", NO_ANSWER_LADDER) for i in range(4)])
    result = check(ladders, judgements, [judged("u0", NO_ANSWER_LADDER)])
    assert list(result) == [*KEYS[:-1], ABSTENTION_METRIC, "rungs", "subsets"]
    answerable, unanswerable = result["subsets"]["answerable"], result["subsets"]["unanswerable"]
    assert list(result["subsets"]) == ["answerable", "unanswerable"]
    assert list(answerable) == ["questions", "questions_judged", *METRICS, "rungs"]
    assert list(unanswerable) == ["questions", "questions_judged", *METRICS, ABSTENTION_METRIC, "rungs"]
    assert answerable["questions"] == answerable["questions_judged"] == unanswerable["questions_judged"] == 4
    assert mean(answerable, "pairwise_accuracy") == pytest.approx(6 / 9)  # abstain is wrong there
    assert mean(unanswerable, "pairwise_accuracy") == 1.0 and mean(unanswerable, "wrong_first") == 0.0
    assert mean(result, "pairwise_accuracy") == pytest.approx((4 * 6 / 9 + 4) / 8)
    assert result[ABSTENTION_METRIC] == unanswerable[ABSTENTION_METRIC]
    assert mean(result, ABSTENTION_METRIC) == 1.0 and result[ABSTENTION_METRIC]["n"] == 4
    assert answerable["rungs"]["abstain"]["ranked_first"] == unanswerable["rungs"]["abstain"]["ranked_first"] == 1
    assert mean(unanswerable, "stability") == 1.0 and unanswerable["stability"]["n"] == 1
    assert answerable["stability"]["note"] == "no successful repeats"
    assert json.loads(json.dumps(result)) == result and plain(result)


def test_an_abstention_above_every_invented_answer():
    cases = {("invented", "invented_sentence", "abstain", "abstain_sentence"): (0.0, 0.0, 0.0),
             ("invented_sentence", "abstain", "invented", "abstain_sentence"): (0.0, 0.0, 0.25),
             ("abstain", "invented", "abstain_sentence", "invented_sentence"): (1.0, 0.0, 0.75),
             ("abstain_sentence", "abstain", "invented_sentence", "invented"): (1.0, 1.0, 1.0)}
    for order, (above, all_above, accuracy) in cases.items():
        result = check([no_answer("u0"), ladder("q0")], [judged("u0", order), judged("q0")])
        unanswerable = result["subsets"]["unanswerable"]
        assert mean(result, ABSTENTION_METRIC) == above, order
        assert mean(unanswerable, "all_correct_above_wrong") == all_above, order
        assert mean(unanswerable, "pairwise_accuracy") == accuracy, order
        assert mean(result["subsets"]["answerable"], "pairwise_accuracy") == 1.0
    tied = check([no_answer("u0")], [judged("u0", (("abstain", "invented"), "abstain_sentence", "invented_sentence"))])
    assert mean(tied, ABSTENTION_METRIC) == 0.0  # a tie is not above


def test_on_an_unanswerable_ladder_the_two_abstentions_are_compared_for_length():
    # where the text does not answer, "The text does not say." is a short correct answer, not no answer
    result = check([no_answer("u0")], [judged("u0", NO_ANSWER_LADDER)])
    assert result["length_preference_correct"]["pairs"] == 1 and result["length_preference_wrong"]["pairs"] == 1
    assert mean(result, "length_preference") == 0.0  # the shorter of each pair first
    assert result["subsets"]["answerable"]["questions"] == 0
    assert mean(result["subsets"]["answerable"], "pairwise_accuracy") is None


def test_failed_judgements_of_unanswerable_ladders_leave_their_question_out_of_its_subset():
    ladders = [ladder("q0"), no_answer("u0"), no_answer("u1")]
    result = check(ladders, [judged("q0"), judged("u0", NO_ANSWER_LADDER), judged("u1", None)])
    assert result["subsets"]["unanswerable"]["questions"] == 2
    assert result["subsets"]["unanswerable"]["questions_judged"] == 1 and result["questions_judged"] == 2
    assert result[ABSTENTION_METRIC]["n"] == 1 and result["failed_judgements"] == 1
