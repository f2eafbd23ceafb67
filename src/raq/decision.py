"""The decision a user ran the study for: which model to run, stated with its evidence.

Pure functions over plain data: a statistics dict (:func:`raq.analysis.statistics`, or
:func:`raq.stats.rank_statistics` without its ``power`` entry) and per-model speed and memory figures
(``answers_per_s``, ``ttft_s``, ``memory_mib``; any may be missing).

A model is named best only when the blocked omnibus test (Friedman) is significant and the post-hoc
test (Nemenyi by default) separates the lowest mean rank from every other model. Otherwise the models
the data do not separate are listed, and the fastest of them (the least memory when speed is missing)
is offered as a choice on speed, not on quality. When questions share paragraphs, the statistics'
``by_paragraph`` entry (the same shape, paragraphs as blocks, no power plan) is the more cautious input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .tradeoffs import MEMORY_AXIS, SPEED_AXES, figure, finite, pareto_set, tradeoffs

__all__ = ["SPEED_AXES", "MEMORY_AXIS", "POSTHOCS", "pareto_set", "tradeoffs", "recommendation", "headline_best"]

#: The blocked family's post-hoc tests a decision can rest on, with their names in sentences.
POSTHOCS: dict[str, str] = {"nemenyi": "Nemenyi", "wilcoxon_holm": "Wilcoxon-Holm", "conover_holm": "Conover-Holm"}


@dataclass(frozen=True)
class _Separation:
    """What the rank statistics say about the lowest mean rank against the other models."""

    order: list[str]  # models with a mean rank, lowest first (ties by id)
    mean_ranks: dict[str, float]
    friedman_p: float | None
    friedman_note: str | None
    p_against: dict[str, float | None]  # other model -> post-hoc p against order[0]
    equals: list[str]  # not significantly worse than order[0] (itself included), by mean rank
    alpha: float

    @property
    def lowest(self) -> str | None:
        return self.order[0] if self.order else None

    @property
    def omnibus_significant(self) -> bool:
        return self.friedman_p is not None and self.friedman_p < self.alpha

    @property
    def separated(self) -> bool:
        """The lowest mean rank is significantly better than every other model."""
        return len(self.order) >= 2 and self.equals == self.order[:1]


def _separation(stats: Mapping[str, Any], alpha: float, posthoc: str) -> _Separation:
    if posthoc not in POSTHOCS:
        raise ValueError(f"posthoc must be one of {sorted(POSTHOCS)}, not {posthoc!r}")
    summary = stats.get("summary") or {}
    mean_ranks: dict[str, float] = {}
    for model in stats.get("models") or []:
        value = finite((summary.get(model) or {}).get("mean"))
        if value is not None:
            mean_ranks[str(model)] = value
    order = sorted(mean_ranks, key=lambda m: (mean_ranks[m], m))
    blocked = stats.get("blocked") or {}
    friedman = blocked.get("friedman") or {}
    friedman_p = finite(friedman.get("p_value"))
    p_values = (blocked.get(posthoc) or {}).get("p_values") or {}
    p_against: dict[str, float | None] = {}
    if order:
        row, lowest = p_values.get(order[0]) or {}, order[0]
        for model in order[1:]:
            value = finite(row.get(model))
            p_against[model] = value if value is not None else finite((p_values.get(model) or {}).get(lowest))

    def separable(model: str) -> bool:  # a missing pairwise p never separates
        p = p_against[model]
        return p is not None and p < alpha

    equals = list(order)
    if friedman_p is not None and friedman_p < alpha:
        equals = order[:1] + [m for m in order[1:] if not separable(m)]
    return _Separation(order, mean_ranks, friedman_p, friedman.get("note"), p_against, equals, float(alpha))


def headline_best(stats: Mapping[str, Any], alpha: float = 0.05, *, posthoc: str = "nemenyi") -> str | None:
    """The model to name as best in a one-line headline, or None when the data do not support one:
    Friedman p < ``alpha`` and the ``posthoc`` p of the lowest mean rank against every other model
    below ``alpha``."""
    separation = _separation(stats, alpha, posthoc)
    return separation.lowest if separation.separated else None


# --- wording -----------------------------------------------------------------------------------
def _p(p: float | None) -> str:
    """``p = 0.041`` (2 significant figures), ``p < 0.0001``, or ``no p-value``."""
    if p is None:
        return "no p-value"
    return "p < 0.0001" if p < 0.0001 else f"p = {p:.2g}"


def _number(value: float) -> str:
    """A figure, plainly: whole numbers from 100 on, else 2 significant figures."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2g}"


def _names(models: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return models[0] if len(models) == 1 else ", ".join(models[:-1]) + f" and {models[-1]}"


_UNITS = {"answers_per_s": "{} answers/s", "ttft_s": "{} s to first token", MEMORY_AXIS: "{} MiB peak memory"}


def _ratios(per_model: Mapping[str, Mapping[str, float]], model: str, others: Sequence[str],
            speed_axis: str | None = None) -> tuple[str | None, dict[str, float], dict[str, float]]:
    """(speed axis, times faster ``model`` is than each other, ``model``'s memory / each other's)."""
    if speed_axis is None:
        speed_axis = next((a for a in SPEED_AXES if figure(per_model, model, a) is not None), None)
    speed: dict[str, float] = {}
    memory: dict[str, float] = {}
    own_speed = figure(per_model, model, speed_axis) if speed_axis else None
    own_memory = figure(per_model, model, MEMORY_AXIS)
    for other in others:
        theirs = figure(per_model, other, speed_axis) if speed_axis else None
        if own_speed is not None and theirs is not None and speed_axis is not None:
            speed[other] = own_speed / theirs if SPEED_AXES[speed_axis] == "higher" else theirs / own_speed
        their_memory = figure(per_model, other, MEMORY_AXIS)
        if own_memory is not None and their_memory is not None:
            memory[other] = own_memory / their_memory
    return speed_axis if speed else None, speed, memory


def _comparison(speed_axis: str | None, speed: float | None, memory: float | None) -> str:
    """``2.1x faster and 40% less memory`` (empty when neither is known)."""
    parts = []
    if speed is not None:
        suffix = " to first token" if speed_axis == "ttft_s" else ""
        parts.append(f"{speed:.1f}x faster{suffix}" if speed >= 1 else f"{1 / speed:.1f}x slower{suffix}")
    if memory is not None:
        parts.append(f"{1 - memory:.0%} less memory" if memory <= 1 else f"{memory - 1:.0%} more memory")
    return " and ".join(parts)


def _questions_clause(stats: Mapping[str, Any], omnibus_significant: bool) -> tuple[int | None, str]:
    """The number of questions the power plan says would separate the models, and its wording."""
    power = stats.get("power")
    if omnibus_significant:
        return None, ("how many questions would separate them is not known (the power plan is for the Friedman "
                      "test over all the models, which already rejects)")
    if not isinstance(power, Mapping) or "n_needed" not in power:
        note = power.get("note") if isinstance(power, Mapping) else None
        return None, "how many questions would separate them is not known (no power plan" + (
            f": {note})" if note else ")")
    target = finite(power.get("target_power"))
    at = f"{target:.0%} power" if target is not None else "the target power"
    needed = power.get("n_needed")
    if needed is None:
        plan = power.get("plan") or {}
        reached = finite(plan.get("power"))
        there = f", power {reached:.2f} there" if reached is not None else ""
        return None, (f"not even {plan.get('n_max', 'the largest planned number of')} questions would give the "
                      f"Friedman test {at} at these mean ranks (the planner's estimate{there})")
    judged = stats.get("n_questions")
    this_run = f"; this run judged {judged}" if judged is not None else ""
    return int(needed), (f"about {int(needed)} questions would (the planner's estimate for the Friedman test at "
                         f"{at} at these mean ranks{this_run})")


# --- the recommendation ------------------------------------------------------------------------
def recommendation(stats: Mapping[str, Any], per_model: Mapping[str, Mapping[str, float]], *, alpha: float = 0.05,
                   posthoc: str = "nemenyi") -> dict[str, Any]:
    """Which model to run, on what basis, in one sentence that states its evidence.

    ``basis`` is ``"quality"`` when Friedman p < ``alpha`` and the ``posthoc`` test separates the
    lowest mean rank from every other model; ``"speed among equals"`` when the data do not separate
    several models (Friedman not significant, or post-hoc p >= ``alpha`` against the lowest mean
    rank), and the fastest of them (by ``answers_per_s``, else ``ttft_s``, else the least
    ``memory_mib``; a figure every one of them has) is the practical choice; ``"none"`` when there
    is nothing to choose by. ``evidence`` holds the p-values, mean ranks, and the chosen model's
    speed ratios (times faster than each other model) and memory ratios (its memory / theirs).
    """
    sep = _separation(stats, alpha, posthoc)
    test = POSTHOCS[posthoc]
    evidence: dict[str, Any] = {
        "alpha": float(alpha), "posthoc": posthoc, "n_questions": stats.get("n_questions"),
        "friedman_p": sep.friedman_p, "friedman_note": sep.friedman_note,
        "mean_ranks": {m: sep.mean_ranks[m] for m in sep.order}, "lowest_mean_rank": sep.lowest,
        "p_against_lowest": dict(sep.p_against), "not_significantly_worse": list(sep.equals),
        "questions_needed": None, "choice_axis": None, "figures": {}, "speed_axis": None,
        "speed_ratios": {}, "memory_ratios": {},
    }

    lowest = sep.lowest
    if lowest is None:
        return _result(evidence, None, "none", "No question has a rank for every model: there is nothing to recommend.")
    if len(sep.order) == 1:
        return _result(evidence, None, "none",
                       f"Only one model has a mean rank ({lowest}): there is nothing to compare.")
    figures_of: dict[str, dict[str, float]] = {m: {} for m in sep.order}
    for model in sep.order:
        for axis_name in (*SPEED_AXES, MEMORY_AXIS):
            value = figure(per_model, model, axis_name)
            if value is not None:
                figures_of[model][axis_name] = value
    friedman = f"Friedman {_p(sep.friedman_p)}" if sep.friedman_p is not None else (
        f"no Friedman test: {sep.friedman_note}" if sep.friedman_note else "no Friedman test")

    if sep.separated:
        return _with_p_best(_best_on_quality(sep, per_model, figures_of, friedman, test, evidence), stats)
    return _with_p_best(_among_equals(sep, stats, per_model, figures_of, friedman, test, evidence), stats)


def _with_p_best(result: dict[str, Any], stats: Mapping[str, Any]) -> dict[str, Any]:
    """The recommended model's Plackett-Luce probability of being the best, where it was fitted."""
    model = result["model"]
    p_best = finite(((stats.get("plackett_luce") or {}).get("p_best") or {}).get(model)) if model else None
    result["evidence"]["p_best"] = p_best
    if p_best is not None:
        result["sentence"] += f" Plackett-Luce: P(best) {p_best:.2f} for {model}."
    return result


def _result(evidence: dict[str, Any], model: str | None, basis: str, sentence: str) -> dict[str, Any]:
    """A recommendation's record."""
    return {"model": model, "basis": basis, "sentence": sentence, "evidence": evidence}


def _best_on_quality(sep: _Separation, per_model: Mapping[str, Mapping[str, float]],
                     figures_of: dict[str, dict[str, float]], friedman: str, test: str,
                     evidence: dict[str, Any]) -> dict[str, Any]:
    """The recommendation when the lowest mean rank is separated from every other model."""
    lowest = sep.lowest
    assert lowest is not None
    runner = sep.order[1]
    against = ", ".join(f"{_p(sep.p_against[m])} against {m}" for m in sep.order[1:])
    sentence = (f"{lowest}: best on quality (mean rank {sep.mean_ranks[lowest]:.2f}, next {runner} "
                f"{sep.mean_ranks[runner]:.2f}; {friedman}; {test} {against}).")
    axis, speed, memory = _ratios(per_model, lowest, sep.order[1:])
    evidence.update(figures=figures_of, speed_axis=axis, speed_ratios=speed, memory_ratios=memory)
    trade = _comparison(axis, speed.get(runner), memory.get(runner))
    if trade:
        sentence += f" Speed and memory: {trade} than {runner}."
    return _result(evidence, lowest, "quality", sentence)


def _among_equals(sep: _Separation, stats: Mapping[str, Any], per_model: Mapping[str, Mapping[str, float]],
                  figures_of: dict[str, dict[str, float]], friedman: str, test: str,
                  evidence: dict[str, Any]) -> dict[str, Any]:
    """The recommendation when the data do not separate several models: the fastest of them."""
    lowest = sep.lowest
    assert lowest is not None
    others = [m for m in sep.equals[1:] if sep.p_against[m] is not None]
    posthoc_part = worse_part = ""
    if others:
        pairs = ", ".join(f"{_p(sep.p_against[m])} for {m}" for m in others)
        posthoc_part = f"; {test} {pairs} against {lowest}, the lowest mean rank"
    worse = [m for m in sep.order if m not in sep.equals]
    if worse:
        worse_part = "; significantly worse: " + ", ".join(f"{m} ({test} {_p(sep.p_against[m])})" for m in worse)
    needed, questions = _questions_clause(stats, sep.omnibus_significant)
    evidence["questions_needed"] = needed
    sentence = f"The data do not separate {_names(sep.equals)} ({friedman}{posthoc_part}{worse_part}); {questions}."
    evidence["figures"] = {m: figures_of[m] for m in sep.equals}

    axis = next((a for a in (*SPEED_AXES, MEMORY_AXIS) if all(a in figures_of[m] for m in sep.equals)), None)
    if axis is None:
        return _result(evidence, None, "none",
                       sentence + " There are no speed or memory figures for all of them to choose by.")
    sign = -1.0 if (SPEED_AXES.get(axis) or "lower") == "higher" else 1.0
    ranked = sorted(sep.equals, key=lambda m: (sign * figures_of[m][axis], sep.mean_ranks[m], m))
    chosen = ranked[0]
    reference = lowest if chosen != lowest else ranked[1]
    speed_axis, speed, memory = _ratios(per_model, chosen, [m for m in sep.equals if m != chosen],
                                        axis if axis in SPEED_AXES else None)
    evidence.update(choice_axis=axis, speed_axis=speed_axis, speed_ratios=speed, memory_ratios=memory)
    if axis in SPEED_AXES:
        label = "Fastest of them" + (" to the first token" if axis == "ttft_s" else "")
        label += ", a choice on speed, not on quality"
    else:
        label = "Least memory of them (no speed figures for all), a choice on memory, not on quality"
    trade = _comparison(speed_axis, speed.get(reference), memory.get(reference))
    which = ", the lowest mean rank" if reference == lowest else (", the next fastest" if axis in SPEED_AXES
                                                                  else ", the next lightest")
    compared = f"; {trade} than {reference}{which}" if trade else ""
    sentence += f" {label}: {chosen} ({_UNITS[axis].format(_number(figures_of[chosen][axis]))}{compared})."
    return _result(evidence, chosen, "speed among equals", sentence)
