"""Quality against speed and memory: which models no other model beats on both.

Pure functions over plain data: quality per model (higher is better) and per-model figures
(``answers_per_s``, ``ttft_s``, ``memory_mib``; any may be missing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["SPEED_AXES", "MEMORY_AXIS", "finite", "figure", "pareto_set", "tradeoffs"]

#: Speed figures, the first preferred, and which direction is better.
SPEED_AXES: dict[str, str] = {"answers_per_s": "higher", "ttft_s": "lower"}
#: The memory figure (lower is better): the peak resident memory a model added to the process
#: while it loaded and answered (:mod:`raq.memory`).
MEMORY_AXIS = "memory_mib"
_DIRECTIONS = ("higher", "lower")


def finite(x: Any) -> float | None:
    """``x`` as a float, or None when missing, not a number or infinite."""
    if x is None or isinstance(x, bool):
        return None
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def figure(per_model: Mapping[str, Mapping[str, float]], model: str, axis: str) -> float | None:
    """A usable (finite, positive) figure of a model, or None."""
    value = finite((per_model.get(model) or {}).get(axis))
    return value if value is not None and value > 0 else None


def pareto_set(quality: Mapping[str, float], costs: Mapping[str, Mapping[str, float]],
               better: Mapping[str, str]) -> list[str]:
    """The models of ``quality`` that no other model dominates, highest quality first (ties by id).

    Quality is higher-is-better (pass e.g. ``-mean_rank``); ``better`` gives each cost axis of
    ``costs[model]`` as ``"higher"`` or ``"lower"`` is better (other keys are ignored). A model is
    dominated when another is at least as good on every axis and strictly better on one. An axis no
    model has is left out; a model lacking quality or any remaining axis can neither dominate nor be
    dominated (its unknown value might beat anyone), so it stays in the set.
    """
    bad = {axis: d for axis, d in better.items() if d not in _DIRECTIONS}
    if bad:
        raise ValueError(f"each axis must be 'higher' or 'lower' is better, got {bad}")
    axes = [a for a in better if any(finite((costs.get(m) or {}).get(a)) is not None for m in quality)]
    points: dict[str, list[float] | None] = {}
    for model in quality:
        values = [finite(quality[model])] + [finite((costs.get(model) or {}).get(a)) for a in axes]
        signs = [1.0] + [1.0 if better[a] == "higher" else -1.0 for a in axes]
        points[model] = None if None in values else [s * v for s, v in zip(signs, values) if v is not None]

    def dominates(a: str, b: str) -> bool:
        pa, pb = points[a], points[b]
        if pa is None or pb is None:
            return False
        return all(x >= y for x, y in zip(pa, pb)) and any(x > y for x, y in zip(pa, pb))

    keep = [m for m in quality if not any(dominates(other, m) for other in quality if other != m)]

    def order(model: str) -> tuple[bool, float, str]:
        q = finite(quality[model])
        return q is None, -q if q is not None else 0.0, model

    return sorted(keep, key=order)


def tradeoffs(stats: Mapping[str, Any], per_model: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Quality against each speed and memory figure, and the models no other beats on both.

    Quality is the Plackett-Luce worth (``stats["plackett_luce"]``, higher is better) where it was
    fitted, else the mean rank (``stats["summary"]``, lower is better), each with its interval.
    ``pareto[axis]`` is :func:`pareto_set` on quality and that one figure; ``pareto["all"]`` on
    quality and every figure at once. Figures no model has are left out.
    """
    worths = (stats.get("plackett_luce") or {}).get("worth") or {}
    models = [str(m) for m in stats.get("models") or list(worths)]
    if worths:
        measure, better_quality = "plackett_luce_worth", "higher"
        intervals = {m: dict(worths[m]) for m in models if m in worths}
    else:
        measure, better_quality = "mean_rank", "lower"
        summary = stats.get("summary") or {}
        intervals = {m: {"estimate": summary[m].get("mean"), "ci_low": summary[m].get("ci_low"),
                         "ci_high": summary[m].get("ci_high")} for m in models if m in summary}
    sign = 1.0 if better_quality == "higher" else -1.0
    quality = {m: sign * v for m, i in intervals.items() if (v := finite(i.get("estimate"))) is not None}
    axes = {**SPEED_AXES, MEMORY_AXIS: "lower"}
    figures = {m: {a: v for a in axes if (v := finite((per_model.get(m) or {}).get(a))) is not None and v >= 0}
               for m in intervals}  # 0 is a real reading here (e.g. no memory added), unlike in ratios
    present = {a: d for a, d in axes.items() if any(a in figures[m] for m in figures)}
    pareto = {axis: pareto_set(quality, figures, {axis: better}) for axis, better in present.items()}
    pareto["all"] = pareto_set(quality, figures, present)
    return {"quality": {"measure": measure, "better": better_quality, "per_model": intervals},
            "figures": figures, "better": present, "pareto": pareto}
