"""The records that flow through a study: questions in, answers and judgements out.

Records are plain dataclasses that round-trip through JSON (one per JSONL line). Reading one
back checks it: every field without a default must be there, every field present must have
its annotated type (items of lists and values of dicts too); unknown keys are ignored (a newer
raq may add fields) and missing fields with defaults get their defaults (an older raq wrote none).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

T = TypeVar("T")

_KINDS: dict[type, str] = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
                           list: "a list", dict: "an object", type(None): "null"}


class RecordError(ValueError):
    """A stored record does not fit its dataclass (the message names the field)."""


def to_dict(record: Any) -> dict[str, Any]:
    """A record as a JSON-ready dict."""
    return dataclasses.asdict(record)


@functools.cache
def _schema(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type, required) of each field of dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    missing = dataclasses.MISSING
    return tuple((f.name, hints[f.name], f.default is missing and f.default_factory is missing)
                 for f in dataclasses.fields(cls))


def _fits(value: Any, kind: type) -> bool:
    """Whether a JSON value is of basic type ``kind`` (an int is a float, a bool is neither)."""
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _check(name: str, value: Any, annotation: Any) -> None:
    """Raise RecordError unless ``value`` fits ``annotation`` (Any, a basic type, a union of them,
    ``list[X]`` or ``dict[str, X]``)."""
    if annotation is Any:
        return
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        options = typing.get_args(annotation)
    else:
        options = (annotation,)
    kinds = [typing.get_origin(option) or option for option in options]
    for option, kind in zip(options, kinds):
        if not _fits(value, kind):
            continue
        args = typing.get_args(option)
        if kind is list and args:
            for index, item in enumerate(value):
                _check(f"{name}[{index}]", item, args[0])
        elif kind is dict and args:
            for key, item in value.items():
                _check(f"{name}.{key}", item, args[1])
        return
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    expected = " or ".join(dict.fromkeys(_KINDS.get(kind, getattr(kind, "__name__", str(kind))) for kind in kinds))
    raise RecordError(f"field '{name}' must be {expected}, not {shown}")


def from_dict(cls: type[T], data: Any) -> T:
    """Build record ``cls`` from a JSON object, checking its fields (see the module's docstring);
    raises RecordError naming the first bad field."""
    if not isinstance(data, dict):
        raise RecordError(f"must be a JSON object, not {_KINDS.get(type(data), type(data).__name__)}")
    values = {}
    for name, annotation, required in _schema(cast(type, cls)):
        if name not in data:
            if required:
                raise RecordError(f"field '{name}' is missing")
            continue
        _check(name, data[name], annotation)
        values[name] = data[name]
    return cls(**values)


@dataclass(frozen=True)
class Question:
    """One reading-comprehension item: a question about a context, with its gold answers."""

    question_id: str
    question: str
    context: str
    gold_answers: list[str]
    title: str = ""

    @property
    def answerable(self) -> bool:
        """Whether the context answers the question: an unanswerable one (SQuAD 2.0) has no gold answer."""
        return bool(self.gold_answers)


@dataclass
class Answer:
    """One model's answer to one question, with what it cost."""

    question_id: str
    model_id: str
    text: str
    prompt: str
    template: str
    prompt_tokens: int | None
    generated_tokens: int
    ttft_s: float
    prompt_s: float
    generation_s: float
    total_s: float
    prompt_tok_s: float | None
    generation_tok_s: float | None
    words: int
    words_paper: int
    words_per_s_paper: float
    finish_reason: str
    max_tokens: int
    notes: list[str] = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)
    #: "single" (one sequence at a time: per-answer latency and speed) or "batched xN" (decoded
    #: N at a time: the timings are shares of batched steps, throughput not latency).
    decoding: str = "single"
    #: Whether the answer says that the text does not give the answer (:func:`raq.abstention.is_abstention`);
    #: None in runs recorded before this field (the analysis then reads it from the text).
    abstained: bool | None = None
    #: The Ray node that made the answer (engine 'ray': its node id, described in the manifest's ``nodes``);
    #: empty for an answer made in the study's own process (engine 'local', described by the manifest's
    #: ``environment``) and in runs recorded before this field.
    node: str = ""


@dataclass
class Judgement:
    """A judge's verdict on all answers to one question.

    ``order`` lists model ids in the order shown to the judge (labels are assigned in
    that order; ``order_index`` numbers the orders of one question when a judge sees
    several); ``ranks`` maps model id to rank (1 = best). A failed judgement has
    ``ok`` False, empty ``ranks`` and the reason in ``error``; it is never a result.
    ``scores`` holds a scoring protocol's score per model (pointwise: the expected grade;
    pairwise: wins plus half the ties; higher is better) and ``details`` one entry per
    sub-request (an answer graded, a pair compared) with its reply and what was read from it.
    ``prompt_tokens`` counts the prompt tokens of all its requests, ``prompt_tokens_read`` those
    the judge actually read (not held in its cache from the previous request); None where the
    backend did not say (and in runs recorded before these fields). ``endpoints`` is the base URL
    that served each of its requests, in order (a served judge; empty in-process and in runs
    recorded before this field).
    """

    question_id: str
    judge_id: str
    protocol: str
    order: list[str]
    labels: list[str]
    ranks: dict[str, float]
    ok: bool
    attempts: int
    raw_replies: list[str]
    error: str = ""
    seconds: float = 0.0
    order_index: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    details: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int | None = None
    prompt_tokens_read: int | None = None
    endpoints: list[str] = field(default_factory=list)
