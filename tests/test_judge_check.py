"""judge-check end to end on scripted judges: the ladders judged as the study would judge them,
the figures, judge_check.json, the CLI, and ``judge.check`` stopping a study before any answer."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

import raq
from raq import prompts
from raq.backends.base import Request
from raq.backends.fake import FakeBackend, FakeBackends
from raq.cli import main
from raq.errors import ConfigError, JudgeCheckFailed
from raq.judge_check import gate_repeats
from raq.metrics import normalize_answer
from raq.store import RunDir
from study_fakes import contestant, quick_analysis, study_config

_REFS = re.compile(r"<reference>\n(.*?)\n</reference>|Correct answer\(s\):\n(.*?)\n\n", re.S)
_SHOWN = re.compile(r'<answer label="([^"]+)">\n((?s:.*?))\n</answer>|^Candidate answer ?([AB]?):\n(.*)$', re.M)


_PAPER_GOLD = re.compile(r"Based on the correct answer: (.*?), rank the IDs")
_PAPER_ANSWER = re.compile(r"ID: (\d+) Answer: (.*)")


def shown(request: Request) -> tuple[list[str], list[tuple[str, str]]]:
    """The references and the (label, answer) pairs of a judge request (the reference study's
    prompt too: one gold answer, sanitised answers)."""
    body = request.messages[1 if request.tool is None else 0]["content"]  # type: ignore[index]
    if request.tool is not None:
        return [_PAPER_GOLD.search(body).group(1)], _PAPER_ANSWER.findall(body)  # type: ignore[union-attr]
    found = _REFS.search(body)
    assert found is not None
    refs = [html.unescape(line[2:]) for line in (found.group(1) or found.group(2)).splitlines()]
    return refs, [(a or c, html.unescape(b or d)) for a, b, c, d in _SHOWN.findall(body)]


def knows(text: str, refs: list[str]) -> bool:
    return any(normalize_answer(ref) in normalize_answer(text) for ref in refs)


Key = Callable[[str, list[str]], float]


def judge_by(key: Key) -> Callable[[Request], str]:
    """A scripted judge for every protocol that prefers answers by ``key(text, references)``
    (lower is better)."""
    def reply(request: Request) -> str:
        refs, answers = shown(request)
        if request.choices == prompts.GRADES["yes-no"]:
            return "yes" if key(answers[0][1], refs) < 1 else "no"
        if request.choices == ("A", "B"):
            (_, first), (_, second) = answers
            return "A" if key(first, refs) <= key(second, refs) else "B"
        ranked = [label for label, _ in sorted(answers, key=lambda item: key(item[1], refs))]
        return json.dumps({"rank": ",".join(ranked)} if request.tool is not None else {"ranking": ranked})

    return reply


def expert(text: str, refs: list[str]) -> float:  # correct first, shorter first among equals
    return (0 if knows(text, refs) else 1) + len(text) / 10_000


def fluent(text: str, refs: list[str]) -> float:  # the longest answer wins
    return -len(text)


def backends_with(key: Key, loads: list[str] | None = None) -> FakeBackends:
    def judge(judge_id: str) -> FakeBackend:
        if loads is not None:
            loads.append(judge_id)
        return FakeBackend(default=judge_by(key), name=judge_id)

    return FakeBackends(contestant=contestant, judge=judge)


def squad_study(tmp_path: Path, **judge: object) -> Path:
    return study_config(tmp_path, n_questions=4, data={"source": "squad-v1.1-dev", "n_questions": 4, "seed": 3},
                        judge={"orders": 3, **judge})


def test_an_expert_judge_passes_with_every_figure_at_its_best(tmp_path: Path) -> None:
    result = raq.check_judge(squad_study(tmp_path), questions=5, repeats=5, backends=backends_with(expert),
                             progress=False)
    assert result.passed and result.path.exists()
    report = json.loads(result.path.read_text())
    check = report["checks"][0]
    metrics = check["metrics"]
    assert metrics["pairwise_accuracy"]["mean"] == 1.0 and metrics["wrong_first"]["mean"] == 0.0
    assert metrics["position_consistency"]["mean"] == 1.0 and metrics["stability"]["mean"] == 1.0
    n = report["dataset"]["ladders"]
    assert n == 5 and len(check["judgements"]) == 3 * n and len(check["repeats"]) == n
    assert {r["name"] for r in report["ladders"][0]["rungs"]} >= {"gold", "gold_sentence", "wrong", "abstain"}
    assert report["format_version"] == 1 and "environment" in report
    table = result.table()
    assert list(table["protocol"]) == ["raq"] and table["pairwise_accuracy"][0] == 1.0


def test_a_fluent_judge_fails_and_every_protocol_runs_on_one_loaded_model(tmp_path: Path) -> None:
    loads: list[str] = []
    result = raq.check_judge(squad_study(tmp_path), questions=4, protocols=["raq", "pointwise", "pairwise", "paper"],
                             backends=backends_with(fluent, loads), progress=False, repeats=0)
    assert loads == ["fair"]  # one backend for the four protocols
    rows = {row["protocol"]: row for row in result.table().to_dict("records")}
    assert set(rows) == {"raq", "pointwise", "pairwise", "paper"} and not result.passed
    assert rows["raq"]["pairwise_accuracy"] < 0.9 and rows["raq"]["wrong_first"] > 0.5
    assert rows["pointwise"]["orders"] == 1 and rows["pairwise"]["orders"] == 1
    assert rows["raq"]["stability"] is None  # no repeats asked
    assert "pairwise acc" in str(result)


def test_the_command_prints_the_table_and_exits_3_below_the_minimum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import raq.backends.factory

    monkeypatch.setattr(raq.backends.factory, "BackendFactory", lambda: backends_with(fluent))
    monkeypatch.setattr("raq.pipeline.BackendFactory", lambda: backends_with(fluent))
    out = tmp_path / "check.json"
    status = main(["judge-check", "--config", str(squad_study(tmp_path)), "--questions", "3", "--quiet",
                   "--out", str(out), "--protocols", "pointwise"])
    printed = capsys.readouterr().out
    assert status == 3 and out.exists() and "pointwise" in printed and "NO" in printed
    assert main(["judge-check", "--config", str(squad_study(tmp_path)), "--protocols", "listwise"]) == 2
    assert "unknown judge protocols" in capsys.readouterr().err


def test_bad_requests_are_refused_before_any_work(tmp_path: Path) -> None:
    config = squad_study(tmp_path)
    loads: list[str] = []
    for bad in ({"judge": "nobody"}, {"protocols": ["best"]}, {"rungs": ["gold", "silver"]}):
        with pytest.raises(ConfigError):
            raq.check_judge(config, backends=backends_with(expert, loads), progress=False, **bad)  # type: ignore[arg-type]
    assert loads == []


def test_judge_check_stops_a_study_before_any_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quick_analysis(monkeypatch)
    backends = backends_with(fluent)
    with pytest.raises(JudgeCheckFailed, match="below judge.min_accuracy"):
        raq.evaluate(squad_study(tmp_path, check=3), backends=backends, progress=False)
    run = RunDir.open(next((tmp_path / "runs").iterdir()))
    assert run.answers() == [] and (run.path / "judge_check.json").exists()
    assert list(backends.opened) == ["judge:fair"]  # no contestant was loaded
    assert run.manifest()["status"] == "interrupted"


def test_a_passed_check_is_kept_in_the_run_and_not_repeated_on_resume(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    quick_analysis(monkeypatch)
    loads: list[str] = []
    results = raq.evaluate(squad_study(tmp_path, check=3), backends=backends_with(expert, loads), progress=False)
    check = json.loads((results.run_dir / "judge_check.json").read_text())
    assert [c["passed"] for c in check["checks"]] == [True] and len(loads) == 2  # the check, then the judging
    assert len(check["checks"][0]["repeats"]) == gate_repeats(3) == 2  # not the check command's default of 10
    raq.evaluate(squad_study(tmp_path, check=3), resume=results.run_dir, backends=backends_with(expert, loads),
                 progress=False)
    assert len(json.loads((results.run_dir / "judge_check.json").read_text())["checks"]) == 1


@pytest.mark.parametrize(("questions", "repeats"), [(1, 1), (2, 2), (3, 2), (8, 2), (12, 3), (40, 10), (100, 10)])
def test_the_check_before_a_study_repeats_a_quarter_of_its_questions_from_2_to_10(questions: int,
                                                                                  repeats: int) -> None:
    assert gate_repeats(questions) == repeats


def test_a_run_is_checked_on_its_own_questions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quick_analysis(monkeypatch)
    results = raq.evaluate(squad_study(tmp_path), backends=backends_with(expert), progress=False)
    check = raq.check_judge(run=results.run_dir, questions=3, backends=backends_with(expert), progress=False)
    assert check.path == results.run_dir / "judge_check.json"
    study_ids = [q.question_id for q in results.questions][:3]
    assert [ladder["question_id"] for ladder in check.report["ladders"]] == study_ids


def test_another_protocol_is_checked_with_its_own_orders() -> None:
    from raq.config import JudgeConfig
    from raq.judge_check import protocol_settings

    pointwise = JudgeConfig(base_url="http://unused", model="m", protocol="pointwise")
    assert protocol_settings(pointwise, "raq", None).orders == 3
    assert protocol_settings(pointwise, "raq", 2).orders == 2
    assert protocol_settings(pointwise, "paper", None).orders == 1
    listwise = JudgeConfig(base_url="http://unused", model="m", orders=5)
    assert protocol_settings(listwise, None, None).orders == 5
    assert protocol_settings(listwise, "pairwise", 4).orders == 1  # orders are for the listwise protocols
