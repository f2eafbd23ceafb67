"""How accurately a judge ranks answer ladders (:mod:`raq.judge_ladder`), whose tiers are known:
0 correct, 1 partial, 2 wrong, each rung's tier read from its own ladder (``abstain`` is correct on
a question without gold answers, wrong on one with them).

A question counts when every one of its orders has a successful judgement (a failed judgement
tried again and then successful counts as that success; every failure is counted). Its verdict
is each rung's mean rank over its orders (1 = best; ties share the mean rank). Per question:

* ``pairwise_accuracy``: over every (correct, wrong) pair of rungs, the share with the correct
  one ranked better, a tie counting one half (``pairwise_accuracy_strict``: a tie counts 0).
  Partial rungs are in no pair, nor are two rungs of the same tier, so how the judge orders
  equally good answers never counts for or against it.
* ``all_correct_above_wrong``: 1 when every correct rung is ranked better than every wrong one.
* ``kendall_tau``: Kendall's tau-b between the verdict's ranks and the tiers
  (``scipy.stats.kendalltau``); questions where it is undefined are left out of it only. The
  order of two rungs of one tier does not change it, but a verdict that ranks them apart
  cannot reach 1 (at best 0.77 for 3 correct and 3 wrong rungs, 1 when each tier is tied).
* ``wrong_first``: the share of wrong rungs among the best-ranked ones (those sharing rank 1).
* ``position_consistency``: listwise, with 2 or more orders: 1 when every order gave the same
  ranks, else 0; ``winner_consistency``: 1 when every order gave the same best rungs. Pairwise
  (details with ``shown``): the share of pairs whose two orders named the same winner.
  Pointwise: None (no order is shown).
* ``length_preference``: over pairs of rungs of one tier whose texts differ in length
  (``abstain`` left out where gold answers exist: it is no answer there, not a shorter one), the
  share in which the longer one is ranked better, a tie counting one half: 0.5 is no preference,
  above 0.5 a preference for longer answers; also within the correct and within the wrong tier
  alone (each with the number of ``pairs`` compared over the judged questions).
* ``stability``: for a question judged again in its first order (``repeats``), 1 when the
  repeat's ranks equal those of its first-order judgement, else 0 (its first successful repeat
  counts; failed repeats are counted under ``repeats``).

Each is reported as ``mean`` over the questions where it is defined (``n`` of them), with a
``1 - alpha`` percentile-bootstrap interval (``ci_low``, ``ci_high``; None under 2 questions)
from :func:`raq.stats.bootstrap_mean_ci`: whole questions resampled, the same resamples for
every metric defined on the same questions. Per rung (``rungs``): ``mean_rank``, ``ranked_first``
(the share of questions it is ranked best, a tie for first shared) and ``n``.

Also reported: ``questions`` (ladders), ``questions_judged``, ``judgements``,
``failed_judgements`` and ``failure_rate`` (repeats counted apart, under ``repeats``), ``shown``
(``listwise``, ``pairwise`` or ``pointwise``, read from the judgements' details), ``seconds``
(of judging, repeats included) and ``seconds_per_question`` (the judgements' seconds, repeats
left out, over the questions with a judgement). :func:`meets` compares the mean pairwise accuracy with a target.

When some ladders are of questions without gold answers (unanswerable), two more entries:
``abstention_above_invented`` (on those ladders: 1 when a correct abstention is ranked better than
every invented answer, else 0), and ``subsets``: ``answerable`` and ``unanswerable``, each with its
``questions``, ``questions_judged``, every metric above and ``rungs``, over its own ladders.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats as sps

from .judge_ladder import Ladder
from .records import Judgement
from .stats import N_BOOT, bootstrap_mean_ci

CORRECT, PARTIAL, WRONG = 0, 1, 2
NO_LENGTH_RUNGS = frozenset({"abstain"})  # on a ladder with gold answers
ABSTENTION_METRIC = "abstention_above_invented"
METRICS = ("pairwise_accuracy", "pairwise_accuracy_strict", "all_correct_above_wrong", "kendall_tau",
           "wrong_first", "position_consistency", "winner_consistency", "stability", "length_preference",
           "length_preference_correct", "length_preference_wrong")
NAN = float("nan")


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else NAN


def _better(a: float, b: float, tie: float = 0.5) -> float:
    """1 when rank ``a`` is better (lower) than ``b``, ``tie`` when equal, else 0."""
    return 1.0 if a < b else tie if a == b else 0.0


def _best(ranks: Mapping[str, float]) -> frozenset[str]:
    best = min(ranks.values())
    return frozenset(rung for rung, rank in ranks.items() if rank == best)


def shown_kind(judgement: Judgement) -> str:
    """``"pairwise"`` (details name the pair ``shown``), ``"pointwise"`` (details name one
    ``model``) or ``"listwise"`` (no details)."""
    if any("shown" in entry for entry in judgement.details):
        return "pairwise"
    if any("model" in entry for entry in judgement.details):
        return "pointwise"
    return "listwise"


def no_length_rungs(ladder: Ladder) -> frozenset[str]:
    """The rungs left out of length preference: ``abstain`` where the question has gold answers."""
    return NO_LENGTH_RUNGS if ladder.question.answerable else frozenset()


def abstention_above_invented(verdict: Mapping[str, float], tiers: Mapping[str, int]) -> float:
    """On an unanswerable question's ladder: 1 when some correct rung (an abstention) is ranked better
    than every wrong (invented) one, else 0; NaN without both."""
    correct = [verdict[r] for r in verdict if tiers[r] == CORRECT]
    wrong = [verdict[r] for r in verdict if tiers[r] == WRONG]
    return float(min(correct) < min(wrong)) if correct and wrong else NAN


def ranking_metrics(verdict: Mapping[str, float], tiers: Mapping[str, int], texts: Mapping[str, str],
                    no_length: frozenset[str] = NO_LENGTH_RUNGS) -> dict[str, float]:
    """The metrics of one question's verdict that need no order or repeat (NaN: undefined);
    ``no_length``: the rungs left out of length preference."""
    correct = [r for r in verdict if tiers[r] == CORRECT]
    wrong = [r for r in verdict if tiers[r] == WRONG]
    pairs = [(c, w) for c in correct for w in wrong]
    best = _best(verdict)
    rungs = sorted(verdict)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tau = float(sps.kendalltau([verdict[r] for r in rungs], [tiers[r] for r in rungs]).statistic)
    values = {
        "pairwise_accuracy": _mean([_better(verdict[c], verdict[w]) for c, w in pairs]),
        "pairwise_accuracy_strict": _mean([_better(verdict[c], verdict[w], tie=0.0) for c, w in pairs]),
        "all_correct_above_wrong": float(all(verdict[c] < verdict[w] for c, w in pairs)) if pairs else NAN,
        "kendall_tau": tau,
        "wrong_first": sum(tiers[r] == WRONG for r in best) / len(best),
    }
    by_tier: dict[int, list[float]] = defaultdict(list)
    for a, b in combinations([r for r in rungs if r not in no_length], 2):
        if tiers[a] == tiers[b] and len(texts[a]) != len(texts[b]):
            longer, shorter = (a, b) if len(texts[a]) > len(texts[b]) else (b, a)
            by_tier[tiers[a]].append(_better(verdict[longer], verdict[shorter]))
    values["length_preference"] = _mean([v for scores in by_tier.values() for v in scores])
    values["length_preference_correct"] = _mean(by_tier[CORRECT])
    values["length_preference_wrong"] = _mean(by_tier[WRONG])
    return values


def pair_consistency(judgements: Sequence[Judgement]) -> float:
    """The share of pairs, shown in both orders, whose two orders named the same winner."""
    winners: dict[frozenset[str], list[Any]] = defaultdict(list)
    for judgement in judgements:
        for entry in judgement.details:
            if "shown" in entry:
                winners[frozenset(entry["shown"])].append(entry.get("winner"))
    both = [named for named in winners.values() if len(named) >= 2]
    return _mean([float(len(set(named)) == 1) for named in both])


def order_metrics(per_order: Sequence[Judgement], kind: str) -> dict[str, float]:
    """``position_consistency`` and ``winner_consistency`` of one question (NaN: undefined)."""
    if kind == "pairwise":
        return {"position_consistency": pair_consistency(per_order), "winner_consistency": NAN}
    if kind == "pointwise" or len(per_order) < 2:
        return {"position_consistency": NAN, "winner_consistency": NAN}
    rankings = {tuple(sorted(j.ranks.items())) for j in per_order}
    winners = {_best(j.ranks) for j in per_order}
    return {"position_consistency": float(len(rankings) == 1), "winner_consistency": float(len(winners) == 1)}


def _successes(judgements: Sequence[Judgement], ladders: Mapping[str, Ladder],
               orders: int) -> dict[str, dict[int, Judgement]]:
    """question -> order index -> its first successful judgement (checked against the ladder)."""
    found: dict[str, dict[int, Judgement]] = defaultdict(dict)
    for j in judgements:
        ladder = ladders.get(j.question_id)
        if ladder is None:
            raise ValueError(f"a judgement of question {j.question_id!r}, which has no ladder")
        if not 0 <= j.order_index < orders:
            raise ValueError(f"question {j.question_id!r}: order_index {j.order_index} outside 0..{orders - 1}")
        if j.ok and set(j.ranks) != set(ladder.tiers()):
            raise ValueError(f"question {j.question_id!r}: ranks of {sorted(j.ranks)}, "
                             f"not of the ladder's rungs {sorted(ladder.tiers())}")
        if j.ok:
            found[j.question_id].setdefault(j.order_index, j)
    return found


def _summary(columns: Mapping[str, list[float]], alpha: float, seed: int) -> dict[str, dict[str, Any]]:
    """Mean, bootstrap CI and n of each column over its defined (non-NaN) questions; columns
    defined on the same questions share the resamples."""
    groups: dict[tuple[bool, ...], list[str]] = defaultdict(list)
    for name, values in columns.items():
        groups[tuple(not math.isnan(v) for v in values)].append(name)
    out: dict[str, dict[str, Any]] = {}
    for mask, names in groups.items():
        rows = [i for i, defined in enumerate(mask) if defined]
        x = np.array([[columns[name][i] for name in names] for i in rows], dtype=float).reshape(len(rows), len(names))
        interval = bootstrap_mean_ci(x, alpha, N_BOOT, seed)
        for k, name in enumerate(names):
            low, high = (None, None) if interval is None else (float(interval[0][k]), float(interval[1][k]))
            out[name] = {"mean": float(x[:, k].mean()) if rows else None, "ci_low": low, "ci_high": high,
                         "n": len(rows)}
    return {name: out[name] for name in columns}


def _rung_summary(verdicts: Sequence[Mapping[str, float]]) -> dict[str, dict[str, Any]]:
    ranks: dict[str, list[float]] = defaultdict(list)
    first: dict[str, list[float]] = defaultdict(list)
    for verdict in verdicts:
        best = _best(verdict)
        for rung, rank in verdict.items():
            ranks[rung].append(rank)
            first[rung].append(1 / len(best) if rung in best else 0.0)
    return {rung: {"mean_rank": _mean(ranks[rung]), "ranked_first": _mean(first[rung]), "n": len(ranks[rung])}
            for rung in ranks}


def _notes(kind: str, orders: int, repeats: int) -> dict[str, str]:
    notes = {}
    if kind == "pointwise":
        notes["position_consistency"] = notes["winner_consistency"] = "no order is shown"
    elif kind == "pairwise":
        notes["winner_consistency"] = "pairwise: position_consistency compares the two orders of each pair"
    elif orders < 2:
        notes["position_consistency"] = notes["winner_consistency"] = "one order per question"
    if not repeats:
        notes["stability"] = "no successful repeats"
    return notes


def check_metrics(ladders: Sequence[Ladder], judgements: Sequence[Judgement], repeats: Sequence[Judgement],
                  *, orders: int, alpha: float = 0.05, seed: int = 2024) -> dict[str, Any]:
    """The judge's accuracy on ``ladders`` (see the module docstring) as a JSON-ready dict.

    ``judgements`` has ``orders`` judgements per question (order_index 0..orders-1; 1 for the
    pointwise and pairwise protocols), ``repeats`` order 0 of some questions judged again."""
    if orders < 1:
        raise ValueError(f"orders must be at least 1, not {orders}")
    if len({j.judge_id for j in [*judgements, *repeats]}) > 1:
        raise ValueError("judgements of several judges: check one judge at a time")
    by_question = {ladder.question.question_id: ladder for ladder in ladders}
    successes = _successes(judgements, by_question, orders)
    repeated = _successes(repeats, by_question, 1)
    judged = [q for q in by_question if len(successes.get(q, {})) == orders]
    kind = shown_kind(successes[judged[0]][0]) if judged else "listwise"
    rows: list[_Row] = []
    for question in judged:
        ladder, per_order = by_question[question], [successes[question][i] for i in range(orders)]
        verdict = {rung: _mean([j.ranks[rung] for j in per_order]) for rung in per_order[0].ranks}
        again = repeated.get(question, {}).get(0)
        stable = NAN if again is None else float(again.ranks == per_order[0].ranks)
        values = {**ranking_metrics(verdict, ladder.tiers(), ladder.answers(), no_length_rungs(ladder)),
                  **order_metrics(per_order, kind), "stability": stable,
                  ABSTENTION_METRIC: NAN if ladder.question.answerable else abstention_above_invented(
                      verdict, ladder.tiers())}
        rows.append((question, values, verdict))
    unanswerable = [q for q, ladder in by_question.items() if not ladder.question.answerable]
    names = (*METRICS, ABSTENTION_METRIC) if unanswerable else METRICS
    figures = _figures(rows, by_question, names, kind, orders, alpha, seed)
    if unanswerable:
        subsets = {}
        for subset, answerable, wanted in (("answerable", True, METRICS), ("unanswerable", False, names)):
            own = [row for row in rows if by_question[row[0]].question.answerable is answerable]
            subsets[subset] = {"questions": sum(ladder.question.answerable is answerable for ladder in ladders),
                               "questions_judged": len(own),
                               **_figures(own, by_question, wanted, kind, orders, alpha, seed)}
        figures["subsets"] = subsets
    failed = sum(not j.ok for j in judgements)
    seconds = sum(j.seconds for j in judgements)
    asked = len({j.question_id for j in judgements})
    return {
        "questions": len(ladders), "questions_judged": len(judged), "orders": orders, "shown": kind,
        "judgements": len(judgements), "failed_judgements": failed,
        "failure_rate": failed / len(judgements) if judgements else None,
        "repeats": {"judgements": len(repeats), "failed": sum(not j.ok for j in repeats),
                    "seconds": sum(j.seconds for j in repeats)},
        "seconds": seconds + sum(j.seconds for j in repeats),
        "seconds_per_question": seconds / asked if asked else None,
        "alpha": alpha, "bootstrap": {"method": "percentile bootstrap of the mean, whole questions resampled",
                                      "n_boot": N_BOOT, "seed": seed},
        **figures,
    }


_Row = tuple[str, dict[str, float], dict[str, float]]  # a judged question, its metrics and its verdict


def _figures(rows: Sequence[_Row], ladders: Mapping[str, Ladder], names: Sequence[str], kind: str, orders: int,
             alpha: float, seed: int) -> dict[str, Any]:
    """The summaries of metrics ``names`` over the judged questions ``rows``, and per rung."""
    columns = {name: [values[name] for _, values, _ in rows] for name in names}
    metrics: dict[str, Any] = _summary(columns, alpha, seed)
    for name in ("length_preference", "length_preference_correct", "length_preference_wrong"):
        metrics[name]["pairs"] = _length_pairs([question for question, _, _ in rows], ladders, name)
    for name, note in _notes(kind, orders, sum(not math.isnan(v) for v in columns["stability"])).items():
        metrics[name]["note"] = note
    return {**metrics, "rungs": _rung_summary([verdict for _, _, verdict in rows])}


def _length_pairs(questions: Sequence[str], ladders: Mapping[str, Ladder], metric: str) -> int:
    """How many rung pairs a length-preference metric compares over ``questions``."""
    tiers_wanted = {"length_preference": (CORRECT, WRONG, PARTIAL), "length_preference_correct": (CORRECT,),
                    "length_preference_wrong": (WRONG,)}[metric]
    count = 0
    for question in questions:
        skipped = no_length_rungs(ladders[question])
        rungs = [r for r in ladders[question].rungs if r.name not in skipped and r.tier in tiers_wanted]
        count += sum(a.tier == b.tier and len(a.text) != len(b.text) for a, b in combinations(rungs, 2))
    return count


def meets(metrics: Mapping[str, Any], min_accuracy: float) -> bool:
    """Whether the judge's mean pairwise accuracy reaches ``min_accuracy`` (False when unknown)."""
    mean = metrics.get("pairwise_accuracy", {}).get("mean")
    return mean is not None and mean >= min_accuracy
