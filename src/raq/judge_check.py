"""judge-check: how accurate a judge is on answers whose quality order is known, built from the
study's own questions (:mod:`raq.judge_ladder`) and judged exactly as the study judges (same
judge, protocol, prompt, context excerpt and orders), before anyone trusts its verdict.

Each protocol to check is run on one loaded judge model: every question's ladder in each of the
protocol's orders, then the first order of the first ``repeats`` questions once more (stability),
after all the others, so that a repeat does not find its prompt in the cache. The figures
(:mod:`raq.judge_accuracy`), every judgement with its raw replies, the ladders and the settings
go to ``judge_check.json``. Where the dataset has questions without gold answers (and the study
does not exclude them), at least :data:`UNANSWERABLE_SHARE` of the checked questions are such
(:func:`with_unanswerable`), and the figures are also given for each subset.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import environment
from .backends.base import Backend
from .backends.factory import Backends
from .checks import ModelFile
from .config import SCORING_PROTOCOLS, JudgeConfig, RunConfig, config_to_dict
from .errors import RaqError
from .judge_ladder import DEFAULT_RUNGS, Ladder, build_ladders
from .judges import make_judge
from .progress import progress_bar
from .records import Judgement, Question, to_dict
from .store import now, write_json_atomic

FORMAT_VERSION = 1
DEFAULT_QUESTIONS = 40
#: Questions whose first order is asked a second time (stability).
DEFAULT_REPEATS = 10


def gate_repeats(questions: int) -> int:
    """Stability repeats of the check a study runs first (``judge.check``): a quarter of its
    questions, at least 2 and at most :data:`DEFAULT_REPEATS` (the study waits for all of them)."""
    return min(DEFAULT_REPEATS, max(2, questions // 4), questions)

Task = tuple[Ladder, int]  # a ladder and the index of the order it is shown in


def check_questions(config: RunConfig, n: int, study: Sequence[Question] | None = None) -> list[Question]:
    """``n`` questions of the study's dataset: the study's own sample first (``study``, or the
    config's), more drawn with the study's seed when it has fewer (read with the study's data
    settings: its column names, answer delimiter, documents folder and unanswerable questions)."""
    from .study_data import load_pool, load_sample

    data = config.data
    if study is None:
        study = load_sample(data, min(n, data.n_questions))
    if len(study) >= n:
        return list(study[:n])
    known = {q.question_id for q in study}
    extra = load_pool(data, data.unanswerable)
    rest = [q for q in extra if q.question_id not in known]
    return [*study, *random.Random(data.seed).sample(rest, min(n - len(study), len(rest)))]


#: The least share of the checked questions without gold answers, where the dataset has them.
UNANSWERABLE_SHARE = 0.25


def with_unanswerable(config: RunConfig, questions: Sequence[Question], pool: Sequence[Question],
                      share: float = UNANSWERABLE_SHARE) -> list[Question]:
    """``questions`` (from :func:`check_questions`) holding at least ``share`` of questions without gold
    answers, or every one ``pool`` has when it has fewer: the last questions with gold answers give way
    to ones drawn from ``pool`` with the study's seed. Unchanged when the study excludes them."""
    if config.data.unanswerable == "exclude":
        return list(questions)
    wanted = math.ceil(share * len(questions)) - sum(not q.answerable for q in questions)
    known = {q.question_id for q in questions}
    rest = [q for q in pool if not q.answerable and q.question_id not in known]
    drawn = random.Random(f"{config.data.seed}:unanswerable").sample(rest, min(max(wanted, 0), len(rest)))
    if not drawn:
        return list(questions)
    dropped = {q.question_id for q in [q for q in questions if q.answerable][-len(drawn):]}
    return [*(q for q in questions if q.question_id not in dropped), *drawn]


#: The orders of the ``raq`` protocol checked for a judge configured with another protocol.
LISTWISE_ORDERS = 3


def protocol_settings(judge: JudgeConfig, protocol: str | None, orders: int | None) -> JudgeConfig:
    """``judge`` with another protocol (scoring and ``paper`` protocols: one order; ``raq``:
    :data:`LISTWISE_ORDERS` unless ``orders`` says) or orders."""
    changes: dict[str, Any] = {}
    if protocol is not None and protocol != judge.protocol:
        changes["protocol"] = protocol
        changes["orders"] = LISTWISE_ORDERS if protocol == "raq" else 1
    if orders is not None and (protocol or judge.protocol) not in SCORING_PROTOCOLS:
        changes["orders"] = orders
    return judge.model_validate({**judge.model_dump(), **changes}) if changes else judge


def rung_order(ladder: Ladder, seed: int) -> list[str]:
    """The rungs in a seeded random order per question: the order a protocol that shows a fixed
    order (``paper``) shows, so that a judge's position bias cannot pass for accuracy."""
    rungs = [rung.name for rung in ladder.rungs]
    random.Random(f"{seed}:{ladder.question.question_id}:rungs").shuffle(rungs)
    return rungs


def _judged(settings: JudgeConfig, backend: Backend, tasks: Sequence[Task], bar: Any) -> Iterator[Judgement]:
    """Judgements of ``tasks`` in their order, as many in flight as the backend serves."""
    judge = make_judge(settings, backend)

    def work(task: Task) -> Judgement:
        ladder, order_index = task
        rungs = rung_order(ladder, settings.seed)
        judgement = judge.judge(ladder.question, ladder.answers(), rungs, order_index)
        bar.update()
        return judgement

    in_flight = min(settings.in_flight, backend.capacity)  # max_in_flight on each endpoint
    if in_flight <= 1:
        yield from map(work, tasks)
        return
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        yield from pool.map(work, tasks)


def run_check(settings: JudgeConfig, backend: Backend, ladders: Sequence[Ladder], *, repeats: int = DEFAULT_REPEATS,
              alpha: float = 0.05, seed: int = 2024, progress: bool | None = None) -> dict[str, Any]:
    """Judge every ladder in the orders of ``settings`` (and the first order again, with
    the first ``repeats`` ladders); the figures, the judgements and whether ``settings.min_accuracy`` is met."""
    tasks = [(ladder, k) for ladder in ladders for k in range(settings.orders)]
    again = [(ladder, 0) for ladder in ladders[:repeats]]
    with progress_bar(len(tasks) + len(again), f"judge-check [{settings.id}, {settings.protocol}]", progress) as bar:
        judgements = list(_judged(settings, backend, tasks, bar))
        repeated = list(_judged(settings, backend, again, bar))
    from .judge_accuracy import check_metrics, meets  # scipy: only once a check runs

    metrics = check_metrics(ladders, judgements, repeated, orders=settings.orders, alpha=alpha, seed=seed)
    return {"judge": settings.id, "protocol": settings.protocol, "orders": settings.orders,
            "settings": settings.model_dump(mode="json"), "backend": backend.info(),
            "min_accuracy": settings.min_accuracy, "passed": meets(metrics, settings.min_accuracy),
            "metrics": metrics, "judgements": [to_dict(j) for j in judgements],
            "repeats": [to_dict(j) for j in repeated]}


def check_judges(config: RunConfig, questions: Sequence[Question], files: dict[str, ModelFile], backends: Backends,
                 *, judges: Sequence[JudgeConfig], protocols: Sequence[str | None] = (None,),
                 orders: int | None = None, rungs: Sequence[str] = DEFAULT_RUNGS, repeats: int = DEFAULT_REPEATS,
                 log_dir: Path | None = None, progress: bool | None = None,
                 pool: Sequence[Question] | None = None) -> dict[str, Any]:
    """judge-check of each of ``judges`` in each of ``protocols`` (None: the judge's own) on the
    ladders of ``questions`` (:func:`with_unanswerable`); each judge's model is loaded once for all
    its protocols. ``pool``: the dataset's questions (default: loaded), wrong answers' source."""
    if pool is None:  # every question, whatever the study samples: the others' answers give wrong ones
        from .study_data import load_pool

        pool = load_pool(config.data)
    questions = with_unanswerable(config, questions, pool)
    ladders, skipped = build_ladders(questions, pool, rungs, seed=config.data.seed)
    unanswerable = sum(not ladder.question.answerable for ladder in ladders)
    checks = []
    for judge in judges:
        file = files.get(f"judge:{judge.id}")
        log_path = (log_dir or Path(config.out_dir)) / f"judge-check-{judge.id}.log"
        scoring = [p for p in protocols if (p or judge.protocol) in SCORING_PROTOCOLS]
        opened = protocol_settings(judge, scoring[0], None) if scoring else judge  # a server keeps logits for them
        backend = backends.judge(opened, file.path if file else None, log_path)
        try:
            for protocol in protocols:
                settings = protocol_settings(judge, protocol, orders)
                checks.append(run_check(settings, backend, ladders, repeats=repeats, alpha=config.stats.alpha,
                                        seed=config.data.seed, progress=progress))
        finally:
            backend.close()
    return {"format_version": FORMAT_VERSION, "created": now(), "environment": environment.describe(),
            "dataset": {"source": config.data.source, "split": config.data.split, "seed": config.data.seed,
                        "questions": len(questions), "ladders": len(ladders), "skipped": skipped,
                        **({"unanswerable_ladders": unanswerable} if unanswerable else {})},
            "rungs": list(rungs), "config": config_to_dict(config), "checks": checks,
            "ladders": [{"question_id": ladder.question.question_id, "question": ladder.question.question,
                         "gold_answers": ladder.question.gold_answers,
                         "rungs": [{"name": r.name, "text": r.text, "tier": r.tier} for r in ladder.rungs]}
                        for ladder in ladders]}


def merged(previous: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """``report`` with the checks of ``previous`` it does not redo (the same judge, protocol and
    settings) kept before its own, and the ladders of both (by question)."""
    def key(check: dict[str, Any]) -> str:
        return json.dumps([check["judge"], check["settings"]], sort_keys=True)

    redone = {key(check) for check in report["checks"]}
    kept = [check for check in previous.get("checks", []) if key(check) not in redone]
    ladders = {ladder["question_id"]: ladder for ladder in [*previous.get("ladders", []), *report["ladders"]]}
    return {**report, "checks": [*kept, *report["checks"]], "ladders": list(ladders.values())}


def write_check(path: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Write ``report`` to ``path``, keeping the other checks a file already there holds (a run's
    ``judge_check.json`` gathers every check made of its judges); returns what was written."""
    if path.exists():
        try:
            report = merged(json.loads(path.read_text(encoding="utf-8")), report)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise RaqError(f"{path}: cannot add to this judge-check file ({error}); move it away first") from None
    write_json_atomic(path, report)
    return report


def summary_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (judge, protocol): the headline figures, for tables and the CLI (with unanswerable
    ladders, also the pairwise accuracy of each subset and how often an abstention beats every invented answer)."""
    def value(m: dict[str, Any], key: str) -> Any:
        entry = m.get(key)
        return entry.get("mean") if isinstance(entry, dict) else entry

    rows = []
    for check in report.get("checks", []):
        m = check["metrics"]
        subsets = {f"{name}_accuracy": value(figures, "pairwise_accuracy")
                   for name, figures in m.get("subsets", {}).items()}
        if subsets:
            subsets["abstention_above_invented"] = value(m, "abstention_above_invented")
        rows.append({"judge": check["judge"], "protocol": check["protocol"], "orders": check["orders"],
                     "questions": m.get("questions_judged"), "pairwise_accuracy": value(m, "pairwise_accuracy"),
                     "wrong_first": value(m, "wrong_first"), "kendall_tau": value(m, "kendall_tau"),
                     "position_consistency": value(m, "position_consistency"), "stability": value(m, "stability"),
                     "length_preference": value(m, "length_preference"),
                     "seconds_per_question": m.get("seconds_per_question"),
                     "failure_rate": m.get("failure_rate"), "passed": check["passed"], **subsets})
    return rows


def _percent(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def format_check(report: dict[str, Any]) -> str:
    """The headline figures as a plain-text table, one line per (judge, protocol)."""
    head: tuple[str, ...] = ("judge", "protocol", "orders", "n", "pairwise acc", "wrong first", "tau",
                             "position cons.", "stability", "longer wins", "s/question", "passed")
    rows = summary_rows(report)
    subsets = ("answerable_accuracy", "unanswerable_accuracy", "abstention_above_invented")
    split = any(subsets[0] in row for row in rows)
    head = (*head[:5], "answerable", "unanswerable", "abstains first", *head[5:]) if split else head
    lines = [head]
    for row in rows:
        tau, seconds = row["kendall_tau"], row["seconds_per_question"]
        lines.append((row["judge"], row["protocol"], str(row["orders"]), str(row["questions"]),
                      _percent(row["pairwise_accuracy"]),
                      *(_percent(row.get(name)) for name in (subsets if split else ())), _percent(row["wrong_first"]),
                      "n/a" if tau is None else f"{tau:.2f}", _percent(row["position_consistency"]),
                      _percent(row["stability"]), _percent(row["length_preference"]),
                      "n/a" if seconds is None else f"{seconds:.1f}", "yes" if row["passed"] else "NO"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


def failure_message(check: dict[str, Any], path: Path) -> str:
    """Why a study stops after a failed judge-check, and what the user can do."""
    accuracy = check["metrics"].get("pairwise_accuracy") or {}
    low, high = accuracy.get("ci_low"), accuracy.get("ci_high")
    interval = f" (95% interval {_percent(low)} to {_percent(high)})" if low is not None else ""
    return (f"judge-check: judge {check['judge']!r} ({check['protocol']} protocol) ranks a correct answer above a "
            f"wrong one in {_percent(accuracy.get('mean'))} of pairs{interval} on "
            f"{check['metrics'].get('questions_judged')} questions, below judge.min_accuracy "
            f"{_percent(check['min_accuracy'])}; its verdict would not be trusted, so the study stops before "
            f"answering. Figures: {path}. Try another protocol or judge (python -m raq judge-check --protocols "
            "raq,pointwise,pairwise), or lower judge.min_accuracy")


class JudgeCheck:
    """judge-check's result: ``report`` (what ``judge_check.json`` holds) and where it was written."""

    def __init__(self, path: Path, report: dict[str, Any]) -> None:
        self.path = path
        self.report = report

    @property
    def passed(self) -> bool:
        return all(check["passed"] for check in self.report["checks"])

    def table(self) -> Any:
        """The headline figures as a pandas DataFrame, one row per (judge, protocol)."""
        import pandas as pd

        return pd.DataFrame(summary_rows(self.report))

    def __str__(self) -> str:
        return format_check(self.report)
