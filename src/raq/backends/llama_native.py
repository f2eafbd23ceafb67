"""Thin helpers over llama.cpp's low-level C API (through llama-cpp-python's ctypes bindings)
that raq's decoding loops share: a reusable ``llama_batch``, native sampler chains (with an
optional grammar), the greedy pick, the most likely tokens with their log-probabilities, token
pieces, stop strings, quiet model/context creation, and the KV cache sizes llama.cpp reports while
it creates a context."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import BackendError
from .base import Sampling, merge_alternatives

log = logging.getLogger(__name__)

#: llama-cpp-python's ``Llama`` default for the repeat-penalty window (``last_n_tokens_size``,
#: also the server's default).
PENALTY_LAST_N = 64
#: The root rule of every grammar raq builds (llama-cpp-python's ``LLAMA_GRAMMAR_DEFAULT_ROOT``).
GRAMMAR_ROOT = "root"
#: llama.cpp's line for each KV cache it allocates (two for models with sliding-window layers).
KV_CACHE_LINE = re.compile(r"^llama_kv_cache\w*: +size = +([0-9.]+) MiB", re.MULTILINE)


class KvCacheLog:
    """The KV cache sizes llama.cpp logged inside :func:`kv_cache_log`."""

    def __init__(self) -> None:
        self.text: list[str] = []

    @property
    def mib(self) -> float | None:
        """The KV cache memory of every context created, in MiB; None when llama.cpp logged none."""
        sizes = [float(size) for size in KV_CACHE_LINE.findall("".join(self.text))]
        return round(sum(sizes), 2) if sizes else None


_capture: list[KvCacheLog] = []


def _log_line(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    if _capture:
        _capture[-1].text.append(text.decode("utf-8", errors="replace"))


@lru_cache(maxsize=1)
def _callback(lib: Any) -> Any:
    return lib.llama_log_callback(_log_line)  # kept alive by the cache: llama.cpp holds the pointer


@contextlib.contextmanager
def kv_cache_log(lib: Any) -> Iterator[KvCacheLog]:
    """Collect llama.cpp's log while models and contexts are created (llama-cpp-python's own
    logger, which prints only errors unless verbose, is put back after)."""
    from llama_cpp import _logger

    record = KvCacheLog()
    _capture.append(record)
    lib.llama_log_set(_callback(lib), ctypes.c_void_p(0))
    try:
        yield record
    finally:
        _capture.remove(record)
        lib.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def quiet() -> Any:
    """A context manager that keeps llama.cpp's messages off stdout/stderr while a model or
    context is created: ``verbose=False`` still lets its warnings through (llama-cpp-python maps
    ggml's WARN level to ERROR). Failures still raise."""
    from llama_cpp._utils import suppress_stdout_stderr

    return suppress_stdout_stderr(disable=False)


def new_context(lib: Any, model: Any, *, n_ctx: int, n_batch: int, n_seq_max: int, n_threads: int,
                kv_unified: bool, flash_attn: bool) -> Any:
    """A new llama.cpp context on the loaded ``model`` (llama-cpp-python's ``LlamaModel``) with
    perf counters on and no embeddings; None when llama.cpp cannot create it."""
    params = lib.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = n_batch
    params.n_ubatch = n_batch
    params.n_seq_max = n_seq_max
    params.n_threads = n_threads
    params.n_threads_batch = n_threads
    params.kv_unified = kv_unified
    params.flash_attn_type = (lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                              else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED)  # off: as Llama's default context
    params.no_perf = False
    params.embeddings = False
    with quiet():
        return lib.llama_init_from_model(model.model, params)


def stop_cut(text_bytes: bytes | bytearray, stop: Sequence[str]) -> int | None:
    """Where the earliest stop string begins in the text so far, or None. Stops count only once
    the answer has begun (leading whitespace skipped)."""
    text = text_bytes.decode("utf-8", errors="ignore")
    if not text.strip():
        return None
    begun = len(text) - len(text.lstrip())
    hits = [i for i in (text.find(s, begun) for s in stop) if i >= 0]
    return min(hits) if hits else None


@lru_cache(maxsize=64)
def _gbnf(schema_json: str) -> str:
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    try:
        return json_schema_to_gbnf(schema_json)
    except Exception as error:  # the converter raises bare exceptions; the server falls back the same way
        log.warning("JSON schema not convertible to a grammar (%s): any JSON is allowed instead", error)
        return JSON_GBNF


def schema_grammar(schema: dict[str, Any]) -> str:
    """The GBNF grammar for replies that follow the JSON ``schema``, built as llama-cpp-python's
    server builds it for ``response_format={"type": "json_object", "schema": ...}`` and for a
    forced tool call: its own converter on ``json.dumps(schema)`` (key order kept), falling back
    to the grammar of any JSON value when the converter fails."""
    return _gbnf(json.dumps(schema))


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal: quotes and backslashes escaped, control characters
    written as ``\\xHH`` (everything else is taken as UTF-8 by llama.cpp's grammar parser)."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def choices_grammar(choices: Sequence[str]) -> str:
    """The GBNF grammar of a reply that is exactly one of ``choices``."""
    return f"{GRAMMAR_ROOT} ::= " + " | ".join(gbnf_literal(choice) for choice in choices)


def make_sampler(lib: Any, sampling: Sampling, seed: int, n_vocab: int, *, grammar: str | None = None,
                 vocab: Any = None) -> Any:
    """A native sampler chain equivalent to the one ``Llama.generate`` builds (without the
    repeat-penalty stage when it is a no-op): penalties, then the ``grammar`` (GBNF, needs
    ``vocab``) if any, then greedy or top-k, typical, top-p, min-p, temperature and the seeded
    draw. The caller frees it with ``llama_sampler_free``."""
    params = lib.llama_sampler_chain_default_params()
    params.no_perf = True
    chain = lib.llama_sampler_chain_init(params)
    if chain is None:
        raise BackendError("llama_sampler_chain_init failed")

    def add(sampler: Any) -> None:
        lib.llama_sampler_chain_add(chain, sampler)

    if sampling.repeat_penalty != 1.0:
        add(lib.llama_sampler_init_penalties(n_vocab, PENALTY_LAST_N, sampling.repeat_penalty, 0.0, 0.0))
    if grammar is not None:
        stage = lib.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), GRAMMAR_ROOT.encode("utf-8"))
        if stage is None:
            lib.llama_sampler_free(chain)
            raise BackendError("llama.cpp could not parse the grammar of the request (its JSON schema or choices)")
        add(stage)
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


def top_logprobs(lib: Any, ctx: Any, idx: int, n_vocab: int, n: int, vocab: Any, buf: Any) -> dict[str, float]:
    """The ``n`` most likely tokens of output ``idx``'s raw logits (before any grammar or
    sampler) as text -> natural-log probability, most likely first: a log-softmax in float64,
    the texts as :func:`token_piece` gives them (bytes that are not whole UTF-8 characters
    become U+FFFD), tokens with the same text merged (:func:`merge_alternatives`)."""
    logits = lib.llama_get_logits_ith(ctx, idx)
    if not logits:
        raise BackendError(f"no logits for output {idx}")
    row = np.ctypeslib.as_array(logits, shape=(n_vocab,)).astype(np.float64)
    top = np.argpartition(row, n_vocab - n)[n_vocab - n:] if n < n_vocab else np.arange(n_vocab)
    high = row.max()
    log_total = high + np.log(np.exp(row - high).sum())
    pairs = ((token_piece(lib, vocab, int(token), buf).decode("utf-8", errors="replace"),
              float(row[token] - log_total)) for token in top)
    return merge_alternatives(pairs, n)


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
