"""A real study with unanswerable questions: demo GGUFs through llama.cpp answer SQuAD 2.0 dev
questions (half of them unanswerable), a real in-process judge grades them, and the run's
abstentions, scores, statistics and report agree with its answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import MODELS_DIR, demo_model
from raq.abstention import is_abstention
from raq.cli import main
from raq.metrics import exact_match_v2
from raq.prompts import ABSTAIN_INSTRUCTION, COMPLETION_ABSTAIN_LINE

pytestmark = pytest.mark.integration

N_QUESTIONS = 6


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("v2")
    for name in ("smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct"):
        demo_model(name)
    config = {
        "name": "v2", "out_dir": str(tmp / "runs"), "models_dir": str(MODELS_DIR),
        "data": {"source": "squad-v2.0-dev", "n_questions": N_QUESTIONS, "seed": 11, "unanswerable_share": 0.5},
        "generation": {"n_ctx": 1024, "max_tokens": 24},
        "models": [{"id": "qwen", "gguf": "qwen2.5-coder-0.5b-instruct"},
                   {"id": "gemma", "gguf": "gemma-3-270m", "prompt_format": "completion"}],
        "judge": {"id": "judge", "gguf": "smollm2-135m-instruct", "runtime": "in-process", "protocol": "pointwise",
                  "n_ctx": 2048},
    }
    path = tmp / "v2.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(path), "--quiet"]) == 0
    (run,) = (tmp / "runs").iterdir()
    return run


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_half_the_questions_are_unanswerable_and_every_prompt_offers_to_abstain(run_dir: Path) -> None:
    questions = lines(run_dir / "questions.jsonl")
    assert len(questions) == N_QUESTIONS and sum(not q["gold_answers"] for q in questions) == N_QUESTIONS // 2
    answers = lines(run_dir / "answers.jsonl")
    assert len(answers) == 2 * N_QUESTIONS
    for answer in answers:
        offered = ABSTAIN_INSTRUCTION.strip() in answer["prompt"] or COMPLETION_ABSTAIN_LINE.strip() in answer["prompt"]
        assert offered and answer["abstained"] == is_abstention(answer["text"])


def test_the_statistics_count_what_the_answers_say(run_dir: Path) -> None:
    questions = {q["question_id"]: q for q in lines(run_dir / "questions.jsonl")}
    answers = lines(run_dir / "answers.jsonl")
    stats = json.loads((run_dir / "stats.json").read_text())["unanswerable"]
    assert stats["questions"]["unanswerable"] == N_QUESTIONS // 2
    for model in ("qwen", "gemma"):
        mine = [a for a in answers if a["model_id"] == model]
        on_unanswerable = [a for a in mine if not questions[a["question_id"]]["gold_answers"]]
        figures = stats["models"][model]
        assert figures["correct_abstentions"]["count"] == sum(a["abstained"] for a in on_unanswerable)
        assert figures["hallucinations"]["count"] == sum(not a["abstained"] for a in on_unanswerable)
        em = [exact_match_v2("" if a["abstained"] else a["text"], questions[a["question_id"]]["gold_answers"])
              for a in mine]
        assert figures["em"]["value"] == pytest.approx(sum(em) / len(em))
        low, high = figures["correct_abstentions"]["ci_low"], figures["correct_abstentions"]["ci_high"]
        assert 0.0 <= low <= figures["correct_abstentions"]["value"] <= high <= 1.0
    assert set(stats["subsets"]) == {"answerable", "unanswerable"}


def test_the_judge_is_told_which_questions_have_no_answer(run_dir: Path) -> None:
    questions = {q["question_id"]: q for q in lines(run_dir / "questions.jsonl")}
    judgements = lines(run_dir / "judgements.jsonl")
    assert {j["question_id"] for j in judgements} == set(questions)
    for judgement in judgements:
        assert judgement["details"], judgement
    report = (run_dir / "report.html").read_text()
    summary = (run_dir / "summary.md").read_text()
    assert 'id="unanswerable"' in report and "## Questions the text cannot answer" in summary
