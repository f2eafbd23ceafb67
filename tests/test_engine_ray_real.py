"""A real small study (two demo GGUFs through llama.cpp, three questions, a real pointwise judge)
answered on a local Ray cluster and in this process: the same questions, the same greedy answers
and the same verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import raq
from conftest import MODELS_DIR, demo_model
from ray_cluster import local_cluster

pytestmark = pytest.mark.integration

N_QUESTIONS = 3


def study(tmp_path: Path, engine: str) -> Path:
    for name in ("smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct"):
        demo_model(name)
    config = {
        "name": engine, "out_dir": str(tmp_path / "runs"), "models_dir": str(MODELS_DIR),
        "data": {"source": "squad-v1.1-dev", "n_questions": N_QUESTIONS, "seed": 7},
        "generation": {"n_ctx": 1024, "max_tokens": 24, "n_threads": 1, "engine": engine},
        "models": [{"id": "smollm2", "gguf": "smollm2-135m-instruct"},
                   {"id": "gemma", "gguf": "gemma-3-270m", "prompt_format": "completion"}],
        "judge": {"id": "qwen-judge", "gguf": "qwen2.5-coder-0.5b-instruct", "runtime": "in-process",
                  "protocol": "pointwise"},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{engine}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def answers(run_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    stored = [json.loads(line) for line in (run_dir / "answers.jsonl").read_text().splitlines()]
    return {(a["question_id"], a["model_id"]): a for a in stored}


def judged(run_dir: Path) -> dict[tuple[str, int], tuple[dict[str, float], dict[str, float]]]:
    stored = [json.loads(line) for line in (run_dir / "judgements.jsonl").read_text().splitlines()]
    assert all(j["ok"] for j in stored)
    return {(j["question_id"], j["order_index"]): (j["ranks"], j["scores"]) for j in stored}


def test_a_study_on_a_local_ray_cluster_gives_the_answers_and_verdicts_of_the_local_engine(tmp_path: Path) -> None:
    with local_cluster() as ray:
        spread = raq.evaluate(study(tmp_path / "ray", "ray"), progress=False)
        node = ray.get_runtime_context().get_node_id()
    local = raq.evaluate(study(tmp_path / "local", "local"), progress=False)
    assert [q.question_id for q in spread.questions] == [q.question_id for q in local.questions]
    on_ray, here = answers(spread.run_dir), answers(local.run_dir)
    assert len(on_ray) == len(here) == N_QUESTIONS * 2 and set(on_ray) == set(here)
    for key, answer in here.items():
        assert (on_ray[key]["text"], on_ray[key]["prompt"], on_ray[key]["template"]) == \
               (answer["text"], answer["prompt"], answer["template"])
        assert on_ray[key]["generated_tokens"] == answer["generated_tokens"]
        assert on_ray[key]["node"] == node and answer["node"] == ""
    facts = spread.manifest["nodes"][node]
    assert facts["system_info"] == spread.manifest["models"]["smollm2"]["system_info"]
    assert facts["llama_cpp_python"] == spread.manifest["models"]["smollm2"]["llama_cpp_python"]
    for model in ("smollm2", "gemma"):
        info = spread.manifest["models"][model]
        assert info["nodes"] == [node] and info["n_threads"] == 1 and info["memory"]["answered"] == N_QUESTIONS
    verdicts = judged(local.run_dir)
    assert {q for q, _ in verdicts} == {q.question_id for q in local.questions}
    assert judged(spread.run_dir) == verdicts
    assert spread.summary["mean_rank"].to_dict() == local.summary["mean_rank"].to_dict()
