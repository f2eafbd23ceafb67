"""Unanswerable questions through the analysis and the report: abstention and hallucination rates
with their intervals, SQuAD 2.0 scores, the tests on each subset; and a whole study on scripted
backends whose questions include unanswerable ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import raq
from raq.abstention import ABSTENTION
from raq.analysis import answer_scores
from raq.backends.base import Request
from raq.backends.fake import FakeBackend, FakeBackends
from raq.html_report import render_html_report
from raq.prompts import ABSTAIN_INSTRUCTION, COMPLETION_ABSTAIN_LINE
from raq.records import Answer, Question
from raq.report_unanswerable import level, unanswerable_lines, unanswerable_values
from raq.unanswerable import SUMMARY_COLUMNS, proportion, unanswerable_frame, unanswerable_statistics
from study_fakes import paragraph_of, quick_analysis, stub_gguf, write_config


def answer(text: str, finish: str = "stop", abstained: bool | None = None) -> Answer:
    return Answer("q", "m", text, "", "chat", 10, 3, 0.1, 0.1, 0.2, 0.3, 100.0, 10.0, 3, 3, 10.0, finish, 16,
                  abstained=abstained)


ANSWERABLE = Question("q", "Who won?", "Denver won.", ["Denver", "Denver Broncos"])
UNANSWERABLE = Question("q", "Who lost?", "Denver won.", [])


@pytest.mark.parametrize("question, text, abstained, em, f1", [
    (UNANSWERABLE, ABSTENTION, True, 1.0, 1.0),
    (UNANSWERABLE, "The passage does not mention who lost.", True, 1.0, 1.0),
    (UNANSWERABLE, "Carolina", False, 0.0, 0.0),
    (ANSWERABLE, ABSTENTION, True, 0.0, 0.0),
    (ANSWERABLE, "Denver", False, 1.0, 1.0),
    (ANSWERABLE, "The Denver team", False, 0.0, 2 / 3),
])
def test_answer_scores_follow_squad_v2(question: Question, text: str, abstained: bool, em: float, f1: float) -> None:
    scores = answer_scores(answer(text), question)
    assert scores == {"answerable": question.answerable, "abstained": abstained, "em": em,
                      "f1": pytest.approx(f1)}


UNKNOWN_CAUSE = Question("q", "What caused the fire?", "The cause is unknown.", ["unknown", "The cause is unknown"])


@pytest.mark.parametrize("question, text", [
    (UNKNOWN_CAUSE, "Unknown."),  # the gold answer, though it reads as an abstention
    (UNKNOWN_CAUSE, "Not known"),
    (UNKNOWN_CAUSE, ABSTENTION),
    (ANSWERABLE, "Denver"),
    (ANSWERABLE, "The Denver team"),
    (ANSWERABLE, ABSTENTION),
    (ANSWERABLE, ""),
])
def test_answerable_questions_score_the_text_as_squad_v1_does(question: Question, text: str) -> None:
    from raq.metrics import exact_match, f1

    scores = answer_scores(answer(text), question)
    assert (scores["em"], scores["f1"]) == (exact_match(text, question.gold_answers), f1(text, question.gold_answers))
    assert answer_scores(answer("Unknown."), UNKNOWN_CAUSE)["em"] == 1.0


def test_abstentions_are_read_from_the_text_and_a_skipped_answer_scores_nothing() -> None:
    assert answer_scores(answer("Carolina", abstained=True), UNANSWERABLE)["em"] == 0.0  # today's detector decides
    assert answer_scores(answer("The text does not say.", abstained=None), UNANSWERABLE)["em"] == 1.0
    skipped = answer_scores(answer("", finish="skipped", abstained=False), UNANSWERABLE)
    assert skipped["abstained"] is False and skipped["em"] == skipped["f1"] == 0.0


def test_wilson_intervals_match_the_textbook_values() -> None:
    # Wilson score interval for 3 of 10 at 95%: 0.1078, 0.6032 (Newcombe 1998, method 3)
    entry = proportion(3, 10, alpha=0.05)
    assert entry["value"] == 0.3 and entry["count"] == 3 and entry["of"] == 10
    assert entry["ci_low"] == pytest.approx(0.1078, abs=1e-4) and entry["ci_high"] == pytest.approx(0.6032, abs=1e-4)
    assert proportion(0, 0, 0.05)["value"] is None


def table_of(rows: list[tuple[str, str, bool, bool, float]]) -> pd.DataFrame:
    """(question, model, answerable, abstained, rank) rows as a results table."""
    frame = pd.DataFrame(rows, columns=["question_id", "model_id", "answerable", "abstained", "rank"])
    right = frame["abstained"] != frame["answerable"]
    frame["em"] = frame["f1"] = right.astype(float)
    frame["judged"] = True
    return frame


def small_table() -> pd.DataFrame:
    rows = []
    for i in range(8):
        answerable = i < 4
        # "careful" abstains on every unanswerable question and on one answerable one; "bold" never abstains
        careful_abstains = not answerable or i == 0
        rows += [(f"q{i}", "careful", answerable, careful_abstains, 1.0 if not answerable else 1.5),
                 (f"q{i}", "bold", answerable, False, 2.0 if not answerable else 1.5)]
    return table_of(rows)


def test_unanswerable_statistics_count_every_kind() -> None:
    result = unanswerable_statistics(small_table(), ["careful", "bold"], alpha=0.05, seed=1)
    assert result is not None
    assert result["questions"] == {"answerable": 4, "unanswerable": 4, "share_unanswerable": 0.5}
    careful, bold = result["models"]["careful"], result["models"]["bold"]
    assert (careful["correct_abstentions"]["count"], careful["correct_abstentions"]["of"]) == (4, 4)
    assert careful["hallucinations"]["count"] == 0 and careful["wrong_abstentions"]["count"] == 1
    assert careful["abstention_rate"]["value"] == 5 / 8
    assert bold["hallucinations"]["value"] == 1.0 and bold["correct_abstentions"]["value"] == 0.0
    assert bold["wrong_abstentions"]["value"] == 0.0
    assert careful["has_ans_em"]["value"] == 0.75 and careful["no_ans_em"]["value"] == 1.0
    assert careful["mean_rank"] == {"answerable": 1.5, "unanswerable": 1.0}
    low, high = careful["em"]["ci_low"], careful["em"]["ci_high"]
    assert low <= careful["em"]["value"] <= high
    unanswerable = result["subsets"]["unanswerable"]
    assert unanswerable["n_questions"] == 4 and unanswerable["summary"]["careful"]["mean"] == 1.0
    assert result["subsets"]["answerable"]["blocked"]["friedman"].get("p_value") is None  # all ties
    frame = unanswerable_frame(result)
    assert list(frame.index) == ["careful", "bold"] and frame.at["bold", "hallucinations"] == 1.0


def test_skipped_answers_are_left_out_of_the_rates_and_counted() -> None:
    table = small_table()
    table["finish_reason"] = "stop"
    skipped = (table["model_id"] == "bold") & table["question_id"].isin(["q3", "q4"])  # one answerable, one not
    table.loc[skipped, "finish_reason"] = "skipped"
    table.loc[skipped, ["em", "f1"]] = 0.0
    result = unanswerable_statistics(table, ["careful", "bold"], alpha=0.05, seed=1)
    assert result is not None
    bold, careful = result["models"]["bold"], result["models"]["careful"]
    assert bold["skipped"] == 2 and careful["skipped"] == 0
    assert (bold["hallucinations"]["count"], bold["hallucinations"]["of"]) == (3, 3)
    assert (bold["wrong_abstentions"]["count"], bold["wrong_abstentions"]["of"]) == (0, 3)
    assert bold["abstention_rate"]["of"] == 6 and careful["abstention_rate"]["of"] == 8
    frame = unanswerable_frame(result)
    assert frame.at["bold", "skipped"] == 2 and frame.at["careful", "skipped"] == 0
    assert set(SUMMARY_COLUMNS) <= set(frame.columns) and "skipped" in SUMMARY_COLUMNS
    stats = {"unanswerable": result, "alpha": 0.05}
    text = "\n".join(unanswerable_lines(stats))
    assert "(2 skipped answers, with no reply, left out of them)" in text
    assert "wrong abstentions 0 [" in text and "(2 skipped answers left out)" in text
    assert unanswerable_values(stats)["rows"][1]["skipped"] == 2  # type: ignore[index]


def test_skipped_answers_are_no_abstentions_in_the_results_table() -> None:
    from dataclasses import replace

    from raq.analysis import results_table

    skipped = replace(answer("", finish="skipped"), question_id="u")
    table = results_table([replace(UNANSWERABLE, question_id="u")], [skipped], [], {"j": 1})
    result = unanswerable_statistics(table, ["m"], alpha=0.05, seed=1)
    assert result is not None
    figures = result["models"]["m"]
    assert figures["skipped"] == 1 and figures["hallucinations"]["of"] == 0
    assert figures["hallucinations"]["value"] is None and figures["abstention_rate"]["of"] == 0


def test_the_interval_level_follows_alpha() -> None:
    result = unanswerable_statistics(small_table(), ["careful", "bold"], alpha=0.1, seed=1)
    assert result is not None and result["alpha"] == 0.1 and "at 90%" in result["method"]["rates"]
    text = "\n".join(unanswerable_lines({"unanswerable": result, "alpha": 0.1}))
    assert "Rates with Wilson 90% intervals" in text and "95%" not in text
    assert level(0.005) == "99.5%" and level(0.05) == "95%"


def test_the_report_examples_score_as_the_table_and_say_there_is_no_gold_answer() -> None:
    from dataclasses import replace
    from types import SimpleNamespace

    from raq.analysis import results_table
    from raq.html_report import _examples, _render

    question = replace(UNANSWERABLE, question_id="u")
    answers = [replace(answer(ABSTENTION), question_id="u", model_id="careful"),
               replace(answer("Carolina"), question_id="u", model_id="bold")]
    table = results_table([question], answers, [], {"j": 1})
    results = SimpleNamespace(questions=[question], answers=answers, judgements=[], table=table)
    [example] = _examples(results)  # type: ignore[arg-type]
    shown = {row["model"]: (row["em"], row["f1"]) for row in example["answers"]}
    assert shown == {"careful": (1.0, 1.0), "bold": (0.0, 0.0)}
    assert shown == {row.model_id: (row.em, row.f1) for row in table.itertuples()}
    html = _render("examples.html.j2", examples=[example])
    assert "No gold answer: the text does not contain the answer" in html and "Gold answers:" not in html


def test_a_study_without_unanswerable_questions_has_no_such_statistics() -> None:
    table = small_table()
    assert unanswerable_statistics(table[table["answerable"]], ["careful", "bold"], 0.05, 1) is None
    assert unanswerable_values({}) is None and unanswerable_lines({}) == []


def test_the_report_lines_give_rates_and_subset_tests() -> None:
    stats: dict[str, Any] = {"unanswerable": unanswerable_statistics(small_table(), ["careful", "bold"], 0.05, 1),
                             "n_questions": 8, "blocked": {"friedman": {"p_value": 0.04, "kendalls_w": 0.5}},
                             "paper": {"kruskal": {"p_value": 0.2}}}
    text = "\n".join(unanswerable_lines(stats))
    assert "## Questions the text cannot answer" in text and "4 of 8 questions" in text
    assert "- careful: correct abstentions 1 [" in text and "- bold: correct abstentions 0 [" in text
    assert "- all (8 judged questions): Friedman p = 0.04" in text
    assert "- unanswerable (4 judged questions)" in text


# --- a whole study on scripted backends --------------------------------------------------------

UNANSWERABLE_PARAGRAPHS = {"1", "3", "4", "6"}


def write_squad_v2(path: Path, n: int) -> Path:
    """HF-schema JSON Lines: paragraph i asks one question; those in UNANSWERABLE_PARAGRAPHS have no answer."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            unanswerable = str(i) in UNANSWERABLE_PARAGRAPHS
            answers = {"text": [], "answer_start": []} if unanswerable else {"text": [f"gold{i}"], "answer_start": [40]}
            f.write(json.dumps({"id": f"q{i}", "title": f"T{i}", "question": f"What does paragraph {i} say?",
                                "context": f"Paragraph {i} is about item {i}. It says that the answer is gold{i}.",
                                "answers": answers}) + "\n")
    return path


def prompt_text(request: Request) -> str:
    return "\n".join(m["content"] for m in request.messages) if request.messages else request.prompt or ""


def careful(request: Request) -> str:
    """Answers answerable questions, and says the text does not say when offered to and it does not."""
    paragraph = paragraph_of(request)
    if paragraph is None:
        return "Paris"
    offered = ABSTAIN_INSTRUCTION.strip() in prompt_text(request)
    return ABSTENTION if offered and paragraph in UNANSWERABLE_PARAGRAPHS else f"gold{paragraph}"


def bold(request: Request) -> str:
    paragraph = paragraph_of(request)
    return "Paris" if paragraph is None else f"gold{paragraph}"


def judge(request: Request) -> str:
    """Ranks an abstention first on an unanswerable question, the gold answer first otherwise."""
    import re

    text = prompt_text(request)
    paragraph = re.search(r"What does paragraph (\d+) say\?", text).group(1)  # type: ignore[union-attr]
    shown = re.findall(r'<answer label="([A-Z])">\n(.*?)\n</answer>', text, re.S)
    good = (lambda t: t == ABSTENTION) if paragraph in UNANSWERABLE_PARAGRAPHS else (lambda t: t.startswith("gold"))
    return json.dumps({"ranking": [label for label, t in sorted(shown, key=lambda item: not good(item[1]))]})


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> raq.Results:
    tmp = tmp_path_factory.mktemp("unanswerable")
    models = tmp / "models"
    config = {
        "name": "v2", "out_dir": str(tmp / "runs"), "models_dir": str(models),
        "data": {"source": str(write_squad_v2(tmp / "v2.jsonl", 8)), "n_questions": 8, "seed": 5},
        "generation": {"max_tokens": 16, "warmup": False},
        "models": [{"id": m, "gguf": stub_gguf(models / f"{m}.gguf")} for m in ("careful", "bold")],
        "judge": {"id": "j", "gguf": stub_gguf(models / "judge.gguf"), "orders": 2},
    }
    backends = FakeBackends(contestant=lambda m: FakeBackend(default=careful if m == "careful" else bold, name=m),
                            judge=lambda j: FakeBackend(default=judge, name=j))
    with pytest.MonkeyPatch.context() as patch:
        quick_analysis(patch)
        return raq.evaluate(write_config(tmp / "v2.yaml", config), backends=backends, progress=False)


def test_the_study_offers_abstention_and_records_it(study: raq.Results) -> None:
    assert {q.question_id for q in study.questions if not q.answerable} == {f"q{i}" for i in UNANSWERABLE_PARAGRAPHS}
    for a in study.answers:
        assert ABSTAIN_INSTRUCTION.strip() in a.prompt or COMPLETION_ABSTAIN_LINE.strip() in a.prompt
    abstained = {(a.model_id, a.question_id) for a in study.answers if a.abstained}
    assert abstained == {("careful", f"q{i}") for i in UNANSWERABLE_PARAGRAPHS}


def test_the_study_scores_and_ranks_abstentions(study: raq.Results) -> None:
    figures = study.stats["unanswerable"]["models"]
    assert figures["careful"]["correct_abstentions"]["value"] == 1.0
    assert figures["bold"]["hallucinations"]["value"] == 1.0
    assert study.summary.at["careful", "em"] == 1.0 and study.summary.at["bold", "em"] == 0.5
    assert figures["careful"]["mean_rank"]["unanswerable"] == 1.0
    assert figures["careful"]["mean_rank"]["answerable"] == 1.5  # both give the gold answer: a tie
    assert study.unanswerable.at["bold", "hallucinations"] == 1.0
    assert study.summary.at["careful", "correct_abstentions"] == 1.0
    assert study.summary.at["careful", "skipped"] == 0 and study.unanswerable.at["bold", "skipped"] == 0


def test_the_study_reports_the_unanswerable_questions(study: raq.Results) -> None:
    markdown = (study.run_dir / "summary.md").read_text()
    assert "## Questions the text cannot answer" in markdown and "4 of 8 questions" in markdown
    html = render_html_report(study)
    assert 'id="unanswerable"' in html and 'href="#unanswerable"' in html
    assert "Rank tests on each subset" in html
