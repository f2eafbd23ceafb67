"""The study's figures, as matplotlib figures: the reference study's bar charts (with the bootstrap
intervals raq's statistics report), the rank distribution, the speed breakdown, position bias, and
quality against speed and memory with the Pareto set marked.

Every function returns an open figure (the caller saves and closes it); :func:`figure_uri` draws
one straight into a PNG data URI.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .stats import N_BOOT, bootstrap_mean_ci

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["FIGURE_NAME", "bar_figure", "bar_intervals", "interval_settings", "rank_distribution_figure",
           "speed_figure", "position_bias_figure", "tradeoff_figure", "figure_uri"]

FIGURE_NAME = "reference_bars.png"

_BARS = (("words_per_s_paper", "words/s (reference definition)"),
         ("words", "answer words"),
         ("rank", "mean rank (1 = best)"))
_INTERVAL_COLOUR = ".26"  # seaborn's own error-bar grey
_TRADEOFF_AXES = {"answers_per_s": "answers per second",
                  "ttft_s": "median seconds to the first token (axis reversed)",
                  "memory_mib": "peak memory added while answering, MiB (axis reversed)"}
_QUALITY_LABELS = {"plackett_luce_worth": "Plackett-Luce worth (log-strength)",
                   "mean_rank": "mean rank (1 = best, axis reversed)"}


def _pyplot():
    """matplotlib.pyplot on a non-interactive backend (unless one was chosen already)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def interval_settings(stats: Mapping[str, Any], seed: int = 2024, alpha: float = 0.05) -> dict[str, Any]:
    """``seed``, ``alpha`` and ``n_boot`` for :func:`bar_figure`: those the statistics in ``stats``
    were computed with (so the figure shows the table's intervals), else the given fallbacks."""
    boot = stats.get("bootstrap") or {}
    return {"seed": int(boot.get("seed", seed)), "alpha": float(stats.get("alpha", alpha)),
            "n_boot": int(boot.get("n_boot", N_BOOT))}


def bar_intervals(table: pd.DataFrame, column: str, alpha: float = 0.05, n_boot: int = N_BOOT,
                  seed: int = 2024) -> dict[str, tuple[float, float]]:
    """Per model, the percentile-bootstrap CI of the mean of ``column`` exactly as raq's statistics
    compute it (:func:`raq.stats.bootstrap_mean_ci` on the questions that have a value for every
    model, models sorted by id); models without an interval (fewer than 2 such questions) are left out."""
    if column not in table or table.empty:
        return {}
    data = table[["question_id", "model_id", column]].dropna()
    data = data.assign(model_id=data["model_id"].astype(str), **{column: pd.to_numeric(data[column]).astype(float)})
    wide = data.pivot(index="question_id", columns="model_id", values=column)
    models = sorted(wide.columns)
    interval = bootstrap_mean_ci(wide.reindex(columns=models).dropna().to_numpy(float), alpha, n_boot, seed)
    if interval is None:
        return {}
    return {model: (float(low), float(high)) for model, low, high in zip(models, *interval)
            if np.isfinite(low) and np.isfinite(high)}


def _draw_intervals(axis: Axes, model_order: Sequence[str], intervals: Mapping[str, tuple[float, float]]) -> None:
    """Vertical interval lines from low to high over the bars (bar i at x = i)."""
    shown = [(x, intervals[m]) for x, m in enumerate(model_order) if m in intervals]
    if not shown:
        return
    x = [position for position, _ in shown]
    low = np.array([interval[0] for _, interval in shown])
    high = np.array([interval[1] for _, interval in shown])
    import matplotlib as mpl

    axis.errorbar(x, (low + high) / 2, yerr=(high - low) / 2, fmt="none", ecolor=_INTERVAL_COLOUR,
                  elinewidth=1.8 * mpl.rcParams["lines.linewidth"], capsize=0, zorder=3, label="_intervals")


def bar_figure(table: pd.DataFrame, model_order: list[str], seed: int = 2024, alpha: float = 0.05,
               n_boot: int = N_BOOT) -> Figure:
    """The reference study's three bar charts: mean words/s, mean answer words, mean rank, each with
    the ``1 - alpha`` percentile-bootstrap interval over questions of :func:`bar_intervals` (the
    intervals of raq's statistics for the same ``seed``, ``alpha`` and ``n_boot``)."""
    plt = _pyplot()
    import seaborn as sns

    figure, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    for axis, (column, title) in zip(axes, _BARS):
        data = table.dropna(subset=[column]) if column in table else pd.DataFrame(columns=["model_id", column])
        sns.barplot(data=data, x="model_id", y=column, order=model_order, hue="model_id",
                    hue_order=model_order, legend=False, errorbar=None, ax=axis)
        _draw_intervals(axis, model_order, bar_intervals(table, column, alpha, n_boot, seed))
        axis.set_title(title)
        axis.set_xlabel("")
        axis.set_ylabel("")
        axis.tick_params(axis="x", labelrotation=15)
    return figure


def rank_distribution_figure(table: pd.DataFrame, model_order: list[str]) -> Figure:
    """How often each model got rank 1, 2, ..., k: one stacked bar per model (share of its
    judged questions, counts written in the segments). Mean ranks over several orders or judges
    (1.5, ...) are their own segments."""
    plt = _pyplot()
    judged = table.dropna(subset=["rank"])
    judged = judged[judged["model_id"].isin(model_order)]
    counts = (judged.groupby(["model_id", "rank"]).size().unstack(fill_value=0)
              .reindex(index=model_order, fill_value=0))
    ranks = list(counts.columns) or [1.0]
    counts = counts.reindex(columns=ranks, fill_value=0)
    shares = counts.div(counts.sum(axis=1).replace(0, 1), axis=0)
    top = max(ranks)
    colours = plt.get_cmap("RdYlGn_r")([0.15 + 0.7 * (r - 1) / max(1, top - 1) for r in ranks])
    figure, axis = plt.subplots(figsize=(6, 0.6 * len(model_order) + 1.7), constrained_layout=True)
    left = [0.0] * len(model_order)
    for colour, rank in zip(colours, ranks):
        label = f"rank {rank:g}" + (" (best)" if rank == 1 else "")
        bars = axis.barh(model_order, shares[rank], left=left, color=colour, edgecolor="white", label=label)
        axis.bar_label(bars, labels=[str(c) if c else "" for c in counts[rank]], label_type="center", fontsize=9)
        left = [a + b for a, b in zip(left, shares[rank])]
    axis.invert_yaxis()
    axis.set_xlim(0, 1)
    axis.set_xlabel("share of judged questions (numbers: questions)")
    axis.set_title("rank distribution per model")
    # below the axes, in the space constrained layout keeps for it: a legend placed over the axes
    # by hand ran past the figure's right edge once mean ranks (1.5, 2.5, ...) added columns
    figure.legend(ncols=min(len(ranks), 4), loc="outside lower center", frameon=False, fontsize=9)
    return figure


def speed_figure(table: pd.DataFrame, model_order: list[str]) -> Figure:
    """Where an answer's time goes: median prompt-reading seconds and median generation seconds
    per model, stacked (medians of the parts, so they need not add up to the median total)."""
    plt = _pyplot()
    data = table[table["model_id"].isin(model_order)].groupby("model_id")[["prompt_s", "generation_s"]]
    medians = data.median().reindex(model_order)
    figure, axis = plt.subplots(figsize=(6, 0.6 * len(model_order) + 1.7), constrained_layout=True)
    prompt = medians["prompt_s"].fillna(0)
    generation = medians["generation_s"].fillna(0)
    axis.barh(model_order, prompt, color="#4c72b0", label="reading the prompt (median s)")
    bars = axis.barh(model_order, generation, left=prompt, color="#dd8452", label="generating (median s)")
    axis.bar_label(bars, labels=[f"{p:.2f} + {g:.2f} s" for p, g in zip(prompt, generation)], padding=4, fontsize=9)
    axis.invert_yaxis()
    axis.set_xlim(0, max(1e-3, float((prompt + generation).max())) * 1.3)
    axis.set_xlabel("seconds per answer")
    modes = sorted(set(table["decoding"])) if "decoding" in table else ["single"]
    axis.set_title("speed breakdown per model" + ("" if modes == ["single"] else
                                                   f" ({', '.join(modes)} decoding: throughput shares)"))
    axis.legend(ncols=2, loc="lower center", bbox_to_anchor=(0.5, 1.08), frameon=False, fontsize=9)
    return figure


def position_bias_figure(verdicts: pd.DataFrame) -> Figure:
    """Does the judge favour a position? ``verdicts`` has one row per answer in one ranking:
    ``shown_position``, ``rank`` and ``verdict`` (which ranking; the results table's
    ``question_id`` serves when absent). Left: share of rankings where the answer shown at each
    position was ranked first; right: mean rank by shown position; dashed lines: no bias."""
    plt = _pyplot()
    key = "verdict" if "verdict" in verdicts.columns else "question_id"
    data = verdicts.dropna(subset=["rank", "shown_position"])
    data = data.assign(position=data["shown_position"].astype(int), win=data["rank"] == 1)
    k = int(data.groupby(key).size().max()) if not data.empty else 1
    by_position = data.groupby("position").agg(win_rate=("win", "mean"), mean_rank=("rank", "mean"),
                                               n=("win", "size")).reindex(range(1, k + 1))
    labels = [f"{p}" for p in by_position.index]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.3), constrained_layout=True)
    bars = left.bar(labels, by_position["win_rate"].fillna(0), color="#55a868")
    left.bar_label(bars, labels=[f"{w:.0%} of {int(n)}" if n == n else "" for w, n in
                                 zip(by_position["win_rate"].fillna(0), by_position["n"])], fontsize=9)
    left.axhline(1 / k, color="grey", linestyle="--", linewidth=1, label=f"no bias (1/{k})")
    left.set_ylim(0, 1.1)
    left.set_title("win rate by shown position")
    left.set_xlabel("position shown to the judge")
    left.legend(frameon=False, fontsize=9)
    bars = right.bar(labels, by_position["mean_rank"].fillna(0), color="#8172b3")
    right.bar_label(bars, fmt="%.2f", label_type="center", color="white", fontsize=10)
    right.axhline((k + 1) / 2, color="grey", linestyle="--", linewidth=1, label=f"no bias ({(k + 1) / 2:g})")
    right.set_ylim(0, k + 0.6)
    right.set_title("mean rank by shown position (1 = best)")
    right.set_xlabel("position shown to the judge")
    right.legend(frameon=False, fontsize=9)
    return figure


def tradeoff_figure(tradeoffs: Mapping[str, Any]) -> Figure:
    """Quality (with its interval) against each speed and memory figure the run has
    (:func:`raq.tradeoffs.tradeoffs`), one panel each; filled points joined by a line: the models
    no other model beats on both axes of that panel (its Pareto set). Axes run so that better is up
    and to the right."""
    plt = _pyplot()
    quality, figures = tradeoffs.get("quality") or {}, tradeoffs.get("figures") or {}
    axes = [a for a in _TRADEOFF_AXES if a in (tradeoffs.get("better") or {})]
    if not axes or not quality.get("per_model"):
        raise ValueError("no speed or memory figure to set quality against (served models, or no timings)")
    figure, panels = plt.subplots(1, len(axes), figsize=(4.2 * len(axes), 3.6), constrained_layout=True,
                                  squeeze=False)
    for panel, axis_name in zip(panels[0], axes):
        front = set((tradeoffs.get("pareto") or {}).get(axis_name, []))
        points = [(m, figures[m][axis_name], q) for m, q in quality["per_model"].items()
                  if axis_name in figures.get(m, {}) and q.get("estimate") is not None]
        for model, x, q in points:
            low, high = q.get("ci_low"), q.get("ci_high")
            if low is not None and high is not None:  # a percentile interval need not contain its estimate
                panel.plot([x, x], [low, high], color=_INTERVAL_COLOUR, linewidth=1, marker="_", markersize=8,
                           zorder=1)
            on_front = model in front
            panel.scatter([x], [q["estimate"]], s=60, zorder=2, color="#4c72b0" if on_front else "white",
                          edgecolors="#4c72b0" if on_front else "grey", linewidths=1.5)
            panel.annotate(model, (x, q["estimate"]), xytext=(6, 4), textcoords="offset points", fontsize=8)
        line = sorted((x, q["estimate"]) for m, x, q in points if m in front)
        if len(line) > 1:
            panel.plot(*zip(*line), color="#4c72b0", linewidth=1, linestyle="--", zorder=1)
        if quality.get("better") == "lower":
            panel.invert_yaxis()
        if tradeoffs["better"][axis_name] == "lower":
            panel.invert_xaxis()
        panel.margins(x=0.25, y=0.15)
        panel.set_xlabel(_TRADEOFF_AXES[axis_name], fontsize=9)
        panel.set_ylabel(_QUALITY_LABELS.get(quality.get("measure", ""), "quality"), fontsize=9)
        panel.set_title("Pareto set: " + (", ".join(sorted(front)) or "none"), fontsize=9)
    figure.suptitle("quality against speed and memory: better is up and to the right; filled: no other model is "
                    "better on both axes", fontsize=10)
    return figure


def figure_uri(make: Callable[[], Figure], dpi: int = 100) -> str:
    """Draw a figure and return it as a PNG data URI (the figure is closed)."""
    plt = _pyplot()
    figure = make()
    try:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
