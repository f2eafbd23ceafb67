"""The records that flow through a study: questions in, answers and judgements out.

Records are plain dataclasses that round-trip through JSON (one per JSONL line).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(record: Any) -> dict[str, Any]:
    """A record as a JSON-ready dict."""
    return dataclasses.asdict(record)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a record from a dict, ignoring keys the record does not know."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Question:
    """One reading-comprehension item: a question about a context, with its gold answers."""

    question_id: str
    question: str
    context: str
    gold_answers: list[str]
    title: str = ""


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


@dataclass
class Judgement:
    """A judge's verdict on all answers to one question.

    ``order`` lists model ids in the order shown to the judge (labels are assigned in
    that order; ``order_index`` numbers the orders of one question when a judge sees
    several); ``ranks`` maps model id to rank (1 = best). A failed judgement has
    ``ok`` False, empty ``ranks`` and the reason in ``error``; it is never a result.
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
