"""One self-contained HTML page per run: which model to run and its evidence first
(:mod:`raq.report_decision`), settings and versions, the per-model table, both families
of statistics, the figures (embedded as PNG data URIs), the judge check (``judge_check.json``, see
:mod:`raq.report_judge_check`), example questions and the failures.

The page is rendered from the Jinja templates in ``raq/templates`` with autoescaping on: this
module only gathers plain values (strings, numbers, lists, dicts) for them, and every value that
reaches the page is HTML-escaped, with control characters made visible (:func:`visible`), so a
hostile answer, question, judge reply or config value is shown as text and never becomes markup.
No JavaScript, no network: the CSS is inline and the figures are base64.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    import jinja2
    import pandas as pd

    from .records import Answer, Judgement, Question

log = logging.getLogger(__name__)

__all__ = ["REPORT_NAME", "RunResults", "write_html_report", "render_html_report", "visible", "fmt"]

REPORT_NAME = "report.html"
N_EXAMPLES = 3
MAX_FAILURES = 50
JUDGE_KEYS = ("protocol", "gguf", "sha256", "base_url", "model", "orders", "n_ctx", "temperature", "seed", "max_tokens",
              "max_retries")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


class RunResults(Protocol):
    """What the report reads from a run's results (``raq`` results objects have all of it)."""

    @property
    def run_dir(self) -> Path | str: ...

    @property
    def manifest(self) -> Mapping[str, Any]: ...

    @property
    def questions(self) -> Sequence[Question]: ...

    @property
    def answers(self) -> Sequence[Answer]: ...

    @property
    def judgements(self) -> Sequence[Judgement]: ...

    @property
    def table(self) -> pd.DataFrame: ...

    @property
    def summary(self) -> pd.DataFrame: ...

    @property
    def stats(self) -> Mapping[str, Any]: ...


# --- what the templates get: plain text, escaped by Jinja --------------------------------------
def visible(value: Any) -> str:
    """``value`` as text with control characters shown as ``\\xNN`` (``\\uNNNN`` above 255);
    None is the empty string. Not escaped: the templates' autoescaping does that."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 256 else f"\\u{ord(m[0]):04x}", text)


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell's text: ``n/a`` for missing, yes/no for booleans, floats to ``digits`` significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return visible(value)


def _finalize(value: Any) -> Any:
    """Applied to every ``{{ ... }}`` before autoescaping: rendered macros pass, the rest is made visible."""
    return value if hasattr(value, "__html__") else visible(value)


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The Jinja environment of the report templates (autoescaping always on)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("raq", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, finalize=_finalize, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(fmt=fmt, percent=lambda value: f"{float(value):.0%}",
                       to_json=lambda value: json.dumps(value, ensure_ascii=False))
    env.tests["structured"] = lambda value: isinstance(value, (dict, list))
    return env


def _render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


# --- the sections' values ----------------------------------------------------------------------
def _overview(results: RunResults) -> dict[str, Any]:
    stats, manifest = results.stats, results.manifest
    friedman = stats.get("blocked", {}).get("friedman", {})
    kruskal = stats.get("paper", {}).get("kruskal", {})
    cards = [("questions", stats.get("questions_total", len(results.questions))), ("judged", stats.get("n_questions")),
             ("not judged", stats.get("questions_not_judged")), ("answers", len(results.answers)),
             ("failed judgements", sum(not j.ok for j in results.judgements)),
             ("Friedman p", friedman.get("p_value")), ("Kruskal–Wallis p", kruskal.get("p_value"))]
    means = results.summary["mean_rank"].dropna()
    best = [str(m) for m, v in means.items() if v == means.min()]
    return {"cards": cards, "best": best, "best_rank": float(means.min()) if best else None,
            "status": manifest.get("status"), "error": manifest.get("error")}


def _models(results: RunResults) -> dict[str, Any]:
    summary, stats = results.summary, results.stats
    ci = stats.get("summary", {})
    columns = ("answers", "judged", "mean_rank", "em", "f1", "mean_words", "median_ttft_s", "median_prompt_tok_s",
               "median_generation_tok_s", "mean_words_per_s_paper")
    rows = [{"model": model, **{column: row[column] for column in columns}, "decoding": row.get("decoding", "single"),
             "ci_low": ci.get(model, {}).get("ci_low"), "ci_high": ci.get(model, {}).get("ci_high")}
            for model, row in summary.iterrows()]
    return {"rows": rows, "level": stats.get("bootstrap", {}).get("ci_level", 0.95),
            "method": stats.get("bootstrap", {}).get("method"),
            "batched": any(str(mode) != "single" for mode in summary.get("decoding", []))}


def _p(test: Mapping[str, Any], a: str, b: str, key: str = "p_values") -> Any:
    """Entry (a, b) of a test's ``{a: {b: p}}`` matrix, None when missing."""
    return (test.get(key) or {}).get(a, {}).get(b)


def _notes(family: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(name, entry["note"]) for name, entry in family.items() if isinstance(entry, dict) and entry.get("note")]


def _by_paragraph(stats: Mapping[str, Any], pairs: list[tuple[str, str]]) -> dict[str, Any] | None:
    """The blocked tests with paragraphs as blocks, when questions share paragraphs."""
    by = stats.get("by_paragraph") or {}
    if not by.get("blocked"):
        return None
    wil = by["blocked"]["wilcoxon_holm"]
    return {"questions": by.get("questions"), "paragraphs": by.get("paragraphs"), "note": by.get("note"),
            "friedman": by["blocked"]["friedman"],
            "pairs": [(a, b, _p(wil, a, b), _p(wil, a, b, "effect_size")) for a, b in pairs]}


def _statistics_values(stats: Mapping[str, Any]) -> dict[str, Any] | None:
    """Both families of tests, in table form; None without statistics."""
    if not stats.get("paper") or not stats.get("blocked"):
        return None
    paper, blocked = stats["paper"], stats["blocked"]
    dunn, wil = paper["dunn_holm"], blocked["wilcoxon_holm"]
    pairs = list(combinations(stats.get("models", []), 2))
    return {"n_questions": stats.get("n_questions"), "n_dropped": stats.get("n_dropped"),
            "alpha": stats.get("alpha", 0.05), "paper_design": paper.get("design"), "kruskal": paper["kruskal"],
            "dunn": [(a, b, _p(dunn, a, b, "z"), _p(dunn, a, b), _p(dunn, a, b, "p_values_raw")) for a, b in pairs],
            "paper_notes": _notes(paper), "blocked_design": blocked.get("design"), "friedman": blocked["friedman"],
            "blocked_pairs": [(a, b, _p(blocked["nemenyi"], a, b), _p(blocked["conover_holm"], a, b), _p(wil, a, b),
                               _p(wil, a, b, "effect_size")) for a, b in pairs],
            "blocked_notes": _notes(blocked), "kendalls_w_ties": blocked["friedman"].get("kendalls_w_ties"),
            "effect_convention": wil.get("effect_size_convention"), "wilcoxon_method": wil.get("method"),
            "by_paragraph": _by_paragraph(stats, pairs)}


def _statistics(results: Any) -> str:
    """The Statistics section alone, rendered (``results`` needs only ``stats``)."""
    return _render("statistics.html.j2", statistics=_statistics_values(results.stats))


def _judges(results: RunResults) -> list[dict[str, Any]]:
    """The study's judges from the manifest's config (``judge`` or ``judges``), primary first."""
    config = results.manifest.get("config", {})
    return [config["judge"]] if config.get("judge") else list(config.get("judges") or [])


def _position_data(judgements: Sequence[Judgement]) -> pd.DataFrame:
    """One row per answer in every successful ranking: which ranking, shown position, rank."""
    import pandas as pd

    rows = [{"verdict": (j.question_id, j.judge_id, getattr(j, "order_index", 0)), "shown_position": position,
             "rank": j.ranks[model]} for j in judgements if j.ok
            for position, model in enumerate(j.order, 1) if model in j.ranks]
    return pd.DataFrame(rows, columns=["verdict", "shown_position", "rank"])


def _drawn(name: str, make: Callable[[], Any]) -> dict[str, str | None]:
    """``{"uri": data URI, "error": None}``, or no URI and why (a figure that fails must not lose the report)."""
    from .figures import figure_uri

    try:
        return {"uri": figure_uri(make), "error": None}
    except Exception as error:
        log.warning("figure %r failed: %s", name, error)
        return {"uri": None, "error": f"{type(error).__name__}: {error}"}


def _figures(results: RunResults) -> dict[str, Any]:
    from .figures import bar_figure, interval_settings, position_bias_figure, rank_distribution_figure, speed_figure
    from .report_judge_check import is_listwise, judge_rows, position_note

    table, order, stats = results.table, list(results.summary.index), results.stats
    config = results.manifest.get("config", {})
    settings = interval_settings(stats, seed=config.get("data", {}).get("seed", 2024),
                                 alpha=config.get("stats", {}).get("alpha", 0.05))
    values: dict[str, Any] = {
        "level": 1 - settings["alpha"], "alpha": stats.get("alpha", 0.05), "position": None, "rankings": 0,
        "bars": _drawn("bars", lambda: bar_figure(table, order, **settings)),
        "ranks": _drawn("ranks", lambda: rank_distribution_figure(table, order)),
        "speed": _drawn("speed", lambda: speed_figure(table, order)),
        "judges": judge_rows(stats)}
    ranked = [j for j in results.judgements if is_listwise(j)]
    if len({tuple(j.order) for j in ranked if j.ok}) > 1:  # the judge saw more than one order
        positions = _position_data(ranked)
        values["rankings"] = positions["verdict"].nunique()
        values["position"] = _drawn("position bias", lambda: position_bias_figure(positions))
    values["position_note"] = position_note(results.judgements, drawn=values["position"] is not None)
    return values


def _verdict(v: Judgement) -> dict[str, Any]:
    from .report_judge_check import verdict_view

    return {"judge_id": v.judge_id, "index": getattr(v, "order_index", 0) + 1, "ok": v.ok, "attempts": v.attempts,
            "error": v.error, "replies": list(v.raw_replies), **verdict_view(v)}


def _examples(results: RunResults) -> list[dict[str, Any]]:
    """The first questions with their answers, each scored as the results table scores it
    (:func:`~raq.analysis.answer_scores`), and every verdict."""
    from .analysis import answer_scores

    answers: dict[str, dict[str, Any]] = {}
    for answer in results.answers:
        answers.setdefault(answer.question_id, {})[answer.model_id] = answer
    ranks = {(r.question_id, r.model_id): r.rank for r in results.table.itertuples()} if len(results.table) else {}
    examples = []
    for number, question in enumerate([q for q in results.questions if q.question_id in answers][:N_EXAMPLES], 1):
        gold, qid = question.gold_answers, question.question_id
        scores = {model: answer_scores(answer, question) for model, answer in answers[qid].items()}
        rows = [{"model": model, "text": answer.text, "rank": ranks.get((qid, model)), "em": scores[model]["em"],
                 "f1": scores[model]["f1"], "words": answer.words} for model, answer in answers[qid].items()]
        verdicts = sorted((j for j in results.judgements if j.question_id == qid),
                          key=lambda j: (j.judge_id, getattr(j, "order_index", 0)))
        examples.append({"number": number, "question": question.question, "title": question.title,
                         "question_id": qid, "gold": list(dict.fromkeys(gold)), "context": question.context,
                         "answers": rows, "verdicts": [_verdict(v) for v in verdicts]})
    return examples


def _failures(results: RunResults) -> dict[str, Any]:
    failed = [j for j in results.judgements if not j.ok]
    t, texts = results.table, {q.question_id: q.question for q in results.questions}
    models = list(results.summary.index) + sorted(set(t.get("model_id", [])) - set(results.summary.index))
    per_model = [(m, int((t.loc[t["model_id"] == m, "text"].str.strip() == "").sum()),
                  int((t.loc[t["model_id"] == m, "finish_reason"] == "length").sum())) for m in models]
    rows = [{"question_id": v.question_id, "question": texts.get(v.question_id, ""), "judge_id": v.judge_id,
             "attempts": v.attempts, "error": v.error, "replies": list(v.raw_replies)} for v in failed[:MAX_FAILURES]]
    return {"count": len(failed), "not_judged": results.stats.get("questions_not_judged"), "per_model": per_model,
            "failed": rows, "more": max(0, len(failed) - MAX_FAILURES)}


def _model_settings(model: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the Models table: the config's entry and what the run recorded about it."""
    path = info.get("path")
    return {"id": model.get("id"), "model": model.get("gguf") or model.get("model"),
            "file": Path(str(path)).name if path else model.get("base_url") or "",
            "sha256": info.get("sha256") or "n/a", "template": info.get("template") or model.get("prompt_format"),
            "chat_template": info.get("chat_template"), "template_note": info.get("template_note")}


def _settings(results: RunResults) -> dict[str, Any]:
    import yaml

    manifest = results.manifest
    config, env = manifest.get("config", {}), manifest.get("environment", {})
    machine = {k: env.get(k) for k in ("python", "platform", "cpu", "cpu_count", "memory_gib")}
    machine["gpus"] = ", ".join(env.get("gpus") or []) or "none"
    judges = [(f"Judge {judge.get('id')}", {k: ", ".join(map(str, v)) if isinstance(v, list) else v
                                            for k in JUDGE_KEYS if (v := judge.get(k)) is not None})
              for judge in _judges(results)]
    return {"models": [_model_settings(m, manifest.get("models", {}).get(m.get("id"), {}))
                       for m in config.get("models", [])],
            "data": manifest.get("data", {}), "judges": judges, "machine": machine,
            "packages": env.get("packages", {}),
            "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True)}


def _version() -> str:
    """raq's installed version (read from the package metadata, so the report needs nothing else of raq's)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("raq")
    except PackageNotFoundError:
        return "unknown"


def render_html_report(results: RunResults) -> str:
    """The run's report as one self-contained HTML document."""
    from .figures import tradeoff_figure
    from .report_decision import decision_values
    from .report_judge_check import judge_check_section
    from .report_unanswerable import unanswerable_values

    manifest = results.manifest
    decision = decision_values(results.stats, results.summary, manifest.get("models"))
    tradeoffs = results.stats.get("tradeoffs") or {}
    decision_figure = _drawn("tradeoffs", lambda: tradeoff_figure(tradeoffs)) if decision else None
    page = {"name": manifest.get("config", {}).get("name", ""), "run_dir": results.run_dir,
            "created": manifest.get("created"), "updated": manifest.get("updated"), "version": _version(),
            "stamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return _render("report.html.j2", page=page, decision=decision, decision_figure=decision_figure,
                   unanswerable=unanswerable_values(results.stats),
                   overview=_overview(results), models=_models(results),
                   statistics=_statistics_values(results.stats), figures=_figures(results),
                   examples=_examples(results), failures=_failures(results), settings=_settings(results),
                   judge_check=judge_check_section(results.run_dir))


def write_html_report(results: RunResults, path: Path | None = None) -> Path:
    """Write the run's self-contained HTML report (default ``RUN_DIR/report.html``); return its path."""
    path = Path(path) if path is not None else Path(results.run_dir) / REPORT_NAME
    document = render_html_report(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    log.debug("wrote %s", path)
    return path
