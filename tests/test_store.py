"""The run directory: atomic manifest, append-only records, repair of a torn last line."""

from __future__ import annotations

import json

import pytest

from raq.errors import RunDirError
from raq.records import Answer, Judgement, Question, to_dict
from raq.store import RunDir, read_jsonl


def judgement(qid: str, ok: bool, judge: str = "j") -> Judgement:
    return Judgement(question_id=qid, judge_id=judge, protocol="raq", order=["a", "b"], labels=["A", "B"],
                     ranks={"a": 1, "b": 2} if ok else {}, ok=ok, attempts=1, raw_replies=["x"])


def test_create_refuses_an_existing_run_and_open_needs_a_manifest(tmp_path):
    RunDir.create(tmp_path / "run", {"status": "running"})
    with pytest.raises(RunDirError, match="already holds a run"):
        RunDir.create(tmp_path / "run", {})
    with pytest.raises(RunDirError, match="not a raq run directory"):
        RunDir.open(tmp_path)


def test_manifest_updates_replace_the_file_whole(tmp_path):
    run = RunDir.create(tmp_path / "run", {"status": "running"})
    run.update_manifest(status="complete")
    assert json.loads(run.manifest_path.read_text())["status"] == "complete"
    assert [p.name for p in run.path.iterdir()] == ["manifest.json"]  # no temp files left


def test_a_successful_judgement_wins_over_failures_and_failures_are_kept(tmp_path):
    run = RunDir.create(tmp_path / "run", {})
    for record in (judgement("q1", False), judgement("q1", True), judgement("q1", False), judgement("q2", False)):
        run.append_judgement(record)
    by_question = {j.question_id: j for j in run.judgements()}
    assert by_question["q1"].ok and not by_question["q2"].ok


def test_a_torn_last_line_is_dropped_and_repaired(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b"')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    read_jsonl(path, repair=True)
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'


def test_a_broken_line_in_the_middle_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 3}\n')
    with pytest.raises(RunDirError, match="records.jsonl:2"):
        read_jsonl(path)


def answer_dict(qid: str = "q1", model: str = "m", **changes: object) -> dict:
    """An answers.jsonl line as a dict, as an older raq (before notes, counters and decoding) wrote it."""
    data = {"question_id": qid, "model_id": model, "text": "Paris", "prompt": "p", "template": "chat",
            "prompt_tokens": None, "generated_tokens": 2, "ttft_s": 0.1, "prompt_s": 0.1, "generation_s": 0.2,
            "total_s": 0.3, "prompt_tok_s": None, "generation_tok_s": 10.0, "words": 1, "words_paper": 1,
            "words_per_s_paper": 3.3, "finish_reason": "stop", "max_tokens": 32}
    return {**data, **changes}


def write_lines(path, records: list) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_an_unknown_format_version_is_refused_naming_the_file_and_the_versions(tmp_path):
    run = RunDir.create(tmp_path / "run", {"config": {}})
    run.update_manifest(format_version=99)
    with pytest.raises(RunDirError) as error:
        RunDir.open(run.path)
    message = str(error.value)
    assert str(run.manifest_path) in message and "format_version 99" in message
    assert "reads format_version 1" in message
    for bad in ("1", True, None):
        run.update_manifest(format_version=bad)
        if bad is None:  # written as null: no version, but a config, so version 1
            assert RunDir.open(run.path).format_version() == 1
            continue
        with pytest.raises(RunDirError, match="is not one this raq reads"):
            RunDir.open(run.path)


def test_a_manifest_without_a_version_is_version_1_when_it_has_a_config(tmp_path):
    run = RunDir.create(tmp_path / "run", {"config": {"name": "x"}})
    manifest = run.manifest()
    del manifest["format_version"]
    run.write_manifest(manifest)
    assert RunDir.open(run.path).format_version() == 1
    run.write_manifest({"status": "running"})
    with pytest.raises(RunDirError, match="manifest.json: not a raq run manifest"):
        RunDir.open(run.path)
    run.manifest_path.write_text("[1, 2]")
    with pytest.raises(RunDirError, match="not a JSON object"):
        RunDir.open(run.path)


def test_a_bad_field_is_named_with_file_and_line(tmp_path):
    run = RunDir.create(tmp_path / "run", {})
    write_lines(run.answers_path, [answer_dict("q1"), answer_dict("q2"), answer_dict("q3", total_s="abc")])
    with pytest.raises(RunDirError) as error:
        run.answers()
    assert str(error.value) == f"{run.answers_path}:3: field 'total_s' must be a number, not 'abc'"


@pytest.mark.parametrize(("changes", "expected"), [
    ({"model_id": None}, "field 'model_id' must be a string, not None"),
    ({"generated_tokens": 2.5}, "field 'generated_tokens' must be an integer, not 2.5"),
    ({"generated_tokens": True}, "field 'generated_tokens' must be an integer, not True"),
    ({"prompt_tokens": "7"}, "field 'prompt_tokens' must be an integer or null, not '7'"),
    ({"notes": "cut"}, "field 'notes' must be a list, not 'cut'"),
    ({"notes": ["ok", 3]}, "field 'notes[1]' must be a string, not 3"),
    ({"counters": []}, "field 'counters' must be an object, not []"),
    ({"decoding": 1}, "field 'decoding' must be a string, not 1"),
])
def test_each_field_is_checked_against_its_type(tmp_path, changes, expected):
    run = RunDir.create(tmp_path / "run", {})
    write_lines(run.answers_path, [answer_dict(**changes)])
    with pytest.raises(RunDirError) as error:
        run.answers()
    assert str(error.value) == f"{run.answers_path}:1: {expected}"


def test_missing_fields_and_lines_that_are_not_objects_are_errors(tmp_path):
    run = RunDir.create(tmp_path / "run", {})
    data = answer_dict()
    del data["total_s"]
    write_lines(run.answers_path, [answer_dict(), data])
    with pytest.raises(RunDirError, match=r"answers.jsonl:2: field 'total_s' is missing$"):
        run.answers()
    write_lines(run.questions_path, [{"question_id": "q1", "question": "?", "context": "c", "gold_answers": []},
                                     ["not", "an", "object"]])
    with pytest.raises(RunDirError, match=r"questions.jsonl:2: must be a JSON object, not a list$"):
        run.questions()
    good = to_dict(judgement("q1", True))
    write_lines(run.judgements_path, [good, {**good, "ranks": {"a": 1, "b": "2"}}, {**good, "ok": "yes"}])
    with pytest.raises(RunDirError, match=r"judgements.jsonl:2: field 'ranks.b' must be a number, not '2'$"):
        run.judgements()


def test_old_records_load_with_defaults_and_unknown_fields_are_ignored(tmp_path):
    run = RunDir.create(tmp_path / "run", {})
    write_lines(run.questions_path, [{"question_id": "q1", "question": "Where?", "context": "c",
                                      "gold_answers": ["Paris"]}])
    write_lines(run.answers_path, [answer_dict(ttft_s=0, added_by_a_newer_raq={"x": 1})])
    old_judgement = to_dict(judgement("q1", True))
    for name in ("order_index", "seconds", "error"):
        del old_judgement[name]
    write_lines(run.judgements_path, [old_judgement])
    (question,), (answer,), (verdict,) = run.questions(), run.answers(), run.judgements()
    assert question.title == ""
    assert (answer.decoding, answer.counters, answer.notes, answer.ttft_s) == ("single", {}, [], 0)
    assert (verdict.order_index, verdict.seconds, verdict.error, verdict.ranks) == (0, 0.0, "", {"a": 1, "b": 2})


def test_a_torn_last_record_is_still_dropped_and_repaired(tmp_path):
    run = RunDir.create(tmp_path / "run", {})
    write_lines(run.answers_path, [answer_dict("q1")])
    with open(run.answers_path, "a") as out:
        out.write(json.dumps(answer_dict("q2"))[:40])
    assert [a.question_id for a in run.answers()] == ["q1"]
    assert [a.question_id for a in run.answers(repair=True)] == ["q1"]
    assert run.answers_path.read_text() == json.dumps(answer_dict("q1")) + "\n"
    run.append_answer(run.answers()[0])
    assert len(run.answers_path.read_text().splitlines()) == 2


def test_records_round_trip_through_the_checks(tmp_path):
    run = RunDir.create(tmp_path / "run", {})
    question = Question("q1", "Where?", "In Paris.", ["Paris", "in Paris"], title="France")
    answer = Answer(**{**answer_dict(prompt_tokens=12, prompt_tok_s=float("nan")), "notes": ["cut"],
                       "counters": {"batched": 4, "steps": [1, 2]}, "decoding": "batched x4"})
    verdict = Judgement(question_id="q1", judge_id="j", protocol="raq", order=["b", "a"], labels=["A", "B"],
                        ranks={"a": 1.5, "b": 1.5}, ok=True, attempts=2, raw_replies=["?", "A = B"], seconds=0.5,
                        order_index=1)
    run.write_questions([question])
    run.append_answer(answer)
    run.append_judgement(verdict)
    assert run.questions() == [question] and run.judgements() == [verdict]
    (loaded,) = run.answers()
    assert to_dict(loaded) | {"prompt_tok_s": None} == to_dict(answer) | {"prompt_tok_s": None}
