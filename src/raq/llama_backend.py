"""In-process generation with llama.cpp (llama-cpp-python), timed with a monotonic clock.

The backend takes a finished prompt string and returns the completion with its timings and
llama.cpp's own performance counters for the same call. The model is loaded through
llama-cpp-python's ``Llama``; the per-token loop runs on llama.cpp's low-level API, which keeps
raq's own cost per token to about 0.1 ms (``benchmarks/README.md``). Prompt caching across calls is off:
every prompt is read in full, so prompt speed is comparable between questions.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BackendError
from .llama_native import (NativeBatch, greedy_token, is_plain_greedy, make_sampler, quiet, stop_cut,
                           token_piece)


@dataclass
class Sampling:
    """Sampling settings passed to llama.cpp."""

    temperature: float = 0.0
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0


@dataclass
class Completion:
    """What one call produced and cost."""

    text: str
    prompt_tokens: int | None  # None when a server did not report it
    generated_tokens: int
    ttft_s: float
    total_s: float
    finish_reason: str
    counters: dict[str, Any] = field(default_factory=dict)


class PromptTooLong(BackendError):
    """The prompt leaves no room in the context for an answer."""


class LlamaBackend:
    """One GGUF model loaded in this process."""

    def __init__(self, path: str | Path, *, n_ctx: int, n_batch: int, n_threads: int | None = None,
                 n_gpu_layers: int = 0, seed: int = 0, chat_template: str | None = None) -> None:
        try:
            import llama_cpp
        except ImportError as error:  # pragma: no cover - a dependency of raq
            raise BackendError("llama-cpp-python is not installed: pip install llama-cpp-python") from error
        self._lib = llama_cpp
        self.path = Path(path)
        self.n_threads = n_threads or os.cpu_count() or 1
        try:
            with quiet():
                self._llm = llama_cpp.Llama(
                    model_path=str(self.path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch,
                    n_threads=self.n_threads, n_threads_batch=self.n_threads, n_gpu_layers=n_gpu_layers,
                    seed=seed, logits_all=False, verbose=False,
                )
        except (ValueError, RuntimeError) as error:
            raise BackendError(f"llama.cpp could not load {self.path}: {error}") from error
        self.template_override = chat_template
        self.n_ctx = self._llm.n_ctx()
        self.n_batch = n_batch
        self.n_gpu_layers = n_gpu_layers
        self.seed = seed
        self._batch: NativeBatch | None = None
        self._piece_buf = ctypes.create_string_buffer(256)

    @property
    def chat_template(self) -> str | None:
        """The chat template in use: the configured one, else the GGUF's own, if any."""
        return self.template_override or self._llm.metadata.get("tokenizer.chat_template") or None

    def render_chat(self, messages: Sequence[dict[str, str]]) -> str:
        """Apply the GGUF's chat template (with the generation prompt) to ``messages``."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.chat_template
        if template is None:
            raise BackendError(f"{self.path.name} has no chat template")
        model = self._llm._model
        eos, bos = self._llm.token_eos(), self._llm.token_bos()
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )
        return formatter(messages=list(messages)).prompt

    def tokenize(self, prompt: str, *, special: bool) -> list[int]:
        """Tokens of ``prompt``. Rendered chat prompts carry their special tokens as text
        (``special=True``, no extra BOS); plain prompts get the model's BOS and no specials."""
        return self._llm.tokenize(prompt.encode("utf-8"), add_bos=not special, special=special)

    def complete(self, prompt: str, *, max_tokens: int, sampling: Sampling, stop: Sequence[str] = (),
                 special: bool = False) -> Completion:
        """Generate from ``prompt`` until an end-of-generation token, a stop string, or
        ``max_tokens`` (clamped to the room left in the context).

        The loop runs on llama.cpp's low-level API: the prompt is decoded in ``n_batch`` chunks
        (as ``Llama.eval`` does), then one token per ``llama_decode`` with a reused batch. Plain
        greedy decoding takes the argmax of the logits (the token llama.cpp's greedy sampler
        picks, without copying the vocabulary into a candidate array); other settings use the
        native sampler chain that ``Llama.generate`` builds, with the same seed. Text, token
        counts and finish reasons equal ``Llama.generate``'s (``tests/test_llama_backend.py``).
        """
        llm, lib = self._llm, self._lib
        tokens = self.tokenize(prompt, special=special)
        room = self.n_ctx - len(tokens)
        if room < 1:
            raise PromptTooLong(f"prompt of {len(tokens)} tokens does not fit the context of {self.n_ctx}")
        limit = min(max_tokens, room)
        ctx, vocab = llm._ctx.ctx, llm._model.vocab
        llm.reset()  # llama-cpp-python's record of the cache: empty, so its own API re-reads all
        lib.llama_memory_seq_rm(lib.llama_get_memory(ctx), -1, 0, -1)
        lib.llama_perf_context_reset(ctx)
        if self._batch is None:
            self._batch = NativeBatch(lib, self.n_batch)
        batch = self._batch
        n_vocab = lib.llama_vocab_n_tokens(vocab)
        greedy = is_plain_greedy(sampling)
        sampler = None if greedy else make_sampler(lib, sampling, self.seed, n_vocab)
        piece_buf = self._piece_buf
        generated: list[int] = []
        text_bytes = bytearray()
        finish, ttft, cut = "length", None, None
        try:
            start = time.perf_counter()
            batch.decode_run(ctx, tokens, 0, 0, last_logits=True)
            batch.clear()
            batch.add(0, 0, 0, True)  # from now on: one token of sequence 0, with logits
            c_batch, token_arr, pos_arr = batch.batch, batch.token, batch.pos
            c_batch.n_tokens = 1
            n_past = len(tokens)
            while True:
                token = greedy_token(lib, ctx, -1, n_vocab) if greedy else lib.llama_sampler_sample(sampler, ctx, -1)
                if ttft is None:
                    ttft = time.perf_counter() - start
                if lib.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                text_bytes += token_piece(lib, vocab, token, piece_buf)
                generated.append(token)
                if stop:  # stops count only once the answer has begun (leading whitespace skipped)
                    cut = stop_cut(text_bytes, stop)
                    if cut is not None:
                        finish = "stop"
                        break
                if len(generated) >= limit:
                    break
                token_arr[0], pos_arr[0] = token, n_past
                n_past += 1
                rc = lib.llama_decode(ctx, c_batch)
                if rc != 0:
                    raise BackendError(f"llama_decode returned {rc} at position {n_past - 1}")
            total = time.perf_counter() - start
        finally:
            if sampler is not None:
                lib.llama_sampler_free(sampler)
        text = text_bytes.decode("utf-8", errors="replace")
        if cut is not None:
            text = text[:cut]
        perf = lib.llama_perf_context(ctx)
        counters = {"prompt_eval_ms": perf.t_p_eval_ms, "prompt_eval_tokens": perf.n_p_eval,
                    "eval_ms": perf.t_eval_ms, "eval_tokens": perf.n_eval}
        return Completion(text=text, prompt_tokens=len(tokens), generated_tokens=len(generated),
                          ttft_s=ttft if ttft is not None else total, total_s=total,
                          finish_reason=finish, counters=counters)

    def count_tokens(self, prompt: str, *, special: bool) -> int:
        return len(self.tokenize(prompt, special=special))

    def info(self) -> dict[str, Any]:
        """Settings and build facts that change results or speed."""
        meta = self._llm.metadata
        return {
            "path": str(self.path),
            "n_ctx": self.n_ctx, "n_batch": self.n_batch, "n_threads": self.n_threads,
            "n_gpu_layers": self.n_gpu_layers, "seed": self.seed,
            "architecture": meta.get("general.architecture"), "name": meta.get("general.name"),
            "file_type": meta.get("general.file_type"),
            "chat_template": self.chat_template,
            "llama_cpp_python": self._lib.__version__,
            "system_info": self._lib.llama_print_system_info().decode("utf-8", errors="replace").strip(),
        }

    def close(self) -> None:
        """Free the model's memory now."""
        if self._batch is not None:
            self._batch.free()
            self._batch = None
        self._llm.close()
