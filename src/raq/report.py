"""Tables and figures written into the run directory: CSVs, stats.json, the reference study's
bar charts (with bootstrap confidence intervals over questions) and a Markdown summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

FIGURE_NAME = "reference_bars.png"

_BARS = (("words_per_s_paper", "words/s (reference definition)"),
         ("words", "answer words"),
         ("rank", "mean rank (1 = best)"))


def bar_figure(table: pd.DataFrame, model_order: list[str], seed: int = 2024):
    """The reference study's three bar charts: mean words/s, mean answer words, mean rank,
    each with a 95% bootstrap interval over questions."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import seaborn as sns

    figure, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    for axis, (column, title) in zip(axes, _BARS):
        data = table.dropna(subset=[column])
        sns.barplot(data=data, x="model_id", y=column, order=model_order, hue="model_id",
                    hue_order=model_order, legend=False, errorbar=("ci", 95), n_boot=2000, seed=seed, ax=axis)
        axis.set_title(title)
        axis.set_xlabel("")
        axis.set_ylabel("")
        axis.tick_params(axis="x", labelrotation=15)
    return figure


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def summary_markdown(manifest: dict[str, Any], summary: pd.DataFrame, stats: dict[str, Any]) -> str:
    """A short human-readable account of the run."""
    config = manifest.get("config", {})
    lines = [f"# raq run: {config.get('name', '')}", "",
             f"- questions: {stats.get('questions_total')} from {config.get('data', {}).get('source')} "
             f"(seed {config.get('data', {}).get('seed')}); judged: {stats.get('n_questions')}, "
             f"not judged (failed judgements): {stats.get('questions_not_judged')}",
             f"- generation protocol: {config.get('generation', {}).get('protocol')}; judge: "
             f"{config.get('judge', {}).get('id')} ({config.get('judge', {}).get('protocol')} protocol)",
             f"- answers: {int(summary['answers'].sum())}; judgements failed after retries: "
             f"{manifest.get('judgements_failed', 0)}", "", "## Per model", "",
             summary.reset_index().to_markdown(index=False, floatfmt=".3g") if _has_tabulate()
             else "```\n" + summary.to_string(float_format=lambda v: f"{v:.3g}") + "\n```", ""]
    paper = stats.get("paper", {})
    blocked = stats.get("blocked", {})
    kruskal, friedman = paper.get("kruskal", {}), blocked.get("friedman", {})
    lines += ["## Are the rank differences real?", "",
              f"- Kruskal-Wallis (the reference study's design, independent samples): "
              f"H = {_fmt(kruskal.get('statistic'))}, p = {_fmt(kruskal.get('p_value'))}",
              f"- Friedman (questions as blocks, the correct design for within-question ranks): "
              f"chi2 = {_fmt(friedman.get('statistic'))}, p = {_fmt(friedman.get('p_value'))}, "
              f"Kendall's W = {_fmt(friedman.get('kendalls_w'))}", ""]
    dunn = paper.get("dunn_holm", {}).get("p_values", {})
    if dunn:
        lines += ["Dunn's test, Holm-adjusted p-values (reference study):", ""]
        lines += [f"- {a} vs {b}: p = {_fmt(p)}" for a, row in dunn.items() for b, p in row.items() if a < b]
        lines.append("")
    return "\n".join(lines)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def write_report(run_path: Path, manifest: dict[str, Any], table: pd.DataFrame, summary: pd.DataFrame,
                 stats: dict[str, Any], model_order: list[str], seed: int) -> dict[str, Path]:
    """Write results.csv, summary.csv, stats.json, the figure and summary.md; return their paths."""
    paths = {"results": run_path / "results.csv", "summary": run_path / "summary.csv",
             "stats": run_path / "stats.json", "figure": run_path / "figures" / FIGURE_NAME,
             "markdown": run_path / "summary.md"}
    table.to_csv(paths["results"], index=False)
    summary.to_csv(paths["summary"])
    paths["stats"].write_text(json.dumps(stats, indent=2, allow_nan=False), encoding="utf-8")
    paths["figure"].parent.mkdir(exist_ok=True)
    figure = bar_figure(table, model_order, seed)
    figure.savefig(paths["figure"], dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)
    paths["markdown"].write_text(summary_markdown(manifest, summary, stats), encoding="utf-8")
    return paths
