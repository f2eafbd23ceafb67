"""Generation through OpenAI-compatible servers (vLLM, llama.cpp server, Ollama, hosted APIs).

Responses are streamed, so time to first token is measured here too. A model may be served
by several base URLs: each request takes a free slot (``max_in_flight`` per URL), which
spreads the load and bounds what is in flight. Token counts come from the server's usage
report when it sends one, else from the number of streamed chunks (recorded in counters).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Sequence
from typing import Any

from .errors import BackendError, redact
from .llama_backend import Completion, Sampling


class ContextTooLong(BackendError):
    """The server refused the prompt as too long for the model's context."""


_EXTRA_PARAMETERS = ("top_k", "min_p", "repeat_penalty")


class ServedBackend:
    """One model name behind one or several OpenAI-compatible base URLs."""

    def __init__(self, base_urls: Sequence[str], model: str, api_key: str, *, max_in_flight: int = 2,
                 timeout_s: float = 600.0) -> None:
        from openai import OpenAI

        if not base_urls:
            raise BackendError(f"model {model!r}: no base URL")
        self.model = model
        self.base_urls = list(base_urls)
        self.clients = [OpenAI(base_url=url, api_key=api_key, timeout=timeout_s, max_retries=4)
                        for url in self.base_urls]
        self._slots: queue.Queue[int] = queue.Queue()
        for _ in range(max_in_flight):
            for index in range(len(self.clients)):
                self._slots.put(index)
        self.capacity = max_in_flight * len(self.clients)
        self.send_extras = True  # top_k, min_p, repeat_penalty: dropped if a server refuses them
        self.requests_per_url = [0] * len(self.clients)
        self._secret = api_key

    def check_model(self) -> None:
        """Refuse a model name that a server does not list (some answer any name with their default)."""
        import openai

        for client in self.clients:
            try:
                served = [m.id for m in client.models.list()]
            except openai.APIError:
                continue  # listing models is optional for a server
            if served and self.model not in served:
                raise BackendError(f"{client.base_url} does not serve {self.model!r} (it serves {served})")

    def complete(self, *, messages: list[dict[str, str]] | None = None, prompt: str | None = None,
                 max_tokens: int, sampling: Sampling, stop: Sequence[str] = (), seed: int = 0) -> Completion:
        """Stream one chat (``messages``) or text (``prompt``) completion."""
        index = self._slots.get()
        try:
            self.requests_per_url[index] += 1
            return self._stream(self.clients[index], messages, prompt, max_tokens, sampling, stop, seed)
        finally:
            self._slots.put(index)

    def _request(self, messages, prompt, max_tokens: int, sampling: Sampling, stop, seed: int) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model, "max_tokens": max_tokens, "temperature": sampling.temperature,
            "top_p": sampling.top_p, "seed": seed, "stream": True, "stream_options": {"include_usage": True},
        }
        if stop:
            request["stop"] = list(stop)
        if self.send_extras:
            request["extra_body"] = {name: getattr(sampling, name) for name in _EXTRA_PARAMETERS}
        request["messages" if messages is not None else "prompt"] = messages if messages is not None else prompt
        return request

    def _stream(self, client, messages, prompt, max_tokens, sampling, stop, seed) -> Completion:
        import openai

        request = self._request(messages, prompt, max_tokens, sampling, stop, seed)
        create = client.chat.completions.create if messages is not None else client.completions.create
        start = time.perf_counter()
        try:
            stream = create(**request)
            pieces, chunks, ttft, finish, usage = [], 0, None, "length", None
            for chunk in stream:
                usage = chunk.usage or usage
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                piece = choice.delta.content if messages is not None else choice.text
                if piece:
                    if ttft is None:
                        ttft = time.perf_counter() - start
                    pieces.append(piece)
                    chunks += 1
                finish = choice.finish_reason or finish
        except openai.BadRequestError as error:
            text = str(error).lower()
            if self.send_extras and any(name in text for name in _EXTRA_PARAMETERS):
                self.send_extras = False
                return self._stream(client, messages, prompt, max_tokens, sampling, stop, seed)
            if "context" in text or "too long" in text or "maximum" in text:
                raise ContextTooLong(f"{client.base_url}: {redact(str(error), self._secret)}") from None
            raise BackendError(f"{client.base_url} refused the request for {self.model!r}: "
                               f"{redact(str(error), self._secret)}") from None
        except openai.APIError as error:
            raise BackendError(f"{client.base_url} failed for {self.model!r}: "
                               f"{redact(str(error), self._secret)}") from None
        total = time.perf_counter() - start
        counters: dict[str, Any] = {"base_url": str(client.base_url)}
        if usage is not None:
            prompt_tokens, generated = usage.prompt_tokens, usage.completion_tokens
            counters["token_counts"] = "server usage"
        else:
            prompt_tokens, generated = None, chunks
            counters["token_counts"] = "stream chunks"
        return Completion(text="".join(pieces), prompt_tokens=prompt_tokens, generated_tokens=generated,
                          ttft_s=ttft if ttft is not None else total, total_s=total,
                          finish_reason=finish, counters=counters)

    def info(self) -> dict[str, Any]:
        return {"backend": "openai-compatible", "base_urls": self.base_urls, "model": self.model,
                "capacity": self.capacity}

    def close(self) -> None:
        for client in self.clients:
            client.close()
