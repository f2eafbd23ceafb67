"""The judging phase: every judge ranks, in each of its orders, every question that has all its
answers and no successful judgement yet (failed ones are tried again); each judgement is on
disk the moment it is made."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from .backends.factory import Backends
from .checks import ModelFile
from .config import JudgeConfig, RunConfig
from .judges import AnyJudge, make_judge
from .progress import progress_bar
from .records import Judgement, Question
from .store import RunDir

Task = tuple[Question, int]  # a question and the index of the order it is shown in


def judged(judge: AnyJudge, tasks: Sequence[Task], answers: dict[str, dict[str, str]], model_ids: list[str],
           in_flight: int) -> Iterator[Judgement]:
    """Judgements of ``tasks``, ``in_flight`` requests at a time (in the tasks' order)."""
    def work(task: Task) -> Judgement:
        question, order_index = task
        return judge.judge(question, answers[question.question_id], model_ids, order_index)

    if in_flight <= 1:
        yield from map(work, tasks)
        return
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        yield from pool.map(work, tasks)


def stored_answers(run: RunDir) -> dict[str, dict[str, str]]:
    """question id -> model id -> answer text."""
    answers: dict[str, dict[str, str]] = {}
    for answer in run.answers(repair=True):
        answers.setdefault(answer.question_id, {})[answer.model_id] = answer.text
    return answers


def _work(config: RunConfig, run: RunDir, questions: list[Question], judges: list[JudgeConfig] | None,
          answers: dict[str, dict[str, str]]) -> list[tuple[JudgeConfig, list[Task]]]:
    """Each judge with what it has left to judge: questions that have all their ``answers``, in
    each order without a successful judgement."""
    done = {(j.question_id, j.judge_id, j.order_index) for j in run.judgements(repair=True) if j.ok}
    answered = [q for q in questions if all(m in answers.get(q.question_id, {}) for m in config.model_ids)]
    work = [(judge, [(q, k) for q in answered for k in range(judge.orders) if (q.question_id, judge.id, k) not in done])
            for judge in judges or config.judge_list]
    return [(judge, tasks) for judge, tasks in work if tasks]


def pending_judges(config: RunConfig, run: RunDir, questions: list[Question]) -> list[JudgeConfig]:
    """The study's judges that have something left to judge in ``run``."""
    return [judge for judge, _ in _work(config, run, questions, None, stored_answers(run))]


def judge_answers(config: RunConfig, run: RunDir, questions: list[Question], files: dict[str, ModelFile],
                  backends: Backends, progress: bool | None = None,
                  judges: list[JudgeConfig] | None = None) -> list[Judgement]:
    """Judge what is not judged yet with ``judges`` (default: the study's); return every judgement."""
    answers = stored_answers(run)
    model_ids = config.model_ids
    for judge_config, tasks in _work(config, run, questions, judges, answers):
        file = files.get(f"judge:{judge_config.id}")
        backend = backends.judge(judge_config, file.path if file else None,
                                 run.path / f"judge-{judge_config.id}.log")
        try:
            _record_backend(run, judge_config, backend.info())
            with progress_bar(len(tasks), f"judging [{judge_config.id}]", progress) as bar:
                in_flight = min(judge_config.in_flight, backend.capacity)  # max_in_flight on each endpoint
                for judgement in judged(make_judge(judge_config, backend), tasks, answers, model_ids, in_flight):
                    run.append_judgement(judgement)
                    bar.update()
        finally:
            backend.close()
    return run.judgements()


def _record_backend(run: RunDir, judge: JudgeConfig, info: dict[str, object]) -> None:
    """What ran the judge, in the manifest (``judges``), and a server's process id (``judge_server``)."""
    manifest = run.manifest()
    changes: dict[str, object] = {"judges": {**manifest.get("judges", {}), judge.id: info}}
    if info.get("pid") is not None:
        changes["judge_server"] = {"judge": judge.id, "pid": info["pid"], "base_url": info["base_urls"][0]}  # type: ignore[index]
    run.update_manifest(**changes)
