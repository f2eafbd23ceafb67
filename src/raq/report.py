"""What the analysis writes into the run directory: results.csv, summary.csv, stats.json, the
reference study's bar charts (figures/reference_bars.png, drawn by :mod:`raq.figures`) and a
Markdown summary (with the judge check's headline figures when the run has ``judge_check.json``)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .figures import FIGURE_NAME, bar_figure, interval_settings
from .judge_quality import POINTWISE_NOTE
from .report_judge_check import summary_lines
from .report_unanswerable import unanswerable_lines

__all__ = ["FIGURE_NAME", "summary_markdown", "write_report"]

log = logging.getLogger(__name__)


def _cost(cost: dict[str, Any]) -> str:
    """"; 5.1 s and 180 prompt tokens read (of 410 sent) per question", as far as it is known."""
    if not cost.get("questions"):
        return ""
    text = f"; {cost['seconds_per_question']:.1f} s"
    if cost.get("prompt_tokens_read_per_question") is not None:
        text += f" and {cost['prompt_tokens_read_per_question']:.0f} prompt tokens read"
        if cost.get("prompt_tokens_per_question") is not None:
            text += f" (of {cost['prompt_tokens_per_question']:.0f} sent)"
    elif cost.get("prompt_tokens_per_question") is not None:
        text += f" and {cost['prompt_tokens_per_question']:.0f} prompt tokens"
    return text + " per question"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _per_context(config: dict[str, Any]) -> str:
    k = config.get("data", {}).get("per_context", 1)
    return f", up to {k} per paragraph" if k and k > 1 else ""


def summary_markdown(manifest: dict[str, Any], summary: pd.DataFrame, stats: dict[str, Any],
                     judge_check: Sequence[str] = ()) -> str:
    """A short human-readable account of the run; ``judge_check``: one line per judge check
    (:func:`raq.report_judge_check.summary_lines`)."""
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
    lines += _decision_lines(stats)
    lines += unanswerable_lines(stats)
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
        p_values, z = matrix.get("p_values") or {}, matrix.get("z") or {}
        if p_values:
            lines += [f"{title}:", ""]
            lines += [f"- {a} vs {b}: " + (f"z = {_fmt(z[a][b])}, " if z.get(a, {}).get(b) is not None else "")
                      + f"p = {_fmt(p)}" for a, row in p_values.items() for b, p in row.items() if a < b]
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
                f"failed after retries {_fmt(report.get('failure_rate_after_retries'))}; {_order_effects(bias)}; "
                f"Spearman with F1 {_fmt(agreement.get('mean_spearman'))}{_cost(report.get('cost', {}))}")
        agreement = judging.get("agreement", {})
        if agreement.get("mean_kendalls_w") is not None:
            lines.append(f"- agreement between judges: mean Kendall's W {_fmt(agreement['mean_kendalls_w'])} "
                         f"over {agreement.get('questions')} questions")
        lines.append("")
    if judge_check:
        lines += ["## Judge check (answers of known quality)", "", *judge_check, ""]
    return "\n".join(lines)


def _decision_lines(stats: dict[str, Any]) -> list[str]:
    """The recommendation, the Plackett-Luce worths and the judge's length preference (runs
    analysed before they existed have none of them)."""
    from .length_bias import length_sentence

    lines: list[str] = []
    if stats.get("recommendation"):
        lines += ["## Which model", "", stats["recommendation"]["sentence"], ""]
    worths = stats.get("plackett_luce") or {}
    if worths.get("worth"):
        lines += ["Plackett-Luce worth (log-strength, 95% bootstrap interval over questions) and the probability "
                  "of being the best model:", ""]
        lines += [f"- {m}: {_fmt(w['estimate'])} [{_fmt(w['ci_low'])}, {_fmt(w['ci_high'])}], "
                  f"P(best) {_fmt(worths.get('p_best', {}).get(m))}" for m, w in worths["worth"].items()]
        lines.append("")
    elif worths.get("note"):
        lines += [f"Plackett-Luce worths: not fitted ({worths['note']})", ""]
    if stats.get("length"):
        lines += [length_sentence(stats["length"]), ""]
        controlled = stats["length"].get("mean_rank") or {}
        if controlled:
            lines += ["Mean rank, raw and with the judge's length preference removed (95% bootstrap interval):", ""]
            lines += [f"- {m}: {_fmt(r.get('raw'))}, length-controlled {_fmt(r['controlled'].get('estimate'))} "
                      f"[{_fmt(r['controlled'].get('ci_low'))}, {_fmt(r['controlled'].get('ci_high'))}]"
                      for m, r in controlled.items()]
            lines.append("")
    pareto = (stats.get("tradeoffs") or {}).get("pareto") or {}
    if pareto.get("all"):
        axes = ["quality"] + [PARETO_AXES[a] for a in pareto if a in PARETO_AXES]
        on = ", ".join(axes[:-1]) + f" and {axes[-1]}" if len(axes) > 1 else axes[0]
        lines += [f"Pareto set (no other model is at least as good on {on}, and better on one): "
                  f"{', '.join(pareto['all'])}.", ""]
    return lines


PARETO_AXES = {"answers_per_s": "answers/s", "ttft_s": "time to first token", "memory_mib": "memory"}


def _order_effects(bias: dict[str, Any]) -> str:
    """How far the shown order swayed a judge, in words (see :func:`raq.judge_quality.position_bias`)."""
    if bias.get("protocol") == "pairwise":
        return (f"first-shown answer won {_fmt(bias.get('first_shown_win_rate'))} of comparisons (chance 0.5); "
                f"both orders of a pair named the same winner in {_fmt(bias.get('pair_consistency'))} of pairs")
    if bias.get("note") == POINTWISE_NOTE:
        return f"pointwise: {POINTWISE_NOTE}"
    return (f"first-shown answer won {_fmt(bias.get('first_position_win_rate'))} (chance {_fmt(bias.get('chance'))}); "
            f"winner changed with order in {_fmt(bias.get('winner_flip_rate'))} of questions judged in several orders")


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def write_report(run_path: Path, manifest: dict[str, Any], table: pd.DataFrame, summary: pd.DataFrame,
                 stats: dict[str, Any], model_order: list[str], seed: int) -> dict[str, Path]:
    """Write results.csv, summary.csv, stats.json, the figure and summary.md; return their paths.

    The figure's intervals use the bootstrap settings recorded in ``stats`` (so they are the
    table's); ``seed`` serves when ``stats`` records none."""
    paths = {"results": run_path / "results.csv", "summary": run_path / "summary.csv",
             "stats": run_path / "stats.json", "figure": run_path / "figures" / FIGURE_NAME,
             "markdown": run_path / "summary.md"}
    table.to_csv(paths["results"], index=False)
    summary.to_csv(paths["summary"])
    paths["stats"].write_text(json.dumps(stats, indent=2, allow_nan=False), encoding="utf-8")
    _write_figure(paths["figure"], table, model_order, stats, seed)
    markdown = summary_markdown(manifest, summary, stats, summary_lines(run_path))
    paths["markdown"].write_text(markdown, encoding="utf-8")
    return paths


def _write_figure(path: Path, table: pd.DataFrame, model_order: list[str], stats: dict[str, Any], seed: int) -> None:
    """The reference bar charts as a PNG file, with the intervals of ``stats``."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure = bar_figure(table, model_order, **interval_settings(stats, seed=seed))
    try:
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)
    log.debug("wrote %s", path)
