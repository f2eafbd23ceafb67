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
from .records import Judgement


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def failures(judgements: Sequence[Judgement]) -> dict[str, Any]:
    """How often the first reply was unusable, and how often every retry failed too."""
    total = len(judgements)
    first_bad = sum(1 for j in judgements if j.attempts > 1 or not j.ok)
    failed = sum(1 for j in judgements if not j.ok)
    return {"judgements": total, "first_reply_invalid": first_bad, "failed_after_retries": failed,
            "failure_rate_before_retries": _rate(first_bad, total),
            "failure_rate_after_retries": _rate(failed, total)}


def _winners(ranks: Mapping[str, float]) -> frozenset[str]:
    """The models sharing the best (lowest) rank."""
    best = min(ranks.values())
    return frozenset(model for model, rank in ranks.items() if rank == best)


def position_bias(judgements: Sequence[Judgement]) -> dict[str, Any]:
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


def judge_report(judgements: Sequence[Judgement], table: pd.DataFrame, orders: Mapping[str, int]) -> dict[str, Any]:
    """Everything above, per judge and across judges."""
    per_judge = {}
    for judge_id in orders:
        own = [j for j in judgements if j.judge_id == judge_id]
        column = f"rank.{judge_id}" if f"rank.{judge_id}" in table.columns else "rank"
        per_judge[judge_id] = {"orders": orders[judge_id], **failures(own),
                               "position_bias": position_bias(own), "f1_agreement": f1_agreement(table, column)}
    return {"judges": per_judge, "agreement": judge_agreement(judgements, orders),
            "aggregate_f1_agreement": f1_agreement(table, "rank") if len(orders) > 1 else None}
