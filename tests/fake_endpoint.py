"""A tiny OpenAI-compatible endpoint on 127.0.0.1 that answers from a queue of scripted replies,
for tests of the code above the backends (streaming, retries, fallbacks, checks) over real HTTP.

A reply is text, an int (an HTTP error status, with ``error_message``), or a function of the
request body returning either. Options make it behave like particular servers: ``api_key``
(401 unless that key is sent), ``usage`` (a usage report at the end of a stream),
``refuse_extras`` (400 for llama.cpp's sampling fields), ``refuse_structured`` (400 for
``response_format``), ``max_prompt_chars`` (400 "context" for a longer prompt),
``list_models=False`` (404 for ``GET /models``).

``python tests/fake_endpoint.py --port PORT --model ALIAS`` serves until killed.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = str | int | Callable[[dict[str, Any]], "str | int"]
EXTRA_FIELDS = ("top_k", "min_p", "repeat_penalty")


def prompt_text(request: dict[str, Any]) -> str:
    """The prompt of a request body: its messages' contents, or its prompt."""
    if "messages" in request:
        return "\n".join(str(m.get("content", "")) for m in request["messages"])
    return str(request.get("prompt", ""))


class FakeEndpoint:
    def __init__(self, replies: Sequence[Reply] = (), model: str = "fake-judge", *, port: int = 0,
                 api_key: str | None = None, usage: bool = False, refuse_extras: bool = False,
                 refuse_structured: bool = False, max_prompt_chars: int | None = None,
                 list_models: bool = True, default: Reply = '{"ranking": ["A", "B", "C"]}') -> None:
        self.replies: list[Reply] = list(replies)
        self.default = default  # once the queue is empty
        self.error_message = ""
        self.model = model
        self.api_key = api_key
        self.usage = usage
        self.refuse_extras = refuse_extras
        self.refuse_structured = refuse_structured
        self.max_prompt_chars = max_prompt_chars
        self.list_models = list_models
        self.requests: list[dict[str, Any]] = []
        self.keys_seen: list[str] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def _next_reply(self, request: dict[str, Any]) -> str | int:
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

            def _stream(self, reply: str, chat: bool, request: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                pieces = [reply[i:i + 4] for i in range(0, len(reply), 4)] or [""]
                for number, piece in enumerate(pieces):
                    last = number == len(pieces) - 1
                    choice = ({"index": 0, "delta": {"content": piece}, "finish_reason": "stop" if last else None}
                              if chat else {"index": 0, "text": piece, "finish_reason": "stop" if last else None})
                    self._chunk(chat, [choice])
                if endpoint.usage and request.get("stream_options", {}).get("include_usage"):
                    self._chunk(chat, [], usage={"prompt_tokens": len(prompt_text(request).split()),
                                                 "completion_tokens": len(reply.split()),
                                                 "total_tokens": len(prompt_text(request).split())
                                                 + len(reply.split())})
                self.wfile.write(b"data: [DONE]\n\n")

            def _chunk(self, chat: bool, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> None:
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
                reply = endpoint._next_reply(request)
                if isinstance(reply, int):
                    self._error(reply, endpoint.error_message or f"scripted {reply}")
                    return
                if request.get("stream"):
                    self._stream(reply, "messages" in request, request)
                    return
                self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": endpoint.model,
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": reply}}],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

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
