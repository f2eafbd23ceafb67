"""A tiny OpenAI-compatible chat endpoint on 127.0.0.1 that answers from a queue of scripted
replies, for unit tests of the code above the judge backend (retries, parsing, ordering)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeEndpoint:
    def __init__(self, replies: list[str | int], model: str = "fake-judge") -> None:
        self.replies = list(replies)  # a str is a reply; an int is an HTTP error status
        self.default = '{"ranking": ["A", "B", "C"]}'  # once the queue is empty
        self.error_message = ""
        self.model = model
        self.requests: list[dict] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, reply: str, chat: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                pieces = [reply[i:i + 4] for i in range(0, len(reply), 4)] or [""]
                for number, piece in enumerate(pieces):
                    last = number == len(pieces) - 1
                    choice = ({"index": 0, "delta": {"content": piece}, "finish_reason": "stop" if last else None}
                              if chat else {"index": 0, "text": piece, "finish_reason": "stop" if last else None})
                    chunk = {"id": "x", "object": "chat.completion.chunk" if chat else "text_completion",
                             "created": 0, "model": endpoint.model, "choices": [choice]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": endpoint.model, "object": "model"}]})

            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append(request)
                reply = endpoint.replies.pop(0) if endpoint.replies else endpoint.default
                if isinstance(reply, int):
                    message = endpoint.error_message or f"scripted {reply}"
                    self._send(reply, {"error": {"message": message, "type": "test"}})
                    return
                if request.get("stream"):
                    self._stream(reply, chat="messages" in request)
                    return
                self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": endpoint.model,
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": reply}}],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeEndpoint":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
