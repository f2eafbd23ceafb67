"""Parse a judge LLM's reply into a ranking of answer labels, best first.

Accepted shapes: JSON (``{"ranking": ["B", "A", "C"]}``, the reference protocol's
function-call argument ``{"rank": "2,1,3"}``, a list, a position or label->rank map, a list
of objects such as ``[{"label": "B", "rank": 1}, ...]`` or ``[{"answer": "B"}, ...]``),
delimited text (``B > A > C``, ``2, 1, 3``), numbered or bulleted lists, markdown tables
(a rank column gives the order, else the row order; a table of scores is none) and labels
with words around them.
The reply is first normalised (HTML entities, NFKC, zero-width characters and soft hyphens
dropped), then ``<think>`` blocks and code fences are removed. Anything that is not a
complete permutation of the labels raises :class:`RankingParseError`: a ranking is never
completed, de-duplicated or guessed.

Label-matching rule:

* A label counts only as a standalone token, touching no letter, digit or ``_`` (numbers
  also no decimal point; a number of 4 or more digits, longer than every label, such as a
  year, is none). Letter labels are case-sensitive, so the article ``a`` is never a label,
  and ``I`` is never one unless it is a label. Lowercase labels are accepted only when the
  reply is nothing but labels, list numbers and punctuation (``b, a, c``). Only ASCII
  letters match: look-alikes from other scripts (Cyrillic ``А``, Greek ``Β``) do not.
* List numbering (``1.``, ``2)``, ``(3)``, ``Rank 1:``, ``First:``) is never a label, and a
  parenthetical holding other words (``(most correct)``) is ignored.
* Label tokens joined only by punctuation (``, ; > - * : " [ ]``, newlines) and filler words
  (``answer``, ``ID``, ``then``, ``followed by``, ``is the best``, ``second``...) form a *run*;
  any other word or a full stop ends it. ``=``, ``~`` and ``tied`` tie two labels; a run
  written with ``<`` only is read worst first.
* A direction in words (``from worst to best``, ``least to most correct``, ``in ascending
  order of quality``) on the line of a run or list, or on the line before one that starts
  its line (or a JSON key: ``{"worst_to_best": [...]}``), reverses it; ``best to worst``,
  ``most to least correct`` keep it. A phrase that contradicts a run's ``<``/``>``, or one
  that may mean worst first but does not say of what (``ascending order``), makes that
  candidate a failure.
* Runs, lists and tables are candidates. Only complete permutations count, ranked by a cue
  on their line or the line before (``final`` over ``rank``/``order``), then explicit order
  (``>``, ``then``, numbering, a rank column). The highest-ranked ones must all be the same
  ranking: two different ones raise. With no complete one, the fault of the longest
  candidate is raised.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

from .ranking_text import (
    POS,
    Groups,
    blank_markers,
    by_rank,
    direction_at,
    direction_of,
    embedded_json,
    entry_fields,
    join_run,
    labels_only,
    lists,
    normalise,
    ordinal,
    runs,
    tables,
    tokenizer,
)

__all__ = [
    "RankingParseError",
    "parse_ranking",
    "parse_ranking_with_ties",
    "ranks_from_groups",
    "ranks_from_order",
]

_CUE = re.compile(r"rank|order|final", re.I)
_KEYS: tuple[str, ...] = ("ranking", "rankings", "rank", "ranks", "order", "ordering", "ranked", "result")
_KEYS += ("arguments", "parameters", "args", "input", "function", "function_call")  # tool calls


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
    if reply is not None and not isinstance(reply, str):
        raise RankingParseError(f"reply is {type(reply).__name__}, not text")
    s = normalise(reply or "")
    if not s.strip():
        raise RankingParseError("empty reply")
    s = re.sub(r"<think>.*?</think>", " ", s.replace("\r\n", "\n"), flags=re.S | re.I)
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
        value = embedded_json(s, _KEYS)  # a JSON object with a ranking key in prose, or a list of entries
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
        if any(isinstance(v, dict) for v in value):
            return _entries(value, labels)
        return [_item(v, labels, True) for v in value]
    if not isinstance(value, dict):
        raise RankingParseError(f"JSON ranking must be a list or a string, not {type(value).__name__}")
    keys = {str(k).strip().lower(): v for k, v in value.items()}
    for key in _KEYS:
        if key in keys:
            return _json(keys[key], labels, depth + 1)
    numeric = all(x.isdigit() for x in labels)
    pos = [POS.fullmatch(str(k).strip()) for k in value]
    if len(value) > 1 and not numeric and all(pos):  # {"1": "B", "2": "A"} or {"first": "B", ...}
        items = [_item(v, labels, False) for v in value.values()]
        return by_rank([ordinal(m[1]) for m in pos if m], items)
    if len(value) > 1 and not numeric and all(str(k).strip() in labels for k in value):  # {"B": 1}
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
            return by_rank(list(value.values()), [[str(k).strip()] for k in value])
    if len(value) == 1:  # {"best_to_worst": [...]}; {"worst_to_best": [...]} is reversed
        key, inner = next(iter(value.items()))
        groups = _json(inner, labels, depth + 1)
        words = re.sub(r"(?<=[a-z])(?=[A-Z])|_", " ", str(key))
        return groups[::-1] if _said(lambda: direction_of(words)) else groups
    raise RankingParseError("JSON object has no 'ranking' key")


def _said(read: Any) -> Any:
    """Call a :mod:`raq.ranking_text` helper, turning its ValueError into a RankingParseError."""
    try:
        return read()
    except ValueError as e:
        raise RankingParseError(str(e)) from None


def _entries(value: Sequence[Any], labels: list[str]) -> Groups:
    """A JSON list of entry objects: ordered by their rank field, else by list order."""
    if not all(isinstance(v, dict) for v in value):
        raise RankingParseError("JSON ranking mixes objects with other entries")
    fields = [_said(lambda v=v: entry_fields(v)) for v in value]
    items = [_item(label, labels, False) for label, _rank in fields]
    ranks = [rank for _label, rank in fields]
    if all(rank is None for rank in ranks):
        return items
    if None in ranks:
        raise RankingParseError("only some JSON ranking entries give a rank")
    return by_rank(ranks, items)


def _item(v: Any, labels: list[str], nested: bool) -> list[str]:
    """One JSON ranking entry: a label, a label number, or (if ``nested``) a list of tied ones."""
    if isinstance(v, (list, tuple)) and nested and v:
        return [x for e in v for x in _item(e, labels, False)]
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) < 10**9:
        v = str(v)
    found = _single(v, labels) if isinstance(v, str) else None
    if found is None:
        raise RankingParseError(f"JSON ranking entry {str(v)[:40]!r} is not a single label")
    return found


def _single(v: str, labels: list[str]) -> list[str] | None:
    """The one label in ``v`` (a lone word that is no label is kept, to be reported), or None."""
    tok, canon = tokenizer(labels, labels_only(v, labels))
    found = [canon(m) for m in tok.finditer(blank_markers(v, tok))]
    if len(found) == 1 or (not found and re.fullmatch(r"\w{1,12}", v.strip())):
        return found or [v.strip()]
    return None


class _Candidate(NamedTuple):
    prio: int  # 3: a "final" cue, 2: a "rank"/"order" cue, 1: explicit order, 0: none
    start: int
    groups: Groups
    fault: str | None  # why a complete candidate still cannot be read


def _text(s: str, labels: list[str]) -> Groups:
    tok, canon = tokenizer(labels, labels_only(s, labels))
    clean = blank_markers(s, tok)
    found_tables = tables(s)
    for start, end, _rows in found_tables:  # table cells form no runs
        clean = clean[:start] + re.sub(r"[^\n]", " ", clean[start:end]) + clean[end:]
    cands: list[_Candidate] = []

    def add(start: int, end: int | None, groups: Groups, strong: bool, written: bool | None = None) -> None:
        line = max(s.rfind("\n", 0, max(s.rfind("\n", 0, start), 0)) + 1, start - 200)
        near = re.split(r"[.!?]\s", clean[line:start])[-1]
        prio = 3 if re.search("final", near, re.I) else 2 if _CUE.search(near) else int(strong)
        fault = None
        try:
            worst_first = direction_at(s, start, end)
        except ValueError as e:
            worst_first, fault = None, str(e)
        if worst_first is not None and written is not None and worst_first != written:
            fault = f"the ranking's {'<' if written else '>'} contradicts its direction in words"
        elif worst_first and written is None:
            groups = groups[::-1]
        cands.append(_Candidate(prio, start, groups, fault))

    ms = list(tok.finditer(clean))
    for multiline in (True, False):
        for run in runs(clean, ms, multiline):
            add(run[0].start(), run[-1].end(), *join_run(clean, run, canon))
    for start, groups, numbered in lists(s, clean, tok, canon):
        add(start, None, groups, numbered)
    for start, _end, rows in found_tables:
        cells = [_single(cell, labels) for _rank, cell in rows]
        ranks = [rank for rank, _cell in rows]
        if all(cells):
            items = [cell for cell in cells if cell]
            add(start, None, items if None in ranks else by_rank(ranks, items), None not in ranks)
    return _choose(cands, labels)


def _complete(groups: Groups, labels: list[str]) -> bool:
    try:
        _check(groups, labels)
    except RankingParseError:
        return False
    return True


def _choose(cands: list[_Candidate], labels: list[str]) -> Groups:
    """The candidate to read: see the module docstring."""
    complete = [c for c in cands if _complete(c.groups, labels)]
    if complete:
        top = max(c.prio for c in complete)
        chosen = sorted((c for c in complete if c.prio == top), key=lambda c: c.start)
        for c in chosen:
            if c.fault:
                raise RankingParseError(c.fault)
        seen = {tuple(frozenset(g) for g in c.groups): c.groups for c in chosen}
        if len(seen) > 1:
            first, second = (" > ".join(" = ".join(g) for g in groups) for groups in list(seen.values())[:2])
            raise RankingParseError(f"two different rankings were found: {first} and {second}")
        return chosen[0].groups
    best = max(cands, key=lambda c: (sum(map(len, c.groups)), c.start), default=None)
    if best is None or sum(map(len, best.groups)) < min(2, len(labels)):
        raise RankingParseError("no ranking found in the reply")
    return best.groups
