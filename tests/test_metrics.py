"""Word counts and SQuAD EM/F1 against the official script's behaviour."""

from __future__ import annotations

import pytest

from raq.metrics import exact_match, f1, normalize_answer, paper_words, words


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
