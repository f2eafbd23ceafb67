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


def _per_context(config: dict[str, Any]) -> str:
    k = config.get("data", {}).get("per_context", 1)
    return f", up to {k} per paragraph" if k and k > 1 else ""


def summary_markdown(manifest: dict[str, Any], summary: pd.DataFrame, stats: dict[str, Any]) -> str:
    """A short human-readable account of the run."""
    config = manifest.get("config", {})
    judges = [j for j in [config.get("judge")] + list(config.get("judges") or []) if j]
    judge_text = ", ".join(f"{j.get('id')} ({j.get('protocol')} protocol, {j.get('orders', 1)} order(s))"
                           for j in judges)
    lines = [f"# raq run: {config.get('name', '')}", "",
             f"- questions: {stats.get('questions_total')} from {config.get('data', {}).get('source')} "
             f"(seed {config.get('data', {}).get('seed')}{_per_context(config)}); judged: {stats.get('n_questions')}, "
             f"not judged (failed judgements): {stats.get('questions_not_judged')}",
             f"- generation protocol: {config.get('generation', {}).get('protocol')}; judges: {judge_text}",
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
    by_paragraph = stats.get("by_paragraph") or {}
    if by_paragraph:
        pf = by_paragraph.get("blocked", {}).get("friedman", {})
        lines[-1:-1] = [f"- Friedman with paragraphs as blocks ({by_paragraph.get('questions')} questions share "
                        f"{by_paragraph.get('paragraphs')} paragraphs; ranks averaged per paragraph): "
                        f"chi2 = {_fmt(pf.get('statistic'))}, p = {_fmt(pf.get('p_value'))}: the per-question "
                        "tests count related questions as independent and may overstate the evidence"]
    for title, matrix in (("Dunn's test, Holm-adjusted (reference study)", paper.get("dunn_holm", {})),
                          ("Wilcoxon signed-rank, Holm-adjusted (paired)", blocked.get("wilcoxon_holm", {}))):
        p_values = matrix.get("p_values") or {}
        if p_values:
            lines += [f"{title}:", ""]
            lines += [f"- {a} vs {b}: p = {_fmt(p)}" for a, row in p_values.items() for b, p in row.items() if a < b]
            lines.append("")
    power = stats.get("power", {})
    if power.get("power"):
        lines += [f"Power at the observed mean ranks with {power.get('n_questions')} questions: Friedman "
                  f"{_fmt(power['power'].get('friedman'))}, Kruskal-Wallis {_fmt(power['power'].get('kruskal'))}; "
                  f"questions needed for {power.get('target_power')} power (Friedman): {power.get('n_needed')}", ""]
    judging = stats.get("judging", {})
    if judging.get("judges"):
        lines += ["## The judges", ""]
        for judge_id, report in judging["judges"].items():
            bias, agreement = report.get("position_bias", {}), report.get("f1_agreement", {})
            lines.append(
                f"- {judge_id}: invalid first replies {_fmt(report.get('failure_rate_before_retries'))}, "
                f"failed after retries {_fmt(report.get('failure_rate_after_retries'))}; first-shown answer won "
                f"{_fmt(bias.get('first_position_win_rate'))} (chance {_fmt(bias.get('chance'))}); winner changed "
                f"with order in {_fmt(bias.get('winner_flip_rate'))} of questions judged in several orders; "
                f"Spearman with F1 {_fmt(agreement.get('mean_spearman'))}")
        agreement = judging.get("agreement", {})
        if agreement.get("mean_kendalls_w") is not None:
            lines.append(f"- agreement between judges: mean Kendall's W {_fmt(agreement['mean_kendalls_w'])} "
                         f"over {agreement.get('questions')} questions")
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def rank_distribution_figure(table: pd.DataFrame, model_order: list[str]):
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
    axis.legend(ncols=min(len(ranks), 5), loc="lower center", bbox_to_anchor=(0.5, 1.08), frameon=False, fontsize=9)
    return figure


def speed_figure(table: pd.DataFrame, model_order: list[str]):
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


def position_bias_figure(verdicts: pd.DataFrame):
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
