"""A tiny OpenAI-compatible endpoint on 127.0.0.1 that answers from a queue of scripted replies,
for tests of the code above the backends (streaming, retries, fallbacks, checks) over real HTTP.

A reply is text, a :class:`TokenReply` (text given token by token with each token's most likely
alternatives), an int (an HTTP error status, with ``error_message``), or a function of the
request body returning one of these. A request that asks for logprobs gets them (OpenAI's
formats: chat ``logprobs.content``, completions ``logprobs.top_logprobs``), streamed or whole:
a :class:`TokenReply`'s, or ``{piece: 0.0}`` for every streamed piece of a text reply. Options
make it behave like particular servers: ``api_key`` (401 unless that key is sent), ``usage``
(a usage report at the end of a stream), ``cached_tokens`` (the prompt tokens every usage report
says the server's cache held, as ``prompt_tokens_details.cached_tokens``), ``refuse_extras``
(400 for llama.cpp's sampling fields), ``refuse_structured`` (400 for ``response_format``),
``max_prompt_chars`` (400 "context" for a longer prompt), ``list_models=False`` (404 for
``GET /models``), ``refuse_logprobs`` (as llama-cpp-python's server without ``logits_all``: 500
for a whole reply, a stream that ends before its first chunk), ``give_logprobs=False``
(logprobs ignored).

``python tests/fake_endpoint.py --port PORT --model ALIAS`` serves until killed.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EXTRA_FIELDS = ("top_k", "min_p", "repeat_penalty")
#: What llama-cpp-python's server says to a request for logprobs when its model has no logits_all.
LOGPROBS_REFUSAL = "logprobs is not supported for models created with logits_all=False"


@dataclass
class TokenReply:
    """A reply of these ``tokens``, the i-th with the alternatives ``top_logprobs[i]``
    (text -> logprob); streamed one token per chunk."""

    tokens: list[str]
    top_logprobs: list[dict[str, float]]

    @property
    def text(self) -> str:
        return "".join(self.tokens)


Reply = str | int | TokenReply | Callable[[dict[str, Any]], "str | int | TokenReply"]


def asked_logprobs(request: dict[str, Any]) -> int:
    """How many alternatives per token a request body asks for (0: none)."""
    if "messages" in request:
        return int(request.get("top_logprobs") or 0) if request.get("logprobs") else 0
    return int(request.get("logprobs") or 0)


def logprobs_of(tokens: list[str], tops: list[dict[str, float]], n: int, chat: bool) -> dict[str, Any]:
    """The ``logprobs`` field of a choice with these tokens, in OpenAI's chat or completions format."""
    ranked = [dict(sorted(top.items(), key=lambda item: -item[1])[:n]) for top in tops]
    chosen = [top.get(token, max(top.values(), default=0.0)) for token, top in zip(tokens, tops)]
    if chat:
        return {"content": [{"token": token, "logprob": lp, "bytes": list(token.encode()),
                             "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())}
                                              for t, v in top.items()]}
                            for token, lp, top in zip(tokens, chosen, ranked)], "refusal": None}
    offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    return {"tokens": tokens, "token_logprobs": chosen, "top_logprobs": ranked, "text_offset": offsets}


def prompt_text(request: dict[str, Any]) -> str:
    """The prompt of a request body: its messages' contents, or its prompt."""
    if "messages" in request:
        return "\n".join(str(m.get("content", "")) for m in request["messages"])
    return str(request.get("prompt", ""))


class FakeEndpoint:
    def __init__(self, replies: Sequence[Reply] = (), model: str = "fake-judge", *, port: int = 0,
                 api_key: str | None = None, usage: bool = False, refuse_extras: bool = False,
                 refuse_structured: bool = False, max_prompt_chars: int | None = None,
                 list_models: bool = True, default: Reply = '{"ranking": ["A", "B", "C"]}',
                 refuse_logprobs: bool = False, give_logprobs: bool = True, cached_tokens: int | None = None) -> None:
        self.replies: list[Reply] = list(replies)
        self.default = default  # once the queue is empty
        self.error_message = ""
        self.model = model
        self.api_key = api_key
        self.usage = usage
        self.cached_tokens = cached_tokens
        self.refuse_extras = refuse_extras
        self.refuse_structured = refuse_structured
        self.max_prompt_chars = max_prompt_chars
        self.list_models = list_models
        self.refuse_logprobs = refuse_logprobs
        self.give_logprobs = give_logprobs
        self.requests: list[dict[str, Any]] = []
        self.keys_seen: list[str] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def _next_reply(self, request: dict[str, Any]) -> str | int | TokenReply:
        with self.lock:
            self.requests.append(request)
            reply = self.replies.pop(0) if self.replies else self.default
        return reply(request) if callable(reply) else reply

    def _refusal(self, request: dict[str, Any]) -> str | None:
        """Why this server refuses the request (a 400), or None."""
        if self.refuse_extras and any(name in request for name in EXTRA_FIELDS):
            fields = ", ".join(name for name in EXTRA_FIELDS if name in request)
            return f"Unrecognized request argument supplied: {fields}"
        if self.refuse_structured and "response_format" in request:
            return "response_format is not supported by this server"
        if self.max_prompt_chars is not None and len(prompt_text(request)) > self.max_prompt_chars:
            return "the request exceeds the available context size, try increasing it"
        return None

    def _usage(self, prompt: int, completion: int) -> dict[str, Any]:
        """A usage report of these token counts (with the cached prompt tokens when set)."""
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                 "total_tokens": prompt + completion}
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return usage

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str) -> None:
                self._send(status, {"error": {"message": message, "type": "test"}})

            def _authorised(self) -> bool:
                given = self.headers.get("Authorization", "").removeprefix("Bearer ")
                endpoint.keys_seen.append(given)
                if endpoint.api_key is None or given == endpoint.api_key:
                    return True
                self._error(401, f"Incorrect API key provided: {given}")
                return False

            def _stream(self, reply: str | TokenReply, chat: bool, request: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                if isinstance(reply, TokenReply):
                    pieces, tops = reply.tokens, reply.top_logprobs
                else:
                    pieces = [reply[i:i + 4] for i in range(0, len(reply), 4)] or [""]
                    tops = [{piece: 0.0} for piece in pieces]
                n = asked_logprobs(request) if endpoint.give_logprobs else 0
                for number, piece in enumerate(pieces):
                    last = number == len(pieces) - 1
                    choice = ({"index": 0, "delta": {"content": piece}, "finish_reason": "stop" if last else None}
                              if chat else {"index": 0, "text": piece, "finish_reason": "stop" if last else None})
                    if n:
                        choice["logprobs"] = logprobs_of([piece], tops[number:number + 1], n, chat)
                    self._chunk(chat, [choice])
                words = len("".join(pieces).split())
                if endpoint.usage and request.get("stream_options", {}).get("include_usage"):
                    prompt = len(prompt_text(request).split())
                    self._chunk(chat, [], usage=endpoint._usage(prompt, words))
                self.wfile.write(b"data: [DONE]\n\n")

            def _chunk(self, chat: bool, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> None:
                chunk = {"id": "x", "object": "chat.completion.chunk" if chat else "text_completion",
                         "created": 0, "model": endpoint.model, "choices": choices, "usage": usage}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                if not endpoint.list_models or not self.path.rstrip("/").endswith("/models"):
                    self._error(404, f"no route {self.path}")
                    return
                self._send(200, {"object": "list", "data": [{"id": endpoint.model, "object": "model"}]})

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self._authorised():
                    return
                refusal = endpoint._refusal(request)
                if refusal is not None:
                    with endpoint.lock:
                        endpoint.requests.append(request)
                    self._error(400, refusal)
                    return
                if endpoint.refuse_logprobs and asked_logprobs(request):
                    self._refuse_logprobs(request)
                    return
                reply = endpoint._next_reply(request)
                if isinstance(reply, int):
                    self._error(reply, endpoint.error_message or f"scripted {reply}")
                    return
                if request.get("stream"):
                    self._stream(reply, "messages" in request, request)
                    return
                self._whole(reply, "messages" in request, request)

            def _refuse_logprobs(self, request: dict[str, Any]) -> None:
                """As llama-cpp-python's server: a 500, or a stream that breaks before its first chunk."""
                with endpoint.lock:
                    endpoint.requests.append(request)
                if not request.get("stream"):
                    self._error(500, LOGPROBS_REFUSAL)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.close_connection = True

            def _whole(self, reply: str | TokenReply, chat: bool, request: dict[str, Any]) -> None:
                tokens, tops = (reply.tokens, reply.top_logprobs) if isinstance(reply, TokenReply) \
                    else ([reply], [{reply: 0.0}])
                text = "".join(tokens)
                choice: dict[str, Any] = ({"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": text}} if chat
                                          else {"index": 0, "finish_reason": "stop", "text": text})
                n = asked_logprobs(request) if endpoint.give_logprobs else 0
                if n:
                    choice["logprobs"] = logprobs_of(tokens, tops, n, chat)
                self._send(200, {"id": "x", "object": "chat.completion" if chat else "text_completion", "created": 0,
                                 "model": endpoint.model, "choices": [choice],
                                 "usage": endpoint._usage(1, 1)})

        return Handler

    def __enter__(self) -> "FakeEndpoint":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def served_reply(request: dict[str, Any]) -> str:
    """A ranking in the shown order when a schema with labels is asked for, else a fixed answer."""
    schema = request.get("response_format", {}).get("schema") or {}
    labels = schema.get("properties", {}).get("ranking", {}).get("items", {}).get("enum")
    return json.dumps({"ranking": labels}) if labels else "a served reply"


def main() -> None:
    """Serve ``--model`` on 127.0.0.1:``--port`` until killed (a stand-in for a llama.cpp server)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    endpoint = FakeEndpoint(model=args.model, port=args.port, default=served_reply)
    print(f"serving {args.model} on {endpoint.base_url}", flush=True)
    endpoint.server.serve_forever()


if __name__ == "__main__":
    main()
