"""The run directory: atomic manifest, append-only records, repair of a torn last line."""

from __future__ import annotations

import json

import pytest

from raq.errors import RunDirError
from raq.records import Judgement
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
