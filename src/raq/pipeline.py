"""A study, phase by phase: check the inputs, answer, judge, analyse. Each phase can be called
alone, every finished record is on disk before the next one starts, and a run can be resumed.

- :func:`evaluate`: a whole study from a config (``python -m raq run``);
- :func:`judge_run`: judge a run's stored answers again, or with more judges (``raq judge``);
- :func:`analyse`: tables, statistics, figures and reports from a run directory (``raq stats``);
- :func:`load_run`: a finished run's results, read back;
- :func:`check_judge`: how accurate a judge is on answers of known quality (``raq judge-check``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from . import runs
from .answering import generate
from .backends.factory import BackendFactory, Backends
from .checks import check_endpoints, check_model_files
from .config import (
    JudgeProtocol,
    RunConfig,
    config_to_dict,
    load_config,
    parse_config,
    parse_recorded_config,
    set_dotted,
)
from .errors import ConfigError, JudgeCheckFailed
from .judge_check import (
    DEFAULT_QUESTIONS,
    DEFAULT_REPEATS,
    JudgeCheck,
    check_judges,
    check_questions,
    failure_message,
    gate_repeats,
    write_check,
)
from .judging import judge_answers, pending_judges
from .records import Question
from .report_judge_check import CHECK_FILE
from .results import Results
from .store import RunDir

log = logging.getLogger(__name__)

Notify = Callable[[str], None]


def load_study_questions(config: RunConfig) -> list[Question]:
    """The study's sample of questions (the dataset's errors name the source)."""
    from .study_data import load_sample

    return load_sample(config.data)


def analyse(run: RunDir, progress: bool | None = None, status: str | None = None) -> Results:
    """Build the table, summary, statistics, figure and reports from the run directory; ``status``:
    the run's status once analysed (a study's last step), recorded before the reports show it."""
    from .analysis import MEMORY_COLUMNS, decision_statistics, model_summary, results_table, statistics
    from .judge_quality import judge_report
    from .report import write_report
    from .unanswerable import SUMMARY_COLUMNS, unanswerable_frame, unanswerable_statistics

    manifest = run.manifest()
    config = parse_recorded_config(manifest["config"], str(run.manifest_path))
    questions, answers, judgements = run.questions(), run.answers(), run.judgements()
    orders = {j.id: j.orders for j in config.judge_list}
    table = results_table(questions, answers, judgements, orders)
    summary = model_summary(table, config.model_ids, manifest.get("models"))
    stats = statistics(table, config.stats.alpha, config.data.seed, manifest.get("nodes"))
    stats["judging"] = judge_report(judgements, table, orders)
    stats.update(decision_statistics(judgements, table, stats, config.model_ids, config.stats.alpha, config.data.seed,
                                     summary[list(MEMORY_COLUMNS)], manifest.get("nodes")))
    abstentions = unanswerable_statistics(table, config.model_ids, config.stats.alpha, config.data.seed)
    if abstentions is not None:
        stats["unanswerable"] = abstentions
        summary = summary.join(unanswerable_frame(abstentions)[list(SUMMARY_COLUMNS)])
    intervals = stats.get("summary", {})
    summary["rank_ci_low"] = [intervals.get(m, {}).get("ci_low") for m in summary.index]
    summary["rank_ci_high"] = [intervals.get(m, {}).get("ci_high") for m in summary.index]
    final = {"status": status, "error": None} if status else {}
    manifest = run.update_manifest(judgements_failed=sum(not j.ok for j in judgements), **final)
    write_report(run.path, manifest, table, summary, stats, config.model_ids, config.data.seed)
    results = Results(run.path, manifest, questions, answers, judgements, table, summary, stats)
    results.report()
    return results


def _study_config(config: RunConfig | str | Path, dotted: dict[str, Any]) -> RunConfig:
    if not isinstance(config, RunConfig):
        return load_config(config, dotted)
    if not dotted:
        return config
    data = config_to_dict(config)
    for key, value in dotted.items():
        set_dotted(data, key, value)
    return parse_config(data)


def _notifier(on_phase: Notify | None) -> Notify:
    return on_phase or (lambda phase: log.info("%s", phase))


def evaluate(config: RunConfig | str | Path = "config.yaml", *, resume: str | Path | None = None,
             limit: int | None = None, out: str | Path | None = None, progress: bool | None = None,
             on_phase: Notify | None = None, judge: bool = True, backends: Backends | None = None,
             **overrides: Any) -> Results:
    """Run a whole study and return its results.

    ``config`` is a RunConfig or a YAML path; ``overrides`` are dotted keys with ``__`` for
    dots (``generation__max_tokens=64``). ``resume`` continues an interrupted run directory.
    ``judge=False`` stops after the answers (speed and length only; judge later with
    ``python -m raq judge``). ``backends`` opens the models (default: as the config says).
    """
    previous = RunDir.open(resume) if resume is not None else None  # before any other work
    dotted = {key.replace("__", "."): value for key, value in overrides.items()}
    if limit is not None:
        dotted["data.n_questions"] = limit
    where = str(config) if not isinstance(config, RunConfig) else "config"
    config = _study_config(config, dotted)
    if out is not None:
        config.out_dir = str(Path(out).resolve())
    notify, backends = _notifier(on_phase), backends or BackendFactory()

    notify("checking model files and endpoints")
    files = check_model_files(config)
    check_endpoints(config, where, judges=None if judge else [])
    if previous is not None:
        run = runs.reopen(previous, config)
        questions = run.questions()
    else:
        notify("loading questions")
        questions = load_study_questions(config)
        run = runs.create(config, questions)
    run.update_manifest(files={key: {"ref": file.ref, "path": str(file.path), "sha256": file.sha256}
                               for key, file in files.items()})
    try:
        _gate_judges(config, run, questions, files, backends, progress, notify)
        notify(f"answering in {run.path}")
        generate(config, run, questions, files, backends, progress)
        if judge:
            notify("judging")
            judge_answers(config, run, questions, files, backends, progress)
        notify("analysing")
        results = analyse(run, progress, status="complete" if judge else "answered")
    except BaseException as error:
        run.update_manifest(status="interrupted", error=f"{type(error).__name__}: {error}")
        raise
    results.manifest = run.update_manifest(status="complete" if judge else "answered", error=None)
    return results


def _gate_judges(config: RunConfig, run: RunDir, questions: list[Question], files: dict[str, Any],
                 backends: Backends, progress: bool | None, notify: Notify) -> None:
    """judge-check for every judge with ``judge.check: N`` (not yet passed in this run), before any
    answer is generated; JudgeCheckFailed when one is below its ``min_accuracy``."""
    path = run.path / CHECK_FILE
    done = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"checks": []}
    passed = {(c["judge"], json.dumps(c["settings"], sort_keys=True)) for c in done["checks"] if c["passed"]}
    todo = [j for j in config.judge_list
            if j.check and (j.id, json.dumps(j.model_dump(mode="json"), sort_keys=True)) not in passed]
    for judge in todo:
        notify(f"judge-check of {judge.id} on {judge.check} questions")
        report = check_judges(config, check_questions(config, judge.check, questions), files, backends,
                              judges=[judge], repeats=gate_repeats(judge.check), log_dir=run.path,
                              progress=progress)
        check = report["checks"][-1]
        write_check(path, report)
        if not check["passed"]:
            raise JudgeCheckFailed(failure_message(check, path))


def check_judge(config: RunConfig | str | Path = "config.yaml", *, questions: int = DEFAULT_QUESTIONS,
                judge: str | None = None, protocols: list[str] | None = None, orders: int | None = None,
                run: str | Path | None = None, out: str | Path | None = None, rungs: list[str] | None = None,
                repeats: int = DEFAULT_REPEATS, progress: bool | None = None, on_phase: Notify | None = None,
                backends: Backends | None = None, **overrides: Any) -> JudgeCheck:
    """How accurate the study's judges are on ``questions`` questions of its dataset whose
    answers' quality order is known (see :mod:`raq.judge_check`); writes ``judge_check.json``
    (into ``run`` when given, whose questions and judges are used, else ``out`` or the config's
    ``out_dir``). ``judge`` picks one judge by id; ``protocols`` checks these protocols instead
    of the judge's own (``orders`` overrides the listwise orders); the first ``repeats`` questions
    are asked again (stability)."""
    from .judge_ladder import DEFAULT_RUNGS, RUNGS

    notify, backends = _notifier(on_phase), backends or BackendFactory()
    study_questions = None
    if run is not None:
        run_dir = RunDir.open(run)
        study = parse_recorded_config(run_dir.manifest()["config"], str(run_dir.manifest_path))
        study_questions, default_out = run_dir.questions(), run_dir.path / CHECK_FILE
    else:
        study = _study_config(config, {key.replace("__", "."): value for key, value in overrides.items()})
        default_out = Path(study.out_dir) / f"judge-check-{study.name}-{runs.stamp()}.json"
    judges = [j for j in study.judge_list if judge is None or j.id == judge]
    if not judges:
        raise ConfigError(f"no judge {judge!r} (the judges are: {', '.join(j.id for j in study.judge_list)})")
    bad = [p for p in protocols or () if p not in get_args(JudgeProtocol)]
    if bad:
        raise ConfigError(f"unknown judge protocols {bad} (the protocols are: {', '.join(get_args(JudgeProtocol))})")
    unknown = [r for r in rungs or () if r not in RUNGS]
    if unknown:
        raise ConfigError(f"unknown ladder rungs {unknown} (the rungs are: {', '.join(RUNGS)})")
    notify("checking model files and endpoints")
    files = check_model_files(study, contestants=False, judges=judges)
    check_endpoints(study, str(run or config), judges=judges, contestants=False)
    notify("loading questions")
    chosen = check_questions(study, questions, study_questions)
    path = Path(out) if out is not None else default_out
    path.parent.mkdir(parents=True, exist_ok=True)
    report = check_judges(study, chosen, files, backends, judges=judges, protocols=protocols or [None],
                          orders=orders, rungs=rungs or DEFAULT_RUNGS, repeats=repeats, log_dir=path.parent,
                          progress=progress)
    return JudgeCheck(path, write_check(path, report))


def _with_judges_of(run: RunDir, study: RunConfig, config: str | Path) -> RunConfig:
    """The run's config with the judges of ``config`` added (a judge id already in the run must
    keep its settings); written into the manifest."""
    known = {j.id: j for j in study.judge_list}
    for judge in load_config(config).judge_list:
        if judge.id in known and known[judge.id] != judge:
            raise ConfigError(f"{config}: judge {judge.id!r} is already in {run.path} with other settings; "
                              "give the new judge another id")
        known.setdefault(judge.id, judge)
    data = config_to_dict(study)
    data["judge"], data["judges"] = None, [j.model_dump(mode="json") for j in known.values()]
    study = parse_config(data, str(run.manifest_path))
    run.update_manifest(config=config_to_dict(study))
    return study


def judge_run(path: str | Path, config: str | Path | None = None, *, progress: bool | None = None,
              on_phase: Notify | None = None, backends: Backends | None = None) -> Results:
    """Judge the answers stored in a run again, without regenerating them: with the run's own
    judges (finishing or retrying what failed) or with the judges of another config, which
    are added to the run."""
    notify, backends = _notifier(on_phase), backends or BackendFactory()
    run = RunDir.open(path)
    study = parse_recorded_config(run.manifest()["config"], str(run.manifest_path))
    if config is not None:
        study = _with_judges_of(run, study, config)
    notify("checking model files and endpoints")
    judges = pending_judges(study, run, run.questions())  # only what judging needs: not the contestants
    files = check_model_files(study, contestants=False, judges=judges)
    check_endpoints(study, str(config or run.manifest_path), judges=judges, contestants=False)
    run.update_manifest(status="judging")
    try:
        notify("judging")
        judge_answers(study, run, run.questions(), files, backends, progress)
        notify("analysing")
        results = analyse(run, progress, status="complete")
    except BaseException as error:
        run.update_manifest(status="interrupted", error=f"{type(error).__name__}: {error}")
        raise
    results.manifest = run.update_manifest(status="complete", error=None)
    return results


def load_run(path: str | Path) -> Results:
    """A finished run's results, read back from its directory (figures are rebuilt on demand)."""
    from .analysis import model_summary, results_table

    run = RunDir.open(path)
    manifest = run.manifest()
    config = parse_recorded_config(manifest["config"], str(run.manifest_path))
    questions, answers, judgements = run.questions(), run.answers(), run.judgements()
    table = results_table(questions, answers, judgements, {j.id: j.orders for j in config.judge_list})
    stats_path = run.path / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    return Results(run.path, manifest, questions, answers, judgements, table,
                   model_summary(table, config.model_ids, manifest.get("models")), stats)
