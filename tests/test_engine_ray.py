"""Answering on a Ray cluster (``generation.engine: ray``) with scripted backends on a local
two-CPU cluster: the local engine's answers, a worker killed in the middle of a task, a task that
keeps failing and the run resumed, a task run in this process (its messages, the file checks on
its node), the nodes in the manifest, speeds of several machines left untested, and a clear
error where Ray is not installed."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

import raq
import raq.engine_ray
import raq.pipeline
from raq import environment
from raq.answering import answers_of
from raq.backends.base import Request
from raq.backends.fake import FakeBackend, FakeBackends
from raq.cli import main
from raq.config import GenerationConfig, ModelConfig, parse_config
from raq.errors import BackendError, ModelFileError, RaqError
from raq.pipeline import analyse
from raq.records import Question
from raq.store import RunDir
from ray_cluster import local_cluster
from study_fakes import (
    ANSWERS,
    GGUF_STUB,
    MODEL_IDS,
    answer_as,
    contestant,
    fakes,
    paragraph_of,
    quick_analysis,
    study_config,
)

N_QUESTIONS = 6
TIMINGS = ("ttft_s", "prompt_s", "generation_s", "total_s", "prompt_tok_s", "generation_tok_s", "words_per_s_paper")


@pytest.fixture(scope="module")
def cluster() -> Any:
    with local_cluster() as ray:
        yield ray


@pytest.fixture
def small_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks of four questions: two per model (one of four, one of two)."""
    quick_analysis(monkeypatch)
    monkeypatch.setattr(raq.engine_ray, "TASK_QUESTIONS", 4)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def run_dir_of(tmp_path: Path) -> Path:
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


def comparable(run_dir: Path) -> list[dict[str, Any]]:
    """The stored answers sorted by question and model, without their timings and node."""
    answers = sorted(lines(run_dir / "answers.jsonl"), key=lambda a: (a["question_id"], a["model_id"]))
    return [{k: v for k, v in a.items() if k not in TIMINGS and k != "node"} for a in answers]


def on_ray(tmp_path: Path, **generation: Any) -> Path:
    return study_config(tmp_path, n_questions=N_QUESTIONS, orders=1,
                        generation={"engine": "ray", "n_threads": 1, **generation})


def test_ray_gives_the_answers_of_the_local_engine(cluster: Any, small_tasks: None, tmp_path: Path) -> None:
    local = raq.evaluate(study_config(tmp_path / "local", n_questions=N_QUESTIONS, orders=1,
                                      generation={"n_threads": 1}), backends=fakes(), progress=False)
    spread = raq.evaluate(on_ray(tmp_path / "ray"), backends=fakes(), progress=False)
    local_dir, ray_dir = run_dir_of(tmp_path / "local"), run_dir_of(tmp_path / "ray")
    assert comparable(ray_dir) == comparable(local_dir)
    assert len(comparable(ray_dir)) == N_QUESTIONS * len(MODEL_IDS)  # one line per question x model
    assert spread.summary["mean_rank"].to_dict() == local.summary["mean_rank"].to_dict()

    node = cluster.get_runtime_context().get_node_id()
    assert {a["node"] for a in lines(ray_dir / "answers.jsonl")} == {node}
    assert {a["node"] for a in lines(local_dir / "answers.jsonl")} == {""}
    manifest = spread.manifest
    assert manifest["config"]["generation"]["engine"] == "ray"
    assert list(manifest["nodes"]) == [node]
    facts = manifest["nodes"][node]
    assert facts["hostname"] == socket.gethostname() and facts["cpu"] == environment.cpu_model()
    assert facts["cpu_count"] == os.cpu_count() and isinstance(facts["gpus"], list)
    for model in MODEL_IDS:
        info = manifest["models"][model]
        assert info["nodes"] == [node] and info["backend"] == "fake" and len(info["sha256"]) == 64
        assert info["memory"]["tasks"] == 2 and info["memory"]["answered"] == N_QUESTIONS
    alone = facts["most_tasks_at_once"] == 1  # one node, one task at a time: its speeds compare
    assert ("note" not in spread.stats["metrics"]["ttft_s"]) == alone


def test_speeds_made_on_several_machines_are_not_compared(cluster: Any, small_tasks: None, tmp_path: Path) -> None:
    raq.evaluate(on_ray(tmp_path), backends=fakes(), progress=False)
    mixed = shutil.copytree(run_dir_of(tmp_path), tmp_path / "mixed")
    answers = lines(mixed / "answers.jsonl")
    for answer in answers:
        if answer["model_id"] == "gamma":
            answer["node"] = "another-node"
    (mixed / "answers.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers), encoding="utf-8")
    stats = analyse(RunDir.open(mixed)).stats
    for metric in ("ttft_s", "generation_tok_s"):
        assert stats["metrics"][metric]["note"].startswith("not compared: the answers were made on 2 machines")
    assert "note" not in stats["metrics"]["f1"] and "note" not in stats["metrics"]["words"]


def test_speeds_of_tasks_side_by_side_on_one_node_are_not_compared(cluster: Any, small_tasks: None,
                                                                   tmp_path: Path) -> None:
    raq.evaluate(on_ray(tmp_path), backends=fakes(), progress=False)
    run = RunDir.open(run_dir_of(tmp_path))
    manifest = run.manifest()
    (node,) = manifest["nodes"]
    manifest["nodes"][node]["most_tasks_at_once"] = 2
    run.write_manifest(manifest)
    results = analyse(run)
    for metric in ("ttft_s", "generation_tok_s"):
        assert results.stats["metrics"][metric]["note"].startswith("not compared: tasks ran side by side")
    manifest["nodes"][node]["most_tasks_at_once"] = 1
    run.write_manifest(manifest)
    assert "note" not in analyse(run).stats["metrics"]["ttft_s"]


def stored_questions(runs: Path, model_id: str) -> set[str]:
    return {a["question_id"] for path in runs.glob("*/answers.jsonl") for a in lines(path) if a["model_id"] == model_id}


def dies_once(model_id: str, after: int, marker: Path, asked: Path, runs: Path) -> FakeBackend:
    """A contestant whose worker dies (``os._exit``) when asked its ``after + 1``-th question, once in
    all (``marker``), once the driver has stored the answers it gave; every question it answers is
    logged to ``asked``."""
    answer, given = answer_as(model_id), []

    def reply(request: Request) -> str:
        paragraph = paragraph_of(request)
        if paragraph is not None and len(given) == after and not marker.exists():
            marker.write_text("died", encoding="utf-8")
            deadline = time.monotonic() + 60
            while not {f"q{p}" for p in given} <= stored_questions(runs, model_id) and time.monotonic() < deadline:
                time.sleep(0.05)
            os._exit(1)
        if paragraph is not None:
            given.append(paragraph)
            with asked.open("a", encoding="utf-8") as out:
                out.write(f"q{paragraph}\n")
        return answer(request)

    return FakeBackend(default=reply, name=model_id)


def test_a_worker_killed_mid_task_loses_nothing_finished_and_duplicates_nothing(
        cluster: Any, small_tasks: None, tmp_path: Path) -> None:
    marker, asked = tmp_path / "died", tmp_path / "asked-beta.txt"
    backends = FakeBackends(contestant=lambda m: dies_once(m, 2, marker, asked, tmp_path / "runs") if m == "beta"
                            else contestant(m))
    results = raq.evaluate(on_ray(tmp_path), backends=backends, progress=False, judge=False)
    assert marker.exists()  # the worker did die
    stored = lines(run_dir_of(tmp_path) / "answers.jsonl")
    keys = [(a["question_id"], a["model_id"]) for a in stored]
    assert len(keys) == len(set(keys)) == N_QUESTIONS * len(MODEL_IDS)
    assert sorted(asked.read_text().split()) == [f"q{i}" for i in range(N_QUESTIONS)]  # none asked twice
    assert all(a["text"] == ANSWERS[a["model_id"]](a["question_id"][1:]) for a in stored)
    assert results.manifest["status"] == "answered"


def broken(request: Request) -> str:
    raise RuntimeError("this backend is broken")


def test_a_task_that_keeps_failing_stops_the_run_and_resume_answers_the_rest(
        cluster: Any, small_tasks: None, tmp_path: Path) -> None:
    config = on_ray(tmp_path)
    backends = FakeBackends(contestant=lambda m: FakeBackend(default=broken, name=m) if m == "gamma"
                            else contestant(m))
    with pytest.raises(BackendError, match=r"model 'gamma': 4 questions after 3 attempts "
                                           r"\(last: RuntimeError: this backend is broken\)"):
        raq.evaluate(config, backends=backends, progress=False, judge=False)
    run_dir = run_dir_of(tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and "--resume" in manifest["error"]
    assert sorted({a["model_id"] for a in lines(run_dir / "answers.jsonl")}) == ["alpha", "beta"]

    raq.evaluate(config, resume=run_dir, backends=fakes(), progress=False, judge=False)
    keys = [(a["question_id"], a["model_id"]) for a in lines(run_dir / "answers.jsonl")]
    assert len(keys) == len(set(keys)) == N_QUESTIONS * len(MODEL_IDS)


def test_without_ray_the_engine_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    quick_analysis(monkeypatch)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    config = study_config(tmp_path, n_questions=2, orders=1)
    with pytest.raises(RaqError, match=r"generation.engine 'ray' needs Ray.*: pip install 'raq\[ray\]'"):
        raq.evaluate(config, backends=fakes(), progress=False, judge=False, generation__engine="ray")
    monkeypatch.setattr(raq.pipeline, "BackendFactory", lambda: fakes())
    cli = ["run", "--config", str(config), "--no-judge", "--quiet"]
    assert main([*cli, "--ray-address", "auto", "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'raq[ray]'" in err and "Traceback" not in err
    (cli_run,) = (tmp_path / "cli").iterdir()
    generation = json.loads((cli_run / "manifest.json").read_text())["config"]["generation"]
    assert (generation["engine"], generation["ray_address"]) == ("ray", "auto")  # --ray-address implies ray
    assert main([*cli, "--engine", "local", "--out", str(tmp_path / "local")]) == 0


def test_raq_and_its_engines_import_no_ray() -> None:
    probe = "import sys, raq, raq.answering, raq.engine_ray, raq.cli\nprint('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


class Context:
    """What a Ray worker's runtime context tells a task."""

    def get_node_id(self) -> str:
        return "node-x"

    def get_assigned_resources(self) -> dict[str, float]:
        return {"CPU": 3.0}


class Threads:
    """Fake contestants that note the generation settings they were opened with."""

    def __init__(self) -> None:
        self.generations: list[GenerationConfig] = []

    def contestant(self, model: ModelConfig, generation: GenerationConfig, path: Path | None) -> FakeBackend:
        self.generations.append(generation)
        return contestant(model.id)


def test_a_task_yields_its_node_each_answer_and_its_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(get_runtime_context=Context))  # in this process
    gguf = tmp_path / "alpha.gguf"
    gguf.write_bytes(GGUF_STUB)
    questions = [Question(f"q{i}", f"What does paragraph {i} say?", f"Paragraph {i} says gold{i}.", [f"gold{i}"])
                 for i in range(2)]
    model, backends = ModelConfig(id="alpha", gguf=str(gguf)), Threads()
    messages = list(raq.engine_ray.answer_task(model, GenerationConfig(warmup=False), str(gguf), len(GGUF_STUB),
                                               questions, False, backends, answers_of))
    assert [m["kind"] for m in messages] == ["start", "answer", "answer", "done"]
    assert messages[0]["node"] == "node-x" and messages[0]["facts"]["hostname"] == socket.gethostname()
    assert [(m["answer"].text, m["answer"].node) for m in messages[1:3]] == [("gold0", "node-x"), ("gold1", "node-x")]
    assert messages[3]["memory"]["answered"] == 2
    assert backends.generations[0].n_threads == 3  # n_threads unset: as many threads as the task has CPUs
    with pytest.raises(ModelFileError, match=r"is not readable on node .*: every node needs the GGUFs at the same"):
        next(raq.engine_ray.answer_task(model, GenerationConfig(), str(tmp_path / "absent.gguf"), None, questions,
                                        False, backends, answers_of))
    with pytest.raises(ModelFileError, match=r"has 12 bytes on node .*, 13 where the study started"):
        next(raq.engine_ray.answer_task(model, GenerationConfig(), str(gguf), 13, questions, False, backends,
                                        answers_of))


def test_the_engine_does_not_count_as_a_change_of_results() -> None:
    from raq.runs import config_changes

    old = {"generation": {"engine": "ray", "ray_address": "auto", "seed": 1}}
    assert config_changes(old, {"generation": {"engine": "local", "ray_address": None, "seed": 1}}) == []
    changed = config_changes(old, {"generation": {"engine": "local", "ray_address": None, "seed": 2}})
    assert changed == ["generation.seed"]


class NodesOnly:
    """What ``task_options`` asks of Ray: its nodes."""

    def __init__(self, *resources: dict[str, float]) -> None:
        self.resources = resources

    def nodes(self) -> list[dict[str, Any]]:
        return [{"Alive": True, "Resources": dict(r)} for r in self.resources]


def test_a_model_that_offloads_layers_asks_for_a_gpu_only_where_the_cluster_has_one(
        caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config({
        "models": [{"id": "big", "gguf": "x.gguf", "n_gpu_layers": -1}, {"id": "small", "gguf": "y.gguf"}],
        "generation": {"n_threads": 2}, "judge": {"id": "j", "gguf": "j.gguf"}}, "test")
    with caplog.at_level("WARNING", logger="raq.engine_ray"):
        options = raq.engine_ray.task_options(NodesOnly({"CPU": 4}), config)
    assert options["big"]["num_gpus"] == 0 and options["small"]["num_gpus"] == 0
    assert "no node of the Ray cluster has a GPU" in caplog.text
    options = raq.engine_ray.task_options(NodesOnly({"CPU": 4}, {"CPU": 8, "GPU": 1}), config)
    assert options["big"]["num_gpus"] == 1 and options["small"]["num_gpus"] == 0
    with pytest.raises(BackendError, match="no node of the Ray cluster has 16 CPUs and a GPU"):
        raq.engine_ray.task_options(NodesOnly({"CPU": 32}, {"CPU": 8, "GPU": 1}),
                                    config.model_copy(update={"generation": GenerationConfig(n_threads=16)}))


def test_the_manifest_says_how_many_tasks_a_node_ran_at_once() -> None:
    driver = object.__new__(raq.engine_ray.Driver)
    driver.nodes, driver.on_node, driver.started, driver.models_info = {}, {}, set(), {}
    driver.files, driver.run = {}, types.SimpleNamespace(update_manifest=lambda **_: None)
    model = ModelConfig(id="a", gguf="a.gguf")
    task = raq.engine_ray.Task(model, [])
    driver.flights = {1: (types.SimpleNamespace(), task), 2: (types.SimpleNamespace(), task)}

    def start(flight: int, node: str) -> None:
        driver.receive(task, {"kind": "start", "node": node, "info": {}, "facts": {"hostname": node}}, flight)

    start(1, "n1")
    assert driver.nodes["n1"]["most_tasks_at_once"] == 1
    start(2, "n1")
    assert driver.nodes["n1"]["most_tasks_at_once"] == 2
    driver.on_node.clear()
    start(3, "n1")  # alone again: the most stays
    assert driver.nodes["n1"]["most_tasks_at_once"] == 2 and driver.models_info["a"]["nodes"] == ["n1"]
