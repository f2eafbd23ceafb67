"""The study pipeline: check inputs, generate answers, judge them, analyse; each phase
callable alone, every finished record on disk before the next starts, resumable."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import environment
from .config import JudgeConfig, RunConfig, config_to_dict, load_config, parse_config
from .errors import RunDirError
from .records import Answer, Judgement, Question
from .store import RunDir

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

#: Config keys that do not change results: a run may be resumed with them changed.
NEUTRAL_KEYS = ("name", "out_dir", "models_dir")


@dataclass
class ModelFile:
    """A verified GGUF file."""

    ref: str
    path: Path
    sha256: str


@dataclass
class Results:
    """Everything a finished (or partial) run holds, as objects and tables."""

    run_dir: Path
    manifest: dict[str, Any]
    questions: list[Question]
    answers: list[Answer]
    judgements: list[Judgement]
    table: "pd.DataFrame"
    summary: "pd.DataFrame"
    stats: dict[str, Any]

    def plot(self):
        """The reference study's three bar charts, with 95% bootstrap intervals."""
        from .report import bar_figure

        return bar_figure(self.table, list(self.summary.index))

    def _tables(self) -> dict[str, "pd.DataFrame"]:
        """The exportable tables: ``results`` (question x model), ``summary`` (per model, ``model_id``
        a column) and, when statistics exist, ``significance`` (post-hoc pairs of both families)."""
        import pandas as pd

        tables = {"results": self.table, "summary": self.summary.reset_index()}
        if self.stats.get("paper") and self.stats.get("blocked"):
            from .stats import significance_table

            tables["significance"] = pd.concat(
                [significance_table(self.stats, family).assign(family=family) for family in ("paper", "blocked")],
                ignore_index=True)
        return tables

    def _export(self, folder: str | Path, suffix: str) -> dict[str, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, frame in self._tables().items():
            paths[name] = folder / f"{name}.{suffix}"
            getattr(frame, f"to_{suffix}")(paths[name], index=False)
        return paths

    def to_csv(self, folder: str | Path) -> dict[str, Path]:
        """Write the tables as ``results.csv``, ``summary.csv`` (and ``significance.csv``) into
        ``folder`` (created if needed); return their paths by table name."""
        return self._export(folder, "csv")

    def to_parquet(self, folder: str | Path) -> dict[str, Path]:
        """Write the tables as ``results.parquet``, ``summary.parquet`` (and
        ``significance.parquet``) into ``folder``; return their paths by table name."""
        return self._export(folder, "parquet")

    def report(self, path: str | Path | None = None) -> Path:
        """Write the self-contained HTML report (default ``run_dir/report.html``); return its path."""
        from .html_report import write_html_report

        return write_html_report(self, None if path is None else Path(path))


# --- checks before any expensive work --------------------------------------------------------
def check_model_files(config: RunConfig) -> dict[str, ModelFile]:
    """Resolve and verify every GGUF the study needs (contestants and a local judge)."""
    from .models import resolve, verify

    models_dir = Path(config.models_dir)
    wanted = [(m.id, m.gguf, m.sha256) for m in config.models if m.gguf]
    wanted += [(f"judge:{j.id}", j.gguf, j.sha256) for j in config.judge_list if j.gguf]
    files = {}
    for key, ref, sha256 in wanted:
        path, expected, _entry = resolve(ref, models_dir, sha256)
        files[key] = ModelFile(ref=ref, path=path, sha256=verify(path, expected, ref))
    contestants = {files[m.id].path for m in config.models if m.id in files}
    for judge in config.judge_list:
        judge_file = files.get(f"judge:{judge.id}")
        if judge_file and judge_file.path in contestants:
            log.warning("the judge %s is also a contestant: it may favour its own answers", judge.id)
    return files


def load_study_questions(config: RunConfig) -> list[Question]:
    from .dataset import load_questions

    data = config.data
    return load_questions(data.source, split=data.split, n=data.n_questions, seed=data.seed,
                          per_context=data.per_context)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: data}


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ and that change results."""
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k.split(".")[0] not in NEUTRAL_KEYS)


# --- the phases ---------------------------------------------------------------------------
def _bar(iterable, total: int, desc: str, progress: bool | None):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="q", disable=None if progress is None else not progress,
                dynamic_ncols=True, mininterval=1.0)


def generate(config: RunConfig, run: RunDir, questions: list[Question], files: dict[str, ModelFile],
             progress: bool | None = None) -> list[Answer]:
    """Have every model answer every question not answered yet; one in-process model in memory
    at a time; served models get up to their capacity of requests in flight."""
    from .generator import Generator
    from .judge import api_key_from_env

    done = {(a.question_id, a.model_id) for a in run.answers(repair=True)}
    models_info = run.manifest().get("models", {})
    for model in config.models:
        todo = [q for q in questions if (q.question_id, model.id) not in done]
        if not todo:
            continue
        generator = Generator(model, config.generation, files[model.id].path if model.id in files else None,
                              api_key=api_key_from_env(model.api_key_env, f"model {model.id!r}"))
        try:
            if generator.served:
                generator.backend.check_model()
            models_info[model.id] = {**generator.info(), "ref": model.gguf or model.model,
                                     "sha256": files[model.id].sha256 if model.id in files else None}
            run.update_manifest(models=models_info)
            if config.generation.warmup:
                generator.warm_up()
            bar = _bar(None, len(todo), f"answering [{model.id}]", progress)
            batched = config.generation.n_parallel > 1 and not generator.served
            for answer in (_batched_answers(generator, todo, config.generation.n_parallel) if batched
                           else _answers(generator, todo)):
                run.append_answer(answer)
                bar.update()
            bar.close()
        finally:
            generator.close()
    return run.answers()


def _batched_answers(generator, questions: list[Question], n_parallel: int):
    """Answers decoded ``n_parallel`` at a time (throughput mode), handed out a few batches'
    worth at a time so that an interrupted run keeps what was finished."""
    from .batched import BatchedGenerator, answer_many

    first_seen: dict[str, int] = {}
    for question in questions:  # questions about one context next to each other: decoded together
        first_seen.setdefault(question.context, len(first_seen))
    questions = sorted(questions, key=lambda q: first_seen[q.context])
    with BatchedGenerator(generator.backend, n_parallel=n_parallel) as batched:
        if generator.generation.warmup:
            batched.complete_many(["The capital of France is"] * n_parallel, max_tokens=4, sampling=generator.sampling)
        chunk = 4 * n_parallel
        for start in range(0, len(questions), chunk):
            yield from answer_many(generator, questions[start:start + chunk], batched=batched)


def _answers(generator, questions: list[Question]):
    """Answers in completion order; several at once when the backend takes several."""
    if generator.capacity <= 1:
        for question in questions:
            yield generator.answer(question)
        return
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=generator.capacity) as pool:
        pending = set()
        remaining = iter(questions)
        for question in remaining:  # fill the pipe, then keep it full
            pending.add(pool.submit(generator.answer, question))
            if len(pending) >= generator.capacity:
                break
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
                    following = next(remaining, None)
                    if following is not None:
                        pending.add(pool.submit(generator.answer, following))
        finally:
            for future in pending:
                future.cancel()


class _JudgeSession:
    """A judge and, for a local GGUF judge, the llama.cpp server behind it."""

    def __init__(self, judge: JudgeConfig, files: dict[str, ModelFile], log_path: Path) -> None:
        self.config, self.files, self.log_path = judge, files, log_path
        self.server = None

    def __enter__(self):
        from .judge import Judge, api_key_from_env

        judge = self.config
        if judge.gguf:
            from .server import LocalServer

            self.server = LocalServer(self.files[f"judge:{judge.id}"].path, judge.id, n_ctx=judge.n_ctx,
                                      n_threads=judge.n_threads, n_gpu_layers=judge.n_gpu_layers,
                                      seed=judge.seed, log_path=self.log_path).start()
            client = Judge(judge, base_url=self.server.base_url, model=judge.id, api_key="local",
                           response_format="json_object")
            client.server_pid = self.server.process.pid
            return client
        client = Judge(judge, base_url=judge.base_url or "", model=judge.model or "",
                       api_key=api_key_from_env(judge.api_key_env, f"judge {judge.id!r}"))
        _check_remote_model(client)
        return client

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()


def _check_remote_model(judge) -> None:
    """Refuse a model name the endpoint does not list (some servers answer any name)."""
    from .errors import JudgeError

    try:
        served = [m.id for m in judge.client.models.list()]
    except Exception as error:  # listing is optional in the protocol
        log.info("could not list the judge endpoint's models (%s); using %s as given", error, judge.model)
        return
    if served and judge.model not in served:
        raise JudgeError(f"judge endpoint {judge.client.base_url} does not serve {judge.model!r} (it serves {served})")


def _judged(judge, tasks: list[tuple[Question, int]], answers: dict[str, dict[str, str]], model_ids: list[str],
            in_flight: int):
    """Judgements in completion order, ``in_flight`` requests at a time."""
    work = lambda task: judge.judge(task[0], answers[task[0].question_id], model_ids, task[1])  # noqa: E731
    if in_flight <= 1:
        yield from map(work, tasks)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        yield from pool.map(work, tasks)


def judge_answers(config: RunConfig, run: RunDir, questions: list[Question], files: dict[str, ModelFile],
                  progress: bool | None = None, judges: list[JudgeConfig] | None = None) -> list[Judgement]:
    """Have every judge rank, in each of its orders, every question that has all its answers
    and no successful judgement yet (failed ones are tried again)."""
    answers: dict[str, dict[str, str]] = {}
    for answer in run.answers(repair=True):
        answers.setdefault(answer.question_id, {})[answer.model_id] = answer.text
    model_ids = config.model_ids
    done = {(j.question_id, j.judge_id, j.order_index) for j in run.judgements(repair=True) if j.ok}
    answered = [q for q in questions if all(m in answers.get(q.question_id, {}) for m in model_ids)]
    for judge_config in judges or config.judge_list:
        tasks = [(q, k) for q in answered for k in range(judge_config.orders)
                 if (q.question_id, judge_config.id, k) not in done]
        if not tasks:
            continue
        with _JudgeSession(judge_config, files, run.path / f"judge-{judge_config.id}.log") as judge:
            if judge_config.gguf:
                run.update_manifest(judge_server={"judge": judge_config.id, "pid": judge.server_pid,
                                                  "base_url": str(judge.client.base_url)})
            bar = _bar(None, len(tasks), f"judging [{judge_config.id}]", progress)
            for judgement in _judged(judge, tasks, answers, model_ids, judge_config.max_in_flight):
                run.append_judgement(judgement)
                bar.update()
            bar.close()
    return run.judgements()


def analyse(run: RunDir, progress: bool | None = None) -> Results:
    """Build the table, summary, statistics, figure and Markdown summary from the run directory."""
    from .analysis import model_summary, results_table, statistics
    from .judge_quality import judge_report
    from .report import write_report

    manifest = run.manifest()
    config = parse_config(manifest["config"], str(run.manifest_path))
    questions, answers, judgements = run.questions(), run.answers(), run.judgements()
    orders = {j.id: j.orders for j in config.judge_list}
    table = results_table(questions, answers, judgements, orders)
    summary = model_summary(table, config.model_ids)
    stats = statistics(table, config.stats.alpha, config.data.seed)
    stats["judging"] = judge_report(judgements, table, orders)
    intervals = stats.get("summary", {})
    summary["rank_ci_low"] = [intervals.get(m, {}).get("ci_low") for m in summary.index]
    summary["rank_ci_high"] = [intervals.get(m, {}).get("ci_high") for m in summary.index]
    manifest = run.update_manifest(judgements_failed=sum(not j.ok for j in judgements))
    write_report(run.path, manifest, table, summary, stats, config.model_ids, config.data.seed)
    results = Results(run.path, manifest, questions, answers, judgements, table, summary, stats)
    results.report()
    return results


# --- the whole study ----------------------------------------------------------------------
def _new_run_path(config: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.out_dir) / f"{config.name}-{stamp}"


def _open_or_create(config: RunConfig, questions: list[Question], resume: str | Path | None) -> RunDir:
    manifest_config = config_to_dict(config)
    if resume is not None:
        run = RunDir.open(resume)
        old = run.manifest()
        try:  # today's defaults filled in, so keys added to raq since the run began are no change
            previous = config_to_dict(parse_config(old.get("config", {}), str(run.manifest_path)))
        except Exception:  # noqa: BLE001 - a config this raq cannot read: compare as stored
            previous = old.get("config", {})
        changed = config_changes(previous, manifest_config)
        if changed:
            raise RunDirError(f"{run.path}: the config differs from the run's in {', '.join(changed)}; "
                              "start a new run instead of resuming")
        run.update_manifest(status="running", resumed=old.get("resumed", 0) + 1)
        return run
    from .dataset import describe_source

    run = RunDir.create(_new_run_path(config), {
        "status": "running", "config": manifest_config,
        "data": describe_source(config.data.source, config.data.split),
        "question_ids": [q.question_id for q in questions],
        "environment": environment.describe(), "models": {},
    })
    run.write_questions(questions)
    return run


def evaluate(config: RunConfig | str | Path = "config.yaml", *, resume: str | Path | None = None,
             limit: int | None = None, out: str | Path | None = None, progress: bool | None = None,
             on_phase: Callable[[str], None] | None = None, judge: bool = True, **overrides: Any) -> Results:
    """Run a whole study and return its results.

    ``config`` is a RunConfig or a YAML path; ``overrides`` are dotted keys with ``__`` for
    dots (``generation__max_tokens=64``). ``resume`` continues an interrupted run directory.
    ``judge=False`` stops after the answers (speed and length only; judge later with
    ``python -m raq judge``).
    """
    dotted = {key.replace("__", "."): value for key, value in overrides.items()}
    if limit is not None:
        dotted["data.n_questions"] = limit
    if isinstance(config, RunConfig):
        if dotted:
            data = config_to_dict(config)
            from .config import set_dotted

            for key, value in dotted.items():
                set_dotted(data, key, value)
            config = parse_config(data)
    else:
        config = load_config(config, dotted)
    if out is not None:
        config.out_dir = str(Path(out).resolve())
    notify = on_phase or (lambda phase: log.info("%s", phase))

    notify("checking model files")
    files = check_model_files(config)
    notify("loading questions")
    questions = load_study_questions(config)
    run = _open_or_create(config, questions, resume)
    run.update_manifest(files={key: {"ref": file.ref, "path": str(file.path), "sha256": file.sha256}
                               for key, file in files.items()})
    if resume is not None:
        questions = run.questions()
    try:
        notify(f"answering in {run.path}")
        generate(config, run, questions, files, progress)
        if judge:
            notify("judging")
            judge_answers(config, run, questions, files, progress)
        notify("analysing")
        results = analyse(run, progress)
    except BaseException as error:
        run.update_manifest(status="interrupted", error=f"{type(error).__name__}: {error}")
        raise
    run.update_manifest(status="complete" if judge else "answered", error=None)
    results.manifest = run.manifest()
    return results


def judge_run(path: str | Path, config: str | Path | None = None, *, progress: bool | None = None,
              on_phase: Callable[[str], None] | None = None) -> Results:
    """Judge the answers stored in a run again, without regenerating them: with the run's own
    judges (finishing or retrying what failed) or with the judges of another config, which
    are added to the run (a judge id already in the run must keep its settings)."""
    from .errors import ConfigError

    notify = on_phase or (lambda phase: log.info("%s", phase))
    run = RunDir.open(path)
    manifest = run.manifest()
    study = parse_config(manifest["config"], str(run.manifest_path))
    judges = study.judge_list
    if config is not None:
        known = {j.id: j for j in judges}
        for judge in load_config(config).judge_list:
            if judge.id in known and known[judge.id] != judge:
                raise ConfigError(f"{config}: judge {judge.id!r} is already in {run.path} with other settings; "
                                  "give the new judge another id")
            known.setdefault(judge.id, judge)
        judges = list(known.values())
        data = config_to_dict(study)
        data["judge"], data["judges"] = None, [j.model_dump(mode="json") for j in judges]
        study = parse_config(data, str(run.manifest_path))
        run.update_manifest(config=config_to_dict(study))
    notify("checking model files")
    files = check_model_files(study)
    run.update_manifest(status="judging")
    try:
        notify("judging")
        judge_answers(study, run, run.questions(), files, progress)
        notify("analysing")
        results = analyse(run, progress)
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
    config = parse_config(manifest["config"], str(run.manifest_path))
    questions, answers, judgements = run.questions(), run.answers(), run.judgements()
    table = results_table(questions, answers, judgements, {j.id: j.orders for j in config.judge_list})
    stats_path = run.path / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    return Results(run.path, manifest, questions, answers, judgements, table,
                   model_summary(table, config.model_ids), stats)

