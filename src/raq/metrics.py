"""Per-answer metrics: word counts (the reference study's and a corrected one) and SQuAD EM/F1."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_PAPER_WORD = re.compile(r"[A-Za-z']+")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def paper_words(text: str) -> int:
    """Words as the reference study counted them: runs of ASCII letters and apostrophes.

    >>> paper_words("Denver Broncos won 24-10 in Santa Clara, café")  # "caf" counts, digits do not
    7
    """
    return len(_PAPER_WORD.findall(text))


def words(text: str) -> int:
    """Words of any script, numbers included (``24-10`` is two, ``don't`` one).

    >>> words("Denver Broncos won 24-10 in Santa Clara, café")
    9
    """
    return len(_WORD.findall(text))


# SQuAD v1.1 official evaluation (normalise_answer, exact match, token F1).

_PUNCTUATION = frozenset(string.punctuation)

def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold_answers: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer."""
    return float(any(normalize_answer(prediction) == normalize_answer(g) for g in gold_answers))


def f1(prediction: str, gold_answers: Sequence[str]) -> float:
    """The best token F1 over the gold answers."""
    return max((_f1(prediction, g) for g in gold_answers), default=0.0)


# SQuAD v2.0 official evaluation: the empty prediction is "no answer", and a question without
# gold answers has the empty string as its one gold answer.

def _v2_f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    return _f1(prediction, gold)


def exact_match_v2(prediction: str, gold_answers: Sequence[str]) -> float:
    """SQuAD 2.0's exact match: ``prediction`` is "" for an abstention; no gold answers means
    the only right prediction is "" (equal to :func:`exact_match` on answered, answerable questions)."""
    golds = [g for g in gold_answers if normalize_answer(g)] or [""]
    return float(any(normalize_answer(prediction) == normalize_answer(g) for g in golds))


def f1_v2(prediction: str, gold_answers: Sequence[str]) -> float:
    """SQuAD 2.0's token F1, with the same convention as :func:`exact_match_v2`."""
    golds = [g for g in gold_answers if normalize_answer(g)] or [""]
    return max(_v2_f1(prediction, g) for g in golds)
