"""The whole study end to end: real demo GGUFs through llama.cpp, a real local judge server,
the CLI and the Python API, resume, and refusal of bad input before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import MODELS_DIR, demo_model
from raq.cli import main

pytestmark = pytest.mark.integration

N_QUESTIONS = 3


def study_config(tmp_path: Path, data: dict | None = None, **generation) -> Path:
    for name in ("smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct"):
        demo_model(name)
    config = {
        "name": "it", "out_dir": str(tmp_path / "runs"), "models_dir": str(MODELS_DIR),
        "data": {"source": "squad-v1.1-dev", "n_questions": N_QUESTIONS, "seed": 7, **(data or {})},
        "generation": {"n_ctx": 1024, "max_tokens": 24, **generation},
        "models": [{"id": "smollm2", "gguf": "smollm2-135m-instruct"},
                   {"id": "gemma", "gguf": "gemma-3-270m", "prompt_format": "completion"}],
        "judge": {"id": "qwen-judge", "gguf": "qwen2.5-coder-0.5b-instruct", "n_ctx": 2048},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("study")
    config = study_config(tmp_path)
    assert main(["run", "--config", str(config), "--quiet"]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    return config, run_dir


def test_the_run_directory_is_complete_and_consistent(finished_run):
    _, run_dir = finished_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["environment"]["packages"]["llama-cpp-python"]
    assert manifest["data"]["license"] == "CC BY-SA 4.0"
    assert set(manifest["models"]) == {"smollm2", "gemma"}
    assert manifest["models"]["smollm2"]["template"] == "gguf-chat-template"
    assert manifest["models"]["gemma"]["template"] == "completion"
    assert len(manifest["models"]["smollm2"]["sha256"]) == 64

    questions = lines(run_dir / "questions.jsonl")
    answers = lines(run_dir / "answers.jsonl")
    judgements = lines(run_dir / "judgements.jsonl")
    assert len(questions) == N_QUESTIONS
    keys = [(a["question_id"], a["model_id"]) for a in answers]
    assert len(keys) == len(set(keys)) == N_QUESTIONS * 2  # exactly one answer per question x model
    for answer in answers:
        assert answer["prompt_tokens"] > 0 and answer["ttft_s"] <= answer["total_s"]
        assert answer["counters"]["prompt_eval_tokens"] == answer["prompt_tokens"]
    assert {j["question_id"] for j in judgements} == {q["question_id"] for q in questions}
    for verdict in judgements:
        assert set(verdict["order"]) == {"smollm2", "gemma"}
        if verdict["ok"]:
            assert sorted(verdict["ranks"].values()) == [1, 2]
        else:
            assert verdict["error"] and verdict["raw_replies"]

    stats = json.loads((run_dir / "stats.json").read_text())
    assert stats["questions_total"] == N_QUESTIONS
    assert stats["n_questions"] + stats["questions_not_judged"] == N_QUESTIONS
    assert "p_value" in stats["paper"]["kruskal"] and "p_values" in stats["paper"]["dunn_holm"]
    assert "p_value" in stats["blocked"]["friedman"]
    assert (run_dir / "figures" / "reference_bars.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((run_dir / "results.csv").read_text().splitlines()) == 1 + N_QUESTIONS * 2
    assert "Kruskal-Wallis" in (run_dir / "summary.md").read_text()


def test_python_api_reads_the_same_run(finished_run):
    import raq

    _, run_dir = finished_run
    results = raq.load_run(run_dir)
    assert len(results.table) == N_QUESTIONS * 2
    assert list(results.summary.index) == ["smollm2", "gemma"]
    assert {"rank", "f1", "em", "ttft_s", "generation_tok_s", "words_per_s_paper"} <= set(results.table.columns)
    assert results.plot() is not None


def test_resume_redoes_nothing_finished_and_retries_failed_judgements(finished_run):
    config, run_dir = finished_run
    answers_before = (run_dir / "answers.jsonl").read_text()
    judgements = lines(run_dir / "judgements.jsonl")
    first = judgements[0]["question_id"]
    # Pretend the judgement of the first question failed: keep it only as a failure.
    failed = {**judgements[0], "ok": False, "ranks": {}, "error": "simulated"}
    (run_dir / "judgements.jsonl").write_text(
        "\n".join(json.dumps(j) for j in [failed, *judgements[1:]]) + "\n")
    assert main(["run", "--config", str(config), "--resume", str(run_dir), "--quiet"]) == 0
    assert (run_dir / "answers.jsonl").read_text() == answers_before
    after = lines(run_dir / "judgements.jsonl")
    assert [j["question_id"] for j in after[len(judgements):]] == [first]  # only it was judged again
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"


def test_resume_with_a_config_that_changes_results_is_refused(finished_run, tmp_path, capsys):
    _, run_dir = finished_run
    changed = study_config(tmp_path, max_tokens=25)
    assert main(["run", "--config", str(changed), "--resume", str(run_dir), "--quiet"]) == 2
    assert "generation.max_tokens" in capsys.readouterr().err


def test_stats_are_recomputed_from_the_run_directory_alone(finished_run, capsys):
    _, run_dir = finished_run
    (run_dir / "stats.json").unlink()
    assert main(["stats", str(run_dir)]) == 0
    assert (run_dir / "stats.json").exists() and "mean rank" in capsys.readouterr().out


def test_evaluate_from_python_returns_tables(tmp_path):
    import raq

    results = raq.evaluate(study_config(tmp_path), limit=1, progress=False)
    assert len(results.table) == 2 and results.manifest["status"] == "complete"


def test_a_missing_model_file_is_reported_before_any_work(tmp_path, capsys):
    config = yaml.safe_load(study_config(tmp_path).read_text())
    config["models"][1]["gguf"] = str(tmp_path / "absent.gguf")
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("raq: error:")]
    assert len(errors) == 1 and "absent.gguf" in errors[0] and "not found" in errors[0]
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_a_second_judge_with_several_orders_is_added_without_regenerating(finished_run, tmp_path):
    config, run_dir = finished_run
    answers_before = (run_dir / "answers.jsonl").read_text()
    study = yaml.safe_load(config.read_text())
    first = study.pop("judge")
    study["judges"] = [first, {"id": "smol-judge", "gguf": "smollm2-135m-instruct", "n_ctx": 2048, "orders": 2}]
    path = tmp_path / "two-judges.yaml"
    path.write_text(yaml.safe_dump(study))
    assert main(["judge", str(run_dir), "--config", str(path), "--quiet"]) == 0
    assert (run_dir / "answers.jsonl").read_text() == answers_before
    judgements = lines(run_dir / "judgements.jsonl")
    smol = [j for j in judgements if j["judge_id"] == "smol-judge"]
    assert sorted((j["question_id"], j["order_index"]) for j in smol) == sorted(
        (q, k) for q in {j["question_id"] for j in judgements} for k in (0, 1))
    for question in {j["question_id"] for j in smol}:  # the two orders are rotations
        first_order, second_order = (j["order"] for j in sorted(
            (j for j in smol if j["question_id"] == question), key=lambda j: j["order_index"]))
        assert second_order == first_order[1:] + first_order[:1]
    stats = json.loads((run_dir / "stats.json").read_text())
    judging = stats["judging"]
    assert set(judging["judges"]) == {"qwen-judge", "smol-judge"}
    bias = judging["judges"]["smol-judge"]["position_bias"]
    assert bias.get("questions_with_several_orders", 0) + judging["judges"]["smol-judge"]["failed_after_retries"] >= 1
    assert "mean_kendalls_w" in judging["agreement"]
    import raq

    table = raq.load_run(run_dir).table
    assert {"rank.qwen-judge", "rank.smol-judge"} <= set(table.columns)


def test_throughput_mode_labels_batched_answers_and_keeps_them_apart(finished_run, tmp_path, capsys):
    import raq

    _, single_dir = finished_run
    config = study_config(tmp_path, n_parallel=2)
    results = raq.evaluate(config, judge=False, progress=False)
    answers = lines(results.run_dir / "answers.jsonl")
    assert len(answers) == 2 * N_QUESTIONS
    assert {a["decoding"] for a in answers} == {"batched x2"}
    assert all(a["counters"]["batched"] == 2 and any("batched decoding" in n for n in a["notes"]) for a in answers)
    assert set(results.summary["decoding"]) == {"batched x2"}
    # same prompts, same greedy settings: the texts match single-sequence decoding (allowing one
    # near-tie flipped by the multi-row kernels' rounding)
    single = {(a["question_id"], a["model_id"]): a for a in lines(single_dir / "answers.jsonl")}
    same = sum(single[(a["question_id"], a["model_id"])]["text"] == a["text"] for a in answers)
    assert same >= len(answers) - 1
    assert all(single[(a["question_id"], a["model_id"])]["prompt"] == a["prompt"] for a in answers)
    # a batched run cannot be resumed as a single-sequence one: the two kinds never mix in a run
    assert main(["run", "--config", str(study_config(tmp_path)), "--resume", str(results.run_dir), "--quiet"]) == 2
    assert "generation.n_parallel" in capsys.readouterr().err


def test_questions_about_one_paragraph_share_its_prompt_in_throughput_mode(tmp_path):
    import raq

    config = study_config(tmp_path, data={"per_context": N_QUESTIONS}, n_parallel=N_QUESTIONS)
    results = raq.evaluate(config, judge=False, progress=False)
    assert len({q.context for q in results.questions}) == 1  # a cluster sample: one paragraph
    answers = lines(results.run_dir / "answers.jsonl")
    assert len(answers) == 2 * N_QUESTIONS
    context = results.questions[0].context
    for a in answers:
        before_question = a["prompt"][:a["prompt"].index(context) + len(context)]
        # everything up to the end of the paragraph was decoded once for the three questions
        assert a["counters"]["shared_prefix_tokens"] >= len(before_question) // 8
        assert a["counters"]["shared_prefix_tokens"] < a["prompt_tokens"]
