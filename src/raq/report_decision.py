"""The decision section of a run's report, as plain values: the recommendation, quality beside
speed and memory per model, the Plackett-Luce head-to-head probabilities and the judge's length
preference. Runs analysed before these statistics existed give an empty section."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["decision_values", "PARETO_NOTE"]

PARETO_NOTE = ("The Pareto set is taken on the point estimates: a model in it may still not be significantly "
               "better than one outside it (see the intervals and the tests).")


def _interval(entry: Mapping[str, Any] | None) -> tuple[Any, Any, Any]:
    entry = entry or {}
    return entry.get("estimate"), entry.get("ci_low"), entry.get("ci_high")


def _value(summary: pd.DataFrame, model: str, column: str) -> float | None:
    if column not in summary.columns or model not in summary.index:
        return None
    value = summary.at[model, column]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _memory_method(manifest_models: Mapping[str, Any]) -> str | None:
    methods = sorted({str((info.get("memory") or {}).get("method")) for info in manifest_models.values()
                      if isinstance(info, Mapping) and (info.get("memory") or {}).get("method")})
    return "; ".join(methods) or None


def decision_values(stats: Mapping[str, Any], summary: pd.DataFrame,
                    manifest_models: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The section's values; None when the run's statistics have no recommendation."""
    recommendation = stats.get("recommendation")
    if not recommendation:
        return None
    worths = stats.get("plackett_luce") or {}
    length = stats.get("length") or {}
    tradeoffs = stats.get("tradeoffs") or {}
    figures = tradeoffs.get("figures") or {}
    front = set((tradeoffs.get("pareto") or {}).get("all") or [])
    ranks = stats.get("summary") or {}
    models = [str(m) for m in stats.get("models") or list(summary.index)]
    rows = []
    for model in models:
        controlled = ((length.get("mean_rank") or {}).get(model) or {}).get("controlled")
        rows.append({
            "model": model, "chosen": model == recommendation.get("model"),
            "rank": _interval({"estimate": (ranks.get(model) or {}).get("mean"), **(ranks.get(model) or {})}),
            "controlled": _interval(controlled),
            "worth": _interval((worths.get("worth") or {}).get(model)),
            "p_best": (worths.get("p_best") or {}).get(model),
            "answers_per_s": (figures.get(model) or {}).get("answers_per_s"),
            "ttft_s": (figures.get(model) or {}).get("ttft_s"),
            "memory_mib": _value(summary, model, "memory_mib"),
            "peak_rss_mib": _value(summary, model, "peak_rss_mib"),
            "file_mib": _value(summary, model, "file_mib"),
            "kv_cache_mib": _value(summary, model, "kv_cache_mib"),
            "pareto": model in front if front else None,
        })
    beats = worths.get("beats") or {}
    head_to_head = [(a, [_interval(beats.get(a, {}).get(b)) if a != b else None for b in models]) for a in models]
    from .length_bias import length_sentence

    return {"sentence": recommendation.get("sentence"), "basis": recommendation.get("basis"),
            "model": recommendation.get("model"), "rows": rows, "models": models,
            "head_to_head": head_to_head if beats else [], "pl_note": worths.get("note"),
            "pl_level": worths.get("ci_level"), "pl_ties": worths.get("ties"),
            "length_sentence": length_sentence(length) if length else None,
            "length_method": length.get("method"), "pareto_note": PARETO_NOTE if front else None,
            "memory_method": _memory_method(manifest_models or {})}
