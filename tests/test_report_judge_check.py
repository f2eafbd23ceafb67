"""The judge check in the reports (judge_check.json read back: figures, n/a for what is missing,
broken files, example ladders) and the scoring protocols' judgements in the study's report and
judge figures. Ladders from raq.judge_ladder and figures from raq.judge_accuracy, on hand-made
judgements; no model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from raq.judge import ranks_from_scores
from raq.judge_accuracy import check_metrics, meets
from raq.judge_ladder import DEFAULT_RUNGS, Ladder, build_ladders
from raq.judge_quality import POINTWISE_NOTE, failures, judge_report, pair_order_bias, position_bias
from raq.records import Judgement, Question, to_dict
from raq.report_judge_check import (
    CHECK_FILE,
    check_row,
    judge_check_section,
    judge_rows,
    ladder_examples,
    position_note,
    primary_check,
    read_check,
    summary_lines,
    verdict_view,
)

HOSTILE_GOLD = "<script>alert(1)</script> Alice Smith"
CONTEXT = ("Alice Smith wrote the book in Paris in 1999. It sold 40000 copies, and Bob Jones reviewed it for "
           "The Times in London.")
JUDGE = "qj"


def questions() -> list[Question]:
    golds = [(HOSTILE_GOLD, "Alice Smith"), ("Paris",), ("1999",), ("Bob Jones",), ("London",)]
    texts = ["Who wrote the book?", "Where was it written?", "When was it written?", "Who reviewed it?",
             "Where is The Times?"]
    return [Question(question_id=f"q{n}", question=text, context=CONTEXT, gold_answers=list(gold), title="Book")
            for n, (text, gold) in enumerate(zip(texts, golds))]


def ladders() -> list[Ladder]:
    built, skipped = build_ladders(questions(), questions(), DEFAULT_RUNGS, seed=3)
    assert len(built) == 5 and not skipped
    return built


def listwise(ladder: Ladder, index: int, n: int) -> Judgement:
    """A listwise judgement: correct rungs first, except that question 1 has its wrong sentence
    first and question 2's second order swaps the first two."""
    names = [r.name for r in ladder.rungs]
    best = sorted(names, key=lambda r: ladder.tiers()[r])
    if n == 1:
        best.insert(0, best.pop(best.index("wrong_sentence")))
    if n == 2 and index == 1:
        best[0], best[1] = best[1], best[0]
    order = names if index == 0 else names[::-1]
    return Judgement(question_id=ladder.question.question_id, judge_id=JUDGE, protocol="raq", order=order,
                     labels=[chr(65 + i) for i in range(len(order))],
                     ranks={r: float(best.index(r) + 1) for r in names}, ok=True, attempts=1,
                     raw_replies=['{"ranking": "</pre><script>x</script>"}'], seconds=2.0, order_index=index)


def pointwise(ladder: Ladder, ok: bool = True) -> Judgement:
    """Correct rungs graded 2 (the sentence 1.8 in expectation), wrong ones 0 (the wrong sentence 0.4)."""
    expected = {"gold_sentence": 1.8, "wrong_sentence": 0.4}
    scores = {r.name: expected.get(r.name, 2.0 if r.tier == 0 else 0.0) for r in ladder.rungs}
    details = [{"model": name, "reply": str(round(score)), "grade": round(score), "score": score,
                "grade_probs": None, "grade_mass": None, "attempts": 1} for name, score in scores.items()]
    if not ok:
        details[-1].update(grade=None, attempts=3)
    return Judgement(question_id=ladder.question.question_id, judge_id=JUDGE, protocol="pointwise",
                     order=list(scores), labels=[], ranks=ranks_from_scores(scores) if ok else {}, ok=ok,
                     attempts=sum(d["attempts"] for d in details), raw_replies=[d["reply"] for d in details],
                     error="" if ok else "no grade", seconds=1.0, scores=scores if ok else {}, details=details)


def check(protocol: str, judgements: list[Judgement], repeats: list[Judgement], orders: int,
          built: list[Ladder], minimum: float = 0.9) -> dict[str, Any]:
    """A check as judge_check writes it, with raq.judge_accuracy's real figures."""
    metrics = check_metrics(built, judgements, repeats, orders=orders, alpha=0.05, seed=1)
    return {"judge": JUDGE, "protocol": protocol, "orders": orders, "settings": {"id": JUDGE, "protocol": protocol},
            "backend": {}, "min_accuracy": minimum, "passed": meets(metrics, minimum), "metrics": metrics,
            "judgements": [to_dict(j) for j in judgements], "repeats": [to_dict(j) for j in repeats]}


def judge_check_report() -> dict[str, Any]:
    """judge_check.json of judge ``qj``: its own protocol (raq, 2 orders) and pointwise."""
    built = ladders()
    ranked = [listwise(ladder, index, n) for n, ladder in enumerate(built) for index in range(2)]
    graded = [pointwise(ladder, ok=n != 4) for n, ladder in enumerate(built)]
    checks = [check("raq", ranked, [listwise(ladder, 0, n) for n, ladder in enumerate(built)], 2, built, 0.95),
              check("pointwise", graded, [], 1, built, minimum=0.5)]
    return {"format_version": 1, "created": "2024-02-02T10:00:00", "environment": {},
            "dataset": {"source": "squad-v1.1-dev", "split": "validation", "seed": 3, "questions": 5, "ladders": 5,
                        "skipped": {}},
            "rungs": list(DEFAULT_RUNGS), "checks": checks,
            "config": {"judge": {"id": JUDGE, "protocol": "raq", "orders": 2}, "stats": {"alpha": 0.05}},
            "ladders": [{"question_id": ladder.question.question_id, "question": ladder.question.question,
                         "gold_answers": ladder.question.gold_answers,
                         "rungs": [{"name": r.name, "text": r.text, "tier": r.tier} for r in ladder.rungs]}
                        for ladder in built]}


def write_check(run_dir: Path, report: Any) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CHECK_FILE
    path.write_text(report if isinstance(report, str) else json.dumps(report), encoding="utf-8")
    return path


# --- judge_check.json read back -----------------------------------------------------------------
def test_each_check_is_a_row_of_its_real_figures(tmp_path):
    report = judge_check_report()
    write_check(tmp_path, report)
    section = judge_check_section(tmp_path)
    assert section["state"] == "ok" and section["level"] == "95%"
    listwise_row, pointwise_row = section["rows"]
    m = report["checks"][0]["metrics"]
    accuracy = m["pairwise_accuracy"]
    assert 0.5 < accuracy["mean"] < 1 and accuracy["ci_low"] is not None
    assert listwise_row["accuracy"] == (f"{100 * accuracy['mean']:.1f}% [{100 * accuracy['ci_low']:.1f}%, "
                                        f"{100 * accuracy['ci_high']:.1f}%]")
    assert listwise_row["wrong_first"] == f"{100 * m['wrong_first']['mean']:.1f}%" != "0.0%"
    assert listwise_row["position"] == "80.0%"  # question 2's orders disagree
    assert listwise_row["stability"] == "100.0%" and listwise_row["questions"] == "5 of 5"
    assert listwise_row["tau"] == f"{m['kendall_tau']['mean']:.2f}"
    assert listwise_row["seconds"] == "4.0" and listwise_row["failed"] == "0 of 10"
    assert listwise_row["passed"] == "no (≥ 95.0%)" and listwise_row["orders"] == "2"
    assert pointwise_row["protocol"] == "pointwise" and pointwise_row["position"] == "n/a"  # no order shown
    assert pointwise_row["accuracy"].startswith("100.0%") and pointwise_row["stability"] == "n/a"
    assert pointwise_row["failed"] == "1 of 5" and pointwise_row["questions"] == "4 of 5"
    assert pointwise_row["passed"] == "yes (≥ 50.0%)"
    per_rung = {r["rung"]: r for r in section["primary"]["rungs"]}
    assert list(per_rung) == [r for r in DEFAULT_RUNGS if r in m["rungs"]]
    assert per_rung["wrong_sentence"]["ranked_first"] == "20.0%" and per_rung["wrong_sentence"]["tier"] == "wrong"
    assert per_rung["gold"]["n"] == "5" and per_rung["gold"]["tier"] == "correct"


def test_missing_figures_are_na():
    row = check_row({"judge": "j", "protocol": "pairwise", "metrics": {"pairwise_accuracy": {"mean": 0.75},
                                                                       "kendall_tau": None, "stability": {}}})
    assert row["accuracy"] == "75.0%"  # no interval
    for key in ("all_correct", "wrong_first", "tau", "position", "stability", "length", "seconds", "orders"):
        assert row[key] == "n/a", key
    assert row["passed"] == "no" and row["failed"] == "n/a of n/a"
    nan = check_row({"metrics": {"pairwise_accuracy": {"mean": float("nan"), "ci_low": None, "ci_high": 1.0},
                                 "seconds_per_question": 2.5}})
    assert nan["accuracy"] == "n/a" and nan["seconds"] == "2.5" and nan["judge"] == "n/a"


def test_the_primary_check_is_the_study_judges_own_protocol():
    report = judge_check_report()
    assert primary_check(report)["protocol"] == "raq"
    report["checks"].reverse()
    assert primary_check(report)["protocol"] == "raq"
    report["config"] = {"judges": [{"id": "other", "protocol": "raq"}]}
    assert primary_check(report)["protocol"] == "pointwise"  # no check of it: the first


def test_example_ladders_show_each_rung_with_its_rank_and_the_misjudged_one():
    report = judge_check_report()
    examples = ladder_examples(report, report["checks"][0], n=1)
    assert [e["question_id"] for e in examples] == ["q0", "q1"]  # q1: the first misjudged one, added
    first, misjudged = examples
    assert not first["misjudged"] and misjudged["misjudged"]
    assert first["gold"] == [HOSTILE_GOLD, "Alice Smith"]
    rows = {r["rung"]: r for r in first["rows"]}
    assert rows["gold"]["text"] == HOSTILE_GOLD and rows["gold"]["tier"] == "correct" and rows["gold"]["rank"] == "1.0"
    assert rows["abstain"]["tier"] == "wrong" and not first["scored"]
    assert {r["rung"] for r in misjudged["rows"] if r["bad"]} == {"wrong_sentence"}
    graded = ladder_examples(report, report["checks"][1])
    assert len(graded) == 3 and graded[0]["scored"] and graded[0]["graded"]
    assert {r["rung"]: r["score"] for r in graded[0]["rows"]}["gold_sentence"] == "1.80"


def test_without_a_file_the_section_says_how_to_check(tmp_path):
    section = judge_check_section(tmp_path / "run")
    assert section["state"] == "missing"
    assert section["command"] == f"python -m raq judge-check --run {tmp_path / 'run'}"
    assert summary_lines(tmp_path / "run") == []


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"checks": "none"}', '{"checks": [3]}',
                                     '{"checks": [{"metrics": []}]}', "\udc80"])
def test_an_unreadable_file_is_an_error_not_a_crash(tmp_path, content):
    path = tmp_path / CHECK_FILE
    path.write_bytes(b"\xff\xfe{" if content == "\udc80" else content.encode())
    with pytest.raises(ValueError):
        read_check(tmp_path)
    section = judge_check_section(tmp_path)
    assert section["state"] == "error" and section["error"].split(":")[0].endswith("Error")
    assert summary_lines(tmp_path)[0].startswith(f"- {CHECK_FILE} could not be read: ")


def test_what_a_readable_file_lacks_is_na_and_broken_ladders_are_an_error(tmp_path):
    write_check(tmp_path, '{"checks": [{"metrics": {}}], "ladders": [{"question_id": 1}]}')
    section = judge_check_section(tmp_path)
    assert section["state"] == "ok" and section["rows"][0]["accuracy"] == "n/a"
    assert section["primary"]["rungs"] == [] and section["primary"]["ladders"] == []
    assert section["dataset"] == {"source": None, "split": None, "questions": None, "ladders": None}
    write_check(tmp_path, '{"checks": [{"metrics": {}, "judgements": [{"question_id": 1}]}], '
                          '"ladders": [{"question_id": 1, "rungs": "x"}]}')
    assert judge_check_section(tmp_path)["state"] == "error"
    write_check(tmp_path, '{"checks": []}')
    assert judge_check_section(tmp_path)["rows"] == [] and summary_lines(tmp_path) == []


def test_summary_lines_name_judge_protocol_accuracy_wrong_first_and_passed(tmp_path):
    report = judge_check_report()
    write_check(tmp_path, report)
    first, second = summary_lines(tmp_path)
    accuracy = report["checks"][0]["metrics"]["pairwise_accuracy"]
    assert first.startswith(f"- {JUDGE} (raq protocol): pairwise accuracy {100 * accuracy['mean']:.1f}% "
                            f"(95% interval {100 * accuracy['ci_low']:.1f}% to {100 * accuracy['ci_high']:.1f}%)")
    assert "on 5 questions; wrong answer ranked first" in first and first.endswith("passed: no (≥ 95.0%)")
    assert second.startswith(f"- {JUDGE} (pointwise protocol): pairwise accuracy 100.0%")
    assert "on 4 questions" in second and second.endswith("passed: yes (≥ 50.0%)")


# --- judge_quality on the scoring protocols ---------------------------------------------------------
def pairwise(qid: str, winners: dict[tuple[str, str], str], ok: bool = True) -> Judgement:
    details = [{"shown": list(shown), "reply": "A" if winner == shown[0] else "B", "winner": winner, "probs": None,
                "mass": None, "attempts": 2 if shown == ("b", "a") else 1} for shown, winner in winners.items()]
    return Judgement(question_id=qid, judge_id=JUDGE, protocol="pairwise", order=["a", "b", "c"], labels=["A", "B"],
                     ranks={"a": 1.0, "b": 2.0, "c": 3.0} if ok else {}, ok=ok,
                     attempts=sum(d["attempts"] for d in details), raw_replies=[],
                     scores={"a": 2.0, "b": 1.0, "c": 0.0}, details=details)


def consistent() -> dict[tuple[str, str], str]:
    return {("a", "b"): "a", ("b", "a"): "a", ("a", "c"): "a", ("c", "a"): "a", ("b", "c"): "b", ("c", "b"): "b"}


def test_pairwise_order_bias_from_the_details():
    first_favoured = {**consistent(), ("a", "b"): "a", ("b", "a"): "b"}  # each order: the first shown wins
    second_favoured = {**consistent(), ("b", "c"): "c"}  # each order of b, c: the second shown wins
    judgements = [pairwise("q1", consistent()), pairwise("q2", first_favoured), pairwise("q3", first_favoured),
                  pairwise("q4", second_favoured), pairwise("q5", first_favoured, ok=False)]  # failed: left out
    bias = position_bias(judgements)
    assert bias == pair_order_bias(judgements)
    assert bias["judgements"] == 4 and bias["comparisons"] == 24 and bias["pairs_in_both_orders"] == 12
    assert bias["pair_consistency"] == pytest.approx(9 / 12) and bias["inconsistent_pairs"] == 3
    assert bias["first_shown_win_rate"] == pytest.approx((12 + 2 - 1) / 24) and bias["chance"] == 0.5
    assert bias["first_shown_favoured_pairs"] == 2
    assert bias["first_shown_p_value"] == pytest.approx(1.0)  # 2 of 3: a sign test finds nothing
    assert position_bias([pairwise("q1", consistent())])["first_shown_win_rate"] == 0.5
    assert position_bias([pairwise("q1", consistent())])["first_shown_p_value"] is None
    assert pair_order_bias([pairwise("q1", consistent(), ok=False)]) == {"note": "no successful judgements"}


def test_pointwise_shows_no_order_and_retries_count_per_answer():
    graded = [pointwise(ladder) for ladder in ladders()]
    assert position_bias(graded) == {"note": POINTWISE_NOTE}
    assert failures(graded)["first_reply_invalid"] == 0  # attempts add up over the answers: no retry
    retried = pointwise(ladders()[0], ok=False)
    assert failures([*graded, retried])["first_reply_invalid"] == 1
    assert failures([pairwise("q1", consistent())])["first_reply_invalid"] == 1  # one comparison asked twice


def test_listwise_judgements_are_the_only_ones_looked_at_when_there_are_some():
    ranked = [listwise(ladder, index, n) for n, ladder in enumerate(ladders()) for index in range(2)]
    mixed = position_bias([*ranked, *(pointwise(ladder) for ladder in ladders())])
    assert mixed == position_bias(ranked) and "first_position_win_rate" in mixed


def test_the_judge_table_rows_of_each_protocol():
    stats = {"judging": {"judges": {
        "pw": {"orders": 1, "judgements": 4, "failed_after_retries": 0,
               "position_bias": pair_order_bias([pairwise("q1", {**consistent(), ("b", "c"): "c"})]),
               "f1_agreement": {"mean_spearman": 0.5}},
        "pt": {"orders": 1, "judgements": 4, "position_bias": {"note": POINTWISE_NOTE}, "f1_agreement": {}}}}}
    pw, pt = judge_rows(stats)
    assert pw["first_wins"] == pytest.approx(2 / 6) and pw["chance"] == 0.5
    assert pw["flips"] == pytest.approx(1 / 3) and pw["p_value"] == pytest.approx(1.0)
    assert pw["note"].startswith("pairwise: ") and pw["spearman"] == 0.5
    assert pt["note"] == POINTWISE_NOTE and pt["first_wins"] is None and pt["flips"] is None


def test_judge_report_of_a_pointwise_judge():
    import pandas as pd

    report = judge_report([pointwise(ladder) for ladder in ladders()], pd.DataFrame(), {JUDGE: 1})
    assert report["judges"][JUDGE]["position_bias"] == {"note": POINTWISE_NOTE}
    assert report["judges"][JUDGE]["failed_after_retries"] == 0


# --- the scoring protocols in the examples and the position figure ------------------------------------
def test_verdicts_of_the_scoring_protocols_show_scores_and_grades():
    view = verdict_view(pointwise(ladders()[0]))
    assert not view["listwise"] and view["shown"] == [] and view["how"].startswith("each answer graded")
    assert view["ranked"][-1] == ["wrong", "abstain"]  # tied: one group
    assert view["scores"][0] == ("gold", "2.00", "2") and ("gold_sentence", "1.80", "2") in view["scores"]
    view = verdict_view(pairwise("q1", consistent()))
    assert view["shown"] == [] and view["ranked"] == [["a"], ["b"], ["c"]]
    assert view["scores"] == [("a", "2.00", None), ("b", "1.00", None), ("c", "0.00", None)]
    assert view["compared"][:2] == ["a vs b: a", "b vs a: a"] and len(view["compared"]) == 6
    view = verdict_view(listwise(ladders()[0], 1, 0))
    assert view["listwise"] and view["shown"][0] == ("A", "abstain") and view["scores"] == []


def test_why_there_is_no_position_figure():
    graded, ranked = [pointwise(ladder) for ladder in ladders()], [listwise(ladders()[0], 0, 0)]
    assert "pointwise protocol shows the judge no order" in position_note(graded, drawn=False)
    assert position_note(graded, drawn=False).endswith("so there is no position-bias figure.")
    assert position_note([*ranked, *graded], drawn=True).endswith("not in the position-bias figure.")
    assert position_note(ranked, drawn=True) is None
    assert "one fixed order" in position_note(ranked, drawn=False)


# --- a check with questions the text does not answer -------------------------------------------------
def mixed_report() -> dict[str, Any]:
    """judge_check.json of one raq check on the 5 questions above and 2 without gold answers: the
    judge ranks by tier, except that it puts the invented sentence first for question u1."""
    unanswerable = [Question(question_id=f"u{n}", question=text, context=CONTEXT, gold_answers=[], title="Book")
                    for n, text in enumerate(["Who published the book?", "How many copies were burned?"])]
    built, skipped = build_ladders([*questions(), *unanswerable], questions(), DEFAULT_RUNGS, seed=3)
    assert len(built) == 7 and not skipped
    judgements = []
    for ladder in built:
        best = sorted((r.name for r in ladder.rungs), key=lambda name: ladder.tiers()[name])
        if ladder.question.question_id == "u1":
            best.insert(0, best.pop(best.index("invented_sentence")))
        judgements.append(Judgement(question_id=ladder.question.question_id, judge_id=JUDGE, protocol="raq",
                                    order=best, labels=[chr(65 + i) for i in range(len(best))],
                                    ranks={r: float(best.index(r) + 1) for r in best}, ok=True, attempts=1,
                                    raw_replies=["{}"], seconds=1.0))
    report = judge_check_report()
    report["checks"] = [check("raq", judgements, [], 1, built, 0.9)]
    report["dataset"].update(questions=7, ladders=7, unanswerable_ladders=2)
    report["ladders"] = [{"question_id": ladder.question.question_id, "question": ladder.question.question,
                          "gold_answers": ladder.question.gold_answers,
                          "rungs": [{"name": r.name, "text": r.text, "tier": r.tier} for r in ladder.rungs]}
                         for ladder in built]
    return report


def render(section: dict[str, Any]) -> str:
    from raq.html_report import environment

    return environment().get_template("judge_check.html.j2").render(judge_check=section)


def test_a_check_with_unanswerable_ladders_shows_each_subset_and_each_rungs_own_tier(tmp_path):
    write_check(tmp_path, mixed_report())
    section = judge_check_section(tmp_path)
    answerable, unanswerable = section["subset_rows"]
    assert answerable["subset"] == "questions with an answer in the text" and answerable["questions"] == "5 of 5"
    assert answerable["accuracy"].startswith("100.0%") and answerable["abstention"] == "n/a"
    assert unanswerable["subset"] == "questions without one" and unanswerable["questions"] == "2 of 2"
    assert unanswerable["accuracy"].startswith("75.0%") and unanswerable["abstention"] == "50.0%"
    assert section["unanswerable"] == 2
    tables = {table["name"]: {r["rung"]: r for r in table["rungs"]} for table in section["primary"]["subsets"]}
    assert tables["questions with an answer in the text"]["abstain"]["tier"] == "wrong"
    assert tables["questions without one"]["abstain"]["tier"] == "correct"
    assert tables["questions without one"]["invented_sentence"]["ranked_first"] == "50.0%"
    assert list(tables["questions without one"]) == ["abstain", "abstain_sentence", "invented", "invented_sentence"]
    overall = {r["rung"]: r["tier"] for r in section["primary"]["rungs"]}
    assert overall["abstain"] == "wrong or correct" and overall["invented"] == "wrong" and overall["gold"] == "correct"
    examples = section["primary"]["ladders"]
    assert [e["question_id"] for e in examples] == ["q0", "q1", "q2", "u1"]  # a misjudged unanswerable one added
    assert examples[-1]["gold"] == [] and examples[-1]["misjudged"]
    assert {r["rung"] for r in examples[-1]["rows"] if r["bad"]} == {"invented_sentence"}
    line = summary_lines(tmp_path)[0]
    assert "on 7 questions; on questions with an answer in the text 100.0%; on questions without one 75.0%, a " \
           "correct abstention above every invented answer 50.0%; wrong answer ranked first" in line
    html = render(section)
    assert "Questions with and without an answer in the text" in html and "<td>questions without one</td>" in html
    assert "Per rung: judge qj, raq protocol, questions without one" in html
    assert "No gold answer: the text does not contain the answer" in html and "<code>invented_sentence</code>" in html


def test_a_check_without_unanswerable_ladders_shows_no_subsets(tmp_path):
    write_check(tmp_path, judge_check_report())
    section = judge_check_section(tmp_path)
    assert section["subset_rows"] == [] and section["primary"]["subsets"] == [] and section["unanswerable"] is None
    html = render(section)
    assert "Questions with and without" not in html and "No gold answer" not in html
    assert html.count("Per rung: judge qj, raq protocol</h3>") == 1
    assert all("questions without one" not in line and "abstention" not in line for line in summary_lines(tmp_path))
