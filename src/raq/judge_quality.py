"""How far a judge can be trusted: failures, position bias, agreement between judges, and
agreement with SQuAD's token F1."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from .analysis import verdicts
from .config import SCORING_PROTOCOLS
from .records import Judgement

#: What :func:`position_bias` says of the pointwise protocol.
POINTWISE_NOTE = "no order is shown: each answer is graded on its own"


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _retried(judgement: Judgement) -> bool:
    """Whether a reply of ``judgement`` had to be asked again (a scoring protocol: any of its
    sub-requests, whose attempts add up)."""
    if judgement.protocol in SCORING_PROTOCOLS and judgement.details:
        return any(int(detail.get("attempts", 1)) > 1 for detail in judgement.details)
    return judgement.attempts > 1


def failures(judgements: Sequence[Judgement]) -> dict[str, Any]:
    """How often the first reply was unusable (of any sub-request, for the scoring protocols),
    and how often every retry failed too."""
    total = len(judgements)
    first_bad = sum(1 for j in judgements if _retried(j) or not j.ok)
    failed = sum(1 for j in judgements if not j.ok)
    return {"judgements": total, "first_reply_invalid": first_bad, "failed_after_retries": failed,
            "failure_rate_before_retries": _rate(first_bad, total),
            "failure_rate_after_retries": _rate(failed, total)}


def _winners(ranks: Mapping[str, float]) -> frozenset[str]:
    """The models sharing the best (lowest) rank."""
    best = min(ranks.values())
    return frozenset(model for model, rank in ranks.items() if rank == best)


def position_bias(judgements: Sequence[Judgement]) -> dict[str, Any]:
    """How far the shown order sways the judge: :func:`listwise_position_bias` for the listwise
    protocols, :func:`pair_order_bias` for ``pairwise``; ``pointwise`` shows no order (a note).
    Judgements of a listwise protocol, when there are any, are the only ones looked at."""
    listwise = [j for j in judgements if j.protocol not in SCORING_PROTOCOLS]
    if listwise or not judgements:
        return listwise_position_bias(listwise)
    pairwise = [j for j in judgements if j.protocol == "pairwise"]
    return pair_order_bias(pairwise) if pairwise else {"note": POINTWISE_NOTE}


def listwise_position_bias(judgements: Sequence[Judgement]) -> dict[str, Any]:
    """First-shown answer's win rate (against 1/k by chance, over the judgements with one
    winner: a tie for first is no win for anyone), mean rank by shown position, and how often
    the verdict changes with the order (questions a judge saw in several orders)."""
    ok = [j for j in judgements if j.ok and j.order]
    if not ok:
        return {"note": "no successful judgements"}
    k = len(ok[0].order)
    decided = [j for j in ok if len(_winners(j.ranks)) == 1]
    first_wins = sum(1 for j in decided if _winners(j.ranks) == {j.order[0]})
    test = sps.binomtest(first_wins, len(decided), 1 / k) if decided else None
    by_position = defaultdict(list)
    for j in ok:
        for position, model in enumerate(j.order, start=1):
            by_position[position].append(j.ranks[model])
    per_question: dict[tuple[str, str], list[Judgement]] = defaultdict(list)
    for j in ok:
        per_question[(j.judge_id, j.question_id)].append(j)
    several = [js for js in per_question.values() if len(js) > 1]
    winner_changes = sum(1 for js in several if len({_winners(j.ranks) for j in js}) > 1)
    ranking_changes = sum(1 for js in several if len({tuple(sorted(j.ranks.items())) for j in js}) > 1)
    return {
        "judgements": len(ok), "answers_per_question": k, "judgements_with_one_winner": len(decided),
        "first_position_win_rate": _rate(first_wins, len(decided)), "chance": 1 / k,
        "first_position_p_value": test.pvalue if test is not None else None,
        "mean_rank_by_position": {str(p): float(np.mean(r)) for p, r in sorted(by_position.items())},
        "questions_with_several_orders": len(several),
        "winner_flip_rate": _rate(winner_changes, len(several)),
        "ranking_flip_rate": _rate(ranking_changes, len(several)),
    }


def _pair_winners(judgement: Judgement) -> dict[tuple[str, str], str]:
    """(first shown, second shown) -> the winner, of every comparison in a pairwise judgement."""
    winners = {}
    for detail in judgement.details:
        shown, winner = detail.get("shown"), detail.get("winner")
        if isinstance(shown, list) and len(shown) == 2 and winner in shown:
            winners[(str(shown[0]), str(shown[1]))] = str(winner)
    return winners


def pair_order_bias(judgements: Sequence[Judgement]) -> dict[str, Any]:
    """The pairwise protocol's order effects (each pair is shown in both orders), over the
    successful judgements: ``pair_consistency``, the share of pairs whose two orders named the
    same winner; ``first_shown_win_rate``, the share of comparisons the first-shown answer won
    (chance 0.5, and exactly 0.5 when every pair is consistent); ``first_shown_p_value``, a sign
    test over the inconsistent pairs (first-shown won in both orders against second-shown won in
    both, 1/2 each by chance)."""
    ok = [j for j in judgements if j.ok]
    if not ok:
        return {"note": "no successful judgements"}
    comparisons = first_wins = pairs = consistent = first_favoured = 0
    for judgement in ok:
        winners = _pair_winners(judgement)
        comparisons += len(winners)
        first_wins += sum(1 for (first, _), winner in winners.items() if winner == first)
        for (a, b), winner in winners.items():
            if a < b and (b, a) in winners:
                pairs += 1
                consistent += winner == winners[(b, a)]
                first_favoured += winner == a and winners[(b, a)] == b
    inconsistent = pairs - consistent
    test = sps.binomtest(first_favoured, inconsistent, 0.5) if inconsistent else None
    return {"protocol": "pairwise", "judgements": len(ok), "comparisons": comparisons,
            "pairs_in_both_orders": pairs, "pair_consistency": _rate(consistent, pairs),
            "first_shown_win_rate": _rate(first_wins, comparisons), "chance": 0.5,
            "inconsistent_pairs": inconsistent, "first_shown_favoured_pairs": first_favoured,
            "first_shown_p_value": test.pvalue if test is not None else None}


def f1_agreement(table: pd.DataFrame, rank_column: str = "rank") -> dict[str, Any]:
    """Agreement of the judge's ranks with token F1 against the gold answers: the mean
    per-question Spearman correlation between rank and -F1, and how often the judge's winner
    has the best F1 (questions where F1 or ranks are all tied are left out; winners tied for
    first count by the share of them that has the best F1)."""
    rhos, winner_best = [], []
    if table.empty or rank_column not in table:
        return {"questions": 0, "mean_spearman": None, "winner_has_best_f1": None}
    for _, group in table.dropna(subset=[rank_column]).groupby("question_id"):
        ranks, scores = group[rank_column].to_numpy(), group["f1"].to_numpy()
        if np.ptp(ranks) == 0 or np.ptp(scores) == 0:
            continue
        rhos.append(sps.spearmanr(ranks, -scores).statistic)
        winner_best.append(float(np.mean(scores[ranks == ranks.min()] == scores.max())))
    return {"questions": len(rhos), "mean_spearman": float(np.mean(rhos)) if rhos else None,
            "winner_has_best_f1": float(np.mean(winner_best)) if winner_best else None}


def kendalls_w(matrix: np.ndarray) -> float | None:
    """Kendall's W of m raters (rows) over k items (columns), with the tie correction."""
    m, k = matrix.shape
    if m < 2 or k < 2:
        return None
    ranks = np.vstack([sps.rankdata(row) for row in matrix])
    sums = ranks.sum(axis=0)
    s = float(((sums - sums.mean()) ** 2).sum())
    ties = sum(float((counts**3 - counts).sum()) for counts in
               (np.unique(row, return_counts=True)[1] for row in ranks))
    denominator = m**2 * (k**3 - k) - m * ties
    return s * 12 / denominator if denominator > 0 else None


def judge_agreement(judgements: Sequence[Judgement], orders: Mapping[str, int]) -> dict[str, Any]:
    """Agreement between judges: mean per-question Kendall's W and pairwise Spearman."""
    judge_ids = list(orders)
    if len(judge_ids) < 2:
        return {"note": "one judge"}
    complete = verdicts(judgements, orders)
    questions = sorted({q for q, _ in complete})
    ws, values = [], defaultdict(list)
    for question in questions:
        if not all((question, j) in complete for j in judge_ids):
            continue
        models = sorted(complete[(question, judge_ids[0])])
        matrix = np.array([[complete[(question, j)][m] for m in models] for j in judge_ids])
        w = kendalls_w(matrix)
        if w is not None:
            ws.append(w)
        for j, row in zip(judge_ids, matrix):
            values[j].extend(row)
    pairs = {}
    for i, a in enumerate(judge_ids):
        for b in judge_ids[i + 1:]:
            if len(values[a]) > 2 and np.ptp(values[a]) > 0 and np.ptp(values[b]) > 0:
                pairs[f"{a} vs {b}"] = float(sps.spearmanr(values[a], values[b]).statistic)
    return {"questions": len(ws), "mean_kendalls_w": float(np.mean(ws)) if ws else None,
            "pairwise_spearman": pairs}


def cost(judgements: Sequence[Judgement]) -> dict[str, Any]:
    """What a judge's verdicts cost per question judged: seconds, and prompt tokens sent and read
    (read: not served from the judge's cache; None where its backend did not say)."""
    questions = len({j.question_id for j in judgements})
    if not questions:
        return {"questions": 0}
    sent = [j.prompt_tokens for j in judgements]
    read = [j.prompt_tokens_read for j in judgements]
    return {"questions": questions, "seconds_per_question": sum(j.seconds for j in judgements) / questions,
            "prompt_tokens_per_question": sum(sent) / questions if None not in sent else None,  # type: ignore[arg-type]
            "prompt_tokens_read_per_question": sum(read) / questions if None not in read else None}  # type: ignore[arg-type]


def judge_report(judgements: Sequence[Judgement], table: pd.DataFrame, orders: Mapping[str, int]) -> dict[str, Any]:
    """Everything above, per judge and across judges."""
    per_judge = {}
    for judge_id in orders:
        own = [j for j in judgements if j.judge_id == judge_id]
        column = f"rank.{judge_id}" if f"rank.{judge_id}" in table.columns else "rank"
        per_judge[judge_id] = {"orders": orders[judge_id], **failures(own),
                               "position_bias": position_bias(own), "f1_agreement": f1_agreement(table, column),
                               "cost": cost(own)}
    return {"judges": per_judge, "agreement": judge_agreement(judgements, orders),
            "aggregate_f1_agreement": f1_agreement(table, "rank") if len(orders) > 1 else None}
