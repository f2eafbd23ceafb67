"""A local OpenAI-compatible llama.cpp server (``python -m llama_cpp.server``) that raq
starts on 127.0.0.1, waits for, checks, and stops by its process id; and the Backend that
serves one GGUF through it (an :class:`~raq.backends.openai_http.OpenAIBackend` on the
server's address)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import BackendError
from .base import TEMPLATE_SERVER, Completion, Request
from .openai_http import OpenAIBackend, require_served


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: have the kernel send SIGTERM to the server if raq itself dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """``with LocalServer(...) as server:`` serves one GGUF at ``server.base_url``.

    ``logits_all=True`` keeps the logits of every token, which the server needs to give
    logprobs (it refuses requests for them otherwise); it costs memory (``n_ctx`` x the
    vocabulary in floats) and some prompt speed, so it is off by default."""

    def __init__(self, gguf: str | Path, alias: str, *, n_ctx: int = 4096, n_threads: int | None = None,
                 n_gpu_layers: int = 0, seed: int = 0, log_path: str | Path | None = None,
                 start_timeout_s: float = 180.0, logits_all: bool = False, flash_attn: bool = False) -> None:
        self.gguf = Path(gguf)
        self.flash_attn = flash_attn
        self.alias = alias
        self.n_ctx, self.n_threads, self.n_gpu_layers, self.seed = n_ctx, n_threads, n_gpu_layers, seed
        self.logits_all = logits_all
        self.log_path = Path(log_path) if log_path else None
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        threads = self.n_threads or os.cpu_count() or 1
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf),
                "--model_alias", self.alias, "--host", "127.0.0.1", "--port", str(self.port),
                "--n_ctx", str(self.n_ctx), "--n_threads", str(threads), "--n_threads_batch", str(threads),
                "--n_gpu_layers", str(self.n_gpu_layers), "--seed", str(self.seed),
                "--logits_all", "true" if self.logits_all else "false",
                "--flash_attn", "true" if self.flash_attn else "false", "--verbose", "false"]

    def start(self) -> "LocalServer":
        self.port = free_port()
        with open(self.log_path or os.devnull, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _log_tail(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return (": " + lines[-1]) if lines else ""

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise BackendError(f"the llama.cpp server for {self.gguf.name} exited with code "
                                   f"{self.process.returncode} while starting{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    served = [m["id"] for m in json.load(response)["data"]]
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError, KeyError):
                time.sleep(0.25)
                continue
            require_served(self.base_url, served or [""], self.alias)
            return
        raise BackendError(f"the llama.cpp server for {self.gguf.name} was not ready after "
                           f"{self.start_timeout_s:.0f} s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


class LocalServerBackend:
    """A GGUF served by a :class:`LocalServer` that this backend starts and stops; requests go
    through the shared OpenAI-compatible client (structured output as llama.cpp's JSON object
    with a schema; logprobs only with ``logits_all``, see :class:`LocalServer`)."""

    chat_template_source: str | None = TEMPLATE_SERVER

    def __init__(self, gguf: str | Path, alias: str, *, n_ctx: int = 4096, n_threads: int | None = None,
                 n_gpu_layers: int = 0, seed: int = 0, log_path: str | Path | None = None,
                 timeout_s: float = 300.0, max_in_flight: int = 1, logits_all: bool = False,
                 flash_attn: bool = False) -> None:
        self.server = LocalServer(gguf, alias, n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=n_gpu_layers,
                                  seed=seed, log_path=log_path, logits_all=logits_all, flash_attn=flash_attn).start()
        try:
            self.http = OpenAIBackend([self.server.base_url], alias, max_in_flight=max_in_flight,
                                      timeout_s=timeout_s, structured="json_object")
        except BaseException:
            self.server.stop()
            raise
        self.n_ctx: int | None = n_ctx
        self.capacity = self.http.capacity

    @property
    def pid(self) -> int | None:
        return self.server.process.pid if self.server.process is not None else None

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def render(self, request: Request) -> str:
        return self.http.render(request)

    def count_tokens(self, request: Request) -> int | None:
        return None

    def complete(self, request: Request) -> Completion:
        return self.http.complete(request)

    def complete_many(self, requests: Sequence[Request]) -> Iterator[tuple[int, Completion]]:
        return self.http.complete_many(requests)

    def info(self) -> dict[str, Any]:
        return {**self.http.info(), "backend": "llama.cpp server", "gguf": str(self.server.gguf),
                "pid": self.pid, "n_ctx": self.n_ctx, "n_gpu_layers": self.server.n_gpu_layers,
                "logits_all": self.server.logits_all, "flash_attn": self.server.flash_attn}

    def close(self) -> None:
        try:
            self.http.close()
        finally:
            self.server.stop()
