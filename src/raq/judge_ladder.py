"""Answer ladders: candidate answers to a question whose quality order is known from the
dataset itself, for measuring how well a judge ranks correct answers above wrong ones.

Each rung is one answer with a tier (0 correct, 1 partial, 2 wrong); rung names are the
"model ids" the judge ranks, unique within a ladder. A ladder has the rungs asked for, in that
order, each when it exists for its question. For a question with gold answers:

* ``gold`` (0): the question's first gold answer, as is.
* ``gold_alt`` (0): the first other gold answer that is not part of ``gold``, i.e. whose
  normalised tokens (SQuAD normalisation) are not a contiguous run of gold's: a different span,
  or a longer one, that annotators accepted is as good an answer; a shorter one may drop part of
  it ("February 7" for "February 7, 2016") and is never used. Absent when there is none.
* ``gold_sentence`` (0): ``"According to the text, the answer is {gold}."``
* ``partial`` (1; only when asked, not in :data:`DEFAULT_RUNGS`): the first half of gold's
  whitespace-separated words (rounded up; trailing function words such as "and", "of" and
  trailing ``. , ; :`` dropped), when gold has at least 3 normalised tokens and that part is
  neither empty once normalised nor a gold answer. Absent otherwise.
* ``wrong`` (2): a plausible wrong answer from the same paragraph (below).
* ``wrong_sentence`` (2): ``"According to the text, the answer is clearly {wrong}: the passage
  states this directly, and it fully answers the question."``: the same frame, longer and
  confident, so that only the answer's correctness tells it from ``gold_sentence``.
* ``abstain`` (2): ``"The text does not say."`` (:data:`raq.abstention.ABSTENTION`).

For a question without gold answers (SQuAD 2.0's unanswerable ones; the only correct answer says
that the text does not contain one) the rungs and tiers are (:func:`rung_tier`):

* ``abstain`` (0): ``"The text does not say."``; ``abstain_sentence`` (0): ``"The passage does
  not give this information."``.
* ``invented`` (2): an invented answer, drawn as the wrong answer (below) of the kind the question
  asks for (:func:`question_kind`); ``invented_sentence`` (2): the frame of ``wrong_sentence`` around it.

Such a question is skipped when fewer than two of these are asked for (``"unanswerable_few_rungs"``)
or when it has no invented answer (``"no_invented_answer"``); each kind built needs a correct and a wrong rung.

In both sentences ``{gold}`` and ``{wrong}`` are the answer without trailing whitespace and ``. , ; :``.
``wrong_sentence`` is the longer one unless gold is over 77 characters longer than wrong (1% of SQuAD 1.1 dev).

The wrong answer. Candidates are, in ``pool`` order, the first gold answers (without trailing ``. , ; :``) of
the other questions about the same context, questions with the same normalised question text left out; only
when none fits, spans of the context: numbers for a numeric gold, runs of capitalised words for an entity gold
(see :func:`context_spans`), both for any other gold. A candidate fits when it overlaps no gold answer of the
question: token F1 0 (SQuAD normalisation), neither normalised text contains the other, no word in common
(lowercased letter and digit runs, number words "one" to "twenty" read as digits, so "24–10" meets "24-10" and
"three" meets "3"), and neither is the other's initials ("AFC", "American Football Conference"); an invented
answer fits when it is no abstention and not empty once normalised, and spans of its kind (if any fit) are
drawn instead when no other question's answer of that kind fits. Fitting candidates of the gold's kind (the
question's, for an invented one) are preferred (numeric: a digit or number word; entity: every word
capitalised but function words such as "of"; other); one of them is drawn with
``random.Random(f"{seed}:{question_id}")``. A question without a fitting candidate is skipped and counted
under ``"no_wrong_answer"`` (only when ``wrong`` or ``wrong_sentence`` is asked for; about 0.3% of SQuAD 1.1
dev). The same questions, pool, rungs and seed give the same ladders.
"""

from __future__ import annotations

import functools
import math
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .abstention import ABSTENTION, is_abstention
from .metrics import normalize_answer
from .records import Question

#: Each rung's tier on a question with gold answers, and on one without (``abstain`` is on both).
ANSWERABLE_TIERS = {"gold": 0, "gold_alt": 0, "gold_sentence": 0, "partial": 1, "wrong": 2, "wrong_sentence": 2,
                    "abstain": 2}
UNANSWERABLE_TIERS = {"abstain": 0, "abstain_sentence": 0, "invented": 2, "invented_sentence": 2}
RUNGS = (*ANSWERABLE_TIERS, *(name for name in UNANSWERABLE_TIERS if name not in ANSWERABLE_TIERS))
DEFAULT_RUNGS = tuple(name for name in RUNGS if name != "partial")
GOLD_SENTENCE = "According to the text, the answer is {answer}."
WRONG_SENTENCE = ("According to the text, the answer is clearly {answer}: the passage states this directly, "
                  "and it fully answers the question.")
ABSTAIN, ABSTAIN_SENTENCE = ABSTENTION, "The passage does not give this information."
NO_WRONG_ANSWER, NO_INVENTED_ANSWER, FEW_RUNGS = "no_wrong_answer", "no_invented_answer", "unanswerable_few_rungs"

_NUMBER_WORDS = {word: str(value) for value, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_FUNCTION_WORDS = frozenset("a an the of and or in on at to for by with from per as than de la le du des von van "
                            "der del da di y".split())
_CONNECTORS = frozenset("of the de la le du des von van der del da di y".split())
_SENTENCE_STARTERS = frozenset("the a an in on at it this that these those he she they his her its their after "
                               "before during when while although however as for by from with there some many "
                               "most since until if".split())
_WORD = re.compile(r"[^\W_]+")
_NUMBER = re.compile(r"[$£€]?\d+(?:[.,:–-]\d+)*%?")
_EDGE = "\"'“”‘’()[]{},.;:!?"
_ASKS = (("numeric", re.compile(r"\b(?:how (?:many|much|long|old|far|big|large|tall|high|often)|when|(?:what|which) "
                                r"(?:year|date|day|month|century|decade|percentage|percent|number|age|amount)s?)\b")),
         ("entity", re.compile(r"\b(?:who|whom|whose|where|(?:what|which) (?:is the )?(?:name|cit(?:y|ie)|"
                               r"countr(?:y|ie)|state|team|company|person|king|language|river|group|nation)s?)\b")))


def rung_tier(name: str, answerable: bool) -> int | None:
    """Rung ``name``'s tier on a question with gold answers (``answerable``) or without; None: no such rung there."""
    return (ANSWERABLE_TIERS if answerable else UNANSWERABLE_TIERS).get(name)


def question_kind(question: str) -> str:
    """The kind of answer ``question`` asks for, as :func:`kind` names it: the first of its wh-phrases
    decides ("how many", "when", "what year" ... numeric; "who", "where", "what city" ... entity), else other."""
    found = [(match.start(), name) for name, pattern in _ASKS if (match := pattern.search(question.lower()))]
    return min(found)[1] if found else "other"


@dataclass(frozen=True)
class Rung:
    """One candidate answer of a ladder: ``name`` is one of :data:`RUNGS`, ``tier`` 0 correct,
    1 partial, 2 wrong (for its question: :func:`rung_tier`)."""

    name: str
    text: str
    tier: int


@dataclass(frozen=True)
class Ladder:
    """A question and its rungs, in the order asked for."""

    question: Question
    rungs: tuple[Rung, ...]

    def answers(self) -> dict[str, str]:
        """Rung name -> answer text."""
        return {rung.name: rung.text for rung in self.rungs}

    def tiers(self) -> dict[str, int]:
        """Rung name -> tier."""
        return {rung.name: rung.tier for rung in self.rungs}


@functools.lru_cache(maxsize=1 << 16)
def _normal(text: str) -> str:
    return normalize_answer(text)


def _words(text: str) -> frozenset[str]:
    """Lowercased letter and digit runs without articles, number words as digits."""
    return frozenset(_NUMBER_WORDS.get(w, w) for w in _WORD.findall(text.lower()) if w not in ("a", "an", "the"))


class _Profile(NamedTuple):
    """What the overlap test compares of one text."""

    normal: str
    tokens: frozenset[str]
    words: frozenset[str]
    joined: str
    initials: str


@functools.lru_cache(maxsize=1 << 16)
def _profile(text: str) -> _Profile:
    normal = _normal(text)
    initials = "".join(w[0] for w in _WORD.findall(text.lower()) if w not in _FUNCTION_WORDS)
    return _Profile(normal, frozenset(normal.split()), _words(text), "".join(_WORD.findall(normal)), initials)


@functools.lru_cache(maxsize=1 << 16)
def kind(text: str) -> str:
    """``"numeric"``, ``"entity"`` or ``"other"`` (see the module docstring)."""
    if any(ch.isdigit() for ch in text) or any(w in _NUMBER_WORDS for w in _WORD.findall(text.lower())):
        return "numeric"
    content = [w for w in text.split() if any(c.isalpha() for c in w) and w.strip(_EDGE).lower() not in _FUNCTION_WORDS]
    if content and all(next(c for c in w if c.isalpha()).isupper() for w in content):
        return "entity"
    return "other"


def overlaps(candidate: str, gold: str) -> bool:
    """Whether ``candidate`` shares anything with ``gold`` (see the module docstring)."""
    a, b = _profile(candidate), _profile(gold)
    if not a.normal or not b.normal or a.normal in b.normal or b.normal in a.normal:
        return True
    if a.tokens & b.tokens or a.words & b.words:  # token F1 is above 0 exactly when the tokens meet
        return True
    return (len(a.joined) > 1 and a.joined == b.initials) or (len(b.joined) > 1 and b.joined == a.initials)


def _contained(part: list[str], whole: list[str]) -> bool:
    """Whether token list ``part`` is a contiguous run of ``whole``."""
    n = len(part)
    return any(whole[i:i + n] == part for i in range(len(whole) - n + 1))


def gold_alternative(question: Question) -> str | None:
    """The ``gold_alt`` answer, or None."""
    gold = _normal(question.gold_answers[0]).split()
    for answer in question.gold_answers[1:]:
        tokens = _normal(answer).split()
        if tokens and not _contained(tokens, gold):
            return answer
    return None


def partial_answer(question: Question) -> str | None:
    """The ``partial`` answer, or None."""
    gold = question.gold_answers[0]
    if len(_normal(gold).split()) < 3:
        return None
    words = gold.split()[: math.ceil(len(gold.split()) / 2)]
    while words and words[-1].strip(_EDGE).lower() in _FUNCTION_WORDS:
        words.pop()
    part = " ".join(words).rstrip(".,;:")
    normalised = _normal(part)
    if not normalised or normalised in {_normal(g) for g in question.gold_answers}:
        return None
    return part


def context_spans(context: str, wanted: str) -> list[str]:
    """Numbers (``wanted`` "numeric") or runs of capitalised words ("entity", joined by "of",
    "the", "de" and the like; punctuation ends a run) of ``context``, in order. A sentence's first
    word alone is no run, and common sentence openers ("The", "In", ...) do not start one."""
    if wanted == "numeric":
        return [m.group().rstrip(".,:–-") for m in _NUMBER.finditer(context)]
    spans: list[str] = []
    run: list[str] = []
    starts_sentence, run_at_start = True, False

    def close() -> None:
        words = run[1:] if run_at_start and run[0].lower() in _SENTENCE_STARTERS else run[:]
        while words and words[0].lower() in _CONNECTORS:
            words.pop(0)
        while words and words[-1].lower() in _CONNECTORS:
            words.pop()
        if words and not (run_at_start and len(run) == 1):
            spans.append(" ".join(words))
        run.clear()

    for raw in context.split():
        word = raw.strip(_EDGE)
        if run and raw[0] in "([{\"“‘":
            close()
        capital = bool(word) and word[0].isupper() and not any(ch.isdigit() for ch in word)
        if capital or (run and word.lower() in _CONNECTORS and raw == word):
            if not run:
                run_at_start = starts_sentence
            run.append(word)
            if raw.rstrip(_EDGE) != raw:
                close()
        elif run:
            close()
        starts_sentence = raw.rstrip("\"'”’)")[-1:] in (".", "!", "?")
    if run:
        close()
    return spans


def _clean(answer: str) -> str:
    return answer.strip().rstrip(".,;:").rstrip()


def _fitting(candidates: Sequence[str], question: Question) -> list[str]:
    """Candidates overlapping no gold answer, once each (by normalised text), in order; without
    gold answers, those that are no abstention and not empty once normalised."""
    seen: set[str] = set()
    fitting = []
    for candidate in candidates:
        key = _normal(candidate)
        if key in seen:
            continue
        seen.add(key)
        if key and not any(overlaps(candidate, gold) for gold in question.gold_answers) and (
                question.answerable or not is_abstention(candidate)):
            fitting.append(candidate)
    return fitting


def wrong_answer(question: Question, paragraph: Sequence[Question], seed: int) -> str | None:
    """The ``wrong`` answer drawn for ``question`` (its ``invented`` one, without gold answers) from
    the questions about its context (``paragraph``, which may include the question itself), or None
    when nothing fits."""
    rng = random.Random(f"{seed}:{question.question_id}")
    asked = _normal(question.question)
    others = [_clean(q.gold_answers[0]) for q in paragraph
              if q.gold_answers and q.question_id != question.question_id and _normal(q.question) != asked]
    gold_kind = kind(question.gold_answers[0]) if question.answerable else question_kind(question.question)
    fitting = _fitting(others, question)
    same_kind = [candidate for candidate in fitting if kind(candidate) == gold_kind]
    if not fitting or not (question.answerable or same_kind or gold_kind == "other"):
        wanted = ("numeric", "entity") if gold_kind == "other" else (gold_kind,)
        spans = [span for w in wanted for span in context_spans(question.context, w)]
        fitting = [s for s in _fitting(spans, question) if kind(s) == gold_kind or gold_kind == "other"] or fitting
        same_kind = [candidate for candidate in fitting if kind(candidate) == gold_kind]
    return rng.choice(same_kind or fitting) if fitting else None


def ladder(question: Question, rungs: Sequence[str], wrong: str | None) -> Ladder:
    """The ladder of ``question`` with ``rungs`` (those that exist), given its wrong (or invented) answer."""
    sentence = None if wrong is None else WRONG_SENTENCE.format(answer=_clean(wrong))
    texts: dict[str, str | None] = {"abstain": ABSTAIN, "abstain_sentence": ABSTAIN_SENTENCE, "invented": wrong,
                                    "invented_sentence": sentence}
    if question.answerable:
        gold = question.gold_answers[0]
        texts = {"gold": gold, "gold_alt": gold_alternative(question) if "gold_alt" in rungs else None,
                 "gold_sentence": GOLD_SENTENCE.format(answer=_clean(gold)),
                 "partial": partial_answer(question) if "partial" in rungs else None,
                 "wrong": wrong, "wrong_sentence": sentence, "abstain": ABSTAIN}
    tiers = ANSWERABLE_TIERS if question.answerable else UNANSWERABLE_TIERS
    made = [Rung(name, text, tiers[name]) for name in rungs if (text := texts.get(name)) is not None]
    return Ladder(question, tuple(made))


def check_rungs(rungs: Sequence[str], questions: Sequence[Question] = ()) -> None:
    """Raise ValueError unless ``rungs`` are distinct names of :data:`RUNGS` that give each kind of
    ladder built for ``questions`` (with gold answers, without them) a correct and a wrong rung."""
    unknown = [name for name in rungs if name not in RUNGS]
    if unknown:
        raise ValueError(f"unknown rung(s) {unknown}: the rungs are {', '.join(RUNGS)}")
    if len(set(rungs)) != len(rungs):
        raise ValueError(f"rungs repeat: {list(rungs)}")
    if not rungs:
        raise ValueError("no rungs asked for")
    for what, answerable, tiers in (("with", True, ANSWERABLE_TIERS), ("without", False, UNANSWERABLE_TIERS)):
        asked = [tiers[name] for name in rungs if name in tiers]  # fewer than 2 without gold answers: none built
        missing = " and no ".join(label for label, tier in (("correct", 0), ("wrong", 2)) if tier not in asked)
        if missing and any(q.answerable == answerable for q in questions) and (answerable or len(asked) > 1):
            raise ValueError(f"rungs {', '.join(rungs)}: the ladders of questions {what} gold answers would have no "
                             f"{missing} rung (their rungs' tiers: {tiers})")


def build_ladders(questions: Sequence[Question], pool: Sequence[Question], rungs: Sequence[str] = DEFAULT_RUNGS,
                  seed: int = 2024) -> tuple[list[Ladder], dict[str, int]]:
    """The ladders of ``questions`` (in their order), wrong answers drawn from ``pool`` (the
    whole dataset), and how many questions were skipped by reason (see the module docstring)."""
    check_rungs(rungs, questions)
    by_context: dict[str, list[Question]] = defaultdict(list)
    for question in pool:
        by_context[question.context].append(question)
    needs_wrong = "wrong" in rungs or "wrong_sentence" in rungs
    needs_invented = "invented" in rungs or "invented_sentence" in rungs
    few = sum(name in UNANSWERABLE_TIERS for name in rungs) < 2
    ladders: list[Ladder] = []
    skipped: dict[str, int] = {}
    for question in questions:
        needs = needs_wrong if question.answerable else needs_invented
        wrong = wrong_answer(question, by_context.get(question.context, ()), seed) if needs else None
        reason = (FEW_RUNGS if few and not question.answerable else None if not needs or wrong is not None
                  else NO_WRONG_ANSWER if question.answerable else NO_INVENTED_ANSWER)
        if reason is not None:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        ladders.append(ladder(question, rungs, wrong))
    return ladders, skipped
