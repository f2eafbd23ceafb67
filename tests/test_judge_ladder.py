"""Answer ladders on real SQuAD 1.1 dev questions and on hand-made ones whose answer is known."""

from __future__ import annotations

import pytest

from raq.abstention import ABSTENTION, is_abstention
from raq.dataset import load_questions
from raq.judge_ladder import (
    ABSTAIN,
    ABSTAIN_SENTENCE,
    ANSWERABLE_TIERS,
    DEFAULT_RUNGS,
    FEW_RUNGS,
    GOLD_SENTENCE,
    NO_INVENTED_ANSWER,
    NO_WRONG_ANSWER,
    RUNGS,
    UNANSWERABLE_TIERS,
    WRONG_SENTENCE,
    Ladder,
    Rung,
    build_ladders,
    context_spans,
    gold_alternative,
    kind,
    overlaps,
    partial_answer,
    question_kind,
    rung_tier,
)
from raq.metrics import f1, normalize_answer
from raq.records import Question

SAMPLE = 600  # questions of the dev set laddered (about 120 paragraphs); the pool is all of it


@pytest.fixture(scope="module")
def pool() -> list[Question]:
    return load_questions("squad-v1.1-dev")


@pytest.fixture(scope="module")
def built(pool):
    return build_ladders(pool[:SAMPLE], pool, rungs=RUNGS)


@pytest.fixture(scope="module")
def ladders(built) -> list[Ladder]:
    return built[0]


def question(qid: str, gold: list[str], context: str = "Some context.", text: str = "What is it?") -> Question:
    return Question(qid, text, context, gold)


# --- on the dev set --------------------------------------------------------------------------------
def test_ladders_follow_the_questions_and_skip_few(built, pool):
    ladders, skipped = built
    ids = [ladder.question.question_id for ladder in ladders]
    wanted = [q.question_id for q in pool[:SAMPLE]]
    assert ids == [q for q in wanted if q in set(ids)]  # in the questions' order
    assert len(ladders) + sum(skipped.values()) == SAMPLE
    assert set(skipped) <= {NO_WRONG_ANSWER}
    assert len(ladders) >= 0.98 * SAMPLE


def test_rungs_have_their_tiers_in_the_order_asked(ladders):
    for ladder in ladders:
        names = [rung.name for rung in ladder.rungs]
        assert names == [name for name in RUNGS if name in names]
        assert {"gold", "gold_sentence", "wrong", "wrong_sentence", "abstain"} <= set(names)
        assert ladder.tiers() == {name: ANSWERABLE_TIERS[name] for name in names}
        assert all(rung.text.strip() for rung in ladder.rungs)
        assert len(set(ladder.answers().values())) == len(names)  # no two rungs say the same
        assert ladder.answers()["gold"] == ladder.question.gold_answers[0]
        assert ladder.answers()["abstain"] == ABSTAIN


def test_every_wrong_answer_overlaps_no_gold_answer(ladders):
    for ladder in ladders:
        wrong = ladder.answers()["wrong"]
        for gold in ladder.question.gold_answers:
            assert f1(wrong, [gold]) == 0.0, (wrong, gold)
            a, b = normalize_answer(wrong), normalize_answer(gold)
            assert a and a not in b and b not in a, (wrong, gold)


def test_wrong_answers_come_from_the_same_paragraph(ladders, pool):
    golds_by_context: dict[str, set[str]] = {}
    for q in pool:
        golds_by_context.setdefault(q.context, set()).add(q.gold_answers[0].strip().rstrip(".,;:").rstrip())
    from_pool = 0
    for ladder in ladders:
        wrong = ladder.answers()["wrong"]
        assert wrong in ladder.question.context
        from_pool += wrong in golds_by_context[ladder.question.context]
    assert from_pool >= 0.95 * len(ladders)  # the context's spans are only a fallback


def test_wrong_answers_prefer_the_gold_answers_kind(ladders):
    same = sum(kind(ladder.answers()["wrong"]) == kind(ladder.question.gold_answers[0]) for ladder in ladders)
    assert same >= 0.7 * len(ladders)
    super_bowl = next(ladder for ladder in ladders if ladder.question.question_id == "56be4db0acb8001400a502ec")
    assert kind(super_bowl.answers()["wrong"]) == "entity"  # e.g. "Carolina Panthers" for "Denver Broncos"


def test_sentences_are_longer_than_bare_answers_and_share_a_frame(ladders):
    longer = 0
    for ladder in ladders:
        answers = ladder.answers()
        assert len(answers["gold_sentence"]) > len(answers["gold"])
        assert len(answers["wrong_sentence"]) > len(answers["wrong"])
        assert answers["gold_sentence"] == GOLD_SENTENCE.format(answer=answers["gold"].rstrip(".,;: "))
        assert answers["wrong_sentence"] == WRONG_SENTENCE.format(answer=answers["wrong"])
        longer += len(answers["wrong_sentence"]) > len(answers["gold_sentence"])
    assert longer >= 0.97 * len(ladders)


def test_gold_alt_only_for_a_different_accepted_answer(ladders):
    agreeing = with_alt = 0
    for ladder in ladders:
        golds = ladder.question.gold_answers
        alt = ladder.answers().get("gold_alt")
        if len({normalize_answer(g) for g in golds}) == 1:
            agreeing += 1
            assert alt is None
        if alt is not None:
            with_alt += 1
            assert alt in golds[1:]
            assert normalize_answer(alt) != normalize_answer(golds[0])
            assert f" {normalize_answer(alt)} " not in f" {normalize_answer(golds[0])} "  # never a part of gold
    assert agreeing > 100 and with_alt > 50


def test_partial_only_when_asked_and_only_for_long_golds(ladders, pool):
    default, _ = build_ladders(pool[:SAMPLE], pool)
    assert all("partial" not in ladder.answers() for ladder in default)
    assert [rung.name for rung in default[0].rungs] == [n for n in DEFAULT_RUNGS if n in default[0].answers()]
    partials = [ladder for ladder in ladders if "partial" in ladder.answers()]
    assert len(partials) > 50
    for ladder in partials:
        part, golds = ladder.answers()["partial"], ladder.question.gold_answers
        assert len(normalize_answer(golds[0]).split()) >= 3
        assert golds[0].startswith(part) and len(part) < len(golds[0])
        assert normalize_answer(part) not in {normalize_answer(g) for g in golds}
        assert ladder.tiers()["partial"] == 1


def test_the_same_inputs_and_seed_give_the_same_ladders(pool, ladders):
    again, _ = build_ladders(pool[:SAMPLE], pool, rungs=RUNGS)
    assert again == ladders
    other, _ = build_ladders(pool[:SAMPLE], pool, rungs=RUNGS, seed=7)
    changed = sum(a.answers()["wrong"] != b.answers()["wrong"] for a, b in zip(ladders, other))
    assert changed > 0.1 * len(ladders)


def test_a_question_alone_in_the_pool_gets_nothing_else_from_it(pool):
    one = pool[:1]
    ladders, skipped = build_ladders(one, one)
    assert len(ladders) + skipped.get(NO_WRONG_ANSWER, 0) == 1
    if ladders:  # a fallback span of the context
        assert ladders[0].answers()["wrong"] in one[0].context


# --- hand-made questions ---------------------------------------------------------------------------
CONTEXT = ("In 1998 the Royal Society of London met in Paris with 24 members. The meeting was short, and "
           "John Smith spoke for three hours about gravity.")


def test_other_questions_about_the_paragraph_give_the_wrong_answer():
    asked = question("q1", ["John Smith"], CONTEXT, "Who spoke?")
    others = [question("q2", ["Paris"], CONTEXT, "Where?"), question("q3", ["gravity"], CONTEXT, "About what?"),
              question("q4", ["Smith"], CONTEXT, "Who, in short?"),  # overlaps the gold: never drawn
              question("q5", ["someone else"], CONTEXT, "who spoke ?")]  # the same question: left out
    for seed in range(20):
        ladders, _ = build_ladders([asked], [asked, *others], seed=seed)
        assert ladders[0].answers()["wrong"] == "Paris"  # the only candidate of the gold's kind


def test_the_contexts_spans_are_the_fallback():
    numeric = question("q1", ["24"], CONTEXT, "How many members?")
    ladders, skipped = build_ladders([numeric], [numeric])
    assert not skipped and ladders[0].answers()["wrong"] == "1998"
    entity = question("q2", ["Paris"], CONTEXT, "Where?")
    ladders, _ = build_ladders([entity], [entity])
    assert ladders[0].answers()["wrong"] in {"Royal Society of London", "John Smith"}


def test_a_question_with_nothing_that_fits_is_skipped_and_counted():
    bare = question("q1", ["green"], "the grass is green.")
    ladders, skipped = build_ladders([bare, bare], [bare])
    assert ladders == [] and skipped == {NO_WRONG_ANSWER: 2}
    ladders, skipped = build_ladders([bare], [bare], rungs=("gold", "gold_sentence", "abstain"))
    assert skipped == {} and ladders[0].answers() == {
        "gold": "green", "gold_sentence": "According to the text, the answer is green.", "abstain": ABSTAIN}


def test_gold_alternative_and_partial_rules():
    assert gold_alternative(question("q", ["February 7, 2016", "February 7"])) is None  # a part of gold
    assert gold_alternative(question("q", ["Denver Broncos", "the Denver Broncos"])) is None  # the same
    assert gold_alternative(question("q", ["Levi's Stadium", "Santa Clara"])) == "Santa Clara"
    longer = "Levi's Stadium in Santa Clara"
    assert gold_alternative(question("q", ["Stadium", longer])) == longer
    assert partial_answer(question("q", ["Denver Broncos"])) is None  # too short
    assert partial_answer(question("q", ["the Mongol and Turkic tribes"])) == "the Mongol"
    assert partial_answer(question("q", ["$125 per month"])) == "$125"
    assert partial_answer(question("q", ["New England Patriots", "New England"])) is None  # a gold answer itself


def test_overlaps_and_kinds():
    assert overlaps("24-10", "24–10") and overlaps("3", "three") and overlaps("AFC", "American Football Conference")
    assert overlaps("gold", "gold-themed") and overlaps("the Broncos", "Denver Broncos") and overlaps("the", "a")
    assert not overlaps("Carolina Panthers", "Denver Broncos") and not overlaps("1998", "24")
    assert kind("24–10") == kind("three hours") == "numeric"
    assert kind("Royal Society of London") == kind("Levi's Stadium") == "entity"
    assert kind("golden anniversary") == "other"


def test_context_spans():
    assert context_spans(CONTEXT, "numeric") == ["1998", "24"]
    assert context_spans(CONTEXT, "entity") == ["Royal Society of London", "Paris", "John Smith"]
    assert context_spans("Super Bowl 50 was played by the National Football League (NFL).", "entity") == [
        "Super Bowl", "National Football League", "NFL"]


def test_rungs_are_checked():
    with pytest.raises(ValueError, match="unknown rung"):
        build_ladders([], [], rungs=("gold", "best"))
    with pytest.raises(ValueError, match="repeat"):
        build_ladders([], [], rungs=("gold", "gold"))
    with pytest.raises(ValueError, match="no rungs"):
        build_ladders([], [], rungs=())


def test_ladder_accessors():
    ladder = Ladder(question("q", ["x"]), (Rung("gold", "x", 0), Rung("abstain", ABSTAIN, 2)))
    assert ladder.answers() == {"gold": "x", "abstain": ABSTAIN}
    assert ladder.tiers() == {"gold": 0, "abstain": 2}


# --- questions without gold answers (SQuAD 2.0's unanswerable ones) ---------------------------------
#: sha256 of the ladders of the first 600 dev questions (every rung, seed 2024), recorded before
#: unanswerable questions got ladders of their own: answerable ladders must not change.
ANSWERABLE_LADDERS_SHA256 = "20616ad28b5408ec80b5b7942cc5923b601e7b8c52a5fe79387927b487af4484"


def test_the_ladders_of_answerable_questions_are_unchanged(ladders):
    import hashlib
    import json

    blob = json.dumps([[ladder.question.question_id, [[r.name, r.text, r.tier] for r in ladder.rungs]]
                       for ladder in ladders])
    assert hashlib.sha256(blob.encode()).hexdigest() == ANSWERABLE_LADDERS_SHA256


def unanswerable(qid: str, text: str, context: str = CONTEXT) -> Question:
    return question(qid, [], context, text)


def test_an_unanswerable_question_gets_abstentions_as_correct_rungs_and_invented_answers_as_wrong_ones():
    asked = unanswerable("u1", "Where did the Royal Society meet in 2005?")
    pool = [asked, question("q2", ["Paris"], CONTEXT, "Where did it meet?"),
            question("q3", ["24"], CONTEXT, "How many members?"), unanswerable("u2", "Who chaired it?")]
    ladders, skipped = build_ladders([asked, pool[1]], pool)
    assert not skipped
    own, answerable = ladders
    assert own.answers() == {"abstain": ABSTAIN, "abstain_sentence": ABSTAIN_SENTENCE, "invented": "Paris",
                             "invented_sentence": WRONG_SENTENCE.format(answer="Paris")}
    assert own.tiers() == {"abstain": 0, "abstain_sentence": 0, "invented": 2, "invented_sentence": 2}
    assert ABSTAIN == ABSTENTION and is_abstention(ABSTAIN_SENTENCE)
    assert not is_abstention(own.answers()["invented_sentence"])
    assert [r.name for r in answerable.rungs] == ["gold", "gold_sentence", "wrong", "wrong_sentence", "abstain"]
    assert answerable.tiers()["abstain"] == 2  # the same rung, wrong where the text answers
    assert len({r.name for r in own.rungs}) == len(own.rungs) and len(set(own.answers().values())) == 4


def test_the_invented_answer_is_of_the_kind_the_question_asks_for():
    others = [question("q2", ["Paris"], CONTEXT, "Where?"), question("q3", ["gravity"], CONTEXT, "About what?")]
    how_many = unanswerable("u1", "How many members left?")
    for seed in range(10):  # no other answer is a number: the context's numbers instead
        ladders, _ = build_ladders([how_many], [how_many, *others], seed=seed)
        assert ladders[0].answers()["invented"] in {"1998", "24"}
    who = unanswerable("u2", "Who chaired the meeting?")
    ladders, _ = build_ladders([who], [who, *others])
    assert ladders[0].answers()["invented"] == "Paris"  # another question's answer of its kind
    bare = unanswerable("u3", "Why?", "the grass is green.")
    unknown = question("q4", ["unknown"], bare.context, "What was lost?")  # an abstention is never invented
    ladders, skipped = build_ladders([bare, who], [bare, unknown, who])
    assert skipped == {NO_INVENTED_ANSWER: 1} and ladders[0].question.question_id == "u2"


def test_an_unanswerable_question_with_too_few_rungs_asked_for_is_skipped():
    who = unanswerable("u1", "Who chaired the meeting?")
    ladders, skipped = build_ladders([who], [who], rungs=("gold", "wrong", "abstain"))
    assert ladders == [] and skipped == {FEW_RUNGS: 1}
    ladders, skipped = build_ladders([who], [who], rungs=("abstain", "invented"))
    assert not skipped and list(ladders[0].answers()) == ["abstain", "invented"]


@pytest.mark.parametrize("rungs, asked, message", [
    (("abstain", "abstain_sentence"), "unanswerable", r"rungs abstain, abstain_sentence: the ladders of questions "
     r"without gold answers would have no wrong rung \(their rungs' tiers: \{'abstain': 0, 'abstain_sentence': 0, "
     r"'invented': 2, 'invented_sentence': 2\}\)"),
    (("invented", "invented_sentence"), "unanswerable", r"without gold answers would have no correct rung"),
    (("gold", "gold_sentence", "partial"), "answerable", r"rungs gold, gold_sentence, partial: the ladders of "
     r"questions with gold answers would have no wrong rung \(their rungs' tiers: \{'gold': 0, "),
    (("abstain", "abstain_sentence"), "both", r"questions with gold answers would have no correct rung"),
    (("partial", "invented"), "answerable", r"with gold answers would have no correct and no wrong rung"),
])
def test_a_kind_of_ladder_without_a_correct_or_a_wrong_rung_is_refused_before_any_ladder(rungs, asked, message):
    who, answered = unanswerable("u1", "Who chaired the meeting?"), question("q1", ["Paris"], CONTEXT, "Where?")
    questions = {"unanswerable": [who], "answerable": [answered], "both": [answered, who]}[asked]
    with pytest.raises(ValueError, match=message):
        build_ladders(questions, questions, rungs=rungs)


def test_a_kind_of_ladder_not_built_needs_no_rungs_of_its_own():
    who, answered = unanswerable("u1", "Who chaired the meeting?"), question("q1", ["Paris"], CONTEXT, "Where?")
    ladders, _ = build_ladders([who], [who, answered], rungs=("abstain", "invented"))  # no answerable question
    assert [r.name for r in ladders[0].rungs] == ["abstain", "invented"]
    ladders, skipped = build_ladders([who], [who], rungs=("gold", "gold_sentence"))  # too few: skipped, no error
    assert ladders == [] and skipped == {FEW_RUNGS: 1}


def test_rungs_and_their_tiers_on_each_kind_of_question():
    assert len(set(RUNGS)) == len(RUNGS) and set(RUNGS) == set(ANSWERABLE_TIERS) | set(UNANSWERABLE_TIERS)
    assert DEFAULT_RUNGS == tuple(name for name in RUNGS if name != "partial")
    assert rung_tier("abstain", True) == 2 and rung_tier("abstain", False) == 0
    assert rung_tier("invented", False) == 2 and rung_tier("invented", True) is None
    assert rung_tier("gold", False) is None and rung_tier("partial", True) == 1


def test_question_kinds():
    assert question_kind("How many people lived there in 1900?") == "numeric"
    assert question_kind("In what year did it end?") == question_kind("When did it end?") == "numeric"
    assert question_kind("Who was king when the war began?") == "entity"  # the first wh-phrase decides
    assert question_kind("Which country won?") == question_kind("Where is it?") == "entity"
    assert question_kind("Why did it fail?") == "other"
