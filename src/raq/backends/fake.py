"""A Backend with scripted replies, for tests of the code above the backend (generators, judges,
whole studies, resume, reports) and for users' own tests: no model, no network, and
deterministic token counts and timings.

Token counts are whitespace-separated words of the rendered prompt and of the reply; a reply
longer than ``max_tokens`` words is cut there (finish reason ``length``). Timings are
``prompt_s_per_token`` per prompt token to the first token and ``s_per_token`` per generated
token after it, reported, not slept.

Log-probabilities: a request with ``logprobs`` gets ``{word: 0.0}`` for every generated word of a
text reply, or the ``top_logprobs`` of a :class:`ScriptedReply` (cut to the generated words);
a request without gets none.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import TEMPLATE_GGUF, Completion, PromptTooLong, Request

__all__ = ["FakeBackend", "FakeBackends", "Reply", "ScriptedReply", "default_reply"]


@dataclass(frozen=True)
class ScriptedReply:
    """A reply with its log-probabilities: one ``{token text: logprob}`` dict per generated
    token (for the fake, per whitespace-separated word), returned when the request asks for
    ``logprobs``."""

    text: str
    top_logprobs: list[dict[str, float]] = field(default_factory=list)


#: A scripted reply: text, text with log-probabilities, an exception to raise, or a function of
#: the request.
Reply = str | ScriptedReply | BaseException | Callable[[Request], "str | ScriptedReply"]


def default_reply(request: Request) -> str:
    """A valid reply to any request: the first choice for a request with ``choices``, a ranking
    in the shown order for a ranking schema, the first IDs for the reference study's rank tool,
    else the first words of the last message."""
    if request.choices:
        return request.choices[0]
    if request.schema is not None:
        labels = request.schema.get("properties", {}).get("ranking", {}).get("items", {}).get("enum")
        if labels:
            return json.dumps({"ranking": list(labels)})
        return "{}"
    if request.tool is not None:
        return json.dumps({"rank": "1,2,3"})
    text = request.messages[-1]["content"] if request.messages else request.prompt or ""
    return " ".join(text.split()[-3:])


class FakeBackend:
    """Replies from ``replies`` (used in turn; ``default`` once they run out), recording every
    request in ``requests``."""

    def __init__(self, replies: Iterable[Reply] = (), *,
                 default: Callable[[Request], "str | ScriptedReply"] = default_reply,
                 n_ctx: int | None = 2048, capacity: int = 1, chat_template_source: str | None = TEMPLATE_GGUF,
                 prompt_s_per_token: float = 0.001, s_per_token: float = 0.01, name: str = "fake") -> None:
        self.replies: list[Reply] = list(replies)
        self.default = default
        self.n_ctx = n_ctx
        self.capacity = capacity
        self.chat_template_source = chat_template_source
        self.prompt_s_per_token = prompt_s_per_token
        self.s_per_token = s_per_token
        self.name = name
        self.requests: list[Request] = []
        self.closed = False
        self._lock = threading.Lock()

    def render(self, request: Request) -> str:
        if request.messages is None:
            return request.prompt or ""
        turns = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in request.messages)
        return turns + "<|assistant|>\n"

    def count_tokens(self, request: Request) -> int | None:
        return len(self.render(request).split())

    def complete(self, request: Request) -> Completion:
        prompt_tokens = self.count_tokens(request) or 0
        if self.n_ctx is not None and prompt_tokens >= self.n_ctx:
            raise PromptTooLong(f"prompt of {prompt_tokens} tokens does not fit the context of {self.n_ctx}")
        with self._lock:
            self.requests.append(request)
            reply = self.replies.pop(0) if self.replies else self.default
        if isinstance(reply, BaseException):
            raise reply
        scripted = reply if isinstance(reply, (str, ScriptedReply)) else reply(request)
        text = scripted.text if isinstance(scripted, ScriptedReply) else scripted
        words = text.split()
        limit = request.max_tokens
        if self.n_ctx is not None:
            limit = min(limit, self.n_ctx - prompt_tokens)
        finish = "stop"
        if len(words) > limit:
            text, finish = " ".join(words[:limit]), "length"
        generated = min(len(words), limit)
        ttft = prompt_tokens * self.prompt_s_per_token
        alternatives: list[dict[str, float]] = []
        if request.logprobs:
            alternatives = ([dict(d) for d in scripted.top_logprobs[:generated]] if isinstance(scripted, ScriptedReply)
                            else [{word: 0.0} for word in words[:generated]])
        return Completion(text=text, prompt_tokens=prompt_tokens, generated_tokens=generated, ttft_s=ttft,
                          total_s=ttft + max(generated - 1, 0) * self.s_per_token, finish_reason=finish,
                          counters={"backend": self.name}, top_logprobs=alternatives)

    def complete_many(self, requests: Sequence[Request]) -> Iterator[tuple[int, Completion]]:
        for index, request in enumerate(requests):
            yield index, self.complete(request)

    def info(self) -> dict[str, Any]:
        return {"backend": "fake", "name": self.name, "n_ctx": self.n_ctx, "capacity": self.capacity}

    def close(self) -> None:
        self.closed = True


class FakeBackends:
    """A backend factory for whole studies without models: every contestant and judge gets a
    :class:`FakeBackend` (``contestant(model_id)`` / ``judge(judge_id)`` make them; the default
    replies otherwise). Pass it as ``raq.evaluate(config, backends=FakeBackends())``; the backends
    it opened are kept in ``opened`` by id."""

    def __init__(self, contestant: Callable[[str], FakeBackend] | None = None,
                 judge: Callable[[str], FakeBackend] | None = None) -> None:
        self._contestant = contestant or (lambda model_id: FakeBackend(name=model_id))
        self._judge = judge or (lambda judge_id: FakeBackend(name=judge_id))
        self.opened: dict[str, FakeBackend] = {}

    def contestant(self, model: Any, generation: Any, path: Any) -> FakeBackend:
        self.opened[model.id] = backend = self._contestant(model.id)
        return backend

    def judge(self, judge: Any, path: Any, log_path: Any) -> FakeBackend:
        self.opened[f"judge:{judge.id}"] = backend = self._judge(judge.id)
        return backend
