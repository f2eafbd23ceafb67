"""Tests of a user's own question files (raq.user_data, through raq.dataset.load_questions): CSV and
TSV, column mapping for every file type, delimited answers, a documents folder, and the errors."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import pytest

from raq.config import load_config
from raq.dataset import describe_source, load_questions
from raq.errors import DatasetError
from raq.user_data import Documents, Fields, answer_cell, read_delimited

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own-data"
MAPPED = {"question": "q", "context": "passage", "answers": "gold"}


def write_csv(path: Path, rows: list[list[str]], delimiter: str = ",", opener=open) -> Path:
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    return path


def own_rows() -> list[dict]:
    """Three questions in a user's own column names; the last one unanswerable."""
    return [{"key": "k0", "q": "Who?", "passage": "Ann met Bob.", "gold": "Ann|  Ann |A."},
            {"key": "k1", "q": "Whom?", "passage": "Ann met Bob.", "gold": "Bob"},
            {"key": "k2", "q": "Why?", "passage": "Ann met Bob.", "gold": ""}]


def check_own(questions, ids=("k0", "k1", "k2")) -> None:
    assert [q.question_id for q in questions] == list(ids)
    assert [q.gold_answers for q in questions] == [["Ann", "A."], ["Bob"], []]
    assert [q.answerable for q in questions] == [True, True, False]
    assert questions[0].question == "Who?" and questions[0].context == "Ann met Bob."


# --- CSV and TSV ------------------------------------------------------------------------------


def test_csv_with_raq_column_names(tmp_path):
    path = write_csv(tmp_path / "mine.csv", [
        ["question", "context", "answers", "title"],
        ["Who, then?", "Ann met Bob,\nlater.", '["Ann", "Ann ", "ann"]', "People"],
        ["Whom?", "Ann met Bob.", "Bob", ""],
        ["Why?", "Ann met Bob.", "", ""],
        ["What?", "Ann met Bob.", "[]", ""],
    ])
    questions = load_questions(str(path))
    assert [q.question_id for q in questions] == ["mine:0", "mine:1", "mine:2", "mine:3"]
    assert questions[0].question == "Who, then?" and questions[0].context == "Ann met Bob,\nlater."
    assert [q.gold_answers for q in questions] == [["Ann", "ann"], ["Bob"], [], []]
    assert [q.title for q in questions] == ["People", "", "", ""]
    assert [q.question_id for q in load_questions(str(path), unanswerable="exclude")] == ["mine:0", "mine:1"]
    assert [q.question_id for q in load_questions(str(path), unanswerable="only")] == ["mine:2", "mine:3"]
    info = describe_source(str(path), "validation")
    assert info["kind"] == "file" and info["license"] is None and len(info["sha256"]) == 64


@pytest.mark.parametrize("name, delimiter, opener", [("own.csv", ",", open), ("own.tsv", "\t", open),
                                                     ("own.csv.gz", ",", gzip.open),
                                                     ("own.tsv.gz", "\t", gzip.open)])
def test_csv_and_tsv_with_column_mapping(tmp_path, name, delimiter, opener):
    rows = own_rows()
    path = write_csv(tmp_path / name, [list(rows[0])] + [list(r.values()) for r in rows], delimiter, opener)
    check_own(load_questions(str(path), columns={**MAPPED, "id": "key"}, answers_delimiter="|"))
    without_ids = load_questions(str(path), columns=MAPPED, answers_delimiter="|")
    stem = name.split(".")[0]
    assert [q.question_id for q in without_ids] == [f"{stem}:0", f"{stem}:1", f"{stem}:2"]


def test_csv_header_with_byte_order_mark_and_spaces_and_blank_lines(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeff question , context ,answers\r\n\r\nWho?,Ann met Bob.,Ann\r\n\r\n".encode())
    questions = load_questions(str(path))
    assert [(q.question_id, q.gold_answers) for q in questions] == [("excel:0", ["Ann"])]


def test_read_delimited_gives_the_line_each_row_starts_on(tmp_path):
    path = write_csv(tmp_path / "lines.csv", [["a", "b"], ["1", "two\nlines"], ["3", "4"]])
    table = read_delimited(path)
    assert table.columns == ["a", "b"] and table.lines == [2, 4]
    assert table.rows == [{"a": "1", "b": "two\nlines"}, {"a": "3", "b": "4"}]
    limit = csv.field_size_limit()
    big = write_csv(tmp_path / "big.csv", [["question", "context", "answers"], ["Q?", "x" * 200_000, "x"]])
    assert len(load_questions(str(big))[0].context) == 200_000  # longer than csv's own field limit
    assert csv.field_size_limit() == limit  # and the limit is as it was


# --- column mapping for every file type -----------------------------------------------------


def test_jsonl_with_column_mapping(tmp_path):
    path = tmp_path / "own.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in own_rows()), encoding="utf-8")
    check_own(load_questions(str(path), columns={**MAPPED, "id": "key"}, answers_delimiter="|"))


def test_json_list_with_column_mapping_and_answer_lists(tmp_path):
    rows = own_rows()
    for row, gold in zip(rows, (["Ann", " Ann", "A."], ["Bob"], [])):
        row["gold"] = gold
    path = tmp_path / "own.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    check_own(load_questions(str(path), columns={**MAPPED, "id": "key"}))


def test_parquet_with_column_mapping(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "own.parquet"
    pd.DataFrame(own_rows()).to_parquet(path)
    check_own(load_questions(str(path), columns={**MAPPED, "id": "key"}, answers_delimiter="|"))
    bad = own_rows()
    bad[1]["q"] = ""
    pd.DataFrame(bad).to_parquet(path)
    with pytest.raises(DatasetError, match=r"own\.parquet: row 1: invalid 'q' \(data\.columns\.question\) "
                                           r"\(expected a non-empty string\)"):
        load_questions(str(path), columns=MAPPED, answers_delimiter="|")


def test_nested_json_with_column_mapping(tmp_path):
    doc = {"data": [{"title": "T", "paragraphs": [{"context": "Ann met Bob.", "qas": [
        {"id": "n0", "ask": "Who?", "answers": [{"text": "Ann"}]}]}]}]}
    path = tmp_path / "nested.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    [question] = load_questions(str(path), columns={"question": "ask"})
    assert (question.question_id, question.question, question.gold_answers) == ("n0", "Who?", ["Ann"])


def test_mapped_column_missing_names_file_column_and_columns(tmp_path):
    path = write_csv(tmp_path / "own.csv", [["q", "passage", "answer"], ["Who?", "Ann.", "Ann"]])
    message = (r"own\.csv: data\.columns\.answers is 'gold', but the file has no such column "
               r"\(its columns: q, passage, answer\)")
    with pytest.raises(DatasetError, match=message):
        load_questions(str(path), columns=MAPPED)
    jsonl = tmp_path / "own.jsonl"
    jsonl.write_text(json.dumps({"q": "Who?", "passage": "Ann.", "answer": "Ann"}) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"own\.jsonl: data\.columns\.answers is 'gold', but the file has no"):
        load_questions(str(jsonl), columns=MAPPED)


def test_required_column_missing_says_how_to_map_it(tmp_path):
    path = write_csv(tmp_path / "own.csv", [["q", "context", "answers"], ["Who?", "Ann.", "Ann"]])
    with pytest.raises(DatasetError, match=r"own\.csv: no 'question' column \(name the file's own with "
                                           r"data\.columns\.question; its columns: q, context, answers\)"):
        load_questions(str(path))
    path = write_csv(tmp_path / "docs.csv", [["question", "document", "answers"], ["Who?", "a", "Ann"]])
    with pytest.raises(DatasetError, match="no 'context' column .*set data.documents to their folder"):
        load_questions(str(path))


def test_row_errors_name_file_line_and_column(tmp_path):
    path = write_csv(tmp_path / "bad.csv", [["q", "passage", "gold"], ["Who?", "Ann\nmet Bob.", "Ann"],
                                            ["   ", "Ann met Bob.", "Bob"]])
    with pytest.raises(DatasetError, match=r"bad\.csv: line 4: invalid 'q' \(data\.columns\.question\)"):
        load_questions(str(path), columns=MAPPED)
    path = write_csv(tmp_path / "bad.csv", [["question", "context", "answers"], ["Who?", "Ann.", "Ann"],
                                            ["Whom?", "Ann.", '["Bob", '], ["Why?", "Ann.", "[1]"]])
    with pytest.raises(DatasetError, match=r"bad\.csv: line 3: invalid 'answers': not a JSON list .*"
                                           r"set data\.answers_delimiter"):
        load_questions(str(path))
    path = write_csv(tmp_path / "bad.csv", [["question", "context", "answers"], ["Why?", "Ann.", "[1]"]])
    with pytest.raises(DatasetError, match=r"bad\.csv: line 2: invalid 'answers' \(every answer text must be"):
        load_questions(str(path))


def test_malformed_csv_files(tmp_path):
    path = tmp_path / "cells.csv"
    path.write_text("question,context,answers\nWho?,Ann.,Ann\nWhom?,Ann.\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"cells\.csv: line 3: 2 cells, but the header has 3 columns"):
        load_questions(str(path))
    path = tmp_path / "empty.csv"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"empty\.csv: file is empty \(expected a header row"):
        load_questions(str(path))
    path.write_text("question,context,answers\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"empty\.csv: no questions"):
        load_questions(str(path))
    path = tmp_path / "latin1.csv"
    path.write_bytes("question,context,answers\nWho?,Ann met Beno\xeet.,Ann\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin1\.csv: line 2: not UTF-8 text \(invalid continuation byte "
                                           r"at byte 42\)"):
        load_questions(str(path))
    path = tmp_path / "twice.csv"
    path.write_text("question,context,question\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"twice\.csv: line 1: the header names column 'question' twice"):
        load_questions(str(path))
    path.write_text("question,,answers\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"twice\.csv: line 1: the header's column 2 has no name"):
        load_questions(str(path))
    path = tmp_path / "broken.csv.gz"
    path.write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match=r"broken\.csv\.gz: cannot read"):
        load_questions(str(path))


def test_is_impossible_cells_in_csv_are_read_as_yes_or_no(tmp_path):
    cells = ["True", "1", " YES ", "false", "0", "No", ""]
    path = write_csv(tmp_path / "v2.csv", [["question", "context", "answers", "is_impossible"],
                                           *[[f"Q{i}?", "Ann met Bob.", "Ann", cell] for i, cell in enumerate(cells)]])
    questions = load_questions(str(path))
    assert [q.answerable for q in questions] == [False, False, False, True, True, True, True]
    assert [q.gold_answers for q in questions][:4] == [[], [], [], ["Ann"]]  # an impossible one's answers ignored
    path = write_csv(tmp_path / "bad.tsv", [["question", "context", "answers", "is_impossible"],
                                            ["Who?", "Ann met Bob.", "Ann", "true"],
                                            ["Whom?", "Ann met Bob.", "Bob", "maybe"]], delimiter="\t")
    with pytest.raises(DatasetError, match=r"bad\.tsv: line 3: invalid 'is_impossible': 'maybe' \(expected "
                                           r"true/false, 1/0 or yes/no\)"):
        load_questions(str(path))


def test_duplicate_ids_in_csv(tmp_path):
    path = write_csv(tmp_path / "dup.csv", [["id", "question", "context", "answers"], ["a", "Q?", "C.", "x"],
                                            ["a", "R?", "C.", "y"]])
    with pytest.raises(DatasetError, match=r"duplicate question id 'a' at line 3"):
        load_questions(str(path))


# --- answers in one string --------------------------------------------------------------------


def test_answer_cell():
    assert answer_cell("a|b| c |", "|") == ["a", "b", " c ", ""]
    assert answer_cell("", "|") == [""] and answer_cell("", None) == []
    assert answer_cell(" Paris ", None) == [" Paris "]
    assert answer_cell('["a", "b"]', None) == ["a", "b"]
    assert answer_cell('{"text": ["a"], "answer_start": [0]}', None) == {"text": ["a"], "answer_start": [0]}
    assert answer_cell('["a", "b"]', ";") == ['["a", "b"]']  # with a delimiter, strings are split only
    with pytest.raises(ValueError, match="not a JSON list"):
        answer_cell("[citation needed", None)


def test_delimited_answers_in_a_multi_character_delimiter(tmp_path):
    path = write_csv(tmp_path / "own.csv", [["question", "context", "answers"], ["Q?", "C.", "one ;; two;;"],
                                            ["R?", "C.", " ;; "]])
    questions = load_questions(str(path), answers_delimiter=";;")
    assert [q.gold_answers for q in questions] == [["one", "two"], []]


# --- the documents folder ---------------------------------------------------------------------


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "alpha.txt").write_text("\ufeffAlpha is the first letter.\n", encoding="utf-8")
    (folder / "beta.txt").write_text("Beta comes second; gamma third.\n\n", encoding="utf-8")
    return folder


def test_documents_folder(tmp_path, docs):
    path = write_csv(tmp_path / "qs.csv", [["q", "doc", "gold", "title"],
                                           ["Which letter is first?", "alpha", "Alpha", ""],
                                           ["Which is second?", "beta.txt", "Beta|beta", "Greek"],
                                           ["Which is tenth?", "beta", "", ""]])
    questions = load_questions(str(path), columns={"question": "q", "document": "doc", "answers": "gold"},
                               answers_delimiter="|", documents=str(docs))
    assert [q.context for q in questions] == ["Alpha is the first letter.", "Beta comes second; gamma third.",
                                              "Beta comes second; gamma third."]
    assert [q.title for q in questions] == ["alpha", "Greek", "beta"]
    assert [q.gold_answers for q in questions] == [["Alpha"], ["Beta", "beta"], []]
    # raq's own column name works too, and the document column of JSON Lines as well
    jsonl = tmp_path / "qs.jsonl"
    jsonl.write_text(json.dumps({"question": "First?", "document": "alpha", "answers": ["Alpha"]}) + "\n",
                     encoding="utf-8")
    [question] = load_questions(str(jsonl), documents=docs)
    assert question.context == "Alpha is the first letter." and question.title == "alpha"


def test_the_manifest_fingerprints_the_documents(tmp_path, docs):
    path = write_csv(tmp_path / "qs.csv", [["question", "document", "answers"], ["Which is first?", "alpha", "A"]])
    before = describe_source(str(path), "validation", docs)["documents"]
    assert before["files"] == 2 and before["path"] == str(docs) and len(before["sha256"]) == 64
    (docs / "beta.txt").write_text("Beta comes third.", encoding="utf-8")
    after = describe_source(str(path), "validation", docs)["documents"]
    assert after["sha256"] != before["sha256"] and "documents" not in describe_source(str(path), "validation")


def test_missing_document_names_file_line_and_folder(tmp_path, docs):
    path = write_csv(tmp_path / "qs.csv", [["question", "doc", "answers"], ["First?", "alpha", "Alpha"],
                                           ["Third?", "gamma", "x"]])
    message = (rf"qs\.csv: line 3: 'doc' \(data\.columns\.document\): no document 'gamma' \(gamma\.txt\) in "
               rf"{re.escape(str(docs))} \(it has: alpha, beta\)")
    with pytest.raises(DatasetError, match=message):
        load_questions(str(path), columns={"document": "doc"}, documents=docs)
    path = write_csv(tmp_path / "qs.csv", [["question", "document", "answers"], ["First?", "../qs", "x"]])
    with pytest.raises(DatasetError, match=r"qs\.csv: line 2: 'document': no document '\.\./qs'"):
        load_questions(str(path), documents=docs)  # only documents inside the folder


def test_unreadable_documents(tmp_path, docs):
    (docs / "blank.txt").write_text("  \n", encoding="utf-8")
    (docs / "latin.txt").write_bytes("Beno\xeet".encode("latin-1"))
    path = write_csv(tmp_path / "qs.csv", [["question", "document", "answers"], ["Q?", "blank", "x"]])
    with pytest.raises(DatasetError, match=r"qs\.csv: line 2: 'document': document .*blank\.txt is empty"):
        load_questions(str(path), documents=docs)
    path = write_csv(tmp_path / "qs.csv", [["question", "document", "answers"], ["Q?", "latin", "x"]])
    with pytest.raises(DatasetError, match=r"qs\.csv: line 2: 'document': document .*latin\.txt: not UTF-8 text"):
        load_questions(str(path), documents=docs)


def test_bad_documents_settings_fail_before_reading(tmp_path, docs):
    path = write_csv(tmp_path / "qs.csv", [["question", "document", "answers"], ["Q?", "alpha", "x"]])
    with pytest.raises(DatasetError, match=r"data\.documents .*nowhere: no such folder"):
        load_questions(str(path), documents=tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"data\.documents .*alpha\.txt: not a folder"):
        load_questions(str(path), documents=docs / "alpha.txt")
    with pytest.raises(DatasetError, match="data.columns.context and data.documents both give the context"):
        load_questions(str(path), columns={"context": "document"}, documents=docs)
    with pytest.raises(DatasetError, match="data.columns.document .* needs data.documents"):
        load_questions(str(path), columns={"document": "document"})
    with pytest.raises(DatasetError, match="answers_delimiter must not be empty"):
        load_questions(str(path), answers_delimiter="")


def test_documents_and_fields_directly(docs):
    folder = Documents(docs)
    assert folder.read("alpha") == ("Alpha is the first letter.", "alpha")
    assert folder.read(" alpha.txt ") == folder.read("alpha")
    with pytest.raises(ValueError, match="no document 'delta'"):
        folder.read("delta")
    with pytest.raises(DatasetError, match=r"data\.columns: unknown field\(s\) 'answer'; map any of question"):
        Fields({"answer": "gold"})
    with pytest.raises(DatasetError, match=r"data\.columns\.question: expected a column name"):
        Fields({"question": " "})
    fields = Fields({"question": "q"}, documents=True)
    assert fields.required == ("question", "document", "answers")
    assert fields.column("question") == "q" and fields.name("question") == "'q' (data.columns.question)"
    assert fields.column("title") == "title" and fields.name("title") == "'title'"


# --- the shipped example ----------------------------------------------------------------------


def test_the_shipped_example():
    config = load_config(EXAMPLE / "config.yaml")
    data = config.data
    assert data.source == str(EXAMPLE / "questions.csv") and data.documents == str(EXAMPLE / "docs")
    assert config.models_dir == str(ROOT / "models")
    from raq.judge_check import check_questions
    from raq.pipeline import load_study_questions

    questions = load_study_questions(config)
    assert len(questions) == data.n_questions == 6
    assert sorted(q.question_id for q in questions) == ["bakery-1", "bakery-2", "garden-1", "garden-2",
                                                        "lighthouse-1", "lighthouse-2"]
    by_id = {q.question_id: q for q in questions}
    assert [q.question_id for q in questions if not q.answerable] == ["garden-2"]
    assert by_id["lighthouse-2"].gold_answers == ["Edith Marr"] and by_id["lighthouse-2"].title == "lighthouse"
    assert all(g in q.context for q in questions for g in q.gold_answers if g[0].isalpha())
    assert "Ilić" in by_id["bakery-1"].context
    assert {q.question_id for q in check_questions(config, 6)} == set(by_id)
    docs = sorted(p.name for p in (EXAMPLE / "docs").glob("*.txt"))
    assert docs == ["bakery.txt", "garden.txt", "lighthouse.txt"]
