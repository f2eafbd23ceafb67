"""Parse a judge LLM's reply into a ranking of answer labels, best first.

Accepted shapes: JSON (``{"ranking": ["B", "A", "C"]}``, the reference protocol's
function-call argument ``{"rank": "2,1,3"}``, a list, a position or label->rank map),
delimited text (``B > A > C``, ``2, 1, 3``), numbered or bulleted lists, and labels with
words around them. ``<think>`` blocks and code fences are removed first. Anything that is
not a complete permutation of the labels raises :class:`RankingParseError`: a ranking is
never completed, de-duplicated or guessed.

Label-matching rule:

* A label counts only as a standalone token, touching no letter, digit or ``_`` (numbers
  also no decimal point). Letter labels are case-sensitive, so the article ``a`` is never
  a label, and ``I`` is never one unless it is a label. Lowercase labels are accepted only
  when the reply is nothing but labels, list numbers and punctuation (``b, a, c``).
* List numbering (``1.``, ``2)``, ``(3)``, ``Rank 1:``, ``First:``) is never a label, and a
  parenthetical holding other words (``(most correct)``) is ignored.
* Label tokens joined only by punctuation (``, ; > - * : " [ ]``, newlines) and filler words
  (``answer``, ``ID``, ``then``, ``followed by``, ``is the best``, ``second``...) form a *run*;
  any other word or a full stop ends it. ``=``, ``~`` and ``tied`` tie two labels; a run
  written with ``<`` only is read worst first.
* Runs and numbered/bulleted lists are candidates. The chosen one is the complete
  permutation ranked highest by (a ``rank``/``order``/``final`` cue on its line or the line
  before, explicit order: ``>``, ``then``, numbering) and then position (last wins).
  With no complete one, the fault of the longest candidate is raised.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = [
    "RankingParseError",
    "parse_ranking",
    "parse_ranking_with_ties",
    "ranks_from_groups",
    "ranks_from_order",
]

_ORDS = "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth"
_NAMES = r"answers?|ids?|options?|responses?|candidates?|labels?"
_FILL = (  # words that may stand between two ranked labels
    rf"{_NAMES}|and|then|followed|by|next|finally|lastly|after|that|is|the|best|last|place|tied?|with"
    rf"|rank(?:ing|ed|s)?|order|{_ORDS}"
)
_GAP = re.compile(rf"(?:[\s,;:>=<~|*_\"'`#\[\](){{}}\-–—→»]|\b(?:{_FILL})\b)*", re.I)
_TIE = re.compile(r"(?<![<>=])=+(?![=>])|~|\btied?\b", re.I)
_STRONG = re.compile(r"[<>=]|\b(?:then|followed|next|finally|lastly)\b", re.I)
_CUE = re.compile(r"rank|order|final", re.I)
_ITEM = re.compile(  # a list item's marker at the start of a line; group 1 is its number
    rf"^[ \t]*(?:[-*•+][ \t]*)?[*_]*(?:(?:rank(?:ed)?|place|position|no\.?)[ \t]*)?[#(]?"
    rf"([0-9]{{1,3}}|{_ORDS})(?:st|nd|rd|th)?[ \t]*(?:place)?[*_]*[ \t]*[.):](?![0-9])[*_]*"
    r"|^[ \t]*[-*•+][ \t]+",
    re.I | re.M,
)
_MARK = (  # an inline list marker, blanked when a label follows it
    r"(?:(?:rank(?:ed)?|place|position|no\.?)\s*#?[0-9]+\s*[:.)]"
    r"|#?[0-9]+(?:st|nd|rd|th)?[.):]|\([0-9]+\))"
)
_PARENS = re.compile(r"\([^()\[\]]*\)|\[[^()\[\]]*\]")
_KEYS: tuple[str, ...] = ("ranking", "rankings", "rank", "ranks", "order", "ordering", "ranked", "result")
_KEYS += ("arguments", "parameters", "args", "input", "function", "function_call")  # tool calls
_POS = re.compile(rf"(?:rank|place|position|#)?\s*([0-9]{{1,3}}|{_ORDS})(?:st|nd|rd|th)?", re.I)

Groups = list[list[str]]


class RankingParseError(ValueError):
    """A judge reply holds no complete, unambiguous ranking; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_ranking(reply: str, labels: Sequence[str]) -> list[str]:
    """Return ``labels`` ordered best first as the reply ranks them; ties raise.

    >>> parse_ranking("B > A > C", ["A", "B", "C"])
    ['B', 'A', 'C']
    >>> parse_ranking('{"rank": "2,1,3"}', ["1", "2", "3"])
    ['2', '1', '3']
    >>> parse_ranking("The best answer is B, followed by A, then C.", "ABC")
    ['B', 'A', 'C']
    >>> parse_ranking("B, A", "ABC")
    Traceback (most recent call last):
    raq.ranking.RankingParseError: missing labels: C
    """
    groups = parse_ranking_with_ties(reply, labels)
    for group in groups:
        if len(group) > 1:
            raise RankingParseError(f"ties are not allowed: {' = '.join(group)}")
    return [group[0] for group in groups]


def parse_ranking_with_ties(reply: str, labels: Sequence[str]) -> list[list[str]]:
    """Like :func:`parse_ranking` but return groups of tied labels, best group first.

    >>> parse_ranking_with_ties("B = A > C", "ABC")
    [['B', 'A'], ['C']]
    >>> parse_ranking_with_ties('{"ranking": [["B", "A"], "C"]}', "ABC")
    [['B', 'A'], ['C']]
    """
    labels = list(labels)
    if not labels or any(not isinstance(x, str) or not x or x != x.strip() for x in labels):
        raise ValueError(f"labels must be non-empty strings without surrounding spaces: {labels!r}")
    if len({x.casefold() for x in labels}) != len(labels):
        raise ValueError(f"labels must be unique (ignoring case): {labels!r}")
    groups = _groups(reply, labels, 0)
    _check(groups, labels)
    return groups


def ranks_from_order(order: Sequence[str]) -> dict[str, int]:
    """Map each label to its 1-based rank.

    >>> ranks_from_order(["B", "A", "C"])
    {'B': 1, 'A': 2, 'C': 3}
    """
    if len(set(order)) != len(order):
        raise ValueError(f"duplicate labels in {list(order)!r}")
    return {label: i for i, label in enumerate(order, 1)}


def ranks_from_groups(groups: Sequence[Sequence[str]]) -> dict[str, float]:
    """Map each label to its fractional rank: tied labels share the mean of their positions.

    >>> ranks_from_groups([["B", "A"], ["C"]])
    {'B': 1.5, 'A': 1.5, 'C': 3.0}
    """
    ranks: dict[str, float] = {}
    done = 0
    for group in groups:
        for label in group:
            if label in ranks:
                raise ValueError(f"label {label!r} appears twice")
            ranks[label] = done + (len(group) + 1) / 2
        done += len(group)
    return ranks


def _check(groups: Groups, labels: list[str]) -> None:
    flat = [x for group in groups for x in group]
    for x in flat:
        if x not in labels:
            raise RankingParseError(f"label {x!r} is not one of {', '.join(labels)}")
    for x, n in Counter(flat).items():
        if n > 1:
            raise RankingParseError(f"label {x!r} appears {'twice' if n == 2 else f'{n} times'}")
    missing = [x for x in labels if x not in flat]
    if missing:
        raise RankingParseError(f"missing labels: {', '.join(missing)}")


def _groups(reply: Any, labels: list[str], depth: int) -> Groups:
    """Reply text (or a JSON string value) -> candidate groups, not yet checked."""
    if reply is None or not str(reply).strip():
        raise RankingParseError("empty reply")
    if not isinstance(reply, str):
        raise RankingParseError(f"reply is {type(reply).__name__}, not text")
    s = re.sub(r"<think>.*?</think>", " ", reply.replace("\r\n", "\n"), flags=re.S | re.I)
    fence = r"```(?:[A-Za-z]{2,}[\w+-]*)?"  # a language tag has 2+ letters: ```B > A``` has none
    fenced = [b for b in re.findall(fence + r"[ \t]*\n?(.*?)```", s, re.S) if b.strip()]
    s = re.sub(fence, " ", fenced[-1] if fenced else s).strip()
    value: Any = None
    for load in (json.loads, ast.literal_eval) if s[:1] in "{[" else (json.loads,):
        try:
            value = load(s)
            break
        except Exception:
            pass
    if not isinstance(value, (dict, list, tuple, str)):
        value = None
        for m in list(re.finditer(r"\{", s))[:20]:  # a JSON object with a ranking key in prose
            try:
                obj = json.JSONDecoder().raw_decode(s, m.start())[0]
            except Exception:
                continue
            if isinstance(obj, dict) and any(str(k).strip().lower() in _KEYS for k in obj):
                value = obj
                break
    if value is not None:
        return _json(value, labels, depth)
    if s.startswith("{") and re.search(r"[\"']\s*:", s):
        raise RankingParseError("malformed JSON in the reply")
    return _text(s, labels)


def _json(value: Any, labels: list[str], depth: int) -> Groups:
    if isinstance(value, str):
        return _groups(value, labels, depth + 1)
    if depth > 8 or value is None:
        raise RankingParseError("JSON nested too deeply" if depth > 8 else "JSON ranking is null")
    if isinstance(value, (list, tuple)):
        return [_item(v, labels, True) for v in value]
    if not isinstance(value, dict):
        raise RankingParseError(f"JSON ranking must be a list or a string, not {type(value).__name__}")
    keys = {str(k).strip().lower(): v for k, v in value.items()}
    for key in _KEYS:
        if key in keys:
            return _json(keys[key], labels, depth + 1)
    numeric = all(x.isdigit() for x in labels)
    pos = [_POS.fullmatch(str(k).strip()) for k in value]
    if len(value) > 1 and not numeric and all(pos):  # {"1": "B", "2": "A"} or {"first": "B", ...}
        items = [_item(v, labels, False) for v in value.values()]
        return _by_rank([_number(m[1]) for m in pos if m], items)
    if len(value) > 1 and not numeric and all(str(k).strip() in labels for k in value):  # {"B": 1}
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
            return _by_rank(list(value.values()), [[str(k).strip()] for k in value])
    if len(value) == 1:
        return _json(next(iter(value.values())), labels, depth + 1)
    raise RankingParseError("JSON object has no 'ranking' key")


def _number(word: str) -> int:
    return int(word) if word.isdigit() else _ORDS.split("|").index(word.lower()) + 1


def _by_rank(ranks: list[Any], groups: Groups) -> Groups:
    out: dict[Any, list[str]] = {}
    for rank, group in sorted(zip(ranks, groups), key=lambda p: p[0]):
        out.setdefault(rank, []).extend(group)
    return list(out.values())


def _item(v: Any, labels: list[str], nested: bool) -> list[str]:
    """One JSON ranking entry: a label, a label number, or (if ``nested``) a list of tied ones."""
    if isinstance(v, (list, tuple)) and nested and v:
        return [x for e in v for x in _item(e, labels, False)]
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) < 10**9:
        v = str(v)
    if isinstance(v, str):
        tok, canon = _tokenizer(labels, _labels_only(v, labels))
        found = [canon(m) for m in tok.finditer(_clean(v, tok))]
        if len(found) == 1 or (not found and re.fullmatch(r"\w{1,12}", v.strip())):
            return found or [v.strip()]  # a lone word that is no label: reported as unknown
    raise RankingParseError(f"JSON ranking entry {str(v)[:40]!r} is not a single label")


def _tokenizer(labels: list[str], ci: bool) -> tuple[re.Pattern[str], Any]:
    """A regex for label-shaped tokens (labels and look-alikes) and a token -> label mapper."""
    alts = []
    if any(x.isascii() and x.isdigit() for x in labels):
        alts.append(r"(?<!\.)[0-9]+(?!\.[0-9])")
    letters = [x for x in labels if len(x) == 1 and x.isascii() and x.isalpha()]
    if letters:
        cls = "A-Z" * any(x.isupper() for x in letters) + "a-z" * any(x.islower() for x in letters)
        alts.append(("" if ci or "I" in labels else "(?!I)") + f"[{'A-Za-z' if ci else cls}]")
    others = [re.escape(x) for x in labels if x not in letters and not x.isdigit()]
    alts += sorted(others, key=len, reverse=True)
    key = lambda t: (t.lstrip("0") or "0") if t.isdigit() else t.casefold() if ci else t  # noqa: E731
    table = {key(x): x for x in labels}
    tok = re.compile(rf"(?<!\w)(?:{'|'.join(alts)})(?!\w)", re.I if ci else 0)
    return tok, lambda m: table.get(key(m.group()), m.group())


def _labels_only(s: str, labels: list[str]) -> bool:
    return not re.search(r"[^\W\d_]", _tokenizer(labels, True)[0].sub(" ", s))


def _clean(s: str, tok: re.Pattern[str]) -> str:
    """Blank list markers and wordy parentheticals with spaces (positions are kept)."""
    blank = lambda m: " " * len(m.group())  # noqa: E731
    s = _ITEM.sub(blank, s)
    inline = rf"(?<![\w.]){_MARK}(?=[\s*_]*(?:(?:{_NAMES})\b[\s:#*_]*)?(?:{tok.pattern}))"
    s = re.sub(inline, blank, s, flags=re.I)
    pure = lambda t: bool(tok.search(t)) and bool(_GAP.fullmatch(tok.sub(" ", t)))  # noqa: E731
    for _ in range(4):  # innermost first, a few levels deep
        s, old = _PARENS.sub(lambda m: m.group() if pure(m.group()[1:-1]) else blank(m), s), s
        if s == old:
            break
    return s


def _join(clean: str, ms: list[re.Match[str]], canon: Any) -> tuple[Groups, bool]:
    groups, gaps = [[canon(ms[0])]], [clean[a.end() : b.start()] for a, b in zip(ms, ms[1:])]
    for gap, m in zip(gaps, ms[1:]):
        if _TIE.search(gap):
            groups[-1].append(canon(m))
        else:
            groups.append([canon(m)])
    if any("<" in g for g in gaps) and not any(">" in g for g in gaps):
        groups.reverse()
    return groups, any(_STRONG.search(g) for g in gaps)


def _runs(clean: str, ms: list[re.Match[str]], multiline: bool) -> list[list[re.Match[str]]]:
    runs: list[list[re.Match[str]]] = []
    for m in ms:
        gap = clean[runs[-1][-1].end() : m.start()] if runs else "."
        if _GAP.fullmatch(gap) and (multiline or "\n" not in gap):
            runs[-1].append(m)
        else:
            runs.append([m])
    return runs


def _text(s: str, labels: list[str]) -> Groups:
    tok, canon = _tokenizer(labels, _labels_only(s, labels))
    clean = _clean(s, tok)
    cands = []  # (priority, start, groups, size)

    def add(start: int, groups: Groups, strong: bool) -> None:
        line = max(s.rfind("\n", 0, max(s.rfind("\n", 0, start), 0)) + 1, start - 200)
        prio = 2 if _CUE.search(re.split(r"[.!?]\s", clean[line:start])[-1]) else int(strong)
        cands.append((prio, start, groups, sum(map(len, groups))))

    ms = list(tok.finditer(clean))
    for multiline in (True, False):
        for run in _runs(clean, ms, multiline):
            add(run[0].start(), *_join(clean, run, canon))
    block: list[tuple[Any, list[str], int]] = []
    pos = 0
    for line in s.split("\n") + ["end"]:
        item = _ITEM.match(line)
        found = list(tok.finditer(clean, pos + item.end(), pos + len(line))) if item else []
        if found:
            first = _join(clean, _runs(clean, found, False)[0], canon)[0][0]  # and labels tied to it
            assert item is not None  # found is empty without an item
            block.append((item[1] and _number(item[1]), first, pos + item.start()))
        elif line.strip() and not line[:1].isspace():
            if len(block) > 1:
                nums = [b[0] for b in block]
                numbered = None not in nums
                groups = _by_rank(nums, [b[1] for b in block]) if numbered else [b[1] for b in block]
                add(block[0][2], groups, numbered)
            block = []
        pos += len(line) + 1
    for _prio, _start, groups, _size in sorted(cands, key=lambda c: (c[0], c[1]), reverse=True):
        try:
            _check(groups, labels)
            return groups
        except RankingParseError:
            pass
    best = max(cands, key=lambda c: (c[3], c[1]), default=None)
    if best is None or best[3] < min(2, len(labels)):
        raise RankingParseError("no ranking found in the reply")
    return best[2]
