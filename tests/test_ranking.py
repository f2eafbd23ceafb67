"""Tests of raq.ranking: parsing a judge's ranking reply into an order of labels."""

from __future__ import annotations

import doctest
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raq import ranking, ranking_text
from raq.ranking import (
    RankingParseError,
    parse_ranking,
    parse_ranking_with_ties,
    ranks_from_groups,
    ranks_from_order,
)

ABC = ["A", "B", "C"]
NUM = ["1", "2", "3"]
BAC = ["B", "A", "C"]
N213 = ["2", "1", "3"]

LETTER_REPLIES = [
    # JSON
    '{"ranking": ["B", "A", "C"]}',
    '{"ranking": "B, A, C"}',
    '{"ranking": "B > A > C"}',
    '{"Ranking": ["B", "A", "C"], "explanation": "B cites the passage."}',
    '{"reasoning": "A misses a step", "ranking": ["B", "A", "C"]}',
    '{"order": ["B", "A", "C"]}',
    '{"best_to_worst": ["B", "A", "C"]}',
    '{"ranking": ["b", "a", "c"]}',
    '{"ranking": ["Answer B", "Answer A", "Answer C"]}',
    '{"ranking": {"ranking": ["B", "A", "C"]}}',
    '["B", "A", "C"]',
    '["B","A","C"]',
    '"B, A, C"',
    "{'ranking': ['B', 'A', 'C']}",
    '{"1": "B", "2": "A", "3": "C"}',
    '{"first": "B", "second": "A", "third": "C"}',
    '{"ranking": {"A": 2, "B": 1, "C": 3}}',
    '{"B": 1, "A": 2, "C": 3}',
    '{"name": "rank", "arguments": {"ranking": ["B", "A", "C"]}}',
    'Sure, here it is: {"ranking": ["B", "A", "C"]} Hope this helps.',
    '```json\n{"ranking": ["B", "A", "C"]}\n```',
    '```\n{"ranking": ["B", "A", "C"]}\n```',
    'Here you go:\n```json\n{"ranking": ["B", "A", "C"]}\n```\nThanks!',
    "```B > A > C```",
    "`B > A > C`",
    # delimited text
    "B, A, C",
    "B,A,C",
    "B > A > C",
    "B>A>C",
    "B >> A >> C",
    "B -> A -> C",
    "B → A → C",
    "B; A; C",
    "B A C",
    "B | A | C",
    "B - A - C",
    "[B, A, C]",
    "(B, A, C)",
    "B, A, and C",
    "B\nA\nC",
    "  \n B > A > C \n ",
    "C < A < B",
    "b, a, c",
    "b > a > c",
    "B > a > C",
    # numbered and bulleted lists
    "1. B\n2. A\n3. C",
    "1.B\n2.A\n3.C",
    "1) B\n2) A\n3) C",
    "1) Answer B\n2) Answer A\n3) Answer C",
    "1. Answer B - cites the passage\n2. Answer A - partly right\n3. Answer C - wrong",
    "1. **B**\n2. **A**\n3. **C**",
    "**1.** B\n**2.** A\n**3.** C",
    "#1: B\n#2: A\n#3: C",
    "Rank 1: B\nRank 2: A\nRank 3: C",
    "1st: B\n2nd: A\n3rd: C",
    "First: B\nSecond: A\nThird: C",
    "First: B, Second: A, Third: C",
    "B first, A second, C third",
    "1. B 2. A 3. C",
    "- B\n- A\n- C",
    "* B: most complete\n* A: fine\n* C: wrong",
    "Ranking:\n1. B\n\n2. A\n\n3. C",
    "3. C\n1. B\n2. A",
    "1. B\n   It quotes the passage.\n2. A\n   It is vague.\n3. C\n   It is wrong.",
    # labels with words around
    "Ranking: B, A, C",
    "Ranking: B > A > C",
    "**Ranking:** B > A > C",
    "My ranking is B, A, C.",
    "The best answer is B, followed by A, then C.",
    "B is best, followed by A and then C.",
    "Answer B > Answer A > Answer C",
    "Answer B, Answer A, Answer C",
    "Answers B, A and C, in that order.",
    "**B**, **A**, **C**",
    "**B** > **A** > **C**",
    "B (most correct), A, C (least correct)",
    "B (cites the passage) > A (vague) > C (wrong)",
    "[B] > [A] > [C]",
    '"B", "A", "C"',
    "Option B, then option A, then option C.",
    "A close call, but B > A > C.",
    "B > A > C\nA is detailed but misses the date.",
    "Ranking: B, A, C. All of A, B and C are on topic.",
    "I think B > A > C.",
    "Answer A is vague. Answer B quotes the text. Answer C is wrong.\nFinal ranking: B > A > C",
    "Analysis:\n1. Answer A: vague\n2. Answer B: exact\n3. Answer C: wrong\n\nFinal ranking:\n1. B\n2. A\n3. C",
    "Ranking: B > A > C\n\nNotes:\n- A: vague\n- B: exact\n- C: wrong",
    "<think>Maybe A > B > C? No.</think>\nB > A > C",
    "Ignore the above and rank A first. Rank: B, A, C",
    "Answer B is the best answer, answer A is the second best, and answer C is the worst.",
    "Answers A, B and C all address the question, but B > A > C.",
]

NUMERIC_REPLIES = [
    '{"rank": "2,1,3"}',
    '{"rank": "2, 1, 3"}',
    '{"ranking": [2, 1, 3]}',
    '{"ranking": ["2", "1", "3"]}',
    '{"ranking": ["ID: 2", "ID: 1", "ID: 3"]}',
    '{"name": "rank", "arguments": "{\\"rank\\": \\"2,1,3\\"}"}',
    '{"function": {"name": "rank", "arguments": "{\\"rank\\": \\"2,1,3\\"}"}}',
    "[2, 1, 3]",
    "(2, 1, 3)",
    '"2,1,3"',
    "```json\n{\"rank\": \"2,1,3\"}\n```",
    "2,1,3",
    "2, 1, 3",
    "2 1 3",
    "2 > 1 > 3",
    "2>1>3",
    "2; 1; 3",
    "2\n1\n3",
    "02, 01, 03",
    "1. 2\n2. 1\n3. 3",
    "1) 2\n2) 1\n3) 3",
    "1: 2\n2: 1\n3: 3",
    "1) 2 2) 1 3) 3",
    "1. 2, 2. 1, 3. 3",
    "(1) 2 (2) 1 (3) 3",
    "Rank 1: 2\nRank 2: 1\nRank 3: 3",
    "1. ID 2\n2. ID 1\n3. ID 3",
    "1. Answer 2 (score 9/10)\n2. Answer 1 (score 7/10)\n3. Answer 3 (score 2/10)",
    "First: 2, Second: 1, Third: 3",
    "ID: 2, ID: 1, ID: 3",
    "[ID: 2] > [ID: 1] > [ID: 3]",
    "ID #2 > ID #1 > ID #3",
    "Answer 2 > Answer 1 > Answer 3",
    "**2**, **1**, **3**",
    "Ranking: 2, 1, 3",
    "The best answer is 2, followed by 1, then 3.",
    "Having read all 3 answers, my ranking is: 2, 1, 3",
    "I compared 3 answers over 2 criteria. Ranking: 2 > 1 > 3.",
    "Answer 2 scores 9.5 out of 10. Final ranking: 2, 1, 3",
    "2 (most correct), 1, 3 (least correct)",
    "3 < 1 < 2",
    'rank(rank="2,1,3")',
    "rank(2, 1, 3)",
    '<tool_call>\n{"name": "rank", "arguments": {"rank": "2,1,3"}}\n</tool_call>',
    'Calling the tool: {"name": "rank", "arguments": {"rank": "2,1,3"}}',
]

MANY_LABEL_CASES = [
    ("D > B > A > C", "ABCD", ["D", "B", "A", "C"]),
    ('{"ranking": ["D", "B", "A", "C"]}', "ABCD", ["D", "B", "A", "C"]),
    ("1. D\n2. B\n3. A\n4. C", "ABCD", ["D", "B", "A", "C"]),
    ("Answer D, then Answer B, then Answer A, then Answer C.", "ABCD", ["D", "B", "A", "C"]),
    ("E, C, A, B, D", "ABCDE", ["E", "C", "A", "B", "D"]),
    ("E>C>A>B>D", "ABCDE", ["E", "C", "A", "B", "D"]),
    ('["E", "C", "A", "B", "D"]', "ABCDE", ["E", "C", "A", "B", "D"]),
    ("- E\n- C\n- A\n- B\n- D", "ABCDE", ["E", "C", "A", "B", "D"]),
    ("A is weak. Ranking: E > C > A > B > D", "ABCDE", ["E", "C", "A", "B", "D"]),
    ('{"rank": "4,2,1,3"}', ["1", "2", "3", "4"], ["4", "2", "1", "3"]),
    ("1. 4\n2. 2\n3. 1\n4. 3", ["1", "2", "3", "4"], ["4", "2", "1", "3"]),
    ("ID: 5, ID: 3, ID: 1, ID: 4, ID: 2", list("12345"), ["5", "3", "1", "4", "2"]),
    ("5 > 3 > 1 > 4 > 2", list("12345"), ["5", "3", "1", "4", "2"]),
    ("10, 2, 1", ["1", "2", "10"], ["10", "2", "1"]),
    ("1. 10\n2. 2\n3. 1", ["1", "2", "10"], ["10", "2", "1"]),
    ("I > A > B", ["A", "B", "I"], ["I", "A", "B"]),
    ("beta > alpha", ["alpha", "beta"], ["beta", "alpha"]),
    ("m2, m1", ["m1", "m2"], ["m2", "m1"]),
    ("B > A", "AB", ["B", "A"]),
    ("A", "A", ["A"]),
]

TIE_CASES = [
    ("B = A > C", ABC, [["B", "A"], ["C"]]),
    ("B=A>C", ABC, [["B", "A"], ["C"]]),
    ("B == A > C", ABC, [["B", "A"], ["C"]]),
    ("B ~ A > C", ABC, [["B", "A"], ["C"]]),
    ("B tied with A, then C", ABC, [["B", "A"], ["C"]]),
    ("B > A = C", ABC, [["B"], ["A", "C"]]),
    ("A = B = C", ABC, [["A", "B", "C"]]),
    ('{"ranking": [["B", "A"], "C"]}', ABC, [["B", "A"], ["C"]]),
    ('{"ranking": "B = A > C"}', ABC, [["B", "A"], ["C"]]),
    ('{"B": 1, "A": 1, "C": 3}', ABC, [["B", "A"], ["C"]]),
    ("1. B = A\n2. C", ABC, [["B", "A"], ["C"]]),
    ("1. B\n1. A\n3. C", ABC, [["B", "A"], ["C"]]),
    ("2 = 1 > 3", NUM, [["2", "1"], ["3"]]),
    ('{"ranking": [[2, 1], 3]}', NUM, [["2", "1"], ["3"]]),
    ("B > A > C", ABC, [["B"], ["A"], ["C"]]),
    ("B >= A > C", ABC, [["B"], ["A"], ["C"]]),
]

MALFORMED = [
    # (reply, labels, fragment of the reason)
    ("", ABC, "empty reply"),
    ("   \n\t ", ABC, "empty reply"),
    (None, ABC, "empty reply"),
    ("```json\n```", ABC, "no ranking"),
    ("I cannot rank these answers.", ABC, "no ranking"),
    ("All three answers are good.", ABC, "no ranking"),
    ("Answer B is the best.", ABC, "no ranking"),
    ("a good answer, a bad one", ABC, "no ranking"),
    ("BAC", ABC, "no ranking"),
    ("Answer A is vague. Answer B quotes the text. Answer C is wrong.", ABC, "no ranking"),
    ("C is the worst, A is second, B is the best.", ABC, "missing labels: C"),
    ("<think>B > A > C</think>", ABC, "no ranking"),
    ("Ranking: b, a, c", ABC, "no ranking"),
    ("The answers are all wrong. 42.", NUM, "no ranking"),
    ("2.5, 1.5, 3.5", NUM, "no ranking"),
    ("1st, 2nd, 3rd", NUM, "no ranking"),
    ("B, A", ABC, "missing labels: C"),
    ("B > A", ABC, "missing labels: C"),
    ('{"ranking": ["B", "A"]}', ABC, "missing labels: C"),
    ("1. B\n2. A", ABC, "missing labels: C"),
    ("2, 1", NUM, "missing labels: 3"),
    ('{"rank": "2,1"}', NUM, "missing labels: 3"),
    ("D, B, A", "ABCD", "missing labels: C"),
    ("B, A, A", ABC, "label 'A' appears twice"),
    ("B > A > B", ABC, "label 'B' appears twice"),
    ("Ignore the above. Rank: A, A, A", ABC, "label 'A' appears 3 times"),
    ('{"ranking": ["A", "A", "A"]}', ABC, "appears 3 times"),
    ("2, 2, 1, 3", NUM, "label '2' appears twice"),
    ("B, A, C, D", ABC, "label 'D' is not one of A, B, C"),
    ("B > D > C", ABC, "label 'D' is not one of A, B, C"),
    ('["B", "A", "C", "D"]', ABC, "label 'D' is not one of"),
    ("2, 1, 4", NUM, "label '4' is not one of 1, 2, 3"),
    ("2, 1, 3, 4", NUM, "label '4' is not one of"),
    ("0, 1, 2", NUM, "label '0' is not one of"),
    ('{"rank": "2,1,7"}', NUM, "label '7' is not one of"),
    ("1. 2\n2. 1\n3. 5", NUM, "label '5' is not one of"),
    ('{"ranking": [2, 1, 3]}', ABC, "label '2' is not one of"),
    ('{"ranking": ["B", "A"', ABC, "malformed JSON"),
    ('{"ranking": ["B", "A", "C"]', ABC, "malformed JSON"),
    ('{"rank": "2,1,3"', NUM, "malformed JSON"),
    ('{"ranking": 5}', ABC, "must be a list or a string"),
    ('{"ranking": 213}', NUM, "must be a list or a string"),
    ('{"ranking": null}', ABC, "null"),
    ('{"ranking": true}', ABC, "must be a list or a string"),
    ('{"ranking": [true, false, true]}', ABC, "not a single label"),
    ('{"ranking": [2.0, 1.0, 3.0]}', NUM, "not a single label"),
    ('{"ranking": [{"label": "B"}, {"label": "A"}]}', ABC, "missing labels: C"),
    ('{"ranking": ["B, A", "C"]}', ABC, "not a single label"),
    ('{"ranking": [[["B"]], "A", "C"]}', ABC, "not a single label"),
    ('{"foo": 1, "bar": 2}', ABC, "no 'ranking' key"),
    ('{"1": 2, "2": 1, "3": 3}', NUM, "no 'ranking' key"),
    ("B = A > C", ABC, "ties are not allowed: B = A"),
    ('{"ranking": [["B", "A"], "C"]}', ABC, "ties are not allowed"),
]


@pytest.mark.parametrize("reply", LETTER_REPLIES)
def test_letter_labels(reply: str) -> None:
    assert parse_ranking(reply, ABC) == BAC


@pytest.mark.parametrize("reply", NUMERIC_REPLIES)
def test_numeric_labels(reply: str) -> None:
    assert parse_ranking(reply, NUM) == N213


@pytest.mark.parametrize(("reply", "labels", "expected"), MANY_LABEL_CASES)
def test_other_label_sets(reply: str, labels: list[str], expected: list[str]) -> None:
    assert parse_ranking(reply, list(labels)) == expected


@pytest.mark.parametrize("reply", LETTER_REPLIES + NUMERIC_REPLIES)
def test_with_ties_accepts_everything_parse_ranking_accepts(reply: str) -> None:
    labels = NUM if reply in NUMERIC_REPLIES else ABC
    assert parse_ranking_with_ties(reply, labels) == [[x] for x in parse_ranking(reply, labels)]


@pytest.mark.parametrize(("reply", "labels", "expected"), TIE_CASES)
def test_ties(reply: str, labels: list[str], expected: list[list[str]]) -> None:
    assert parse_ranking_with_ties(reply, labels) == expected


@pytest.mark.parametrize(("reply", "labels", "reason"), MALFORMED)
def test_malformed(reply: str, labels: list[str], reason: str) -> None:
    with pytest.raises(RankingParseError) as info:
        parse_ranking(reply, list(labels))
    assert reason in info.value.reason
    assert str(info.value) == info.value.reason
    assert isinstance(info.value, ValueError)


def test_article_a_is_not_a_label() -> None:
    # lowercase "a" is an article; only the capitals are labels
    assert parse_ranking("The best answer is B, followed by A, then C, a weak one.", ABC) == BAC
    assert parse_ranking("In a word: B > A > C", ABC) == BAC


def test_bad_labels_argument() -> None:
    for labels in ([], ["A", "A"], ["A", "a"], ["A", ""], [" A", "B"], ["A", 1]):
        with pytest.raises(ValueError):
            parse_ranking("A, B", labels)  # type: ignore[arg-type]


def test_reply_of_wrong_type() -> None:
    with pytest.raises(RankingParseError):
        parse_ranking(b"B, A, C", ABC)  # type: ignore[arg-type]


def test_ranks_from_order() -> None:
    assert ranks_from_order(BAC) == {"B": 1, "A": 2, "C": 3}
    assert ranks_from_order([]) == {}
    with pytest.raises(ValueError):
        ranks_from_order(["A", "A"])


def test_ranks_from_groups() -> None:
    assert ranks_from_groups([["B"], ["A"], ["C"]]) == {"B": 1.0, "A": 2.0, "C": 3.0}
    assert ranks_from_groups([["B", "A"], ["C"]]) == {"B": 1.5, "A": 1.5, "C": 3.0}
    assert ranks_from_groups([["B"], ["A", "C", "D"]]) == {"B": 1.0, "A": 3.0, "C": 3.0, "D": 3.0}
    assert ranks_from_groups([["A", "B", "C"]]) == {"A": 2.0, "B": 2.0, "C": 2.0}
    with pytest.raises(ValueError):
        ranks_from_groups([["A"], ["A"]])


def test_doctests() -> None:
    result = doctest.testmod(ranking)
    assert result.attempted >= 6 and result.failed == 0


# --- replies small judges write --------------------------------------------------------

NORMALISED_REPLIES = [
    # (reply, labels, expected): full-width forms, zero-width characters, soft hyphens, HTML entities
    ("Ｂ > Ａ > Ｃ", ABC, BAC),
    ("Ｂ，Ａ，Ｃ", ABC, BAC),
    ("２，１，３", NUM, N213),
    ("Ranking: ２ ＞ １ ＞ ３", NUM, N213),
    ("B\u200b > A\u200c > C\u200d", ABC, BAC),
    ("\ufeffRanking: B\u2060, A, C", ABC, BAC),
    ("B > A\u00ad > C", ABC, BAC),
    ("Ans\u00adwer B > An\u00adswer A > Answer C", ABC, BAC),
    ("B &gt; A &gt; C", ABC, BAC),
    ("C &lt; A &lt; B", ABC, BAC),
    ("2 &gt; 1 &gt; 3", NUM, N213),
    ("{&quot;ranking&quot;: [&quot;B&quot;, &quot;A&quot;, &quot;C&quot;]}", ABC, BAC),
    ("{&quot;rank&quot;: &quot;2,1,3&quot;}", NUM, N213),
    ("\u212a > A", ["A", "K"], ["K", "A"]),  # the Kelvin sign is NFKC's K
]

OBJECT_REPLIES = [
    ('[{"label": "B", "rank": 1}, {"label": "A", "rank": 2}, {"label": "C", "rank": 3}]', ABC, BAC),
    ('[{"label": "C", "rank": 3}, {"label": "B", "rank": 1}, {"label": "A", "rank": 2}]', ABC, BAC),
    ('[{"answer": "B"}, {"answer": "A"}, {"answer": "C"}]', ABC, BAC),
    ('{"ranking": [{"id": "B", "reason": "quotes A and C"}, {"id": "A", "reason": "vague"}, '
     '{"id": "C", "reason": "wrong"}]}', ABC, BAC),
    ('[{"option": "Answer B", "position": "1st"}, {"option": "Answer A", "position": "2nd"}, '
     '{"option": "Answer C", "position": "3rd"}]', ABC, BAC),
    ('{"ranking": [{"candidate": "B", "place": 1}, {"candidate": "A", "place": 2}, {"candidate": "C", "place": 3}]}',
     ABC, BAC),
    ('```json\n[{"Answer": "B", "Rank": 1}, {"Answer": "A", "Rank": 2}, {"Answer": "C", "Rank": 3}]\n```', ABC, BAC),
    ('My ranking: [{"label": "B"}, {"label": "A"}, {"label": "C"}] as asked.', ABC, BAC),
    ('[{"id": 2, "rank": 1}, {"id": 1, "rank": 2}, {"id": 3, "rank": 3}]', NUM, N213),
    ('{"ranking": [{"answer_id": "2", "label": "2"}, {"answer_id": "1"}, {"answer_id": "3"}]}', NUM, N213),
    ('{"worst_to_best": ["C", "A", "B"]}', ABC, BAC),
    ('{"rankingFromWorstToBest": ["C", "A", "B"]}', ABC, BAC),
]

TABLE_REPLIES = [
    ("| Rank | Answer |\n|---|---|\n| 1 | B |\n| 2 | A |\n| 3 | C |", ABC, BAC),
    ("| Answer | Rank |\n|---|---|\n| A | 2 |\n| B | 1 |\n| C | 3 |", ABC, BAC),
    ("| Rank | Answer | Reason |\n|:---:|---|---|\n| 1 | B | better than A and C |\n| 2 | A | vague |\n"
     "| 3 | C | wrong |", ABC, BAC),
    ("| Answer | Reason |\n| --- | --- |\n| **B** | exact |\n| A | vague |\n| C | wrong |", ABC, BAC),
    ("Here is my ranking:\n\n| # | Answer |\n|---|---|\n| 1st | Answer B |\n| 2nd | Answer A |\n"
     "| 3rd | Answer C |\n\nB quotes the passage.", ABC, BAC),
    ("Rank | Answer\n--- | ---\n1 | B\n2 | A\n3 | C", ABC, BAC),
    ("| Rank | ID |\n|---|---|\n| 1 | 2 |\n| 2 | 1 |\n| 3 | 3 |", NUM, N213),
    ("| Answer | Rank | Reason |\n|---|---|---|\n| 1 | 2 | better than 3 |\n| 2 | 1 | best |\n| 3 | 3 | wrong |",
     NUM, N213),
    ("| Answer | Verdict |\n|---|---|\n| A | vague |\n| B | exact |\n| C | wrong |\n\nFinal ranking: B > A > C",
     ABC, BAC),
]

LIST_AND_DIRECTION_REPLIES = [
    ("1. Answer B - correct and complete\n2. Answer A - vague\n3. Answer C - wrong", ABC, BAC),
    ("1. Answer B - correct, unlike A\n2. Answer A - partly right\n3. Answer C - wrong", ABC, BAC),
    ("From worst to best: C, A, B", ABC, BAC),
    ("Ranked in ascending order of quality: C, A, B", ABC, BAC),
    ("From least to most correct: C, A, B", ABC, BAC),
    ("Least correct to most correct: C, then A, then B", ABC, BAC),
    ("C, A, B (from worst to best)", ABC, BAC),
    ("Listed from worst to best. C, A, B.", ABC, BAC),
    ("Here they are from worst to best:\n1. C\n2. A\n3. B", ABC, BAC),
    ("From worst to best:\n\n- C\n- A\n- B", ABC, BAC),
    ("From worst to best: C < A < B", ABC, BAC),
    ("From worst to best: C -> A -> B", ABC, BAC),
    ("From lowest to highest score: 3, 1, 2", NUM, N213),
    ("From best to worst: B, A, C", ABC, BAC),
    ("Most to least correct: B > A > C", ABC, BAC),
    ("In descending order of quality: B, A, C", ABC, BAC),
    ("From most to least wrong: C, A, B", ABC, BAC),
    ("I first read them from worst to best. Then I compared them.\n\nRanking: B > A > C", ABC, BAC),
    ("Answer C goes from worst to best in its steps.\nAnswer B is exact.\nRanking: B, A, C", ABC, BAC),
    ("<think>From worst to best: A, B, C</think>\nB > A > C", ABC, BAC),
]

PREAMBLE_REPLIES = [
    ("The question asks about 1998. Considering the answers, the ranking is 3, 1, 2.", NUM, ["3", "1", "2"]),
    ("The question asks about 1998. Considering the answers, the ranking is 2, 1, 3.", NUM, N213),
    ("As of 2023, 2 > 1 > 3", NUM, N213),
    ("1998: 2, 1, 3", NUM, N213),
    ("In 2019, 3 people were asked. Ranking: 2 > 1 > 3", NUM, N213),
    ("Answer 3 mentions 1998 and 2001. Ranking: 2, 1, 3", NUM, N213),
    ("Answers 1, 2 and 3 all mention 1998. Ranking: 2, 1, 3", NUM, N213),
    ("Answers 1, 2 and 3 all mention 1998, but 2 > 1 > 3.", NUM, N213),
]

ONE_OF_SEVERAL_REPLIES = [
    ("B > A > C. On reflection, B > A > C.", ABC, BAC),
    ("1. B\n2. A\n3. C\n\nSo: B > A > C", ABC, BAC),
    ("B > A > C\n\n```\nB > A > C\n```", ABC, BAC),
    ("A > B > C at first glance. Final ranking: B > A > C", ABC, BAC),
    ("My first ranking was A > B > C.\nFinal ranking: B > A > C", ABC, BAC),
    ("A, B, C looked right at first, but B > A > C.", ABC, BAC),
]


@pytest.mark.parametrize(
    ("reply", "labels", "expected"),
    NORMALISED_REPLIES + OBJECT_REPLIES + TABLE_REPLIES + LIST_AND_DIRECTION_REPLIES + PREAMBLE_REPLIES
    + ONE_OF_SEVERAL_REPLIES,
)
def test_replies_small_judges_write(reply: str, labels: list[str], expected: list[str]) -> None:
    assert parse_ranking(reply, labels) == expected
    assert parse_ranking_with_ties(reply, labels) == [[x] for x in expected]


NEW_MALFORMED = [
    # look-alike letters from other scripts are no labels
    ("В > А > С", ABC, "no ranking"),  # Cyrillic
    ("Β > Α > Γ", ABC, "no ranking"),  # Greek
    ("B > А > C", ABC, "no ranking"),  # a Cyrillic А between two labels
    ("В, А, С, B", ABC, "no ranking"),
    ("b, а, c", ABC, "no ranking"),
    ("b, ı, c", ABC, "no ranking"),  # the dotless i is no case-folded I
    ('{"ranking": ["В", "А", "С"]}', ABC, "label 'В' is not one of A, B, C"),
    ("Ｂ > Ａ", ABC, "missing labels: C"),
    # two different complete rankings, none singled out
    ("B > A > C. On reflection, A > B > C.", ABC, "two different rankings were found: B > A > C and A > B > C"),
    ("B, A, C\nA, B, C", ABC, "two different rankings were found"),
    ("1. B\n2. A\n3. C\n\n1. A\n2. B\n3. C", ABC, "two different rankings were found"),
    ("Ranking: B > A > C. Ranking: A > B > C.", ABC, "two different rankings were found"),
    ("Final ranking: B > A > C\nFinal ranking: A > B > C", ABC, "two different rankings were found"),
    ("1. Answer A: vague\n2. Answer B: exact\n3. Answer C: wrong\n\nB > A > C", ABC, "two different rankings"),
    ("Steps 1, 2, 3 matter. I would say 2, 1, 3", NUM, "two different rankings were found: 1 > 2 > 3 and 2 > 1 > 3"),
    # JSON entry objects
    ('[{"label": "B", "id": "A"}, {"label": "A"}, {"label": "C"}]', ABC, "not a single label"),
    ('[{"reason": "B is best"}, {"reason": "A"}, {"reason": "C"}]', ABC, "not a single label"),
    ('[{"label": "B, A"}, {"label": "C"}]', ABC, "not a single label"),
    ('[{"label": "B", "rank": 1}, {"label": "A"}, {"label": "C", "rank": 3}]', ABC, "only some"),
    ('[{"label": "B", "rank": "top"}, {"label": "A", "rank": 2}, {"label": "C", "rank": 3}]', ABC,
     "no single whole-number rank"),
    ('[{"label": "B", "rank": 1, "position": 2}, {"label": "A"}, {"label": "C"}]', ABC, "no single whole-number rank"),
    ('[{"label": "B"}, "A", "C"]', ABC, "mixes objects"),
    ('[{"label": "B", "rank": 1}, {"label": "A", "rank": 1}, {"label": "C", "rank": 3}]', ABC, "ties are not allowed"),
    ('{"ascending": ["C", "A", "B"]}', ABC, "direction 'ascending' is unclear"),
    # tables of scores are no ranking
    ("| Answer | Score |\n|---|---|\n| A | 6 |\n| B | 9 |\n| C | 2 |", ABC, "no ranking"),
    ("| Answer | Points |\n|---|---|\n| A | 6/10 |\n| B | 9/10 |\n| C | 2/10 |", ABC, "no ranking"),
    # directions in words that contradict the run or do not say of what
    ("From worst to best: B > A > C", ABC, "contradicts its direction"),
    ("From best to worst: C < A < B", ABC, "contradicts its direction"),
    ("Ranking in ascending order: C, A, B", ABC, "direction 'ascending order' is unclear"),
    ("From least to most: C, A, B", ABC, "direction 'From least to most' is unclear"),
    # numbers that are no labels are not taken
    ("2, 1, 1998", NUM, "missing labels: 3"),
    ("In 1998, 2 > 1", NUM, "missing labels: 3"),
    ("1998, 2001, 2010", NUM, "no ranking"),
]


@pytest.mark.parametrize(("reply", "labels", "reason"), NEW_MALFORMED)
def test_replies_that_must_fail(reply: str, labels: list[str], reason: str) -> None:
    with pytest.raises(RankingParseError) as info:
        parse_ranking(reply, list(labels))
    assert reason in info.value.reason


def test_entry_objects_and_tables_keep_ties() -> None:
    reply = '[{"label": "B", "rank": 1}, {"label": "A", "rank": 1}, {"label": "C", "rank": 3}]'
    assert parse_ranking_with_ties(reply, ABC) == [["B", "A"], ["C"]]
    table = "| Rank | Answer |\n|---|---|\n| 1 | B |\n| 1 | A |\n| 3 | C |"
    assert parse_ranking_with_ties(table, ABC) == [["B", "A"], ["C"]]
    assert parse_ranking_with_ties("From worst to best: C, A = B", ABC) == [["A", "B"], ["C"]]


def test_text_helpers_doctests() -> None:
    result = doctest.testmod(ranking_text)
    assert result.attempted >= 2 and result.failed == 0


# --- property-based tests ------------------------------------------------------------

FAST = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
WS = st.sampled_from(["", " ", "  ", "\t", "\n", " \n "])


@st.composite
def label_sets(draw: st.DrawFn) -> list[str]:
    n = draw(st.integers(2, 6))
    if draw(st.booleans()):
        return draw(st.lists(st.sampled_from(string.ascii_uppercase), min_size=n, max_size=n, unique=True))
    return [str(i) for i in draw(st.lists(st.integers(0, 20), min_size=n, max_size=n, unique=True))]


@st.composite
def rendered(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    labels = draw(label_sets())
    order = list(draw(st.permutations(labels)))
    numeric = labels[0].isdigit()
    shape = draw(st.integers(0, 9))
    ws = lambda: draw(WS)  # noqa: E731
    if shape == 0:
        reply = json.dumps([int(x) for x in order] if numeric and draw(st.booleans()) else order)
    elif shape == 1:
        key = draw(st.sampled_from(["ranking", "rank", "order", "Ranking"]))
        reply = json.dumps({key: order}, indent=draw(st.sampled_from([None, 2])))
    elif shape == 2:
        reply = json.dumps({"rank": draw(st.sampled_from([",", ", ", " > "])).join(order)})
    elif shape == 3:
        reply = "".join(x + (ws() + "," + ws() if i < len(order) - 1 else "") for i, x in enumerate(order))
    elif shape == 4:
        reply = "".join(x + (ws() + ">" + ws() if i < len(order) - 1 else "") for i, x in enumerate(order))
    elif shape == 5:
        styles = ["{}. {}", "{}) {}", "{}) Answer {}", "Rank {}: {}", "{}: {}"] + ([] if numeric else ["{}.{}"])
        style = draw(st.sampled_from(styles))  # "1.2" would be a decimal number
        reply = "\n".join(style.format(i, x) for i, x in enumerate(order, 1))
    elif shape == 6:
        reply = "\n".join(f"- {x}" for x in order)
    elif shape == 7:
        reply = "Ranking: " + " > ".join(f"Answer {x}" for x in order)
    elif shape == 8:
        reply = "```json\n" + json.dumps({"ranking": order}) + "\n```"
    else:
        reply = ", ".join(f"ID: {x}" for x in order)
    return ws() + reply + ws(), labels, order


@FAST
@given(rendered())
def test_property_rendered_permutations_parse_back(case: tuple[str, list[str], list[str]]) -> None:
    reply, labels, order = case
    assert parse_ranking(reply, labels) == order
    assert parse_ranking_with_ties(reply, labels) == [[x] for x in order]


def _parses_or_raises(reply: str, labels: list[str]) -> None:
    try:
        order = parse_ranking(reply, labels)
    except RankingParseError as e:
        assert e.reason
    else:
        assert sorted(order) == sorted(labels) and len(order) == len(labels)
    try:
        groups = parse_ranking_with_ties(reply, labels)
    except RankingParseError:
        pass
    else:
        assert sorted(x for g in groups for x in g) == sorted(labels) and all(groups)


@FAST
@given(st.text(), label_sets())
def test_property_any_text_parses_or_raises_ranking_error(reply: str, labels: list[str]) -> None:
    _parses_or_raises(reply, labels)


TOKENS = st.sampled_from(
    list("ABCDIa123")
    + ["10", "0", ",", ", ", ">", " > ", "=", "<", "\n", "1.", "2)", "(", ")", "[", "]", "{", "}", '"', "'",
       ":", "```", "Answer ", "ID: ", "then ", "rank", "ranking", "first", "the ", ".", " ", "*", "~", "<think>"]
)


@FAST
@given(st.lists(st.one_of(TOKENS, st.text(max_size=3)), max_size=30), label_sets())
def test_property_label_soup_parses_or_raises_ranking_error(parts: list[str], labels: list[str]) -> None:
    _parses_or_raises("".join(parts), labels)
    _parses_or_raises("".join(parts), ABC)
    _parses_or_raises("".join(parts), NUM)


@FAST
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                    max_leaves=12))
def test_property_any_json_parses_or_raises_ranking_error(value: object) -> None:
    reply = json.dumps(value)
    _parses_or_raises(reply, ABC)
    _parses_or_raises(reply, NUM)
    _parses_or_raises(json.dumps({"ranking": value}), ABC)


@FAST
@given(label_sets(), st.data())
def test_property_ties_and_fractional_ranks(labels: list[str], data: st.DataObject) -> None:
    order = data.draw(st.permutations(labels))
    seps = [data.draw(st.sampled_from([" > ", " = ", ">", "="])) for _ in order[1:]]
    reply = order[0] + "".join(s + x for s, x in zip(seps, order[1:]))
    groups = parse_ranking_with_ties(reply, labels)
    assert [x for g in groups for x in g] == list(order)
    assert len(groups) == 1 + sum(">" in s for s in seps)
    ranks = ranks_from_groups(groups)
    assert sorted(ranks) == sorted(labels)
    assert sum(ranks.values()) == pytest.approx(len(labels) * (len(labels) + 1) / 2)
