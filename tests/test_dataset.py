"""Tests of raq.dataset: real files (bundled, shared, written to tmp_path), no mocks."""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import raq
from raq.dataset import BUNDLED, describe_source, load_questions
from raq.errors import DatasetError

SHARED = Path("/work/shared/data/squad")
BUNDLED_SHA256 = "190edcf74d6288c39acddee74637bdaefbab1ea8b459330c7ed5e1db03525916"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="/work/shared is absent")


def flat(i: int, answers: object = None, **extra: object) -> dict:
    """One record in the Hugging Face SQuAD schema."""
    if answers is None:
        answers = {"text": [f"a{i}", f"a{i}", f" b{i} "], "answer_start": [0, 0, 3]}
    return {"id": f"q{i}", "title": "T", "context": f"context {i}",
            "question": f"question {i}?", "answers": answers, **extra}


def write_jsonl(path: Path, rows: list[dict], opener=open) -> Path:
    with opener(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def check_flat(questions, count: int = 3) -> None:
    assert [q.question_id for q in questions] == [f"q{i}" for i in range(count)]
    assert questions[1].question == "question 1?" and questions[1].context == "context 1"
    assert questions[1].gold_answers == ["a1", "b1"] and questions[1].title == "T"


# --- bundled file ------------------------------------------------------------------------


def test_import_is_light():
    code = ("import sys, raq.dataset; "
            "print([m for m in ('datasets', 'pandas', 'pyarrow') if m in sys.modules])")
    out = run_isolated(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_bundled_dev_file():
    assert BUNDLED["squad-v1.1-dev"].is_file()
    questions = load_questions("squad-v1.1-dev")
    assert len(questions) == 10_570
    assert len({q.question_id for q in questions}) == 10_570
    first = questions[0]
    assert first.question_id == "56be4db0acb8001400a502ec"
    assert first.question == "Which NFL team represented the AFC at Super Bowl 50?"
    assert "Denver Broncos" in first.gold_answers
    assert first.title == "Super_Bowl_50" and "Super Bowl 50" in first.context
    assert all(q.gold_answers and len(set(q.gold_answers)) == len(q.gold_answers)
               for q in questions)
    assert load_questions("squad-v1.1-dev", split="dev")[0] == first


def test_bundled_rejects_other_split():
    with pytest.raises(DatasetError, match="dev split"):
        load_questions("squad-v1.1-dev", split="train")


def test_sampling_is_seeded():
    a = load_questions("squad-v1.1-dev", n=25, seed=7)
    b = load_questions("squad-v1.1-dev", n=25, seed=7)
    c = load_questions("squad-v1.1-dev", n=25, seed=8)
    assert len(a) == 25 and len({q.question_id for q in a}) == 25
    assert [q.question_id for q in a] == [q.question_id for q in b]
    assert [q.question_id for q in a] != [q.question_id for q in c]
    assert load_questions("squad-v1.1-dev", n=5) == load_questions("squad-v1.1-dev", n=5, seed=2024)


def test_cluster_sample_draws_up_to_k_questions_per_paragraph(tmp_path):
    rows = [{**flat(i), "context": f"paragraph {i // 5}"} for i in range(40)]  # 8 paragraphs x 5 questions
    rows += [{**flat(40), "context": "a lone paragraph"}]
    path = write_jsonl(tmp_path / "clustered.jsonl", rows)
    picked = load_questions(str(path), n=10, seed=3, per_context=3)
    assert len(picked) == 10 and len({q.question_id for q in picked}) == 10
    by_context: dict[str, list[str]] = {}
    for q in picked:
        by_context.setdefault(q.context, []).append(q.question_id)
    sizes = [len(ids) for ids in by_context.values()]
    assert max(sizes) <= 3
    # whole paragraphs of 3 (a lone one gives 1) until n; only the last may be cut short
    assert sum(size == 3 for size in sizes) >= 2 and len(by_context) <= 10
    # each paragraph's questions come together, in file order
    order = [q.question_id for q in picked]
    for ids in by_context.values():
        first = order.index(ids[0])
        assert order[first:first + len(ids)] == ids == sorted(ids, key=lambda x: int(x[1:]))
    assert [q.question_id for q in load_questions(str(path), n=10, seed=3, per_context=3)] == order
    assert [q.question_id for q in load_questions(str(path), n=10, seed=4, per_context=3)] != order
    # per_context=1 is the simple random sample, unchanged
    assert load_questions(str(path), n=10, seed=3, per_context=1) == load_questions(str(path), n=10, seed=3)
    with pytest.raises(DatasetError, match="per_context"):
        load_questions(str(path), n=10, per_context=0)


def test_cluster_sample_of_the_bundled_file():
    picked = load_questions("squad-v1.1-dev", n=24, seed=1, per_context=4)
    contexts = [q.context for q in picked]
    assert len(picked) == 24 and len(set(contexts)) < 24
    assert all(contexts.count(c) <= 4 for c in contexts)


def test_n_too_large(tmp_path):
    path = write_jsonl(tmp_path / "small.jsonl", [flat(i) for i in range(3)])
    assert len(load_questions(str(path), n=3)) == 3
    with pytest.raises(DatasetError, match="3 are available"):
        load_questions(str(path), n=4)


def test_describe_source(tmp_path):
    info = describe_source("squad-v1.1-dev", "validation")
    assert info["kind"] == "bundled" and info["sha256"] == BUNDLED_SHA256
    assert info["license"] == "CC BY-SA 4.0" and info["split"] == "validation"
    hub = describe_source("rajpurkar/squad", "train")
    assert hub == {"source": "rajpurkar/squad", "split": "train", "kind": "hub",
                   "license": "CC BY-SA 4.0"}
    path = write_jsonl(tmp_path / "mine.jsonl", [flat(0)])
    info = describe_source(str(path), "validation")
    assert info["kind"] == "file" and info["path"] == str(path) and info["license"] is None
    assert len(info["sha256"]) == 64
    with pytest.raises(DatasetError, match="no such file"):
        describe_source(str(tmp_path / "absent.jsonl"), "validation")


# --- SQuAD 2.0: unanswerable questions -------------------------------------------------

V2 = "squad-v2.0-dev"
V2_SHA256 = "ed4e0f7d7fa0da5b19f1181211dd48ee696c14e5e21e90a6c52cc9d1ac8e415a"
#: Samples drawn by raq before unanswerable questions could be sampled: they must never change.
V11_PINNED = {
    (5, 2024, 1): ["572800b03acd2414000df1f4", "570d391fb3d812140066d575", "572fbea404bcaa1900d76c5d",
                   "5726509bdd62a815002e815b", "571136b8a58dae1900cd6d24"],
    (8, 7, 1): ["57268692dd62a815002e882a", "56f884cba6d7ea1400e17708", "5726f96ddd62a815002e9699",
                "56d9ccacdc89441400fdb842", "56dfa01738dc42170015211d", "5729686d1d046914007793c2",
                "56e10d2dcd28a01900c674d7", "57276166dd62a815002e9bd8"],
    (6, 1, 3): ["571095a8a58dae1900cd6a76", "571095a8a58dae1900cd6a78", "571095a8a58dae1900cd6a7a",
                "56e1b754cd28a01900c67abd", "56e1b754cd28a01900c67abe", "56e1b754cd28a01900c67ac0"],
}
V2_ANSWERABLE_PINNED = {
    (6, 3, 1): ["5725cb33271a42140099d1df", "572fcb6da23a5019007fc9f5", "572f55e8a23a5019007fc56d",
                "57115e532419e314009555b1", "572750df5951b619008f8830", "572ff932a23a5019007fcbd9"],
    (6, 3, 2): ["5726516a708984140094c224", "5726516a708984140094c225", "5733cf61d058e614000b62e9",
                "5733cf61d058e614000b62eb", "571a4ead10f8ca1400304fdd", "571c7abfdd7acb1400e4c0be"],
}


@pytest.fixture(scope="module")
def v2_all():
    return load_questions(V2)


def ids(questions) -> list[str]:
    return [q.question_id for q in questions]


@pytest.mark.parametrize("setting", [{}, {"unanswerable": "include"}, {"unanswerable": "exclude"}])
def test_v11_samples_are_unchanged(setting):
    for (n, seed, per_context), expected in V11_PINNED.items():
        assert ids(load_questions("squad-v1.1-dev", n=n, seed=seed, per_context=per_context, **setting)) == expected
    sixty = load_questions("squad-v1.1-dev", n=60, **setting)
    assert ids(sixty[:5]) == V11_PINNED[(5, 2024, 1)] and sixty[-1].question_id == "5730ab63396df91900096260"
    with pytest.raises(DatasetError, match="no unanswerable questions"):
        load_questions("squad-v1.1-dev", n=5, unanswerable="only")


def test_bundled_v2_counts(v2_all, caplog):
    assert BUNDLED[V2].is_file() and BUNDLED[V2].name == "squad-v2.0-dev.jsonl.gz"
    assert len(v2_all) == 11_873 and len({q.question_id for q in v2_all}) == 11_873
    assert sum(q.answerable for q in v2_all) == 5_928
    assert sum(not q.answerable for q in v2_all) == 5_945
    first = v2_all[0]
    assert first.question_id == "56ddde6b9a695914005b9628" and first.title == "Normans"
    assert first.question == "In what country is Normandy located?" and first.gold_answers == ["France"]
    assert not any(q.gold_answers for q in v2_all if not q.answerable)
    with caplog.at_level(logging.INFO, logger="raq.dataset"):
        only = load_questions(V2, unanswerable="only")
    assert "11873 questions: 5928 answerable, 5945 unanswerable; 5928 excluded (unanswerable: only)" in caplog.text
    assert ids(only) == [q.question_id for q in v2_all if not q.answerable]
    excluded = load_questions(V2, split="dev", unanswerable="exclude")
    assert ids(excluded) == [q.question_id for q in v2_all if q.answerable]
    # the answerable questions are v1.1 dev's, with the same answers
    v11 = {q.question_id: q for q in load_questions("squad-v1.1-dev")}
    assert all(v11[q.question_id].gold_answers == q.gold_answers and v11[q.question_id].context == q.context
               for q in excluded)


def test_v2_exclude_gives_the_samples_of_before():
    for (n, seed, per_context), expected in V2_ANSWERABLE_PINNED.items():
        assert ids(load_questions(V2, n=n, seed=seed, per_context=per_context, unanswerable="exclude")) == expected


def test_v2_include_and_only_samples(v2_all):
    sample = load_questions(V2, n=200, seed=5)
    assert len(sample) == 200 and len(set(ids(sample))) == 200
    assert 60 < sum(not q.answerable for q in sample) < 140  # about the dataset's own share (50 %)
    by_index = {q.question_id: i for i, q in enumerate(v2_all)}
    assert ids(sample) == [v2_all[i].question_id for i in random.Random(5).sample(range(len(v2_all)), 200)]
    assert ids(load_questions(V2, n=200, seed=5)) == ids(sample)
    assert all(q.question_id in by_index for q in sample)
    only = load_questions(V2, n=50, seed=5, unanswerable="only")
    assert len(only) == 50 and not any(q.answerable for q in only)
    with pytest.raises(DatasetError, match="cannot sample 6000 unanswerable questions, 5945 are available"):
        load_questions(V2, n=6000, unanswerable="only")
    with pytest.raises(DatasetError, match="cannot sample 6000 answerable questions, 5928 are available"):
        load_questions(V2, n=6000, unanswerable="exclude")


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 1.0])
def test_unanswerable_share_is_a_stratified_sample(share):
    sample = load_questions(V2, n=40, seed=9, unanswerable_share=share)
    assert len(sample) == 40 and len(set(ids(sample))) == 40
    assert sum(not q.answerable for q in sample) == round(40 * share)
    assert ids(load_questions(V2, n=40, seed=9, unanswerable_share=share)) == ids(sample)
    assert ids(load_questions(V2, n=40, seed=10, unanswerable_share=share)) != ids(sample)


def test_unanswerable_share_draws_each_kind_with_its_own_generator():
    a = load_questions(V2, n=20, seed=9, unanswerable_share=0.5)
    b = load_questions(V2, n=21, seed=9, unanswerable_share=0.5)  # round(10.5) = 10: one more answerable
    assert sorted(ids(q for q in a if not q.answerable)) == sorted(ids(q for q in b if not q.answerable))
    answerable_a = ids(q for q in a if q.answerable)
    assert set(answerable_a) < set(ids(q for q in b if q.answerable))
    # shuffled together: the kinds are mixed, not one block after the other
    kinds = [q.answerable for q in a]
    assert kinds != sorted(kinds) and kinds != sorted(kinds, reverse=True)


def test_unanswerable_share_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"squad-v2\.0-dev\.jsonl\.gz: cannot sample 6000 unanswerable questions "
                                           r"\(unanswerable_share 0\.5 of 12000\), 5945 are available"):
        load_questions(V2, n=12_000, unanswerable_share=0.5)
    with pytest.raises(DatasetError, match="cannot sample 5 answerable questions"):
        load_questions(str(write_jsonl(tmp_path / "few.jsonl", [flat(0), flat(1, [])])), n=6,
                       unanswerable_share=0.1)
    with pytest.raises(DatasetError, match=r"dev\.json\.gz: cannot sample 1 unanswerable questions .*0 are available"):
        load_questions("squad-v1.1-dev", n=10, unanswerable_share=0.1)
    assert len(load_questions("squad-v1.1-dev", n=10, unanswerable_share=0.0)) == 10
    with pytest.raises(DatasetError, match="needs unanswerable 'include', not 'exclude'"):
        load_questions(V2, n=10, unanswerable="exclude", unanswerable_share=0.5)
    with pytest.raises(DatasetError, match="between 0 and 1"):
        load_questions(V2, n=10, unanswerable_share=1.5)
    with pytest.raises(DatasetError, match="needs a sample size"):
        load_questions(V2, unanswerable_share=0.5)
    with pytest.raises(DatasetError, match="unanswerable must be one of 'include', 'exclude', 'only', not 'all'"):
        load_questions(V2, n=10, unanswerable="all")  # type: ignore[arg-type]


def check_clusters(picked, per_context: int) -> dict[str, list]:
    by_context: dict[str, list] = {}
    for q in picked:
        by_context.setdefault(q.context, []).append(q)
    assert all(len(group) <= per_context for group in by_context.values())
    order = ids(picked)  # a paragraph's questions come together
    for group in by_context.values():
        first = order.index(group[0].question_id)
        assert order[first:first + len(group)] == ids(group)
    return by_context


def test_cluster_sample_with_unanswerable_questions(v2_all):
    picked = load_questions(V2, n=30, seed=2, per_context=4)
    assert len(picked) == 30 and len(set(ids(picked))) == 30
    groups = check_clusters(picked, 4)
    assert len(groups) < 30 and any(not q.answerable for q in picked) and any(q.answerable for q in picked)
    assert ids(load_questions(V2, n=30, seed=2, per_context=4)) == ids(picked)
    only = load_questions(V2, n=12, seed=2, per_context=3, unanswerable="only")
    assert len(only) == 12 and not any(q.answerable for q in only)
    check_clusters(only, 3)


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_stratified_cluster_sample(share):
    picked = load_questions(V2, n=30, seed=2, per_context=3, unanswerable_share=share)
    assert len(picked) == 30 and len(set(ids(picked))) == 30
    assert sum(not q.answerable for q in picked) == round(30 * share)
    groups = check_clusters(picked, 3)
    assert all(len({q.answerable for q in group}) == 1 for group in groups.values())  # one kind a paragraph
    assert ids(load_questions(V2, n=30, seed=2, per_context=3, unanswerable_share=share)) == ids(picked)


def test_stratified_cluster_sample_keeps_the_kinds_apart(tmp_path):
    rows = [{**flat(i), "context": f"paragraph {i // 3}"} for i in range(9)]  # 3 paragraphs x 3 answerable
    rows += [{**flat(i, []), "context": "paragraph 0"} for i in range(9, 11)]  # and 2 unanswerable in paragraph 0
    path = str(write_jsonl(tmp_path / "clusters.jsonl", rows))
    picked = load_questions(path, n=6, seed=1, per_context=2, unanswerable_share=1 / 3)
    groups = check_clusters(picked, 2)
    assert sorted(ids(groups["paragraph 0"])) == ["q10", "q9"]  # the answerable draw leaves paragraph 0 alone
    assert len(groups) == 3 and sum(q.answerable for q in picked) == 4
    with pytest.raises(DatasetError, match=r"clusters\.jsonl: cannot sample 7 questions with per_context 2 and "
                                           r"unanswerable_share 0\.285714: the paragraphs give 6"):
        load_questions(path, n=7, seed=1, per_context=2, unanswerable_share=2 / 7)


def test_describe_bundled_v2():
    info = describe_source(V2, "dev")
    assert info == {"source": V2, "split": "validation", "kind": "bundled", "path": str(BUNDLED[V2]),
                    "sha256": V2_SHA256, "license": "CC BY-SA 4.0"}
    assert describe_source("rajpurkar/squad_v2", "validation")["license"] == "CC BY-SA 4.0"


def test_bundled_v2_license_file_names_its_source():
    text = (BUNDLED[V2].parent / "SQUAD-LICENSE.md").read_text(encoding="utf-8")
    assert "squad-v2.0-dev.jsonl.gz" in text and "Know What You Don't Know" in text
    assert "Rajpurkar" in text and "Jia" in text and "ACL 2018" in text and "CC BY-SA 4.0" in text


@pytest.mark.parametrize("setting, named", [({"columns": {"question": "q"}}, "data.columns"),
                                            ({"answers_delimiter": "|"}, "data.answers_delimiter"),
                                            ({"documents": "."}, "data.documents")])
def test_user_file_settings_on_a_bundled_source(setting, named):
    with pytest.raises(DatasetError, match=f"bundled 'squad-v2.0-dev' has raq's own fields and contexts: {named} "
                                           "is for your own files"):
        load_questions(V2, n=5, **setting)


# --- flat files --------------------------------------------------------------------------


def test_flat_jsonl(tmp_path):
    check_flat(load_questions(str(write_jsonl(tmp_path / "f.jsonl", [flat(i) for i in range(3)]))))


def test_flat_jsonl_gz(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl.gz", [flat(i) for i in range(3)], opener=gzip.open)
    check_flat(load_questions(str(path)))


def test_flat_json_list(tmp_path):
    path = tmp_path / "f.json"
    path.write_text(json.dumps([flat(i) for i in range(3)]), encoding="utf-8")
    check_flat(load_questions(str(path)))


def test_flat_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "f.parquet"
    pd.DataFrame([flat(i) for i in range(3)]).to_parquet(path)
    check_flat(load_questions(str(path)))


def test_other_answer_shapes(tmp_path):
    rows = [flat(0, [{"text": "x", "answer_start": 0}, {"text": "y"}, {"text": "x"}]),
            flat(1, ["p", " q", "p"])]
    questions = load_questions(str(write_jsonl(tmp_path / "shapes.jsonl", rows)))
    assert [q.gold_answers for q in questions] == [["x", "y"], ["p", "q"]]


def test_rows_without_ids_use_stem_and_row(tmp_path):
    rows = [{k: v for k, v in flat(i).items() if k != "id"} for i in range(3)]
    rows[0]["answers"] = {"text": [], "answer_start": []}
    path = str(write_jsonl(tmp_path / "noids.jsonl.gz", rows, gzip.open))
    assert [q.question_id for q in load_questions(path, unanswerable="exclude")] == ["noids:1", "noids:2"]
    assert [q.question_id for q in load_questions(path)] == ["noids:0", "noids:1", "noids:2"]


def test_unanswerable_rows_are_excluded(tmp_path, caplog):
    rows = [flat(0), flat(1, {"text": [], "answer_start": []}), flat(2), flat(3, [])]
    path = str(write_jsonl(tmp_path / "v2.jsonl", rows))
    with caplog.at_level(logging.INFO, logger="raq.dataset"):
        questions = load_questions(path, unanswerable="exclude")
    assert [q.question_id for q in questions] == ["q0", "q2"]
    assert "4 questions: 2 answerable, 2 unanswerable; 2 excluded (unanswerable: exclude)" in caplog.text
    included = load_questions(path)
    assert [(q.question_id, q.answerable) for q in included] == [("q0", True), ("q1", False), ("q2", True),
                                                                  ("q3", False)]
    assert included[1].gold_answers == [] and included[3].gold_answers == []
    assert [q.question_id for q in load_questions(path, unanswerable="only")] == ["q1", "q3"]


def test_missing_field_names_file_and_line(tmp_path):
    rows = [flat(i) for i in range(4)]
    del rows[2]["question"]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n  \n"
                    + "\n".join(json.dumps(r) for r in rows[2:]) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.jsonl: line 4: missing 'question'"):
        load_questions(str(path))


def test_wrong_type_names_row(tmp_path):
    rows = [flat(0), flat(1, answers={"text": [3]})]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.json: row 1: invalid 'answers'"):
        load_questions(str(path))


def test_duplicate_ids(tmp_path):
    with pytest.raises(DatasetError, match="duplicate question id 'q1'"):
        load_questions(str(write_jsonl(tmp_path / "dup.jsonl", [flat(1), flat(0), flat(1)])))


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match="empty"):
        load_questions(str(path))


def test_unparsable_and_unsupported_files(tmp_path):
    path = tmp_path / "junk.jsonl"
    path.write_text(json.dumps(flat(0)) + "\n\nnot json\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"junk\.jsonl: line 3: invalid JSON"):
        load_questions(str(path))
    path = tmp_path / "junk.parquet"
    path.write_text("not parquet", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"junk\.parquet: cannot read as parquet"):
        load_questions(str(path))
    path = tmp_path / "junk.json.gz"
    path.write_text("not gzip", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"junk\.json\.gz: cannot read"):
        load_questions(str(path))
    other = tmp_path / "data.txt"
    other.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"unsupported file type \(use one of .*\.csv, \.tsv"):
        load_questions(str(other))
    with pytest.raises(DatasetError, match="no such file"):
        load_questions(str(tmp_path / "absent.json.gz"))


# --- nested (official) JSON --------------------------------------------------------------


def nested_doc() -> dict:
    qas = [{"id": "n0", "question": "Who?", "answers": [{"text": "Ann", "answer_start": 0}]},
           {"id": "n1", "question": "Why?", "answers": [], "is_impossible": True,
            "plausible_answers": [{"text": "x", "answer_start": 0}]},
           {"id": "n2", "question": "What?", "answers": [{"text": " Ann ", "answer_start": 0},
                                                         {"text": "Bob", "answer_start": 4}]}]
    return {"version": "v2.0", "data": [
        {"title": "A", "paragraphs": [{"context": "Ann Bob", "qas": qas[:1]}]},
        {"title": "B", "paragraphs": [{"context": "c0", "qas": []},
                                      {"context": "Ann Bob", "qas": qas[1:]}]}]}


def test_nested_json_gz(tmp_path):
    path = tmp_path / "nested.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(nested_doc(), f)
    questions = load_questions(str(path), unanswerable="exclude")
    assert [(q.question_id, q.title, q.gold_answers) for q in questions] == [
        ("n0", "A", ["Ann"]), ("n2", "B", ["Ann", "Bob"])]
    # SQuAD 2.0's is_impossible: unanswerable, whatever its answers say
    doc = nested_doc()
    doc["data"][1]["paragraphs"][1]["qas"][0]["answers"] = [{"text": "Bob", "answer_start": 4}]
    path.unlink()
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(doc, f)
    questions = load_questions(str(path))
    assert [(q.question_id, q.gold_answers) for q in questions] == [
        ("n0", ["Ann"]), ("n1", []), ("n2", ["Ann", "Bob"])]
    assert [q.question_id for q in load_questions(str(path), unanswerable="only")] == ["n1"]


def test_nested_error_names_path(tmp_path):
    doc = nested_doc()
    del doc["data"][1]["paragraphs"][1]["qas"][1]["answers"]
    path = tmp_path / "nested.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    where = r"nested\.json: data\[1\]\.paragraphs\[1\]\.qas\[1\]: missing 'answers'"
    with pytest.raises(DatasetError, match=where):
        load_questions(str(path))


def test_nested_without_questions(tmp_path):
    path = tmp_path / "none.json"
    path.write_text(json.dumps({"version": "1.1", "data": []}), encoding="utf-8")
    with pytest.raises(DatasetError, match="no questions"):
        load_questions(str(path))


# --- shared files ------------------------------------------------------------------------


@needs_shared
def test_shared_v2_dev():
    path = str(SHARED / "squad-v2.0-dev.jsonl.gz")
    questions = load_questions(path, unanswerable="exclude")
    assert len(questions) == 5_928
    by_id = {q.question_id: q for q in questions}
    bundled = load_questions("squad-v1.1-dev")
    assert all(by_id[q.question_id].gold_answers == q.gold_answers
               for q in bundled if q.question_id in by_id)
    assert len(load_questions(path, n=100, seed=1, unanswerable="exclude")) == 100
    assert (SHARED / "squad-v2.0-dev.jsonl.gz").read_bytes() == BUNDLED["squad-v2.0-dev"].read_bytes()


@needs_shared
def test_shared_train_reconstructed():
    path = SHARED / "squad-v1.1-train-reconstructed.jsonl.gz"
    questions = load_questions(str(path))
    assert len(questions) == 87_599
    stem = "squad-v1.1-train-reconstructed"
    assert questions[0].question_id == f"{stem}:0" and questions[-1].question_id == f"{stem}:87598"
    assert questions[0].question.startswith("To whom did the Virgin Mary allegedly appear")
    assert questions[0].gold_answers == ["Saint Bernadette Soubirous"]


# --- hub ---------------------------------------------------------------------------------


def run_isolated(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (huggingface_hub reads HF_* variables at import)."""
    src = str(Path(raq.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    full_env = {**os.environ, "PYTHONPATH": path, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, timeout=120)


HUB_CODE = """
import time
from raq.dataset import load_questions
from raq.errors import DatasetError
start = time.monotonic()
try:
    load_questions("rajpurkar/squad", split="train")
except DatasetError as exc:
    print(f"{time.monotonic() - start:.2f}")
    print(exc)
"""


@pytest.mark.parametrize("env", [{"HF_ENDPOINT": "http://127.0.0.1:9"}, {"HF_HUB_OFFLINE": "1"}])
def test_hub_offline_error_is_clear_and_fast(tmp_path, env):
    done = run_isolated(HUB_CODE, HF_HOME=str(tmp_path / "hf"), **env)
    assert done.returncode == 0, done.stderr
    seconds, message = done.stdout.strip().split("\n")
    float(seconds)  # the time is reported; how fast is a benchmark matter, not a test assertion
    assert message.startswith("cannot load dataset 'rajpurkar/squad' split 'train' "
                              "from the Hugging Face hub (offline or unreachable")
    assert "bundled 'squad-v1.1-dev'" in message and "\n" not in message

