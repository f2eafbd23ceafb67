"""The backend contract: what every way of running a model (llama.cpp in this process, an
OpenAI-compatible server, a local server process, the test fake) takes and gives back.

A :class:`Request` is chat ``messages`` (the backend applies the chat template) or a finished
``prompt``; a :class:`Completion` is the text with its token counts, finish reason and timings
(and, when asked for, the most likely tokens at every step). Generators and judges talk only to
:class:`Backend`, never to an implementation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import BackendError

#: One chat message: ``{"role": "system" | "user" | "assistant", "content": "..."}``.
Message = dict[str, str]

#: Where a backend's chat template comes from: the GGUF, the config, the server, or none.
TEMPLATE_GGUF = "gguf"
TEMPLATE_CONFIG = "config"
TEMPLATE_SERVER = "server"
#: The most alternatives per token a request may ask for (OpenAI's ``top_logprobs`` limit).
MAX_LOGPROBS = 20


@dataclass(frozen=True)
class Sampling:
    """Sampling settings (temperature 0 is greedy decoding)."""

    temperature: float = 0.0
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0


@dataclass(frozen=True)
class Request:
    """One generation.

    Exactly one of ``messages`` (a chat; the backend renders it with its chat template) or
    ``prompt`` (finished text, given the model's BOS; ``special=True`` when it carries special
    tokens as text). ``schema`` asks for a reply that is JSON following that schema
    (structured output); ``tool`` asks for a call of that OpenAI function definition, whose
    arguments are the reply text. ``stop`` strings end the reply once it has begun.

    ``logprobs`` (0 to :data:`MAX_LOGPROBS`) asks for that many most likely tokens at every
    generated position (:attr:`Completion.top_logprobs`). ``choices`` asks for a reply that is
    exactly one of these strings: in-process llama.cpp enforces it with a grammar; an
    OpenAI-compatible endpoint gets no constraint (there is no portable one), so the caller
    parses the reply. ``choices`` excludes ``schema`` and ``tool``.
    """

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    max_tokens: int = 128
    sampling: Sampling = Sampling()
    stop: tuple[str, ...] = ()
    seed: int = 0
    special: bool = False
    schema: dict[str, Any] | None = None
    tool: dict[str, Any] | None = None
    logprobs: int = 0
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a Request has exactly one of 'messages' or 'prompt'")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if isinstance(self.logprobs, bool) or not isinstance(self.logprobs, int) \
                or not 0 <= self.logprobs <= MAX_LOGPROBS:
            raise ValueError(f"logprobs must be an integer from 0 to {MAX_LOGPROBS}")
        object.__setattr__(self, "choices", check_choices(self.choices))
        if self.choices and (self.schema is not None or self.tool is not None):
            raise ValueError("choices cannot be combined with a schema or a tool")

    @classmethod
    def chat(cls, messages: Sequence[Message], **settings: Any) -> "Request":
        return cls(messages=tuple(dict(m) for m in messages), **settings)

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    def messages_json(self) -> str:
        """The chat messages as JSON: how a served chat prompt is recorded in ``answers.jsonl``."""
        return json.dumps(list(self.messages or ()), ensure_ascii=False)


def check_choices(choices: Iterable[str]) -> tuple[str, ...]:
    """``choices`` as a tuple, refused unless every one is a distinct non-empty string."""
    if isinstance(choices, str):
        raise ValueError("choices must be a sequence of strings, not one string")
    given = tuple(choices)
    if any(not isinstance(c, str) or not c for c in given):
        raise ValueError("every choice must be a non-empty string")
    if len(set(given)) != len(given):
        raise ValueError("choices must be distinct")
    return given


@dataclass
class Completion:
    """What one request produced and cost. ``prompt_tokens`` is None when a server did not
    report it; ``counters`` holds the backend's own figures (llama.cpp's perf counters, the
    base URL that answered, batched-decoding shares).

    ``top_logprobs`` has one entry per generated token, in order, when the request asked for
    ``logprobs``: the most likely tokens' text -> natural-log probability, from the model's
    full distribution before any grammar or sampler (tokens with the same text merged, see
    :func:`merge_alternatives`). It is empty when not asked for or when the backend could not
    give them (a server that refuses logprobs). ``endpoint`` is the base URL that served the
    request, as configured (served backends; None in-process)."""

    text: str
    prompt_tokens: int | None
    generated_tokens: int
    ttft_s: float
    total_s: float
    finish_reason: str
    counters: dict[str, Any] = field(default_factory=dict)
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    endpoint: str | None = None


def merge_alternatives(pairs: Iterable[tuple[str, float]], n: int) -> dict[str, float]:
    """The ``n`` most likely texts of one position from ``(text, logprob)`` pairs, most likely
    first; pairs with the same text are one alternative (their probabilities added:
    log-sum-exp)."""
    merged: dict[str, float] = {}
    for text, logprob in pairs:
        if text in merged:
            high, low = max(merged[text], logprob), min(merged[text], logprob)
            logprob = high + math.log1p(math.exp(low - high)) if low > -math.inf else high
        merged[text] = float(logprob)
    ranked = sorted(merged.items(), key=lambda item: item[1], reverse=True)[:n]
    return dict(ranked)


def prompt_tokens_read(completion: Completion) -> int | None:
    """How many prompt tokens the model read for ``completion``: not those its cache already held
    (in-process: llama.cpp's own count; a server: its prompt tokens less the cached ones it
    reports), or None when the backend does not say."""
    counters = completion.counters
    if "prompt_read_tokens" in counters:  # batched: its own prompt beyond the shared prefix (+ that, once)
        return int(counters["prompt_read_tokens"])
    if "prompt_eval_tokens" in counters:
        return int(counters["prompt_eval_tokens"])
    if completion.prompt_tokens is not None and "prompt_cached_tokens" in counters:
        return completion.prompt_tokens - int(counters["prompt_cached_tokens"])
    return None


class PromptTooLong(BackendError):
    """The prompt leaves no room in the context for an answer (in-process: counted before any
    work; served: the server refused it as too long)."""


@runtime_checkable
class Backend(Protocol):
    """A loaded model that completes requests.

    ``n_ctx`` is the context size in tokens (None when a server does not say); ``capacity`` how
    many requests it serves at once (``complete_many`` keeps that many in progress);
    ``chat_template_source`` one of :data:`TEMPLATE_GGUF`, :data:`TEMPLATE_CONFIG`,
    :data:`TEMPLATE_SERVER`, or None when the model has no chat template.
    """

    n_ctx: int | None
    capacity: int
    chat_template_source: str | None

    def render(self, request: Request) -> str:
        """The prompt text as the model sees it (recorded with every answer)."""
        ...

    def count_tokens(self, request: Request) -> int | None:
        """Prompt tokens of ``request``, or None when only the server can tell."""
        ...

    def complete(self, request: Request) -> Completion:
        """Run one request to its end (end-of-generation, a stop string, or ``max_tokens``)."""
        ...

    def complete_many(self, requests: Sequence[Request]) -> Iterator[tuple[int, Completion]]:
        """Run several requests, up to ``capacity`` at once; yields ``(index, completion)`` as
        each finishes (or, for batched decoding, when its batch does)."""
        ...

    def info(self) -> dict[str, Any]:
        """Settings and build facts for the manifest (never a secret)."""
        ...

    def close(self) -> None:
        """Free the model or connections now."""
        ...


def complete_each(backend: Backend, requests: Sequence[Request]) -> Iterator[tuple[int, Completion]]:
    """``complete_many`` for a backend that serves one request at a time."""
    for index, request in enumerate(requests):
        yield index, backend.complete(request)
