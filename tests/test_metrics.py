"""Word counts and SQuAD EM/F1 against the official script's behaviour."""

from __future__ import annotations

import pytest

from raq.metrics import exact_match, exact_match_v2, f1, f1_v2, normalize_answer, paper_words, words


@pytest.mark.parametrize("text, paper, corrected", [
    ("Denver Broncos", 2, 2),
    ("In 2016, 24–10.", 1, 4),
    ("Zürich's café", 3, 2),        # the reference splits at non-ASCII letters
    ("don't stop", 2, 2),
    ("", 0, 0),
])
def test_word_definitions(text, paper, corrected):
    assert paper_words(text) == paper
    assert words(text) == corrected


def test_normalisation_follows_squad_v11():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"


def test_exact_match_and_f1_take_the_best_gold_answer():
    gold = ["Denver Broncos", "The Broncos"]
    assert exact_match("the broncos.", gold) == 1.0
    assert exact_match("Broncos of Denver", gold) == 0.0
    assert f1("Broncos", ["Denver Broncos"]) == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert f1("Broncos", gold) == 1.0  # "The Broncos" normalises to "broncos"
    assert f1("broncos", ["The Broncos"]) == 1.0
    assert f1("Carolina Panthers", gold) == 0.0


# SQuAD 2.0's official evaluation (evaluate-v2.0.py): compute_exact / compute_f1 with gold
# answers that normalise to nothing dropped, and [""] for a question without any.
@pytest.mark.parametrize("prediction, gold, em, f1_score", [
    ("", [], 1.0, 1.0),                       # a correct abstention
    ("Denver", [], 0.0, 0.0),                 # an invented answer to an unanswerable question
    ("", ["Denver Broncos"], 0.0, 0.0),       # a wrong abstention
    ("the", [], 1.0, 1.0),                    # normalises to nothing: no answer
    ("Denver Broncos", ["Denver Broncos", "Broncos"], 1.0, 1.0),
    ("the Broncos of Denver", ["Denver Broncos"], 0.0, 0.8),
    ("Broncos", ["a", "Denver Broncos"], 0.0, 2 / 3),  # the gold "a" normalises to nothing and is dropped
])
def test_squad_v2_exact_match_and_f1(prediction, gold, em, f1_score):
    assert exact_match_v2(prediction, gold) == em
    assert f1_v2(prediction, gold) == pytest.approx(f1_score)


def test_squad_v2_scores_equal_v11_on_answered_answerable_questions():
    for prediction, gold in [("Denver Broncos", ["Denver Broncos"]), ("the Broncos", ["Denver Broncos", "Broncos"]),
                             ("Carolina", ["Denver Broncos"]), ("in 1999 it was", ["1999", "the year 1999"])]:
        assert exact_match_v2(prediction, gold) == exact_match(prediction, gold)
        assert f1_v2(prediction, gold) == pytest.approx(f1(prediction, gold))
