"""One self-contained HTML page per run: settings and versions, the per-model table, both families
of statistics, the figures (embedded as PNG data URIs), example questions and the failures.

No JavaScript, no network: CSS is inline, figures are base64. Every string that comes from a
model, a question, a judge reply or a config goes through :func:`esc` (HTML-escaped, control
characters made visible), so a hostile answer is shown as text and never becomes markup.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import Results

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
N_EXAMPLES = 3
MAX_FAILURES = 50
JUDGE_KEYS = ("protocol", "gguf", "sha256", "base_url", "model", "orders", "n_ctx", "temperature", "seed", "max_tokens",
              "max_retries")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;background:#f6f8fa;margin:0}
main{max-width:1180px;margin:0 auto;padding:24px 32px 48px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:0 0 4px}h3{font-size:16px;margin:22px 0 6px}
h2{font-size:20px;border-bottom:2px solid #d0d7de;padding-bottom:4px;margin-top:36px}
.meta,.note{color:#57606a}.note{font-size:13px;margin:4px 0}.sig{font-weight:700;color:#1a7f37}
.bad{color:#cf222e;font-weight:600}nav{margin:12px 0;padding:8px 12px;background:#f6f8fa;border-radius:6px}
nav a{margin-right:14px;color:#0969da}table{border-collapse:collapse;margin:8px 0 12px;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f6f8fa}
tr:nth-child(even) td{background:#fbfcfd}td:first-child{white-space:nowrap}th.key{width:1%;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.answer,td.wrap{white-space:pre-wrap;overflow-wrap:anywhere}.answer{min-width:260px;max-width:600px}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:8px;white-space:pre-wrap;font-size:12px;
overflow-wrap:anywhere;max-height:320px;overflow:auto}code{font-size:12px;overflow-wrap:anywhere}
figure{margin:16px 0}figure img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{color:#57606a;font-size:13px}.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #d0d7de;border-radius:6px;padding:6px 12px;min-width:118px}.card b{display:block;font-size:20px}
.example{border-left:4px solid #d0d7de;padding-left:14px;margin:18px 0}details{margin:6px 0}summary{cursor:pointer}
.grid{display:flex;flex-wrap:wrap;gap:8px 28px;align-items:flex-start}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:16px}
"""


def esc(value: Any) -> str:
    """Text safe inside HTML elements and attributes; control characters shown as ``\\xNN``."""
    text = "" if value is None else str(value)
    text = _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 256 else f"\\u{ord(m[0]):04x}", text)
    return html.escape(text, quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return esc(value)


def _pval(p: Any, alpha: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return f'<span class="sig">{p:.3g}</span>' if p < alpha else f"{p:.3g}"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Iterable[int] = ()) -> str:
    """An HTML table; header cells are escaped, row cells must already be HTML (use esc/fmt)."""
    numeric = set(numeric)
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv(title: str, data: dict[str, Any]) -> str:
    """A titled key/value table (nested values as JSON)."""
    rows = "".join(f'<tr><th class="key">{esc(k)}</th><td class="wrap">' + (
        f"<code>{esc(json.dumps(v, ensure_ascii=False))}</code>" if isinstance(v, (dict, list)) else fmt(v))
        + "</td></tr>" for k, v in data.items())
    return f"<div><h3>{esc(title)}</h3><table><tbody>{rows}</tbody></table></div>"


def figure_uri(make: Callable[[], Any]) -> str:
    """Draw a figure and return it as a PNG data URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    figure = make()
    try:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(title: str, caption: str, make: Callable[[], Any]) -> str:
    try:
        uri = figure_uri(make)
    except Exception as error:  # a figure that cannot be drawn must not lose the whole report
        log.warning("figure %r failed: %s", title, error)
        return f'<p class="bad">{esc(title)}: could not be drawn ({esc(type(error).__name__)}: {esc(error)})</p>'
    return (f'<figure><img src="{uri}" alt="{esc(title)}"><figcaption><b>{esc(title)}.</b> '
            f"{esc(caption)}</figcaption></figure>")


# --- sections ------------------------------------------------------------------------------------
def _overview(results: Results) -> str:
    stats, manifest = results.stats, results.manifest
    friedman = stats.get("blocked", {}).get("friedman", {})
    kruskal = stats.get("paper", {}).get("kruskal", {})
    cards = [("questions", stats.get("questions_total", len(results.questions))), ("judged", stats.get("n_questions")),
             ("not judged", stats.get("questions_not_judged")), ("answers", len(results.answers)),
             ("failed judgements", sum(not j.ok for j in results.judgements)),
             ("Friedman p", friedman.get("p_value")), ("Kruskal–Wallis p", kruskal.get("p_value"))]
    means = results.summary["mean_rank"].dropna()
    best = [esc(m) for m, v in means.items() if v == means.min()]
    lead = (f"<p>Lowest mean rank (1 = best): <b>{', '.join(best)}</b> ({means.min():.3g}"
            + (", a tie" if len(best) > 1 else "") + "); whether that is real: see Statistics.</p>"
            if best else "<p>No judged questions yet.</p>")
    return ('<section id="overview"><h2>Overview</h2><div class="cards">'
            + "".join(f'<div class="card">{esc(k)}<b>{fmt(v)}</b></div>' for k, v in cards)
            + f'</div>{lead}<p class="meta">status {esc(manifest.get("status"))}'
            + (f' — error: {esc(manifest["error"])}' if manifest.get("error") else "") + "</p></section>")


def _models(results: Results) -> str:
    summary = results.summary
    ci = results.stats.get("summary", {})
    level = results.stats.get("bootstrap", {}).get("ci_level", 0.95)
    rows = []
    for model, row in summary.iterrows():
        interval = ci.get(model, {})
        low, high = interval.get("ci_low"), interval.get("ci_high")
        rank = fmt(row["mean_rank"]) + (f" [{fmt(low)}, {fmt(high)}]" if low is not None and high is not None else "")
        rows.append([esc(model), fmt(row["answers"]), fmt(row["judged"]), rank, fmt(row["em"]), fmt(row["f1"]),
                     fmt(row["mean_words"]), fmt(row["median_ttft_s"]), fmt(row["median_prompt_tok_s"]),
                     fmt(row["median_generation_tok_s"]), fmt(row["mean_words_per_s_paper"]),
                     esc(row.get("decoding", "single"))])
    header = ["model", "answers", "judged", f"mean rank [{level:.0%} CI]", "EM", "F1", "mean answer words",
              "median TTFT s", "median prompt tok/s", "median generation tok/s", "words/s (reference study)",
              "decoding"]
    batched = any(str(mode) != "single" for mode in summary.get("decoding", []))
    batched_note = (" <strong>Batched decoding:</strong> answers were decoded several at a time (throughput "
                    "mode); their timings are shares of shared decode steps, not single-answer latency or "
                    "speed, and are not comparable with single-sequence figures." if batched else "")
    return ('<section id="models"><h2>Per model</h2>' + table(header, rows, range(1, 11))
            + f'<p class="note">Mean rank: 1 = best; interval: {esc(results.stats.get("bootstrap", {}).get("method"))}'
            " (over questions judged for every model). EM/F1: SQuAD exact match and token F1 against the gold "
            "answers. Words/s: the reference study's definition and mean (answer words / total seconds)."
            + batched_note + "</p></section>")


def _statistics(results: Results) -> str:
    stats = results.stats
    if not stats.get("paper") or not stats.get("blocked"):
        return '<section id="statistics"><h2>Statistics</h2><p>No statistics (no stats.json).</p></section>'
    alpha, paper, blocked = stats.get("alpha", 0.05), stats["paper"], stats["blocked"]
    kw, fr, wil = paper["kruskal"], blocked["friedman"], blocked["wilcoxon_holm"]
    pairs = list(combinations(stats.get("models", []), 2))

    def p(test: dict[str, Any], a: str, b: str, key: str = "p_values") -> str:
        return _pval((test.get(key) or {}).get(a, {}).get(b), alpha)

    def notes(family: dict[str, Any]) -> str:
        return "".join(f'<p class="note">{esc(name)}: {esc(entry["note"])}</p>' for name, entry in family.items()
                       if isinstance(entry, dict) and entry.get("note"))

    dunn = paper["dunn_holm"]
    return (f'<section id="statistics"><h2>Statistics</h2><p>{fmt(stats.get("n_questions"))} questions judged for '
            f'every model ({fmt(stats.get("n_dropped"))} incomplete left out); alpha = {fmt(alpha)}; '
            'p-values below alpha in <span class="sig">bold green</span>.</p>'
            "<h3>The reference study's tests: Kruskal–Wallis + Dunn (Holm)</h3>"
            f'<p class="note">Design: {esc(paper.get("design"))}. Kept for like-for-like comparison: the judge ranks '
            "the answers to one question against each other, so the samples are not independent and these tests "
            "reject too often.</p>"
            + table(["test", "statistic", "df", "p"], [["Kruskal–Wallis H", fmt(kw.get("statistic")),
                                                       fmt(kw.get("df")), _pval(kw.get("p_value"), alpha)]], (1, 2, 3))
            + (table(["model A", "model B", "Dunn p (Holm)", "Dunn p (raw)"],
                     [[esc(a), esc(b), p(dunn, a, b), p(dunn, a, b, "p_values_raw")] for a, b in pairs], (2, 3))
               if pairs else "")
            + notes(paper) + "<h3>Blocked tests: Friedman + Nemenyi, Conover (Holm), Wilcoxon (Holm)</h3>"
            f'<p class="note">Design: {esc(blocked.get("design"))}: the design for within-question ranks.</p>'
            + table(["test", "statistic", "df", "p", "Kendall's W (effect size)"],
                    [["Friedman χ²", fmt(fr.get("statistic")), fmt(fr.get("df")), _pval(fr.get("p_value"), alpha),
                      fmt(fr.get("kendalls_w"))]], (1, 2, 3, 4))
            + (table(["model A", "model B", "Nemenyi p", "Conover p (Holm)", "Wilcoxon p (Holm)", "effect size r"],
                     [[esc(a), esc(b), p(blocked["nemenyi"], a, b), p(blocked["conover_holm"], a, b), p(wil, a, b),
                       fmt((wil.get("effect_size") or {}).get(a, {}).get(b))] for a, b in pairs], range(2, 6))
               if pairs else "")
            + notes(blocked) + f'<p class="note">Kendall\'s W: {esc(fr.get("kendalls_w_ties"))}. Effect size r: '
            f'{esc(wil.get("effect_size_convention"))}. Wilcoxon: {esc(wil.get("method"))}. Nemenyi p-values are '
            "single-step (not Holm-adjusted).</p>" + _by_paragraph(stats, pairs, p) + "</section>")


def _by_paragraph(stats: dict[str, Any], pairs: list[tuple[str, str]], p: Any) -> str:
    """The blocked tests with paragraphs as blocks, when questions share paragraphs."""
    by = stats.get("by_paragraph") or {}
    if not by.get("blocked"):
        return ""
    alpha, fr, wil = stats.get("alpha", 0.05), by["blocked"]["friedman"], by["blocked"]["wilcoxon_holm"]
    return (f"<h3>Paragraphs as blocks ({fmt(by.get('questions'))} questions about {fmt(by.get('paragraphs'))} "
            "paragraphs)</h3>"
            f'<p class="note">{esc(by.get("note"))}.</p>'
            + table(["test", "statistic", "df", "p", "Kendall's W"],
                    [["Friedman χ²", fmt(fr.get("statistic")), fmt(fr.get("df")), _pval(fr.get("p_value"), alpha),
                      fmt(fr.get("kendalls_w"))]], (1, 2, 3, 4))
            + (table(["model A", "model B", "Wilcoxon p (Holm)", "effect size r"],
                     [[esc(a), esc(b), p(wil, a, b), fmt((wil.get("effect_size") or {}).get(a, {}).get(b))]
                      for a, b in pairs], (2, 3)) if pairs else ""))


def _judges(results: Results) -> list[dict[str, Any]]:
    """The study's judges from the manifest's config (``judge`` or ``judges``), primary first."""
    config = results.manifest.get("config", {})
    return [config["judge"]] if config.get("judge") else list(config.get("judges") or [])


def _position_data(results: Results):
    """One row per answer in every successful ranking: which ranking, shown position, rank."""
    import pandas as pd

    rows = [{"verdict": (j.question_id, j.judge_id, getattr(j, "order_index", 0)), "shown_position": position,
             "rank": j.ranks[model]} for j in results.judgements if j.ok
            for position, model in enumerate(j.order, 1) if model in j.ranks]
    return pd.DataFrame(rows, columns=["verdict", "shown_position", "rank"])


def _figures(results: Results) -> str:
    from .report import bar_figure, position_bias_figure, rank_distribution_figure, speed_figure

    table_, order = results.table, list(results.summary.index)
    seed = results.manifest.get("config", {}).get("data", {}).get("seed", 2024)
    parts = ['<section id="figures"><h2>Figures</h2>',
             _figure("The reference study's bar charts", "Mean words/s, answer words and rank per model, with 95% "
                     "bootstrap intervals over questions.", lambda: bar_figure(table_, order, seed)),
             '<div class="pair">' + _figure("Rank distribution", "How often each model got each rank (judged "
                                            "questions).", lambda: rank_distribution_figure(table_, order)),
             _figure("Speed breakdown", "Median seconds reading the prompt and generating the answer.",
                     lambda: speed_figure(table_, order)) + "</div>"]
    shown = {tuple(j.order) for j in results.judgements if j.ok}
    if len(shown) > 1:  # the judge saw the answers in more than one order
        positions = _position_data(results)
        parts.append(_figure("Position bias", f"Over {positions['verdict'].nunique()} successful rankings with the "
                             "answers in shuffled orders: a fair judge wins equally often at every position.",
                             lambda: position_bias_figure(positions)))
    else:
        parts.append('<p class="note">The judge saw the answers in one fixed order: position bias cannot be told '
                     "apart from model quality, so there is no position-bias figure.</p>")
    return "".join(parts) + _judge_quality(results) + "</section>"


def _judge_quality(results: Results) -> str:
    judging = results.stats.get("judging", {}).get("judges", {})
    alpha, rows = results.stats.get("alpha", 0.05), []
    for judge_id, info in judging.items():
        bias, agree = info.get("position_bias", {}), info.get("f1_agreement", {})
        rows.append([esc(judge_id), fmt(info.get("orders")), fmt(info.get("judgements")),
                     fmt(info.get("failed_after_retries")), fmt(bias.get("first_position_win_rate")),
                     fmt(bias.get("chance")), _pval(bias.get("first_position_p_value"), alpha),
                     fmt(bias.get("winner_flip_rate")), fmt(agree.get("mean_spearman")),
                     fmt(agree.get("winner_has_best_f1"))])
    if not rows:
        return ""
    header = ["judge", "orders", "judgements", "failed", "first shown wins", "by chance", "p (binomial)",
              "winner flips with order", "Spearman with F1", "winner has best F1"]
    return "<h3>How far the judge can be trusted</h3>" + table(header, rows, range(1, 10))


def _examples(results: Results) -> str:
    from .metrics import exact_match, f1

    answers: dict[str, dict[str, Any]] = {}
    for answer in results.answers:
        answers.setdefault(answer.question_id, {})[answer.model_id] = answer
    ranks = {(r.question_id, r.model_id): r.rank for r in results.table.itertuples()} if len(results.table) else {}
    parts = ['<section id="examples"><h2>Example questions</h2>']
    for number, question in enumerate([q for q in results.questions if q.question_id in answers][:N_EXAMPLES], 1):
        gold, qid = question.gold_answers, question.question_id
        rows = [[esc(model), f'<div class="answer">{esc(answer.text)}</div>', fmt(ranks.get((qid, model))),
                 fmt(exact_match(answer.text, gold)), fmt(f1(answer.text, gold)), fmt(answer.words)]
                for model, answer in answers[qid].items()]
        verdicts = sorted((j for j in results.judgements if j.question_id == qid),
                          key=lambda j: (j.judge_id, getattr(j, "order_index", 0)))
        said = []
        for v in verdicts:
            shown = ", ".join(f"{esc(label)} = {esc(model)}" for label, model in zip(v.labels, v.order))
            outcome = ("ranked " + " &gt; ".join(esc(m) for m, _ in sorted(v.ranks.items(), key=lambda i: i[1]))
                       if v.ok else f'<span class="bad">failed after {v.attempts} attempt(s): {esc(v.error)}</span>')
            replies = "".join(f"<pre>{esc(r)}</pre>" for r in v.raw_replies)
            index = getattr(v, "order_index", 0) + 1
            said.append(f"<li>judge <code>{esc(v.judge_id)}</code>, order {index} (shown {shown}): "
                        f"{outcome}" + (f"<details><summary>raw replies ({len(v.raw_replies)})</summary>{replies}"
                                        "</details>" if replies else "") + "</li>")
        parts.append(f'<div class="example"><h3>Q{number}. {esc(question.question)}</h3><p class="meta">'
                     f"{esc(question.title)} · <code>{esc(question.question_id)}</code></p><p>Gold answers: "
                     + "; ".join(f"<b>{esc(g)}</b>" for g in dict.fromkeys(gold))
                     + f"</p><details><summary>context</summary><p>{esc(question.context)}</p></details>"
                     + table(["model", "answer", "rank", "EM", "F1", "words"], rows, (2, 3, 4, 5))
                     + "<p>The judge's verdicts:</p><ul>" + ("".join(said) or "<li>not judged yet</li>")
                     + "</ul></div>")
    return "".join(parts) + "</section>"


def _failures(results: Results) -> str:
    failed = [j for j in results.judgements if not j.ok]
    t, texts = results.table, {q.question_id: q.question for q in results.questions}
    models = list(results.summary.index) + sorted(set(t.get("model_id", [])) - set(results.summary.index))
    per_model = [[esc(m), fmt(int((t.loc[t["model_id"] == m, "text"].str.strip() == "").sum())),
                  fmt(int((t.loc[t["model_id"] == m, "finish_reason"] == "length").sum()))] for m in models]
    rows = [[f"<code>{esc(v.question_id)}</code><br>{esc(texts.get(v.question_id, ''))}", esc(v.judge_id),
             fmt(v.attempts), f'<span class="bad">{esc(v.error)}</span>',
             "".join(f"<pre>{esc(r)}</pre>" for r in v.raw_replies) or "(no reply)"] for v in failed[:MAX_FAILURES]]
    return ('<section id="failures"><h2>Failures</h2>'
            f"<p>Failed judgements (after retries): <b>{len(failed)}</b>; questions not judged: "
            f"<b>{fmt(results.stats.get('questions_not_judged'))}</b>.</p>"
            + table(["model", "empty answers", "answers cut at max_tokens"], per_model, (1, 2))
            + (table(["question", "judge", "attempts", "error", "raw replies"], rows, (2,)) if rows else "")
            + (f"<p>… and {len(failed) - MAX_FAILURES} more (see judgements.jsonl).</p>"
               if len(failed) > MAX_FAILURES else "") + "</section>")


def _settings(results: Results) -> str:
    import yaml

    manifest = results.manifest
    config, env = manifest.get("config", {}), manifest.get("environment", {})
    data = manifest.get("data", {})
    model_rows = []
    for model in config.get("models", []):
        info = manifest.get("models", {}).get(model.get("id"), {})
        template = info.get("chat_template")
        model_rows.append([esc(model.get("id")), esc(model.get("gguf") or model.get("model")),
                           esc(Path(str(info.get("path") or model.get("base_url") or "")).name
                               if info.get("path") else model.get("base_url") or ""),
                           f"<code>{esc(info.get('sha256') or 'n/a')}</code>",
                           esc(info.get("template") or model.get("prompt_format")) + (
                               f"<details><summary>chat template</summary><pre>{esc(template)}</pre></details>"
                               if template else "") + (f'<p class="note">{esc(info["template_note"])}</p>'
                                                        if info.get("template_note") else "")])
    judges = "".join(kv(f"Judge {judge.get('id')}", {k: judge.get(k) for k in JUDGE_KEYS if judge.get(k) is not None})
                     for judge in _judges(results))
    machine = {k: env.get(k) for k in ("python", "platform", "cpu", "cpu_count", "memory_gib")}
    machine["gpus"] = ", ".join(env.get("gpus") or []) or "none"
    return ('<section id="settings"><h2>Run settings and versions</h2><h3>Models</h3>'
            + table(["id", "model", "file / endpoint", "sha256", "template used"], model_rows)
            + f'<div class="grid">{kv("Data", data)}{judges}{kv("Machine", machine)}'
            + f'{kv("Package versions", env.get("packages", {}))}</div>'
            + f"<h3>Config</h3><pre>{esc(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))}</pre></section>")


def write_html_report(results: Results, path: Path | None = None) -> Path:
    """Write the run's self-contained HTML report (default ``RUN_DIR/report.html``); return its path."""
    path = Path(path) if path is not None else Path(results.run_dir) / REPORT_NAME
    manifest = results.manifest
    name = manifest.get("config", {}).get("name", "")
    from . import __version__

    sections = [_overview(results), _models(results), _statistics(results), _figures(results),
                _examples(results), _failures(results), _settings(results)]
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("overview", "Overview"), ("models", "Per model"), ("statistics", "Statistics"), ("figures", "Figures"),
        ("examples", "Examples"), ("failures", "Failures"), ("settings", "Settings &amp; versions")))
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    document = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
                f'content="width=device-width, initial-scale=1"><title>raq report: {esc(name)}</title>'
                f"<style>{CSS}</style></head><body><main><header><h1>raq report: {esc(name)}</h1>"
                f'<p class="meta">run <code>{esc(results.run_dir)}</code> · created {esc(manifest.get("created"))}'
                + (f' · updated {esc(manifest["updated"])}' if manifest.get("updated") else "")
                + f"</p><nav>{nav}</nav></header>" + "".join(sections)
                + f'<footer class="meta"><p>Written by raq {esc(__version__)} at {esc(stamp)}.</p></footer>'
                "</main></body></html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path
