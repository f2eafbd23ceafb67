"""Abstention detection on replies of the kinds small models write, and where it must say no."""

from __future__ import annotations

import pytest

from raq.abstention import ABSTENTION, is_abstention, normalise

ABSTENTIONS = [
    ABSTENTION,
    "the text does not say",
    "The text doesn't say.",
    "",
    "   ",
    "...",
    "Answer: The text does not say.",
    "**The text does not say.**",
    '"The text does not say."',
    "The passage does not mention when the war ended.",
    "The context doesn't provide this information.",
    "The provided text does not specify the year.",
    "According to the text, it does not say.",
    "Based on the passage, there is no information about his birthplace.",
    "There is no information about this in the text.",
    "There is no mention of a specific date.",
    "No information given.",
    "No answer.",
    "Unanswerable",
    "Unknown.",
    "N/A",
    "Not mentioned.",
    "not stated",
    "I don't know.",
    "I do not know the answer.",
    "I cannot find the answer in the text.",
    "I'm unable to determine that from the passage.".replace("I'm unable to", "I am unable to"),
    "The answer cannot be determined from the text.",
    "This cannot be answered from the context.",
    "It is not mentioned in the passage.",
    "The information is not provided in the text.",
    "The answer is not in the text.",
    "This question cannot be answered from the passage.",
    "The question is not answered in the text.",
    "Unfortunately, the text does not specify the year.",
    "Sorry, but the passage does not say.",
    "The text provides no details on the matter.",
    "Nowhere in the passage is this stated.",
    "The text does not say.\nIt only mentions the river.",
    "The text does not contain the answer to this question.",
    "The document doesn’t state who won.",
    "The answer is: The text does not provide the answer to the question about when the Rhine was found.",
    "My answer to the question is: the passage does not say.",
    "The answer is unknown.",
    "This information isn't available.",
    "Sorry, but the information is not provided in the text.",
    "I'm sorry, I cannot find the answer.",
    "Unfortunately, there is no information about his birthplace.",
    "Unfortunately, according to the passage, it does not say.",
    "Sorry, I'm unable to answer that from the text.",
]

ANSWERS = [
    "Denver Broncos",
    "The Denver Broncos won Super Bowl 50.",
    "1999",
    "Paris, though the text does not say when.",
    "The text does not say when, but the winner was Denver.",
    "The text says the answer is 1999.",
    "The text states that no treaty was signed.",
    "According to the text, the answer is Paris.",
    "No",
    "None",
    "Nothing",
    "No one knows the exact number, but it is about 300.",
    "Not until 1850.",
    "Unknown Pleasures",  # an album name: the answer, not an abstention
    "It is known as the Golden City.",
    "There is a river called the Rhine.",
    "Sorry Seems to Be the Hardest Word",
    "The answer is: 20%",
    "The answer is 1990.",
    "The text mentions that the first map was made in 1809 by William Maclure, but it does not say who drew it.",
    "The answer to this question is: When do members vote of the beginning form of the bill?",
    # positive statements: "is found", "is provided", "is known" say the answer is there
    "The answer is found in the second paragraph.",
    "The information is provided by the census.",
    "the answer is known",
    "This question is answered in the third paragraph: 1990.",
    # an apology that goes on to answer
    "Unfortunately, the army was defeated.",
    "Sorry, but the answer is 1990.",
    "I'm sorry, the Broncos won.",
    "Unfortunately, there were only 300 survivors.",
]


@pytest.mark.parametrize("reply", ABSTENTIONS)
def test_abstentions_are_found(reply: str) -> None:
    assert is_abstention(reply), reply


@pytest.mark.parametrize("reply", ANSWERS)
def test_answers_are_not_abstentions(reply: str) -> None:
    assert not is_abstention(reply), reply


def test_normalise_drops_markup_and_labels() -> None:
    assert normalise("  **Answer:  The  Text does NOT say.**  ") == "the text does not say"
    assert normalise("‘It’s unknown’") == "it's unknown"
