"""The report's section on questions the text cannot answer, as plain values for the HTML
template and as lines for summary.md; nothing for a study whose questions are all answerable."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .unanswerable import level

__all__ = ["level", "unanswerable_values", "unanswerable_lines"]

#: Each rate's title and what it counts.
RATE_TITLES = {
    "correct_abstentions": "said the text does not say, of the unanswerable questions",
    "hallucinations": "invented an answer to an unanswerable question",
    "wrong_abstentions": "abstained on an answerable question",
    "abstention_rate": "abstained, of all questions",
}


def _interval(entry: Mapping[str, Any] | None) -> tuple[Any, Any, Any]:
    entry = entry or {}
    return entry.get("value"), entry.get("ci_low"), entry.get("ci_high")


def _friedman(subset: Mapping[str, Any]) -> dict[str, Any]:
    friedman = (subset.get("blocked") or {}).get("friedman") or {}
    kruskal = (subset.get("paper") or {}).get("kruskal") or {}
    means = {m: (s or {}).get("mean") for m, s in (subset.get("summary") or {}).items()}
    return {"n": subset.get("n_questions"), "friedman_p": friedman.get("p_value"),
            "kruskal_p": kruskal.get("p_value"), "kendalls_w": friedman.get("kendalls_w"),
            "means": means, "note": subset.get("note")}


def unanswerable_values(stats: Mapping[str, Any]) -> dict[str, Any] | None:
    """The section's values; None when the study had no unanswerable question."""
    result = stats.get("unanswerable")
    if not result:
        return None
    rows = []
    for model, figures in (result.get("models") or {}).items():
        rows.append({"model": model, "answers": figures.get("answers"), "skipped": figures.get("skipped", 0),
                     **{name: _interval(figures.get(name)) for name in (*RATE_TITLES, "em", "f1", "has_ans_f1",
                                                                          "no_ans_em")},
                     "counts": {name: (figures.get(name) or {}).get("count") for name in RATE_TITLES},
                     "rank_answerable": (figures.get("mean_rank") or {}).get("answerable"),
                     "rank_unanswerable": (figures.get("mean_rank") or {}).get("unanswerable")})
    subsets = result.get("subsets") or {}
    overall = stats.get("blocked", {}).get("friedman", {}) or {}
    tests = [{"subset": "all", "n": stats.get("n_questions"), "friedman_p": overall.get("p_value"),
              "kruskal_p": (stats.get("paper", {}).get("kruskal") or {}).get("p_value"),
              "kendalls_w": overall.get("kendalls_w"), "note": None}]
    tests += [{"subset": name, **_friedman(subsets.get(name) or {})} for name in ("answerable", "unanswerable")]
    return {"questions": result.get("questions") or {}, "rows": rows, "tests": tests,
            "method": result.get("method") or {}, "alpha": result.get("alpha", stats.get("alpha", 0.05)),
            "skipped": sum(row["skipped"] or 0 for row in rows)}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _ci(entry: tuple[Any, Any, Any]) -> str:
    value, low, high = entry
    return _fmt(value) + (f" [{_fmt(low)}, {_fmt(high)}]" if low is not None and high is not None else "")


def _skipped_note(skipped: int) -> str:
    return f" ({skipped} skipped answers, with no reply, left out of them)" if skipped else ""


def unanswerable_lines(stats: Mapping[str, Any]) -> list[str]:
    """summary.md's section (empty without unanswerable questions)."""
    values = unanswerable_values(stats)
    if values is None:
        return []
    questions = values["questions"]
    lines = ["## Questions the text cannot answer", "",
             f"{questions.get('unanswerable')} of {questions.get('answerable', 0) + questions.get('unanswerable', 0)} "
             f"questions have no answer in their text (share {_fmt(questions.get('share_unanswerable'))}). "
             f"Rates with Wilson {level(values['alpha'])} intervals{_skipped_note(values['skipped'])}; EM and F1 as "
             "SQuAD 2.0 scores them (an abstention is right exactly on an unanswerable question).", ""]
    for row in values["rows"]:
        skipped = f" ({row['skipped']} skipped answers left out)" if row["skipped"] else ""
        lines.append(f"- {row['model']}: correct abstentions {_ci(row['correct_abstentions'])}, hallucinations "
                     f"{_ci(row['hallucinations'])}, wrong abstentions {_ci(row['wrong_abstentions'])}{skipped}; EM "
                     f"{_ci(row['em'])}, F1 {_ci(row['f1'])} (answerable {_ci(row['has_ans_f1'])}); mean rank "
                     f"answerable {_fmt(row['rank_answerable'])}, unanswerable {_fmt(row['rank_unanswerable'])}")
    lines += ["", "Rank tests on each subset:", ""]
    for test in values["tests"]:
        if test.get("note"):
            lines.append(f"- {test['subset']}: {test['note']}")
            continue
        lines.append(f"- {test['subset']} ({test.get('n')} judged questions): Friedman p = "
                     f"{_fmt(test.get('friedman_p'))}, Kendall's W = {_fmt(test.get('kendalls_w'))}, "
                     f"Kruskal-Wallis p = {_fmt(test.get('kruskal_p'))}")
    return [*lines, ""]
