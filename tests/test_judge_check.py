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
from raq.abstention import is_abstention
from raq.backends.base import Request
from raq.backends.fake import FakeBackend, FakeBackends
from raq.cli import main
from raq.config import load_config
from raq.errors import ConfigError, JudgeCheckFailed
from raq.judge_check import UNANSWERABLE_SHARE, check_judges, format_check, gate_repeats, with_unanswerable
from raq.metrics import normalize_answer
from raq.records import Question
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


NO_ANSWER_REFS = ([prompts.NO_ANSWER_REFERENCE], [prompts.PAPER_NO_ANSWER_GOLD])


def knows(text: str, refs: list[str]) -> bool:
    """Whether ``text`` gives a reference answer (an abstention, where the references say the text has none)."""
    if refs in NO_ANSWER_REFS:
        return is_abstention(text)
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


# --- questions without gold answers -------------------------------------------------------------------
CONTEXT = ("In 1998 the Royal Society of London met in Paris with 24 members. John Smith spoke for three hours "
           "about gravity, and Mary Jones chaired.")
ANSWERABLE = [Question(f"a{i}", text, CONTEXT, [gold]) for i, (text, gold) in enumerate(
    [("Where did the Royal Society meet?", "Paris"), ("Who spoke?", "John Smith"),
     ("How many members came?", "24"), ("When did it meet?", "1998"), ("Who chaired?", "Mary Jones"),
     ("What did John Smith speak about?", "gravity"), ("Which society met?", "Royal Society of London"),
     ("How long did he speak?", "three hours")])]
UNANSWERABLE = [Question(f"u{i}", text, CONTEXT, []) for i, text in enumerate(
    ["Where did the Royal Society meet in 2005?", "Who chaired the meeting in 2005?", "How many members left?",
     "When did Mary Jones die?", "Who funded the meeting?"])]


def inventor(text: str, refs: list[str]) -> float:  # an expert on answerable questions that never abstains
    if refs in NO_ANSWER_REFS:
        return (1 if is_abstention(text) else 0) + len(text) / 10_000
    return expert(text, refs)


def run_config(tmp_path: Path, **data: object):
    config = load_config(squad_study(tmp_path))
    return config.model_copy(update={"data": config.data.model_copy(update=data)}) if data else config


def test_the_check_holds_a_quarter_of_unanswerable_questions_where_the_pool_has_them(tmp_path: Path) -> None:
    config, pool = run_config(tmp_path), [*ANSWERABLE, *UNANSWERABLE]
    assert UNANSWERABLE_SHARE == 0.25
    chosen = with_unanswerable(config, ANSWERABLE, pool)
    assert len(chosen) == 8 and chosen[:6] == ANSWERABLE[:6]  # the last answerable ones give way
    assert sum(not q.answerable for q in chosen) == 2 and all(q in UNANSWERABLE for q in chosen[6:])
    assert with_unanswerable(config, ANSWERABLE, pool) == chosen  # drawn with the study's seed
    assert with_unanswerable(config, ANSWERABLE[:3], pool)[2] in UNANSWERABLE  # at least a quarter: 1 of 3
    few = with_unanswerable(config, ANSWERABLE, [*ANSWERABLE, UNANSWERABLE[0]])
    assert few == [*ANSWERABLE[:7], UNANSWERABLE[0]]  # fewer than a quarter exist: all of them
    enough = [*ANSWERABLE[:6], *UNANSWERABLE[:2]]
    assert with_unanswerable(config, enough, pool) == enough  # already a quarter: unchanged
    assert with_unanswerable(config, ANSWERABLE, ANSWERABLE) == ANSWERABLE  # none to draw
    assert with_unanswerable(run_config(tmp_path, unanswerable="exclude"), ANSWERABLE, pool) == ANSWERABLE


def test_unanswerable_ladders_are_checked_and_reported_apart_in_every_protocol(tmp_path: Path) -> None:
    config = run_config(tmp_path)
    protocols = ["raq", "pointwise", "pairwise", "paper"]
    for key, unanswerable_accuracy, above in ((expert, 1.0, 1.0), (inventor, 0.0, 0.0)):
        report = check_judges(config, ANSWERABLE, {}, backends_with(key), judges=config.judge_list,
                              protocols=protocols, repeats=2, log_dir=tmp_path, progress=False,
                              pool=[*ANSWERABLE, *UNANSWERABLE])
        assert report["dataset"]["questions"] == report["dataset"]["ladders"] == 8
        assert report["dataset"]["unanswerable_ladders"] == 2 and report["dataset"]["skipped"] == {}
        ladders = {ladder["question_id"]: ladder for ladder in report["ladders"]}
        own = [ladder for ladder in ladders.values() if not ladder["gold_answers"]]
        assert len(own) == 2 and [r["name"] for r in own[0]["rungs"]] == [
            "abstain", "abstain_sentence", "invented", "invented_sentence"]
        assert [r["tier"] for r in own[0]["rungs"]] == [0, 0, 2, 2]
        assert {r["name"]: r["tier"] for r in ladders["a0"]["rungs"]}["abstain"] == 2
        for check in report["checks"]:
            m = check["metrics"]
            assert m["subsets"]["answerable"]["pairwise_accuracy"]["mean"] == 1.0, check["protocol"]
            assert m["subsets"]["unanswerable"]["pairwise_accuracy"]["mean"] == unanswerable_accuracy
            assert m["abstention_above_invented"]["mean"] == above and m["abstention_above_invented"]["n"] == 2
            assert m["subsets"]["unanswerable"]["questions_judged"] == 2
        assert [c["protocol"] for c in report["checks"]] == protocols
        table = format_check(report)
        assert "unanswerable" in table.splitlines()[0] and "abstains first" in table.splitlines()[0]


def test_a_check_without_unanswerable_questions_writes_what_it_always_wrote(tmp_path: Path) -> None:
    result = raq.check_judge(squad_study(tmp_path), questions=3, repeats=1, backends=backends_with(expert),
                             progress=False)
    report = result.report
    assert set(report) == {"format_version", "created", "environment", "dataset", "rungs", "config", "checks",
                           "ladders"}
    assert set(report["dataset"]) == {"source", "split", "seed", "questions", "ladders", "skipped"}
    assert "subsets" not in report["checks"][0]["metrics"]
    assert "abstention_above_invented" not in report["checks"][0]["metrics"]
    assert set(report["ladders"][0]) == {"question_id", "question", "gold_answers", "rungs"}
    assert str(result).splitlines()[0].split() == ["judge", "protocol", "orders", "n", "pairwise", "acc", "wrong",
                                                   "first", "tau", "position", "cons.", "stability", "longer",
                                                   "wins", "s/question", "passed"]


def squad2_study(tmp_path: Path, **data: object) -> Path:
    return study_config(tmp_path, n_questions=8, judge={"orders": 2},
                        data={"source": "squad-v2.0-dev", "n_questions": 8, "seed": 3, **data})


def test_a_squad2_study_is_checked_on_a_quarter_of_unanswerable_questions_at_least(tmp_path: Path) -> None:
    for key, passed in ((expert, True), (inventor, False)):
        result = raq.check_judge(squad2_study(tmp_path, unanswerable_share=0.0), questions=8, repeats=2,
                                 backends=backends_with(key), progress=False)
        report = result.report
        assert report["dataset"]["unanswerable_ladders"] == 2  # none in the study's sample: 2 of 8 added
        metrics = report["checks"][0]["metrics"]
        assert metrics["subsets"]["answerable"]["questions_judged"] == 6
        assert metrics["subsets"]["answerable"]["pairwise_accuracy"]["mean"] == 1.0
        assert metrics["abstention_above_invented"]["mean"] == (1.0 if passed else 0.0)
        assert result.passed is passed and set(result.table()) >= {"unanswerable_accuracy", "answerable_accuracy"}
    excluded = raq.check_judge(squad2_study(tmp_path, unanswerable="exclude"), questions=4, repeats=0,
                               backends=backends_with(expert), progress=False)
    assert "unanswerable_ladders" not in excluded.report["dataset"]
    assert all(ladder["gold_answers"] for ladder in excluded.report["ladders"])
