"""Thin helpers over llama.cpp's low-level C API (through llama-cpp-python's ctypes bindings)
that raq's decoding loops share: a reusable ``llama_batch``, native sampler chains, the greedy
pick, token pieces, stop strings, and quiet model/context creation."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import BackendError

if TYPE_CHECKING:  # pragma: no cover
    from .llama_backend import Sampling

#: llama-cpp-python's ``Llama`` default for the repeat-penalty window.
PENALTY_LAST_N = 64


def quiet() -> Any:
    """A context manager that keeps llama.cpp's messages off stdout/stderr while a model or
    context is created: ``verbose=False`` still lets its warnings through (llama-cpp-python maps
    ggml's WARN level to ERROR). Failures still raise."""
    from llama_cpp._utils import suppress_stdout_stderr

    return suppress_stdout_stderr(disable=False)

def stop_cut(text_bytes: bytes | bytearray, stop: Sequence[str]) -> int | None:
    """Where the earliest stop string begins in the text so far, or None. Stops count only once
    the answer has begun (leading whitespace skipped), as in :meth:`~raq.llama_backend.LlamaBackend.complete`."""
    text = text_bytes.decode("utf-8", errors="ignore")
    if not text.strip():
        return None
    begun = len(text) - len(text.lstrip())
    hits = [i for i in (text.find(s, begun) for s in stop) if i >= 0]
    return min(hits) if hits else None


def make_sampler(lib: Any, sampling: Sampling, seed: int, n_vocab: int) -> Any:
    """A native sampler chain equivalent to the one ``Llama.generate`` builds (without the
    repeat-penalty stage when it is a no-op). The caller frees it with ``llama_sampler_free``."""
    params = lib.llama_sampler_chain_default_params()
    params.no_perf = True
    chain = lib.llama_sampler_chain_init(params)
    if chain is None:
        raise BackendError("llama_sampler_chain_init failed")

    def add(sampler: Any) -> None:
        lib.llama_sampler_chain_add(chain, sampler)

    if sampling.repeat_penalty != 1.0:
        add(lib.llama_sampler_init_penalties(n_vocab, PENALTY_LAST_N, sampling.repeat_penalty, 0.0, 0.0))
    if sampling.temperature < 0.0:
        add(lib.llama_sampler_init_dist(seed))
    elif sampling.temperature == 0.0:
        add(lib.llama_sampler_init_greedy())
    else:
        add(lib.llama_sampler_init_top_k(sampling.top_k))
        add(lib.llama_sampler_init_typical(1.0, 1))
        add(lib.llama_sampler_init_top_p(sampling.top_p, 1))
        add(lib.llama_sampler_init_min_p(sampling.min_p, 1))
        add(lib.llama_sampler_init_temp(sampling.temperature))
        add(lib.llama_sampler_init_dist(seed))
    return chain


def is_plain_greedy(sampling: Sampling) -> bool:
    """Temperature 0 without a repeat penalty: the token is the argmax of the logits."""
    return sampling.temperature == 0.0 and sampling.repeat_penalty == 1.0


def greedy_token(lib: Any, ctx: Any, idx: int, n_vocab: int) -> int:
    """The argmax of the logits of output ``idx``: the token llama.cpp's greedy sampler picks
    (the first of equal maxima), without copying the whole vocabulary into a candidate array
    (which costs 0.15-0.75 ms per token for 49k-262k vocabularies)."""
    logits = lib.llama_get_logits_ith(ctx, idx)
    if not logits:
        raise BackendError(f"no logits for output {idx}")
    return int(np.ctypeslib.as_array(logits, shape=(n_vocab,)).argmax())


class NativeBatch:
    """A ``llama_batch`` with numpy views on its arrays, filled token by token."""

    def __init__(self, lib: Any, capacity: int) -> None:
        self._lib = lib
        self.capacity = capacity
        self.batch = lib.llama_batch_init(capacity, 0, 1)
        b = self.batch
        self.token = np.ctypeslib.as_array(b.token, shape=(capacity,))
        self.pos = np.ctypeslib.as_array(b.pos, shape=(capacity,))
        self.n_seq_id = np.ctypeslib.as_array(b.n_seq_id, shape=(capacity,))
        self.logits = np.ctypeslib.as_array(b.logits, shape=(capacity,))
        self._seq = [b.seq_id[i] for i in range(capacity)]
        self.n_seq_id[:] = 1
        self.n = 0

    def clear(self) -> None:
        self.n = 0

    def add(self, token: int, pos: int, seq_id: int, logits: bool) -> int:
        i = self.n
        self.token[i] = token
        self.pos[i] = pos
        self._seq[i][0] = seq_id
        self.logits[i] = logits
        self.n = i + 1
        return i

    def add_run(self, tokens: Sequence[int], pos0: int, seq_id: int, last_logits: bool) -> int:
        """Add consecutive tokens of one sequence; returns the index of the last one."""
        i, k = self.n, len(tokens)
        self.token[i:i + k] = tokens
        self.pos[i:i + k] = np.arange(pos0, pos0 + k, dtype=self.pos.dtype)
        self.logits[i:i + k] = 0
        for j in range(i, i + k):
            self._seq[j][0] = seq_id
        if last_logits:
            self.logits[i + k - 1] = 1
        self.n = i + k
        return i + k - 1

    def decode_run(self, ctx: Any, tokens: Sequence[int], pos0: int, seq_id: int, last_logits: bool) -> None:
        """Decode consecutive tokens of one sequence from position ``pos0``, ``capacity`` tokens
        per ``llama_decode`` (as ``Llama.eval`` does with ``n_batch``); logits for the last token
        only if ``last_logits``."""
        for start in range(0, len(tokens), self.capacity):
            chunk = tokens[start:start + self.capacity]
            self.clear()
            self.add_run(chunk, pos0 + start, seq_id, last_logits and start + len(chunk) == len(tokens))
            self.decode(ctx)

    def decode(self, ctx: Any) -> None:
        self.batch.n_tokens = self.n
        rc = self._lib.llama_decode(ctx, self.batch)
        if rc != 0:
            raise BackendError(f"llama_decode returned {rc} for a batch of {self.n} tokens")

    def free(self) -> None:
        if self.batch is not None:
            self._lib.llama_batch_free(self.batch)
            self.batch = None


def long_piece(lib: Any, vocab: Any, token: int, size: int) -> bytes:
    buf = ctypes.create_string_buffer(size)
    n = lib.llama_token_to_piece(vocab, token, buf, size, 0, False)
    return buf.raw[:n]


def token_piece(lib: Any, vocab: Any, token: int, buf: Any) -> bytes:
    """The bytes of ``token`` (specials not rendered), written into the reusable ctypes buffer
    ``buf`` when they fit."""
    n = lib.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    return buf.raw[:n] if n >= 0 else long_piece(lib, vocab, token, -n)
