"""Plackett-Luce worths of the models, fitted to a run's judgements.

Model i has a worth w_i (a log-strength). A judge's ranking is read as a sequence of choices: the
best from all the ranked models, then the best of the rest, ..., each choice of i from a set S with
probability exp(w_i) / sum_{j in S} exp(w_j) (Plackett-Luce). Every ``ok`` judgement that ranks at
least two of the listed models is used, over whichever of them it ranks (a judgement over a subset
is a ranking of that subset: PL's marginal on a subset is PL on it; ranked models that are not
listed are dropped), and every judgement of a question (several orders, several judges) counts as
a ranking of its own.

Ties (Breslow's rule, as for tied event times in Cox regression): the ranked models are grouped by
rank value, G1 (best) > G2 > ...; every member i of group Gk is one choice of i from
Gk | Gk+1 | ... (its tied partners included). A choice from i alone has probability 1 and is
dropped, so a last group of one model gives no choice, while a last group of m >= 2 tied models
gives m choices from that group, exactly like a tie anywhere else. A tie is thus evidence that the
tied models are equal: a tie of a and b alone has likelihood e^wa e^wb / (e^wa + e^wb)^2, largest
at wa = wb. Without ties this is exactly the PL likelihood.

Fit: penalised maximum likelihood with ``choix.opt_top1`` (Newton-CG), minimising
-log L + alpha * sum_i w_i^2 (choix's L2 penalty, a Gaussian prior; default :data:`ALPHA`), which
keeps the worth of a model that always wins finite. The likelihood does not change when every
worth shifts, so the penalised optimum has mean 0; worths are centred to mean 0 again exactly. Only
differences mean anything: exp(w_i - w_j) is i's odds against j.

Uncertainty: questions are resampled with replacement (all judgements of a drawn question go with
it; seeded numpy Generator) and the model refitted to each replicate; intervals are percentile
intervals. Replicates are fitted by a vectorised damped Newton on the same penalised objective
(the choices reduced to counts of distinct (winner, set) patterns, started at the point estimate),
not by choix, which loops over choices in Python; the tests check that both give the same worths.
The point estimate is choix's, polished by the same Newton: on a nearly separable study (a
model that wins almost always) the objective is so flat that choix stops a little short of the
optimum the replicates reach, and the interval would then miss its own estimate.
``p_best`` is the share of replicates in which a model has the highest worth (ties split evenly);
``beats[i][j]`` is P(i beats j head-to-head) = e^wi / (e^wi + e^wj) at the estimate, with the
percentile interval of the same quantity over the replicates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import choix
import numpy as np
from scipy.special import expit

if TYPE_CHECKING:
    from raq.records import Judgement

__all__ = ["ALPHA", "N_BOOT", "TIES", "Event", "choice_events", "fit_worths", "plackett_luce"]

#: choix's L2 penalty: alpha * sum of squared worths is added to the negative log-likelihood.
ALPHA = 1e-4
#: Bootstrap replicates by default.
N_BOOT = 1000
#: How ties were treated, one sentence (it goes into the result).
TIES = ("Breslow's rule: each member of a group of tied models is one choice from its group and all worse-ranked "
        "models, so a tie (last place included) counts as evidence of equal worth; choices from one model are dropped.")
#: A choice: (winner, the models it was chosen from, winner included).
Event = tuple[str, tuple[str, ...]]

_CHOIX_TOL = 1e-10  # Newton-CG step tolerance handed to choix
_NEWTON_TOL = 1e-9  # the bootstrap's Newton stops when no worth moves more than this
_NEWTON_STEPS = 100
_BEST_TIE = 1e-9  # worths this close to a replicate's highest share its P(best)
_CELLS = 2_000_000  # replicates x patterns x models held at once


def choice_events(ranks: Mapping[str, float]) -> list[Event]:
    """The choices one ranking stands for (model id -> rank, 1 = best, tied models share a value).

    One ``(winner, choice set)`` per member of each tie group, best group first and, within a
    group, by model id; the set holds the winner, its tied partners and every worse-ranked model,
    ordered by rank, then id. A choice from one model alone is dropped (see the module's docstring).
    """
    values = {str(model): float(rank) for model, rank in ranks.items()}
    bad = {model: rank for model, rank in values.items() if not math.isfinite(rank)}
    if bad:
        raise ValueError(f"ranks must be finite numbers, got {bad}")
    order = sorted(values, key=lambda model: (values[model], model))
    events = []
    for model in order:
        alternatives = tuple(other for other in order if values[other] >= values[model])
        if len(alternatives) > 1:
            events.append((model, alternatives))
    return events


def _check_models(models: Sequence[str]) -> list[str]:
    """The model ids as a list; ValueError unless there are at least 2, all different."""
    out = [str(model) for model in models]
    if len(out) < 2:
        raise ValueError(f"a Plackett-Luce fit needs at least 2 models, got {out}")
    if len(set(out)) != len(out):
        raise ValueError(f"model ids must be different, got {out}")
    return out


def _check_alpha(alpha: float) -> None:
    if not (alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"the L2 penalty alpha must be a finite number > 0, got {alpha!r}")


def fit_worths(events: Sequence[Event], models: Sequence[str], alpha: float = ALPHA) -> dict[str, float]:
    """Penalised maximum-likelihood Plackett-Luce worths (centred to mean 0) of ``models`` from
    choice ``events`` (as :func:`choice_events` makes them), fitted by ``choix.opt_top1``.

    ``alpha`` is the L2 penalty (alpha * sum of squared worths). A model in no event gets worth 0.
    """
    models = _check_models(models)
    _check_alpha(alpha)
    index = {model: i for i, model in enumerate(models)}
    data: list[tuple[int, tuple[int, ...]]] = []
    for winner, alternatives in events:
        unknown = sorted({winner, *alternatives} - index.keys())
        if unknown:
            raise ValueError(f"choice ({winner!r}, {alternatives!r}) names model(s) {unknown} not in {models}")
        losers = tuple(dict.fromkeys(index[model] for model in alternatives if model != winner))
        if not losers:
            raise ValueError(f"choice ({winner!r}, {alternatives!r}) has nothing to choose from")
        data.append((index[winner], losers))
    if not data:
        raise ValueError("no choice events to fit")
    theta = np.asarray(choix.opt_top1(len(models), data, alpha=alpha, tol=_CHOIX_TOL), dtype=float)
    return dict(zip(models, (theta - theta.mean()).tolist()))


def _patterns(questions: Sequence[Sequence[Event]], models: Sequence[str]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct choices of all questions: membership mask (P, k), winner index (P,), and the
    count of each in each question (n_questions, P)."""
    index = {model: i for i, model in enumerate(models)}
    seen: dict[tuple[int, frozenset[int]], int] = {}
    cells: list[tuple[int, int]] = []
    for q, events in enumerate(questions):
        for winner, alternatives in events:
            key = (index[winner], frozenset(index[model] for model in alternatives))
            cells.append((q, seen.setdefault(key, len(seen))))
    mask = np.zeros((len(seen), len(models)), dtype=bool)
    winner_of = np.zeros(len(seen), dtype=int)
    for (choice, members), p in seen.items():
        mask[p, list(members)] = True
        winner_of[p] = choice
    counts = np.zeros((len(questions), len(seen)))
    np.add.at(counts, tuple(np.array(cells).T), 1.0)
    return mask, winner_of, counts


def _objective(theta: np.ndarray, counts: np.ndarray, mask: np.ndarray, winner: np.ndarray,
               alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Penalised negative log-likelihood of each row of ``theta`` (B, k) under its pattern counts
    (B, P), and the choice probabilities (B, P, k) (0 outside each pattern's set)."""
    logits = np.where(mask, theta[:, None, :], -np.inf)
    top = logits.max(axis=2, keepdims=True)
    expd = np.exp(logits - top)
    total = expd.sum(axis=2, keepdims=True)
    lse = (top + np.log(total))[..., 0]
    value = (counts * (lse - theta[:, winner])).sum(axis=1) + alpha * (theta**2).sum(axis=1)
    return value, expd / total


def _newton(counts: np.ndarray, mask: np.ndarray, winner: np.ndarray, alpha: float,
            start: np.ndarray) -> np.ndarray:
    """Penalised ML worths (B, k), centred, for each row of pattern ``counts`` (B, P): damped
    Newton (Armijo backtracking) on the strictly convex objective of :func:`_objective`."""
    k = mask.shape[1]
    theta = np.tile(np.asarray(start, dtype=float), (len(counts), 1))
    wins = counts @ np.eye(k)[winner]
    diag = np.arange(k)
    value, prob = _objective(theta, counts, mask, winner, alpha)
    for _ in range(_NEWTON_STEPS):
        weighted = counts[:, :, None] * prob
        grad = weighted.sum(axis=1) - wins + 2 * alpha * theta
        hess = -np.swapaxes(weighted, 1, 2) @ prob
        hess[:, diag, diag] += weighted.sum(axis=1) + 2 * alpha
        step = -np.linalg.solve(hess, grad[..., None])[..., 0]
        if np.abs(step).max() < _NEWTON_TOL:
            break
        slope = (grad * step).sum(axis=1)
        size = np.ones(len(theta))
        for _ in range(60):
            new_value, new_prob = _objective(theta + size[:, None] * step, counts, mask, winner, alpha)
            worse = new_value > value + 1e-4 * size * slope + 1e-12 * np.abs(value)
            if not worse.any():
                break
            size = np.where(worse, size / 2, size)
        theta, value, prob = theta + size[:, None] * step, new_value, new_prob
    return theta - theta.mean(axis=1, keepdims=True)


def _bootstrap(patterns: tuple[np.ndarray, np.ndarray, np.ndarray], alpha: float, start: np.ndarray,
               n_boot: int, seed: int) -> np.ndarray:
    """Centred worths (n_boot, k) refitted to questions resampled with replacement (``patterns``:
    :func:`_patterns` of the questions)."""
    mask, winner, counts = patterns
    n = len(counts)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    weights = np.zeros((n_boot, n))
    np.add.at(weights, (np.arange(n_boot)[:, None], draws), 1.0)
    boot_counts = weights @ counts
    chunk = max(1, _CELLS // max(1, mask.size))
    out = np.empty((n_boot, mask.shape[1]))
    for first in range(0, n_boot, chunk):
        out[first : first + chunk] = _newton(boot_counts[first : first + chunk], mask, winner, alpha, start)
    return out


def _usable(judgements: Sequence[Judgement], models: Sequence[str]) -> tuple[dict[str, list[Event]], int]:
    """Choice events per question id (first-seen order) of the usable judgements, and their number."""
    wanted = set(models)
    questions: dict[str, list[Event]] = {}
    used = 0
    for judgement in judgements:
        if not judgement.ok:
            continue
        events = choice_events({model: rank for model, rank in judgement.ranks.items() if model in wanted})
        if events:
            questions.setdefault(judgement.question_id, []).extend(events)
            used += 1
    return questions, used


def _interval(values: np.ndarray, estimate: float, alpha_ci: float) -> dict[str, float | None]:
    """``{"estimate", "ci_low", "ci_high"}``; the bounds are None without replicates."""
    if values.size == 0:
        return {"estimate": estimate, "ci_low": None, "ci_high": None}
    low, high = np.quantile(values, [alpha_ci / 2, 1 - alpha_ci / 2])
    return {"estimate": estimate, "ci_low": float(low), "ci_high": float(high)}


def plackett_luce(judgements: Sequence[Judgement], models: Sequence[str], *, n_boot: int = N_BOOT,
                  seed: int = 2024, alpha_ci: float = 0.05, alpha: float = ALPHA) -> dict[str, Any]:
    """Plackett-Luce worths of ``models`` from a run's judgements, with bootstrap uncertainty.

    Uses the ``ok`` judgements that rank at least two of ``models`` (see the module's docstring for
    ties, subsets and the fit). Returns a JSON-ready dict: ``worth`` (centred log-strength with its
    ``1 - alpha_ci`` percentile interval over ``n_boot`` question resamples), ``p_best``, ``beats``
    (``beats[i][j]``: P(i beats j head-to-head)), the numbers of ``events``, ``judgements`` used,
    ``judgements_ignored`` and ``questions``, and ``ties``, ``penalty``, ``ci_level``, ``n_boot``, ``seed``.
    With ``n_boot = 0`` the bounds and ``p_best`` are None. Raises ValueError with fewer than 2
    models, no usable judgement, or a model that no usable judgement ranks.
    """
    models, judgements = _check_models(models), list(judgements)
    _check_alpha(alpha)
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 0) or not 0 < alpha_ci < 1:
        raise ValueError(f"need an integer n_boot >= 0 and 0 < alpha_ci < 1, got n_boot={n_boot!r}, "
                         f"alpha_ci={alpha_ci!r}")
    by_question, used = _usable(judgements, models)
    if not used:
        raise ValueError(f"no usable judgement: none of the {len(judgements)} is ok and ranks at least 2 of {models}")
    questions = list(by_question.values())
    events = [event for question in questions for event in question]
    ranked = {model for _, alternatives in events for model in alternatives}
    unranked = [model for model in models if model not in ranked]
    if unranked:
        raise ValueError(f"model(s) {unranked} are ranked by no usable judgement: their worth is not identified")
    point = fit_worths(events, models, alpha)
    patterns = _patterns(questions, models)
    mask, winner, counts = patterns  # choix stops early on flat objectives (near separation): polish its
    theta = _newton(counts.sum(axis=0, keepdims=True), mask, winner, alpha,  # optimum with the replicates'
                    np.array([point[model] for model in models]))[0]  # Newton, so both agree
    boot = _bootstrap(patterns, alpha, theta, int(n_boot), seed) if n_boot else np.empty((0, len(models)))
    p_best: dict[str, float | None] = dict.fromkeys(models)
    if n_boot:
        top = boot >= boot.max(axis=1, keepdims=True) - _BEST_TIE
        p_best = dict(zip(models, (top / top.sum(axis=1, keepdims=True)).mean(axis=0).tolist()))
    beats = {a: {b: _interval(expit(boot[:, i] - boot[:, j]), float(expit(theta[i] - theta[j])), alpha_ci)
                 for j, b in enumerate(models) if j != i} for i, a in enumerate(models)}
    return {
        "models": models,
        "worth": {m: _interval(boot[:, i], float(theta[i]), alpha_ci) for i, m in enumerate(models)},
        "p_best": p_best,
        "beats": beats,
        "events": len(events),
        "judgements": used,
        "judgements_ignored": len(judgements) - used,
        "questions": len(questions),
        "ties": TIES,
        "penalty": float(alpha),
        "ci_level": 1 - alpha_ci,
        "n_boot": int(n_boot),
        "seed": seed,
    }
