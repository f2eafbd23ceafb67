"""Abstentions: answers that say the text does not give the answer, instead of giving one.

SQuAD 2.0 asks questions its text cannot answer; the right reply to them says so. raq's
answering prompt offers one fixed phrase (:data:`ABSTENTION`), but models paraphrase it, so
:func:`is_abstention` also knows the common paraphrases ("the passage does not mention ...",
"no information is given", "cannot be determined from the text", "unanswerable", "I don't
know", ...) and counts an empty answer as one. Only a reply that *is* an abstention counts:
one that gives an answer and then hedges ("Paris, though the text does not say when") does not.
"""

from __future__ import annotations

import re

#: The one phrase raq's answering prompt asks for when the text does not contain the answer.
ABSTENTION = "The text does not say."

_SOURCE = (r"(?:the |this |that |given |provided |above )*"
           r"(?:text|passage|context|paragraph|article|document|excerpt|source)s?")
_NOT = (r"(?:does not|doesn't|doesnt|do not|don't|did not|didn't|is not|isn't|are not|aren't|was not|wasn't|"
        r"cannot|can't|can not|could not|couldn't|has not|hasn't|have not|haven't|never|fails to|not)")
_SAY = (r"(?:say|says|said|state|states|stated|mention|mentions|mentioned|contain|contains|contained|specify|"
        r"specifies|specified|include|includes|included|provide|provides|provided|give|gives|given|indicate|"
        r"indicates|indicated|answer|answers|answered|tell|tells|told|address|addresses|addressed|discuss|"
        r"discusses|discussed|reveal|reveals|revealed|describe|describes|described|offer|offers|offered|"
        r"determine|determined|identify|identified|clarify|clarified|list|listed|cover|covers|covered)")

#: Patterns any of which, found at the start of the normalised reply, make it an abstention.
_PATTERNS = tuple(re.compile(p) for p in (
    rf"^(?:according to |based on |from |in )?{_SOURCE},? {_NOT} (?:\w+ )?{_SAY}\b",
    r"^(?:there is |there's |there are )?no (?:\w+ )?(?:information|mention|answer|details?|data|indication|"
    r"evidence|reference|record)s?\b",
    r"^(?:this|the|that) (?:question|information|answer|detail) (?:(?:is|are|was|were) (?:not |un)|isn't |aren't |"
    r"wasn't |weren't |(?:cannot|can't|can not) be )(?:answerable|available|provided|given|mentioned|found|stated|"
    r"specified|known|determined|included|contained|answered)\b",
    r"^(?:the )?(?:answer|information) (?:to (?:this|the|that) question )?(?:is|was) not (?:\w+ )?(?:in|given|"
    r"provided|mentioned|stated|found|available|included|contained)\b",
    r"^(?:the answer |this |it )?(?:is |was )?(?:cannot|can't|can not|could not|couldn't) be (?:determined|"
    r"answered|found|inferred|known|deduced|identified|established)\b",
    rf"^(?:it is |it's |this is |that is )?(?:not |un)(?:answerable|known|mentioned|stated|specified|given|provided|"
    rf"available|determinable|clear|answered)(?: (?:in|from|by) {_SOURCE})?$",
    rf"^(?:it|this|that|they) {_NOT} (?:\w+ )?{_SAY}\b",
    r"^(?:unknown|unanswerable|unspecified|not applicable|n/a|n\.a|no answer|unclear|not stated|"
    r"not mentioned|not given|not specified|not provided|not available)$",
    r"^(?:i )?(?:do not|don't|dont) know\b",
    r"^(?:i (?:cannot|can't|can not|could not|couldn't|am unable to|am not able to)|i'm (?:unable|not able) to) "
    r"(?:find|answer|determine|tell|say|know|locate|see|identify)\b",
    rf"^(?:the )?(?:question|answer) (?:is not|isn't|cannot be|can't be) (?:answered|addressed|found) "
    rf"(?:in|by|from) {_SOURCE}\b",
    rf"^{_SOURCE} (?:provides|gives|offers|contains|includes|has) no\b",
    rf"^(?:nowhere|nothing) (?:in|does) {_SOURCE}\b",
))

_LEAD = re.compile(rf"^(?:according to|based on|from|in|given) {_SOURCE},? ")
#: An apology before the reply: "sorry, but ...", "unfortunately, ..."; what follows must abstain itself.
_SORRY = re.compile(r"^(?:sorry|unfortunately|i'm sorry|i am sorry),? (?:but )?")
#: Words after which a reply that began as an abstention goes on to give an answer anyway.
_BUT_ANSWERS = re.compile(r"\b(?:but|however|although|though)\b[^.]*\b(?:is|was|are|were)\b")
_SPACE = re.compile(r"\s+")
#: A label before the reply itself: "Answer:", "The answer is:", "My answer to the question is:".
_LABEL = re.compile(r"^(?:(?:the |my )?(?:answer|response|reply)(?: to (?:this|the|that|your) question)?(?: is)?|a)"
                    r"\s*:\s*")
_EDGE = re.compile(r"^[\s\"'“”‘’*_`>#-]+|[\s\"'“”‘’*_`.!]+$")


def normalise(text: str) -> str:
    """Lowercase, straight apostrophes, no markdown or quotes at the edges, one space between words."""
    text = text.replace("’", "'").replace("‘", "'").lower()
    text = _LABEL.sub("", _EDGE.sub("", text))
    return _SPACE.sub(" ", _EDGE.sub("", text)).strip()


def is_abstention(text: str) -> bool:
    """Whether ``text`` declines to answer because the text does not say (an empty reply included)."""
    normal = normalise(text)
    if not re.search(r"[^\W_]", normal):
        return True
    first = _SORRY.sub("", re.split(r"(?<=[.!?;])\s", normal, maxsplit=1)[0])  # "sorry, but the text ..."
    bare = _LEAD.sub("", first)  # "according to the text, there is no ..." -> "there is no ..."
    if not any(pattern.search(first) or pattern.search(bare) for pattern in _PATTERNS):
        return False
    return not _BUT_ANSWERS.search(first)
