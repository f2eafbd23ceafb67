"""The pipeline's phases on scripted backends: a study from a config object with overrides,
judges that fail and are retried, judging several at a time, batched answering, resuming with
a changed config, and interruptions while re-judging."""

from __future__ import annotations

import json
import runpy
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import raq
from raq import runs
from raq.answering import by_context
from raq.backends.base import Completion, Request
from raq.backends.fake import FakeBackend, FakeBackends
from raq.config import load_config
from raq.errors import RunDirError
from raq.pipeline import evaluate, judge_run
from raq.records import Question
from raq.store import RunDir
from study_fakes import (
    answer_as,
    contestant,
    fair_ranking,
    fakes,
    paragraph_of,
    quick_analysis,
    study_config,
    study_dict,
    write_config,
)


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    quick_analysis(monkeypatch)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_config_object_with_overrides_limit_and_out(tmp_path: Path) -> None:
    config = load_config(study_config(tmp_path, n_questions=4, orders=1))
    phases: list[str] = []
    backends = fakes()
    results = evaluate(config, limit=3, out=tmp_path / "elsewhere", on_phase=phases.append, backends=backends,
                       progress=False, generation__max_tokens=5, generation__warmup=True)
    assert results.run_dir.parent == tmp_path / "elsewhere" and len(results.questions) == 3
    assert results.manifest["config"]["generation"]["max_tokens"] == 5
    assert phases[:2] == ["checking model files and endpoints", "loading questions"]
    assert phases[2] == f"answering in {results.run_dir}" and phases[3:] == ["judging", "analysing"]
    warm = [r for r in backends.opened["alpha"].requests if r.prompt == "The capital of France is"]
    assert len(warm) == 1 and len(backends.opened["alpha"].requests) == 4  # one warm-up, then three answers
    assert all(a.max_tokens == 5 for a in results.answers)
    assert results.manifest["files"]["alpha"]["path"] == str(tmp_path / "models" / "alpha.gguf")
    assert config.generation.max_tokens == 16  # the object given was not changed


def test_failed_judgements_are_recorded_and_retried_by_judge_run(tmp_path: Path) -> None:
    config = study_config(tmp_path, n_questions=3, orders=1)
    unusable = FakeBackend(["no idea"] * 3 + ["still nothing"] * 3, default=fair_ranking)  # max_retries 2: 3 tries
    results = evaluate(config, backends=FakeBackends(contestant, lambda j: unusable), progress=False)
    failed = [j for j in results.judgements if not j.ok]
    assert len(failed) == 2 and all(j.attempts == 3 and j.raw_replies[0] in ("no idea", "still nothing")
                                    for j in failed)
    assert results.manifest["judgements_failed"] == 2 and results.stats["questions_not_judged"] == 2
    assert results.stats["judging"]["judges"]["fair"]["failed_after_retries"] == 2
    run_dir = results.run_dir
    answers = (run_dir / "answers.jsonl").read_text()
    retried = fakes()
    again = judge_run(run_dir, backends=retried, progress=False)
    assert (run_dir / "answers.jsonl").read_text() == answers
    assert len(retried.opened["judge:fair"].requests) == 2  # only the failed ones were judged again
    assert all(j.ok for j in again.judgements) and again.manifest["judgements_failed"] == 0
    assert len(lines(run_dir / "judgements.jsonl")) == 3 + 2  # the failures stay on record
    assert again.summary["mean_rank"].to_dict() == {"alpha": 1.0, "beta": 2.0, "gamma": 3.0}


def test_an_interrupted_judge_run_is_recorded_and_can_be_run_again(tmp_path: Path) -> None:
    results = evaluate(study_config(tmp_path, n_questions=3, orders=1), backends=fakes(), progress=False)
    other = write_config(tmp_path / "more.yaml", {**study_dict(tmp_path / "more"), "judge": {
        "id": "late", "gguf": str(tmp_path / "models" / "judge.gguf"), "orders": 2}})
    stopping = FakeBackends(judge=lambda j: FakeBackend(["x"] * 3 + [KeyboardInterrupt()], default=fair_ranking))
    with pytest.raises(KeyboardInterrupt):
        judge_run(results.run_dir, other, backends=stopping, progress=False)
    manifest = json.loads((results.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["error"] == "KeyboardInterrupt: "
    finished = judge_run(results.run_dir, other, backends=fakes(), progress=False)
    late = [j for j in finished.judgements if j.judge_id == "late"]
    assert len(late) == 6 and all(j.ok for j in late) and finished.manifest["status"] == "complete"


class Overlapping(FakeBackend):
    """A fair judge serving ``capacity`` requests at once that records how many overlapped."""

    def __init__(self, capacity: int) -> None:
        super().__init__(default=fair_ranking, capacity=capacity, name="fair")
        self.active = self.most = 0
        self.guard = threading.Lock()

    def complete(self, request: Request) -> Completion:
        with self.guard:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.02)
        try:
            return super().complete(request)
        finally:
            with self.guard:
                self.active -= 1


@pytest.mark.parametrize("capacity", [3, 1])
def test_a_judge_judges_several_questions_at_once_up_to_what_its_backend_serves(tmp_path: Path,
                                                                               capacity: int) -> None:
    config = study_dict(tmp_path, n_questions=5, orders=2)
    config["judge"]["max_in_flight"] = 3
    judge = Overlapping(capacity)
    backends = FakeBackends(contestant=lambda m: contestant(m, None), judge=lambda j: judge)
    results = evaluate(write_config(tmp_path / "s.yaml", config), backends=backends, progress=False)
    records = lines(results.run_dir / "judgements.jsonl")
    assert len(records) == 10 and all(j["ok"] for j in records)
    tasks = [(q, k) for q in results.manifest["question_ids"] for k in range(2)]
    assert [(j["question_id"], j["order_index"]) for j in records] == tasks  # written in the tasks' order
    assert results.summary["mean_rank"].to_dict() == {"alpha": 1.0, "beta": 2.0, "gamma": 3.0}
    assert judge.most == 1 if capacity == 1 else judge.most > 1  # an in-process judge: never two threads


class Batching(FakeBackend):
    """A contestant that decodes ``capacity`` answers together: records what it was given at once."""

    def __init__(self, model_id: str) -> None:
        super().__init__(default=answer_as(model_id), capacity=2, name=model_id)
        self.calls: list[list[str]] = []

    def complete_many(self, requests: Sequence[Request]) -> Iterator[tuple[int, Completion]]:
        self.calls.append([str(paragraph_of(r)) for r in requests])
        for index, request in enumerate(requests):
            completion = self.complete(request)
            completion.counters["batched"] = self.capacity
            yield index, completion


def test_batched_contestants_get_questions_about_one_paragraph_together(tmp_path: Path) -> None:
    data = study_dict(tmp_path, n_questions=6, orders=1)
    squad = json.loads(Path(data["data"]["source"]).read_text())
    for article in squad["data"][1:]:  # two paragraphs of three questions each
        article["paragraphs"][0]["context"] = squad["data"][int(article["title"][1:]) % 2]["paragraphs"][0]["context"]
    Path(data["data"]["source"]).write_text(json.dumps(squad))
    factory = FakeBackends(contestant=Batching)
    results = evaluate(write_config(tmp_path / "s.yaml", data), backends=factory, progress=False, judge=False)
    assert results.manifest["status"] == "answered"
    calls = factory.opened["alpha"].calls
    assert sorted(n for call in calls for n in call) == [str(i) for i in range(6)]
    contexts = {q.question_id: q.context for q in results.questions}
    by_call = [{contexts[f"q{n}"] for n in call} for call in calls]
    assert all(len(c) == 1 for c in by_call)  # each batch is about one paragraph
    assert {a.decoding for a in results.answers} == {"batched x2"}
    assert set(results.summary["decoding"]) == {"batched x2"}


class Heavy(FakeBackend):
    """A contestant that holds ``mib`` MiB (every page touched) from its load to its close."""

    def __init__(self, model_id: str, mib: int) -> None:
        super().__init__(default=answer_as(model_id), name=model_id)
        self.weights: bytearray | None = bytearray(mib * 2**20)
        for offset in range(0, len(self.weights), 4096):
            self.weights[offset] = 1

    def close(self) -> None:
        self.weights = None
        super().close()


def test_each_model_s_memory_while_it_answers_is_in_the_manifest_summary_and_decision(tmp_path: Path) -> None:
    sizes = {"alpha": 8, "beta": 200, "gamma": 60}
    factory = FakeBackends(contestant=lambda model_id: Heavy(model_id, sizes[model_id]))
    results = evaluate(study_config(tmp_path, n_questions=4, orders=1), backends=factory, progress=False)
    models = results.manifest["models"]
    methods = {models[m]["memory"]["method"] for m in sizes}
    assert len(methods) == 1 and all(models[m]["memory"]["answered"] == 4 for m in sizes)
    added = {m: models[m]["memory"]["added_rss_mib"] for m in sizes}
    assert added["beta"] >= 190 and added["gamma"] >= 55
    if methods == {"kernel peak RSS (VmHWM), reset before loading"}:  # exact: each model's own peak only
        assert added["alpha"] < 55 and added["gamma"] < 190
    assert results.memory.loc["beta", "memory_mib"] == added["beta"]
    assert results.summary.loc["beta", "peak_rss_mib"] == models["beta"]["memory"]["peak_rss_mib"]
    assert results.tradeoffs["figures"]["beta"]["memory_mib"] == added["beta"]


def test_a_served_model_s_memory_is_not_measured_here() -> None:
    from raq.answering import memory_record
    from raq.memory import PeakMemory

    with PeakMemory() as peak:
        pass
    record = memory_record(peak, served=True, answered=3)
    assert record["added_rss_mib"] is None and "served" in record["method"] and record["answered"] == 3
    assert memory_record(peak, served=False, answered=3)["method"] == peak.record()["method"]


def test_questions_about_one_context_are_put_next_to_each_other() -> None:
    make = [Question(f"q{i}", "?", context, ["a"]) for i, context in enumerate("xyxzy")]
    assert [q.question_id for q in by_context(make)] == ["q0", "q2", "q1", "q4", "q3"]


def test_a_run_resumes_with_neutral_changes_but_not_with_others(tmp_path: Path) -> None:
    path = study_config(tmp_path, n_questions=2, orders=1)
    stopping = fakes({"alpha": 1})
    with pytest.raises(KeyboardInterrupt):
        evaluate(path, backends=stopping, progress=False)
    (run_dir,) = (tmp_path / "runs").iterdir()
    with pytest.raises(RunDirError, match=r"differs from the run's in data\.seed, judge\.orders; start a new run"):
        evaluate(path, resume=run_dir, backends=fakes(), progress=False, data__seed=4, judge__orders=2)
    results = evaluate(path, resume=run_dir, backends=fakes(), progress=False, name="renamed")
    assert results.manifest["status"] == "complete" and results.run_dir == run_dir
    assert len(results.answers) == 6 and results.manifest["config"]["name"] == "fast"  # the run keeps its config


def test_where_layers_run_is_no_change_but_a_model_s_file_is() -> None:
    old = {"models": [{"id": "a", "gguf": "x", "n_gpu_layers": 0}, {"id": "b", "gguf": "y", "n_gpu_layers": 0}],
           "judge": {"id": "j", "n_gpu_layers": 0}}
    moved = {"models": [{"id": "a", "gguf": "x", "n_gpu_layers": -1}, {"id": "b", "gguf": "y", "n_gpu_layers": 8}],
             "judge": {"id": "j", "n_gpu_layers": -1}}
    assert runs.config_changes(old, moved) == []
    other = {"models": [{"id": "a", "gguf": "x", "n_gpu_layers": 0}, {"id": "b", "gguf": "z", "n_gpu_layers": 0}],
             "judge": {"id": "j", "n_gpu_layers": 0}}
    assert runs.config_changes(old, other) == ["models[1].gguf"]
    assert runs.config_changes(old, {**old, "models": old["models"][:1]}) == ["models[1].gguf", "models[1].id"]


def test_a_run_recorded_before_unanswerable_questions_resumes_on_data_without_them(tmp_path: Path) -> None:
    path = study_config(tmp_path, n_questions=2, orders=1)
    with pytest.raises(KeyboardInterrupt):
        evaluate(path, backends=fakes({"alpha": 1}), progress=False)
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = RunDir(run_dir)
    manifest = run.manifest()
    del manifest["config"]["data"]["unanswerable"]  # as an earlier raq recorded it: read as "exclude"
    run.write_manifest(manifest)
    assert runs.stored_config(run)["data"]["unanswerable"] == "exclude"
    results = evaluate(path, resume=run_dir, backends=fakes(), progress=False)
    assert results.manifest["status"] == "complete" and len(results.answers) == 6


def test_a_stored_config_this_raq_cannot_read_is_compared_as_stored(tmp_path: Path) -> None:
    results = evaluate(study_config(tmp_path, n_questions=2, orders=1), backends=fakes(), progress=False)
    run = RunDir(results.run_dir)
    manifest = run.manifest()
    manifest["config"]["generation"]["future_key"] = 1
    run.write_manifest(manifest)
    assert runs.stored_config(run)["generation"]["future_key"] == 1
    with pytest.raises(RunDirError, match="generation.future_key"):
        runs.reopen(run, load_config(tmp_path / "study.yaml"))


def test_the_package_answers_its_lazy_names_and_runs_as_a_module(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert raq.load_config is load_config and issubclass(raq.RaqError, Exception)
    assert raq.evaluate is evaluate and callable(raq.load_run)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        raq.nothing  # noqa: B018
    monkeypatch.setattr(sys, "argv", ["raq"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("raq", run_name="__main__")
    assert exit_.value.code == 0 and "usage: raq" in capsys.readouterr().out


def test_the_environment_is_described() -> None:
    from raq import environment

    described = environment.describe()
    assert described["python"] == sys.version.split()[0] and described["cpu_count"] >= 1
    assert described["packages"]["pydantic"] and isinstance(described["gpus"], list)
    assert described["memory_gib"] is None or described["memory_gib"] > 0
