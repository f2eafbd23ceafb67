"""The judge check in the reports, and how they show the scoring protocols' judgements.

The "Judge check" section of the HTML report and its lines in summary.md come from
``RUN_DIR/judge_check.json``, read here as plain JSON: a missing file says how to check the
judge, an unreadable one shows its error in the section (the rest of the report is unharmed), and
a missing figure is ``n/a``. The pointwise and pairwise protocols show the judge no order of all
the answers, so their judgements are shown by their scores and their order effects by their own
figures (:func:`raq.judge_quality.position_bias`). A check with unanswerable ladders (questions
without gold answers) also shows each subset's figures and per-rung table, each rung's tier the
one it has there. Every value handed to the templates is plain text or numbers, escaped there.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import SCORING_PROTOCOLS

if TYPE_CHECKING:  # pragma: no cover
    from .records import Judgement

log = logging.getLogger(__name__)

CHECK_FILE = "judge_check.json"
ABSTAINED = "abstention_above_invented"
N_LADDERS = 3
TIER_NAMES = {0: "correct", 1: "partial", 2: "wrong"}
PROTOCOLS_SHOWN = {"pointwise": "each answer graded on its own: 0 incorrect, 1 partly correct, 2 correct; "
                                "score: the expected grade",
                   "pairwise": "every pair of answers compared in both orders; score: pairs won plus half the "
                               "pairs whose two orders disagreed"}
#: The rungs of a ladder, in plain words.
RUNGS = (("gold", "the dataset's first gold answer, as is"),
         ("gold_alt", "another annotator's different gold answer (only when there is one)"),
         ("gold_sentence", "the gold answer in a correct full sentence (\"According to the text, the answer is …\")"),
         ("partial", "the first half of the gold answer (only when asked for)"),
         ("wrong", "a plausible wrong answer from the same paragraph (another question's answer, or a span of the "
                   "same kind: a number for a number, a name for a name)"),
         ("wrong_sentence", "that wrong answer in a long, fluent, confident sentence"),
         ("abstain", "\"The text does not say.\": wrong for a question whose answer is in the text, the correct "
                     "answer for one whose answer is not (SQuAD 2.0's unanswerable questions)"),
         ("abstain_sentence", "for a question without an answer in the text: the same said in other words (correct)"),
         ("invented", "for a question without an answer in the text: an invented answer of the kind it asks for, "
                      "from the same paragraph (wrong)"),
         ("invented_sentence", "that invented answer in the long, confident sentence of wrong_sentence (wrong)"))
#: The subsets of a check with unanswerable ladders, in plain words.
SUBSETS = {"answerable": "questions with an answer in the text", "unanswerable": "questions without one"}
#: What each figure of the table means.
FIGURES = (
    ("pairwise accuracy", "over every (correct, wrong) pair of answers to a question, the share with the correct "
                          "one ranked above the wrong one; ties count half. 50% is guessing, 100% is every correct "
                          "answer above every wrong one. Partial answers, and two answers of the same tier, form no "
                          "pair. The interval is a percentile bootstrap over questions."),
    ("all correct above wrong", "the share of questions where every correct answer is ranked strictly above "
                                "every wrong one."),
    ("wrong ranked first", "the share of wrong answers among those ranked best (ties for first shared): how often "
                           "the judge's winner is a wrong answer."),
    ("Kendall's tau", "rank correlation (tau-b) between the judge's ranks and the tiers: 1 is the known order, "
                      "0 no relation, negative a reversed order."),
    ("position consistency", "listwise with several orders: the share of questions ranked the same in every order; "
                             "pairwise: the share of pairs whose two orders named the same winner; n/a when no "
                             "order, or one order only, is shown."),
    ("stability", "every question's first order judged again after all the others: the share ranked the same "
                  "both times."),
    ("length preference", "over pairs of answers of the same tier whose lengths differ, the share where the longer "
                          "one is ranked above; ties count half. 50% is no preference for length."),
    ("abstention above invented", "questions without an answer in the text: the share where a correct abstention "
                                  "is ranked above every invented answer (also: the figures of each subset)."),
    ("seconds per question", "the judge's time per question, all its orders together."),
    ("failed judgements", "judgements with no usable verdict after every retry; a question counts only when all "
                          "its orders were judged."),
    ("passed", "whether the mean pairwise accuracy reaches judge.min_accuracy (shown in brackets)."))


# --- formatting: "n/a" for anything missing ------------------------------------------------------
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def percent(value: Any) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{100 * number:.1f}%"


def _decimal(value: Any, digits: int = 2) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{number:.{digits}f}"


def _mean(metrics: Mapping[str, Any], name: str) -> Any:
    entry = metrics.get(name)
    return entry.get("mean") if isinstance(entry, Mapping) else entry


def _interval(entry: Any) -> str:
    """`` [low, high]`` of a metric's interval, empty when it has none."""
    if not isinstance(entry, Mapping) or _number(entry.get("ci_low")) is None or _number(entry.get("ci_high")) is None:
        return ""
    return f" [{percent(entry['ci_low'])}, {percent(entry['ci_high'])}]"


def _seconds_per_question(metrics: Mapping[str, Any]) -> Any:
    seconds = metrics.get("seconds")
    if isinstance(seconds, Mapping):
        return seconds.get("per_question")
    return metrics.get("seconds_per_question")


def _passed(check: Mapping[str, Any]) -> str:
    minimum = check.get("min_accuracy")
    bound = f" (≥ {percent(minimum)})" if _number(minimum) is not None else ""
    return ("yes" if check.get("passed") else "no") + bound


# --- judge_check.json ------------------------------------------------------------------------------
def read_check(run_dir: Path | str) -> dict[str, Any] | None:
    """``RUN_DIR/judge_check.json``, None when there is none; ValueError or OSError when it is
    unreadable or not a judge-check's report."""
    path = Path(run_dir) / CHECK_FILE
    if not path.exists():
        return None
    report = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(report, dict) or not isinstance(report.get("checks"), list):
        raise ValueError("not a judge-check report (no list of checks)")
    if not all(isinstance(check, dict) and isinstance(check.get("metrics", {}), dict) for check in report["checks"]):
        raise ValueError("a check is not an object with an object of metrics")
    return report


def _level(report: Mapping[str, Any]) -> str:
    alpha = _number((report.get("config") or {}).get("stats", {}).get("alpha"))
    return f"{1 - (0.05 if alpha is None else alpha):.0%}"


def check_row(check: Mapping[str, Any]) -> dict[str, str]:
    """One check's headline figures as table cells."""
    m = check.get("metrics") or {}
    failed, judgements = m.get("failed_judgements"), m.get("judgements")
    return {"judge": str(check.get("judge", "n/a")), "protocol": str(check.get("protocol", "n/a")),
            "orders": _decimal(check.get("orders"), 0),
            "questions": f"{_decimal(m.get('questions_judged'), 0)} of {_decimal(m.get('questions'), 0)}",
            "accuracy": percent(_mean(m, "pairwise_accuracy")) + _interval(m.get("pairwise_accuracy")),
            "all_correct": percent(_mean(m, "all_correct_above_wrong")),
            "wrong_first": percent(_mean(m, "wrong_first")),
            "tau": _decimal(_mean(m, "kendall_tau")), "position": percent(_mean(m, "position_consistency")),
            "stability": percent(_mean(m, "stability")), "length": percent(_mean(m, "length_preference")),
            "seconds": _decimal(_seconds_per_question(m), 1),
            "failed": f"{_decimal(failed, 0)} of {_decimal(judgements, 0)}", "passed": _passed(check),
            "ok": "yes" if check.get("passed") else "no"}


def primary_check(report: Mapping[str, Any]) -> dict[str, Any]:
    """The latest check of the study's first judge in its own protocol, else the first check."""
    checks, config = report["checks"], report.get("config") or {}
    judges = [config["judge"]] if config.get("judge") else list(config.get("judges") or [])
    if judges and isinstance(judges[0], Mapping):
        wanted = (judges[0].get("id"), judges[0].get("protocol"))
        own = [c for c in checks if (c.get("judge"), c.get("protocol")) == wanted]
        if own:
            return dict(own[-1])
    return dict(checks[0])


def subset_rows(check: Mapping[str, Any]) -> list[dict[str, str]]:
    """A check's figures on each subset (none without unanswerable ladders), as table cells."""
    subsets = (check.get("metrics") or {}).get("subsets") or {}
    return [{**check_row({**check, "metrics": figures}), "subset": SUBSETS.get(name, str(name)),
             "abstention": percent(_mean(figures, ABSTAINED))}
            for name, figures in subsets.items() if isinstance(figures, Mapping)]


def _tier(name: str, answerable: Sequence[bool]) -> str:
    """Rung ``name``'s tier on questions with an answer (True) and without (False), in words."""
    from .judge_ladder import rung_tier

    tiers = dict.fromkeys(TIER_NAMES[t] for a in answerable if (t := rung_tier(name, a)) is not None)
    return " or ".join(tiers) or "n/a"


def _rung_rows(metrics: Mapping[str, Any], answerable: Sequence[bool] = (True,)) -> list[dict[str, str]]:
    from .judge_ladder import RUNGS

    per_rung = metrics.get("per_rung") or metrics.get("rungs") or {}
    order = [name for name in RUNGS if name in per_rung] + sorted(set(per_rung) - set(RUNGS))
    return [{"rung": name, "tier": _tier(name, answerable),
             "mean_rank": _decimal(per_rung[name].get("mean_rank")),
             "ranked_first": percent(per_rung[name].get("ranked_first")), "n": _decimal(per_rung[name].get("n"), 0)}
            for name in order if isinstance(per_rung[name], Mapping)]


def _misjudged(ladder: Mapping[str, Any], ranks: Mapping[str, Any]) -> set[str]:
    """The wrong rungs ranked at or above some correct rung."""
    tiers = {r["name"]: r.get("tier") for r in ladder["rungs"]}
    best_correct = min((float(ranks[n]) for n, t in tiers.items() if t == 0 and n in ranks), default=math.inf)
    return {n for n, t in tiers.items() if t == 2 and n in ranks and float(ranks[n]) <= best_correct}


def _ladder(ladder: Mapping[str, Any], judgement: Mapping[str, Any]) -> dict[str, Any]:
    ranks, scores = judgement.get("ranks") or {}, judgement.get("scores") or {}
    grades = {d.get("model"): d.get("grade") for d in judgement.get("details") or [] if isinstance(d, Mapping)}
    bad = _misjudged(ladder, ranks) if judgement.get("ok") else set()
    rows = [{"rung": r["name"], "tier": TIER_NAMES.get(r.get("tier"), "n/a"), "text": r.get("text", ""),
             "rank": _decimal(ranks.get(r["name"]), 1), "score": _decimal(scores.get(r["name"])),
             "grade": _decimal(grades.get(r["name"]), 0), "bad": r["name"] in bad} for r in ladder["rungs"]]
    return {"question_id": ladder.get("question_id"), "question": ladder.get("question", ""),
            "gold": list(dict.fromkeys(ladder.get("gold_answers") or [])), "rows": rows,
            "ok": bool(judgement.get("ok")), "error": judgement.get("error", ""),
            "replies": list(judgement.get("raw_replies") or []),
            "scored": bool(scores), "graded": any(g is not None for g in grades.values()), "misjudged": bool(bad)}


def ladder_examples(report: Mapping[str, Any], check: Mapping[str, Any], n: int = N_LADDERS) -> list[dict[str, Any]]:
    """The first ``n`` ladders the check judged (their first order), and the first ladder with a
    wrong answer ranked at or above a correct one when none of those has one, and the first of a
    question without gold answers (a misjudged one first) when none of them is."""
    judged = {j.get("question_id"): j for j in reversed(check.get("judgements") or [])
              if isinstance(j, Mapping) and j.get("order_index", 0) == 0}
    shown = [_ladder(ladder, judged[ladder.get("question_id")]) for ladder in report.get("ladders") or []
             if isinstance(ladder, Mapping) and ladder.get("question_id") in judged]
    examples = shown[:n]
    if not any(e["misjudged"] for e in examples):
        examples += [e for e in shown[n:] if e["misjudged"]][:1]
    if not all(e["gold"] for e in examples):
        return examples
    return examples + sorted((e for e in shown if not e["gold"]), key=lambda e: not e["misjudged"])[:1]


def _section(report: Mapping[str, Any]) -> dict[str, Any]:
    if not report["checks"]:
        return {"rows": [], "primary": None}
    primary = primary_check(report)
    dataset = {key: (report.get("dataset") or {}).get(key) for key in ("source", "split", "questions", "ladders")}
    m = primary.get("metrics") or {}
    subsets = {name: f for name, f in (m.get("subsets") or {}).items() if isinstance(f, Mapping)}
    return {"rows": [check_row(c) for c in report["checks"]], "level": _level(report),
            "created": report.get("created"), "dataset": dataset, "rung_names": list(report.get("rungs") or []),
            "subset_rows": [row for c in report["checks"] for row in subset_rows(c)],
            "unanswerable": (report.get("dataset") or {}).get("unanswerable_ladders"),
            "primary": {"judge": primary.get("judge"), "protocol": primary.get("protocol"),
                        "rungs": _rung_rows(m, (True, False) if subsets else (True,)),
                        "subsets": [{"name": SUBSETS.get(name, name), "rungs": _rung_rows(f, (name != "unanswerable",))}
                                    for name, f in subsets.items()],
                        "ladders": ladder_examples(report, primary),
                        "shown": PROTOCOLS_SHOWN.get(str(primary.get("protocol")))}}


def judge_check_section(run_dir: Path | str) -> dict[str, Any]:
    """What the "Judge check" section shows: ``state`` "missing", "error" (with ``error``) or
    "ok" (with the table's rows, the primary check's rungs and example ladders)."""
    values: dict[str, Any] = {"file": str(Path(run_dir) / CHECK_FILE), "rungs": RUNGS, "figures": FIGURES,
                              "command": f"python -m raq judge-check --run {run_dir}"}
    try:
        report = read_check(run_dir)
        if report is None:
            return {**values, "state": "missing"}
        return {**values, "state": "ok", **_section(report)}
    except Exception as error:  # an unreadable file must not lose the report
        log.warning("%s: %s", values["file"], error)
        return {**values, "state": "error", "error": f"{type(error).__name__}: {error}"}


def summary_lines(run_dir: Path | str) -> list[str]:
    """summary.md's lines on the judge check (none without ``judge_check.json``)."""
    try:
        report = read_check(run_dir)
        if report is None:
            return []
        lines = []
        for check in report["checks"]:
            row, m = check_row(check), check.get("metrics") or {}
            interval = _interval(m.get("pairwise_accuracy")).strip(" []").replace(", ", " to ")
            subsets = "".join(f"; on {SUBSETS.get(name, name)} {percent(_mean(f, 'pairwise_accuracy'))}"
                              for name, f in (m.get("subsets") or {}).items() if isinstance(f, Mapping))
            abstained = (f", a correct abstention above every invented answer {percent(_mean(m, ABSTAINED))}"
                         if isinstance(m.get(ABSTAINED), Mapping) else "")
            lines.append(f"- {row['judge']} ({row['protocol']} protocol): pairwise accuracy "
                         f"{percent(_mean(m, 'pairwise_accuracy'))}"
                         + (f" ({_level(report)} interval {interval})" if interval else "")
                         + f" on {_decimal(m.get('questions_judged'), 0)} questions{subsets}{abstained}; wrong answer "
                         f"ranked first {row['wrong_first']}; passed: {row['passed']}")
    except Exception as error:
        return [f"- {CHECK_FILE} could not be read: {type(error).__name__}: {error}"]
    return lines


# --- the scoring protocols in the study's sections ---------------------------------------------------
def is_listwise(judgement: Judgement) -> bool:
    """Whether the judge ranked all the answers at once, shown in ``judgement.order``."""
    return judgement.protocol not in SCORING_PROTOCOLS


def position_note(judgements: Sequence[Judgement], drawn: bool) -> str | None:
    """Why the position-bias figure is missing (or leaves judgements out, when ``drawn``)."""
    scoring = sorted({j.protocol for j in judgements if not is_listwise(j)})
    if scoring:
        how = {"pointwise": "pointwise: each answer is graded on its own",
               "pairwise": "pairwise: every pair is compared in both orders, whose effect is in the judge table"}
        why = (f"The {' and '.join(scoring)} protocol shows the judge no order of all the answers "
               f"({'; '.join(how[protocol] for protocol in scoring)})")
        return why + (": its judgements are not in the position-bias figure." if drawn else
                      ", so there is no position-bias figure.")
    if drawn:
        return None
    return ("The judge saw the answers in one fixed order: position bias cannot be told apart from model quality, "
            "so there is no position-bias figure.")


def verdict_view(judgement: Judgement) -> dict[str, Any]:
    """How an example shows a judgement: what was shown, its ranking (ties grouped, best
    first) and, for the scoring protocols, each answer's score (and grade) and each comparison."""
    groups: dict[float, list[str]] = {}
    for model, rank in sorted(judgement.ranks.items(), key=lambda item: item[1]):
        groups.setdefault(rank, []).append(model)
    listwise = is_listwise(judgement)
    grades = {d.get("model"): d.get("grade") for d in judgement.details if "model" in d}
    scores = [(model, _decimal(score), _decimal(grades.get(model), 0) if model in grades else None)
              for model, score in sorted(judgement.scores.items(), key=lambda item: -item[1])]
    compared = [f"{d['shown'][0]} vs {d['shown'][1]}: {d.get('winner') or 'no choice'}" for d in judgement.details
                if isinstance(d.get("shown"), list) and len(d["shown"]) == 2]
    return {"protocol": judgement.protocol, "listwise": listwise, "how": PROTOCOLS_SHOWN.get(judgement.protocol),
            "shown": list(zip(judgement.labels, judgement.order)) if listwise else [],
            "ranked": list(groups.values()), "scores": scores, "compared": compared}


def judge_rows(stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The judge table of the Figures section: failures, order effects and agreement with F1."""
    rows = []
    for judge_id, info in stats.get("judging", {}).get("judges", {}).items():
        bias, agree = info.get("position_bias", {}), info.get("f1_agreement", {})
        row = {"judge_id": judge_id, "orders": info.get("orders"), "judgements": info.get("judgements"),
               "failed": info.get("failed_after_retries"), "first_wins": bias.get("first_position_win_rate"),
               "chance": bias.get("chance"), "p_value": bias.get("first_position_p_value"),
               "flips": bias.get("winner_flip_rate"), "spearman": agree.get("mean_spearman"),
               "best_f1": agree.get("winner_has_best_f1"), "note": bias.get("note")}
        if bias.get("protocol") == "pairwise":
            consistency = _number(bias.get("pair_consistency"))
            row.update(first_wins=bias.get("first_shown_win_rate"), p_value=bias.get("first_shown_p_value"),
                       flips=None if consistency is None else 1 - consistency,
                       note="pairwise: first shown wins over all comparisons; winner flips: the pairs whose two "
                            "orders named different winners; p: sign test over those pairs")
        rows.append(row)
    return rows
