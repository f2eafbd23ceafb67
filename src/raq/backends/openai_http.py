"""Any OpenAI-compatible endpoint (vLLM, a llama.cpp server, Ollama, hosted APIs) as a Backend.

One model name behind one or several base URLs: each request takes a free slot
(``max_in_flight`` per URL), which spreads the load and bounds what is in flight. Replies are
streamed, so time to first token is measured here too (a tool call is asked for without
streaming). Token counts come from the server's usage report when it sends one, else from the
number of streamed chunks (recorded in counters). Contestants and judges share this one client:
retries, key redaction, the structured-output fallback and the served-model check live here.

A request's ``logprobs`` are asked for as the API asks (chat: ``logprobs`` and ``top_logprobs``;
completions: ``logprobs``) and read from the stream or the whole reply. Whether a server gives
them is learnt from the first request that asks: it is sent whole (not streamed) and without
retries, so that a refusal is a plain error at once (llama-cpp-python's server answers 500
"logprobs is not supported ..." when its model has no ``logits_all``; streamed, it breaks the
stream before its first chunk, which is taken as the same refusal). After a refusal, or a reply
without them, logprobs are no longer asked for (from any of the backend's base URLs) and
completions have empty ``top_logprobs``. A request's ``choices`` send nothing: there is no
portable constraint, so the caller parses the reply.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, EndpointError, redact
from ..urls import public_url
from .base import TEMPLATE_SERVER, Completion, PromptTooLong, Request, merge_alternatives

if TYPE_CHECKING:  # pragma: no cover
    from openai import OpenAI

log = logging.getLogger(__name__)

#: Sampling settings outside the OpenAI API, sent as extra body fields (llama.cpp, vLLM and
#: Ollama's OpenAI layer take them); dropped for good once a server refuses them.
EXTRA_PARAMETERS = ("top_k", "min_p", "repeat_penalty")
#: How a structured reply is asked for: a JSON schema (OpenAI, vLLM), a JSON object with a
#: schema (llama-cpp-python's server), or plain text (the prompt asks for JSON).
STRUCTURED = ("json_schema", "json_object", "text")
#: The placeholder key sent to servers that need none.
NO_KEY = "not-needed"


class EmptyStream(BackendError):
    """A stream that asked for logprobs ended before its first chunk: how llama-cpp-python's
    server refuses them in a stream."""


def make_client(base_url: str, api_key: str, timeout_s: float) -> "OpenAI":
    """The one OpenAI client raq uses: a bounded timeout and four retries with backoff."""
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key=api_key or NO_KEY, timeout=timeout_s, max_retries=4)


def require_served(base_url: str, served: Sequence[str], model: str) -> None:
    """Refuse ``model`` when the endpoint lists its models and ``model`` is not among them (some
    servers answer any name with their default model)."""
    if served and model not in served:
        raise BackendError(f"{base_url} does not serve {model!r} (it serves {list(served)})")


def chat_alternatives(logprobs: Any, n: int) -> list[dict[str, float]]:
    """The most likely tokens of every position of a chat reply's (or chunk's) ``logprobs``: each
    entry's ``top_logprobs`` (its own token when it has none), merged by text."""
    return [merge_alternatives(((top.token, top.logprob) for top in (entry.top_logprobs or [entry])), n)
            for entry in (getattr(logprobs, "content", None) or [])]


def completion_alternatives(logprobs: Any, n: int) -> list[dict[str, float]]:
    """The most likely tokens of every position of a completion's (or chunk's) ``logprobs``."""
    return [merge_alternatives((top or {}).items(), n) for top in (getattr(logprobs, "top_logprobs", None) or [])]


def asked_logprobs(body: dict[str, Any]) -> int:
    """How many alternatives per token a request body asks for (0: none)."""
    return int(body.get("top_logprobs") or body.get("logprobs") or 0) if "logprobs" in body else 0


def short_error(error: BaseException, secret: str = "") -> str:
    """One line from an API error, at most 300 characters, with the API key masked."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return redact(json.dumps(str(message))[1:-1][:300], secret)


class OpenAIBackend:
    """One model name behind one or several OpenAI-compatible base URLs."""

    chat_template_source: str | None = TEMPLATE_SERVER
    n_ctx: int | None = None

    def __init__(self, base_urls: Sequence[str], model: str, api_key: str = NO_KEY, *, max_in_flight: int = 2,
                 timeout_s: float = 600.0, structured: str = "json_schema") -> None:
        if not base_urls:
            raise BackendError(f"model {model!r}: no base URL")
        if structured not in STRUCTURED:
            raise ValueError(f"structured must be one of {STRUCTURED}")
        self.model = model
        self.base_urls = [str(url) for url in base_urls]
        self.shown_urls = [public_url(url) for url in self.base_urls]
        self.clients = [make_client(url, api_key, timeout_s) for url in self.base_urls]
        self._slots: queue.Queue[int] = queue.Queue()
        for _ in range(max_in_flight):
            for index in range(len(self.clients)):
                self._slots.put(index)
        self.capacity = max_in_flight * len(self.clients)
        self.structured = structured
        self.send_extras = True
        self.send_logprobs: bool | None = None  # None: not known until a request asks for them
        self._logprobs_lock = threading.Lock()
        self.requests_per_url = [0] * len(self.clients)
        self._secret = api_key

    # --- the contract --------------------------------------------------------------------
    def render(self, request: Request) -> str:
        """A chat as its JSON messages (the server applies the template), else the prompt."""
        return request.messages_json() if request.is_chat else request.prompt or ""

    def count_tokens(self, request: Request) -> int | None:
        """Unknown here: the server counts, and refuses a prompt that is too long."""
        return None

    def complete(self, request: Request) -> Completion:
        index = self._slots.get()
        try:
            self.requests_per_url[index] += 1
            completion = self._complete_on(self.clients[index], request)
        finally:
            self._slots.put(index)
        completion.endpoint = self.shown_urls[index]
        return completion

    def complete_many(self, requests: Sequence[Request]) -> Iterator[tuple[int, Completion]]:
        """Up to ``capacity`` requests in flight; completions in the order they finish."""
        if self.capacity <= 1 or len(requests) <= 1:
            for index, request in enumerate(requests):
                yield index, self.complete(request)
            return
        with ThreadPoolExecutor(max_workers=self.capacity) as pool:
            pending: dict[Future[Completion], int] = {}
            remaining = iter(enumerate(requests))
            for index, request in remaining:
                pending[pool.submit(self.complete, request)] = index
                if len(pending) >= self.capacity:
                    break
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        index = pending.pop(future)
                        yield index, future.result()
                        following = next(remaining, None)
                        if following is not None:
                            pending[pool.submit(self.complete, following[1])] = following[0]
            finally:
                for future in pending:
                    future.cancel()

    def info(self) -> dict[str, Any]:
        return {"backend": "openai-compatible", "base_urls": self.shown_urls, "model": self.model,
                "capacity": self.capacity, "structured_output": self.structured,
                "logprobs_served": self.send_logprobs}

    def close(self) -> None:
        for client in self.clients:
            client.close()

    # --- checks --------------------------------------------------------------------------
    def check(self) -> None:
        """Every base URL is reachable, accepts the key and serves ``model`` (servers that do
        not list models are taken at their word); raise EndpointError naming the URL."""
        for index, client in enumerate(self.clients):
            try:
                self._check_one(client)
            except BackendError as error:
                raise EndpointError(str(error), index) from None

    def _check_one(self, client: OpenAI) -> None:
        import openai

        try:
            served = [m.id for m in client.with_options(max_retries=0, timeout=10.0).models.list()]
        except openai.AuthenticationError as error:
            raise BackendError(f"{client.base_url} refused the API key: {short_error(error, self._secret)}") from None
        except openai.APIConnectionError as error:
            raise BackendError(f"{client.base_url} cannot be reached: {short_error(error, self._secret)}") from None
        except openai.APIError as error:  # listing models is optional for a server
            log.info("%s does not list its models (%s); using %s as given", client.base_url,
                     short_error(error, self._secret), self.model)
            return
        require_served(str(client.base_url), served, self.model)

    # --- one request ---------------------------------------------------------------------
    def _body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": request.max_tokens, "seed": request.seed,
                                "temperature": request.sampling.temperature, "top_p": request.sampling.top_p}
        if self.send_extras:
            body["extra_body"] = {name: getattr(request.sampling, name) for name in EXTRA_PARAMETERS}
        if request.stop:
            body["stop"] = list(request.stop)
        if request.is_chat:
            body["messages"] = [dict(m) for m in request.messages or ()]
        else:
            body["prompt"] = request.prompt
        if request.tool is not None:
            body["tools"] = [request.tool]
            body["tool_choice"] = {"type": "function", "function": {"name": request.tool["function"]["name"]}}
        elif request.schema is not None and self.structured == "json_object":
            body["response_format"] = {"type": "json_object", "schema": request.schema}
        elif request.schema is not None and self.structured == "json_schema":
            named = {"name": request.schema.get("title", "reply"), "schema": request.schema}
            body["response_format"] = {"type": "json_schema", "json_schema": named}
        if request.logprobs and self.send_logprobs is not False:
            body["logprobs"] = True if request.is_chat else request.logprobs
            if request.is_chat:
                body["top_logprobs"] = request.logprobs
        if request.tool is None and not self._probing(body):
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    def _probing(self, body: dict[str, Any]) -> bool:
        """Whether ``body`` asks for logprobs of a server not yet known to give them."""
        return "logprobs" in body and self.send_logprobs is None

    def _learn_logprobs(self, client: "OpenAI", served: bool, error: Exception | None = None) -> None:
        """Record whether the server gives logprobs, from its first reply that tells or from a
        refusal (``error``, which always stops them); logged once when it does not."""
        with self._logprobs_lock:
            if self.send_logprobs is False or (self.send_logprobs is not None and error is None):
                return
            self.send_logprobs = served
        if not served:
            reason = short_error(error, self._secret) if error is not None else "its reply had none"
            log.info("%s does not give logprobs (%s): asking for none", client.base_url, reason)

    def _complete_on(self, client: "OpenAI", request: Request, first: bool = True) -> Completion:
        """``request`` on ``client``; ``first`` False repeats a logprobs probe that failed for
        another reason, now with the client's retries."""
        import openai

        body = self._body(request)
        probing = self._probing(body)
        start = time.perf_counter()
        try:
            if body.get("stream"):
                return self._stream(client, body, start)
            return self._whole(client.with_options(max_retries=0) if probing and first else client, body, start)
        except EmptyStream as error:
            self._learn_logprobs(client, False, error)
            return self._complete_on(client, request)
        except openai.APIError as error:
            text = str(error).lower()
            if "logprobs" in body and isinstance(error, openai.APIStatusError) and "logprobs" in text:
                self._learn_logprobs(client, False, error)
                return self._complete_on(client, request)
            refused = isinstance(error, (openai.BadRequestError, openai.UnprocessableEntityError))  # 422: llama.cpp
            if probing and first and not refused:
                return self._complete_on(client, request, first=False)
            if not refused:
                raise BackendError(f"{client.base_url} failed for {self.model!r}: "
                                   f"{short_error(error, self._secret)}") from None
            if self.send_extras and any(name in text for name in EXTRA_PARAMETERS):
                self.send_extras = False
                return self._complete_on(client, request)
            if "context" in text or "too long" in text or "maximum" in text:  # not a reason to drop structured output
                raise PromptTooLong(f"{client.base_url}: {short_error(error, self._secret)}") from None
            if "response_format" in body and self.structured != "text":
                log.info("%s refused structured output (%s): asking for plain text", client.base_url,
                         short_error(error, self._secret))
                self.structured = "text"
                return self._complete_on(client, request)
            raise BackendError(f"{client.base_url} refused the request for {self.model!r}: "
                               f"{short_error(error, self._secret)}") from None

    def _stream(self, client: "OpenAI", body: dict[str, Any], start: float) -> Completion:
        chat, n = "messages" in body, asked_logprobs(body)
        create = client.chat.completions.create if chat else client.completions.create
        pieces: list[str] = []
        alternatives: list[dict[str, float]] = []
        chunks, ttft, finish, usage, seen = 0, None, "length", None, False
        for chunk in create(**body):
            usage, seen = chunk.usage or usage, True
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            if n and choice.logprobs is not None:
                alternatives += (chat_alternatives if chat else completion_alternatives)(choice.logprobs, n)
            piece = choice.delta.content if chat else choice.text
            if piece:
                if ttft is None:
                    ttft = time.perf_counter() - start
                pieces.append(piece)
                chunks += 1
            finish = choice.finish_reason or finish
        if not seen and "logprobs" in body:
            raise EmptyStream("the stream ended before its first chunk")
        return self._completion(client, "".join(pieces), usage, chunks, ttft, finish, start, alternatives)

    def _whole(self, client: "OpenAI", body: dict[str, Any], start: float) -> Completion:
        """A reply not streamed: a tool call, or the first request that asks for logprobs."""
        n, tool_call = asked_logprobs(body), False
        if "messages" in body:
            response: Any = client.chat.completions.create(**body)
            choice = response.choices[0]
            message = choice.message
            tool_call = bool(message.tool_calls)
            text = (message.tool_calls[0].function.arguments or "") if tool_call else (message.content or "")
            alternatives = chat_alternatives(choice.logprobs, n) if n else []
        else:
            response = client.completions.create(**body)
            choice = response.choices[0]
            text = choice.text or ""
            alternatives = completion_alternatives(choice.logprobs, n) if n else []
        if n and (alternatives or (text and not tool_call)):  # a tool call may come without them
            self._learn_logprobs(client, bool(alternatives))
        return self._completion(client, text, response.usage, None, None, choice.finish_reason or "stop", start,
                                alternatives)

    def _completion(self, client: "OpenAI", text: str, usage: Any, chunks: int | None, ttft: float | None,
                    finish: str, start: float, alternatives: list[dict[str, float]]) -> Completion:
        total = time.perf_counter() - start
        counters: dict[str, Any] = {"base_url": str(client.base_url)}
        if usage is not None:
            prompt_tokens, generated = usage.prompt_tokens, usage.completion_tokens
            counters["token_counts"] = "server usage"
            cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None)
            if isinstance(cached, int):
                counters["prompt_cached_tokens"] = cached
        else:
            prompt_tokens, generated = None, chunks or 0
            counters["token_counts"] = "stream chunks"
        return Completion(text=text, prompt_tokens=prompt_tokens, generated_tokens=generated,
                          ttft_s=ttft if ttft is not None else total, total_s=total, finish_reason=finish,
                          counters=counters, top_logprobs=alternatives)

