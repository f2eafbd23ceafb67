"""Text helpers of :mod:`raq.ranking`: normalising a reply; label tokens, runs, lists and
markdown tables; JSON entry objects; a ranking direction in words. Helpers raise
:class:`ValueError` with a reason, which :mod:`raq.ranking` turns into its own error."""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from itertools import accumulate
from typing import Any

ORDS = "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth"
POS = re.compile(rf"(?:rank|place|position|#)?\s*([0-9]{{1,3}}|{ORDS})(?:st|nd|rd|th)?", re.I)

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad"))
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")

_LABEL_KEYS = {"label", "id", "answer", "option", "candidate", "choice", "response", "letter"}
_LABEL_KEYS |= {"answerid", "answerlabel", "candidateid", "optionid", "responseid", "labelid"}
_RANK_KEYS = {"rank", "position", "place", "ranking", "rankposition"}

_NAMES = r"answers?|ids?|options?|responses?|candidates?|labels?"
_FILL = (  # words that may stand between two ranked labels
    rf"{_NAMES}|and|then|followed|by|next|finally|lastly|after|that|is|the|best|last|place|tied?|with"
    rf"|rank(?:ing|ed|s)?|order|{ORDS}"
)
_GAP = re.compile(rf"(?:[\s,;:>=<~|*_\"'`#\[\](){{}}\-–—→»]|\b(?:{_FILL})\b)*", re.I)
_TIE = re.compile(r"(?<![<>=])=+(?![=>])|~|\btied?\b", re.I)
_STRONG = re.compile(r"[<>=]|\b(?:then|followed|next|finally|lastly)\b", re.I)
_ITEM = re.compile(  # a list item's marker at the start of a line; group 1 is its number
    rf"^[ \t]*(?:[-*•+][ \t]*)?[*_]*(?:(?:rank(?:ed)?|place|position|no\.?)[ \t]*)?[#(]?"
    rf"([0-9]{{1,3}}|{ORDS})(?:st|nd|rd|th)?[ \t]*(?:place)?[*_]*[ \t]*[.):](?![0-9])[*_]*"
    r"|^[ \t]*[-*•+][ \t]+",
    re.I | re.M,
)
_MARK = (  # an inline list marker, blanked when a label follows it
    r"(?:(?:rank(?:ed)?|place|position|no\.?)\s*#?[0-9]+\s*[:.)]"
    r"|#?[0-9]+(?:st|nd|rd|th)?[.):]|\([0-9]+\))"
)
_PARENS = re.compile(r"\([^()\[\]]*\)|\[[^()\[\]]*\]")

_SEPARATOR = re.compile(r"[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*")
_RANK_HEAD = re.compile(r"rank(?:ing)?|position|place|#|no\.?|nr\.?")
_LABEL_HEAD = re.compile(r"(?:answer|label|id|option|candidate|response|choice|letter)s?(?:[ _]?(?:id|label|letter))?")
_SCORE_HEAD = re.compile(r"score|rating|grade|point|mark")

_LOW, _HIGH = "worst|weakest|poorest|bottom|lowest|least", "best|strongest|top|highest|most"
_PLAIN = {"worst", "weakest", "poorest", "bottom", "best", "strongest", "top"}  # quality words themselves
_GOOD = re.compile(
    r"correct(?:ness)?|accura(?:te|cy)|good(?:ness)?|better|helpful(?:ness)?|relevan(?:t|ce)|quality"
    r"|complete(?:ness)?|scores?|merit|preferr?(?:ed|ence)|useful(?:ness)?|faithful(?:ness)?|precis(?:e|ion)"
)
_BAD = re.compile(
    r"(?:wrong|incorrect|bad)(?:ness)?|inaccura(?:te|cy)|worse|poor|errors?|mistakes?|flawed"
    r"|irrelevan(?:t|ce)|incomplete(?:ness)?|unhelpful"
)
_DIRECTION = re.compile(
    rf"(?P<f>\bfrom[ \t]+(?:the[ \t]+)?)?\b(?P<a>{_LOW}|{_HIGH})(?:[ \t]+(?P<q1>[a-z]+))??[ \t]+to[ \t]+"
    rf"(?:the[ \t]+)?(?P<b>{_LOW}|{_HIGH})\b(?:[ \t]+(?P<q2>[a-z]+))?"
    r"|\b(?P<c>ascending|increasing|descending|decreasing)\b(?:[ \t]+order)?(?:[ \t]+of)?(?:[ \t]+the)?"
    r"(?:[ \t]+(?P<q3>[a-z]+))?",
    re.I,
)

Groups = list[list[str]]
Table = tuple[int, int, list[tuple[int | None, str]]]


def normalise(text: str) -> str:
    """Unescape HTML entities, apply NFKC and drop zero-width characters and soft hyphens.

    >>> normalise("Ｂ &gt; A\u200b > C")
    'B > A > C'
    """
    text = _ENTITY.sub(lambda m: html.unescape(m.group()), text)
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE)


def ordinal(word: str) -> int:
    """``"2"`` -> 2, ``"third"`` -> 3."""
    return int(word) if word.isdigit() else ORDS.split("|").index(word.lower()) + 1


def position(value: Any) -> int | None:
    """A rank given as a whole number, a numeric string or an ordinal (``"2nd"``, ``"#3"``, ``"third"``)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 10**9:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = POS.fullmatch(value.strip().strip("*_`.):").strip()) if isinstance(value, str) else None
    return ordinal(m[1]) if m else None


def entry_fields(entry: dict[Any, Any]) -> tuple[Any, int | None]:
    """A JSON ranking entry object -> (its label value, its rank or None).

    Keys such as ``label``/``id``/``answer``/``option``/``candidate`` carry the label,
    ``rank``/``position``/``place`` the rank; an object naming several labels is no label.
    """
    names = [(re.sub(r"[^a-z0-9]", "", str(k).lower()), v) for k, v in entry.items()]
    found = [v for name, v in names if name in _LABEL_KEYS]
    if len({str(v).strip() for v in found}) != 1:
        raise ValueError(f"JSON ranking entry {str(entry)[:40]!r} is not a single label")
    ranks = {str(v).strip(): position(v) for name, v in names if name in _RANK_KEYS}
    if len(ranks) > 1 or None in ranks.values():
        raise ValueError(f"JSON ranking entry {str(entry)[:40]!r} has no single whole-number rank")
    return found[0], next(iter(ranks.values()), None)


def embedded_json(text: str, keys: tuple[str, ...]) -> Any:
    """The first JSON object with one of ``keys``, or list of label-carrying objects, in prose."""
    for m in list(re.finditer(r"[{\[]", text))[:40]:
        try:
            value = json.JSONDecoder().raw_decode(text, m.start())[0]
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict) and any(str(k).strip().lower() in keys for k in value):
            return value
        if isinstance(value, list) and value and all(isinstance(v, dict) and _LABEL_KEYS & _names(v) for v in value):
            return value
    return None


def _names(entry: dict[Any, Any]) -> set[str]:
    return {re.sub(r"[^a-z0-9]", "", str(k).lower()) for k in entry}


def tables(text: str) -> list[Table]:
    """Markdown tables with an answer column: (start, end, [(rank or None, answer cell)]) each.

    The rank column (``Rank``, ``Position``, ``#``...) gives the order, else the row order;
    a table without one but with scores (a ``Score`` column, or numbers) is no ranking.
    """
    lines = text.split("\n")
    starts = list(accumulate((len(line) + 1 for line in lines), initial=0))
    found: list[Table] = []
    i = 1
    while i < len(lines):
        if "|" in lines[i] and "|" in lines[i - 1] and _SEPARATOR.fullmatch(lines[i]):
            j = next((k for k in range(i + 1, len(lines)) if "|" not in lines[k] or not lines[k].strip()), len(lines))
            rows = _table_rows(lines[i - 1], lines[i + 1 : j])
            if rows:
                found.append((starts[i - 1], starts[j] - 1, rows))
            i = j
        i += 1
    return found


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.sub(r"^\s*\||\|\s*$", "", line).split("|")]


def _table_rows(header: str, body: list[str]) -> list[tuple[int | None, str]] | None:
    heads = [re.sub(r"\s+", " ", cell.strip("*_` ").lower()) for cell in _cells(header)]
    rank = next((i for i, h in enumerate(heads) if _RANK_HEAD.fullmatch(h)), None)
    label = next((i for i, h in enumerate(heads) if i != rank and _LABEL_HEAD.fullmatch(h)), None)
    if label is None and rank is not None and len(heads) == 2:
        label = 1 - rank
    rows = [_cells(line) for line in body]
    if label is None or not rows or any(len(row) != len(heads) for row in rows):
        return None
    if rank is None:
        numeric = lambda i: all(re.match(r"[*_`]*[0-9]", row[i]) for row in rows)  # noqa: E731
        if any(_SCORE_HEAD.search(h) or numeric(i) for i, h in enumerate(heads) if i != label):
            return None
        return [(None, row[label]) for row in rows]
    ranks = [position(row[rank]) for row in rows]
    return None if None in ranks else [(r, row[label]) for r, row in zip(ranks, rows)]


def direction_of(text: str) -> bool | None:
    """Whether a phrase in ``text`` says the ranking is written worst first (True), best first
    (False) or nothing (None); the first phrase counts.

    >>> direction_of("from worst to best"), direction_of("most to least correct"), direction_of("Ranking")
    (True, False, None)
    """
    return _said(_phrases(text)[:1])


def direction_at(text: str, start: int, end: int | None) -> bool | None:
    """:func:`direction_of` for the ranking at ``text[start:end]``: the nearest phrase before it
    on its line (and on the line before, blank lines skipped, when it starts its line), else
    the first after it on its line (none after when ``end`` is None)."""
    first = text.rfind("\n", 0, start) + 1
    while first > 0 and not re.search(r"[^\W\d_]", text[first:start]):  # nothing but markers so far
        first = text.rfind("\n", 0, first - 1) + 1
    stop = text.find("\n", end or 0)
    stop = len(text) if stop < 0 else stop
    before = [p for p in _phrases(text) if first <= p[0] and p[1] <= start][-1:]
    after = [] if end is None else [p for p in _phrases(text) if end <= p[0] and p[1] <= stop][:1]
    return _said(before or after)


Phrase = tuple[int, int, bool | None, str | None]  # start, end, worst first?, why it is unclear


@lru_cache(maxsize=16)
def _phrases(text: str) -> tuple[Phrase, ...]:
    """The direction phrases in ``text``, in order (a ranking reply has several candidates)."""
    found: list[Phrase] = []
    for m in _DIRECTION.finditer(text):
        try:
            found.append((m.start(), m.end(), _worst_first(m), None))
        except ValueError as e:
            found.append((m.start(), m.end(), None, str(e)))
    return tuple(p for p in found if p[2] is not None or p[3])


def _said(phrases: Sequence[Phrase]) -> bool | None:
    if phrases and phrases[0][3]:
        raise ValueError(phrases[0][3])
    return phrases[0][2] if phrases else None


def _worst_first(m: re.Match[str]) -> bool | None:
    """True: the phrase puts the worst first; False: the best first; None: it is no direction.
    Raises when a phrase that may put the worst first does not say of what (``from least to
    most``, ``ascending order``)."""
    if m["c"]:  # ascending/descending order (of ...)
        low_first, words, said = m["c"].lower() in ("ascending", "increasing"), [m["q3"]], True
    else:  # <low> to <high> or <high> to <low>
        a, b, low = m["a"].lower(), m["b"].lower(), _LOW.split("|")
        if (a in low) == (b in low):
            return None
        if a in _PLAIN and b in _PLAIN:  # worst to best, best to worst...
            return a in low
        low_first, words, said = a in low, [m["q1"], m["q2"]], bool(m["f"])
    for word in (w.lower() for w in words if w):  # most to least *correct*, least to most *wrong*
        if _GOOD.fullmatch(word) or _BAD.fullmatch(word):
            return low_first == bool(_GOOD.fullmatch(word))
    if not said:
        return None
    if low_first:
        raise ValueError(f"the ranking's direction {m.group().strip()!r} is unclear")
    return False


def by_rank(ranks: list[Any], groups: Groups) -> Groups:
    """Groups sorted by their ranks; groups of the same rank are tied."""
    out: dict[Any, list[str]] = {}
    for rank, group in sorted(zip(ranks, groups), key=lambda p: p[0]):
        out.setdefault(rank, []).extend(group)
    return list(out.values())


def tokenizer(labels: list[str], ci: bool) -> tuple[re.Pattern[str], Any]:
    """A regex for label-shaped tokens (labels and look-alikes) and a token -> label mapper."""
    alts = []
    numbers = [x for x in labels if x.isascii() and x.isdigit()]
    if numbers:  # a longer number (a year) is no label-shaped token
        width = max(3, *map(len, numbers))
        alts.append(rf"(?<![.0-9])[0-9]{{1,{width}}}(?![0-9]|\.[0-9])")
    letters = [x for x in labels if len(x) == 1 and x.isascii() and x.isalpha()]
    if letters:  # an explicit ASCII class, never case-folded: no Kelvin sign, dotless i, Cyrillic
        cls = "A-Z" * any(x.isupper() for x in letters) + "a-z" * any(x.islower() for x in letters)
        alts.append(("" if ci or "I" in labels else "(?!I)") + f"[{'A-Za-z' if ci else cls}]")
    others = [re.escape(x) for x in labels if x not in letters and not x.isdigit()]
    alts += [f"(?i:{x})" if ci else x for x in sorted(others, key=len, reverse=True)]
    key = lambda t: (t.lstrip("0") or "0") if t.isdigit() else t.casefold() if ci else t  # noqa: E731
    table = {key(x): x for x in labels}
    tok = re.compile(rf"(?<!\w)(?:{'|'.join(alts)})(?!\w)")
    return tok, lambda m: table.get(key(m.group()), m.group())


def labels_only(s: str, labels: list[str]) -> bool:
    """Whether ``s`` holds no letters besides label-shaped tokens (any case)."""
    return not re.search(r"[^\W\d_]", tokenizer(labels, True)[0].sub(" ", s))


def blank_markers(s: str, tok: re.Pattern[str]) -> str:
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


def join_run(clean: str, ms: list[re.Match[str]], canon: Any) -> tuple[Groups, bool, bool | None]:
    """A run's groups, whether its order is explicit, and whether ``<`` (True) or ``>`` (False,
    not the arrows ``->``/``=>``) wrote it (None: neither)."""
    groups, gaps = [[canon(ms[0])]], [clean[a.end() : b.start()] for a, b in zip(ms, ms[1:])]
    for gap, m in zip(gaps, ms[1:]):
        if _TIE.search(gap):
            groups[-1].append(canon(m))
        else:
            groups.append([canon(m)])
    written = None
    if any("<" in g for g in gaps) and not any(">" in g for g in gaps):
        groups.reverse()
        written = True
    elif any(re.search(r"(?<![-=])>", g) for g in gaps):
        written = False
    return groups, any(_STRONG.search(g) for g in gaps), written


def runs(clean: str, ms: list[re.Match[str]], multiline: bool) -> list[list[re.Match[str]]]:
    """Label tokens split into runs: tokens joined only by punctuation and filler words."""
    out: list[list[re.Match[str]]] = []
    for m in ms:
        gap = clean[out[-1][-1].end() : m.start()] if out else "."
        if _GAP.fullmatch(gap) and (multiline or "\n" not in gap):
            out[-1].append(m)
        else:
            out.append([m])
    return out


def lists(s: str, clean: str, tok: re.Pattern[str], canon: Any) -> list[tuple[int, Groups, bool]]:
    """Numbered or bulleted lists: (start, groups, whether numbered) each. Numbering 1, 2, ...
    that starts again at 1 starts a new list."""
    out: list[tuple[int, Groups, bool]] = []
    block: list[tuple[Any, list[str], int]] = []

    def close() -> None:
        if len(block) > 1:
            nums = [b[0] for b in block]
            numbered = None not in nums
            groups = by_rank(nums, [b[1] for b in block]) if numbered else [b[1] for b in block]
            out.append((block[0][2], groups, numbered))
        block.clear()

    pos = 0
    for line in s.split("\n") + ["end"]:
        item = _ITEM.match(line)
        found = list(tok.finditer(clean, pos + item.end(), pos + len(line))) if item else []
        if found:
            assert item is not None  # found is empty without an item
            number = item[1] and ordinal(item[1])
            if number == 1 and len(block) > 1 and [b[0] for b in block] == list(range(1, len(block) + 1)):
                close()
            first = join_run(clean, runs(clean, found, False)[0], canon)[0][0]  # and labels tied to it
            block.append((number, first, pos + item.start()))
        elif line.strip() and not line[:1].isspace():
            close()
        pos += len(line) + 1
    return out
