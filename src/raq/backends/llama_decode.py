"""Decoding state. :class:`SequenceDecode` is one sequence's bookkeeping, shared by the
single-sequence loop (:meth:`raq.backends.llama.LlamaBackend.complete`) and the batched decoder
(:mod:`raq.backends.llama_batched`): what it generated, when it must stop, and its final text.
:class:`BatchSeq` and :class:`BatchCall` are what the batched decoder tracks per request and per
call."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import Completion, Request
from .llama_native import NativeBatch, stop_cut, token_piece


class SequenceDecode:
    """The generated tokens and text bytes of one sequence, its token ``limit`` and ``stop``
    strings, the time to its first token (from ``start``, a ``time.perf_counter()`` value), how
    it finished (``finish``; ``cut``: where a stop string begins in the text), and the most likely
    tokens of every kept step when the request asked for them (``top_logprobs``).

    With ``choices`` (a request constrained to one of these strings) the sequence ends as soon as
    its text is a choice that no longer choice extends: the grammar allows nothing but the end
    of generation there, so the step that would read that end is not run."""

    __slots__ = ("_lib", "_piece", "_vocab", "choices", "cut", "finish", "generated", "limit", "start", "stop",
                 "text_bytes", "top_logprobs", "ttft")

    def __init__(self, lib: Any, vocab: Any, piece_buf: Any, *, limit: int, stop: Sequence[str],
                 start: float, choices: Sequence[str] = ()) -> None:
        self._lib, self._vocab, self._piece = lib, vocab, piece_buf
        self.limit = limit
        self.stop = tuple(stop)
        self.choices = frozenset(choices)
        self.start = start
        self.generated: list[int] = []
        self.text_bytes = bytearray()
        self.ttft: float | None = None
        self.finish: str | None = None
        self.cut: int | None = None
        self.top_logprobs: list[dict[str, float]] = []

    def step(self, token: int, alternatives: dict[str, float] | None = None) -> bool:
        """Take the next sampled ``token`` (with ``alternatives``, the most likely tokens of its
        step, when they were asked for); True when the sequence is finished: an
        end-of-generation token ("stop", the token and its alternatives are not kept), a stop
        string ("stop"), or the token limit ("length")."""
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.start
        lib = self._lib
        if lib.llama_vocab_is_eog(self._vocab, token):
            self.finish = "stop"
            return True
        self.text_bytes += token_piece(lib, self._vocab, token, self._piece)
        self.generated.append(token)
        if alternatives is not None:
            self.top_logprobs.append(alternatives)
        if self.stop:  # stops count only once the answer has begun (leading whitespace skipped)
            self.cut = stop_cut(self.text_bytes, self.stop)
            if self.cut is not None:
                self.finish = "stop"
                return True
        if self.choices and self._chosen():
            self.finish = "stop"
            return True
        if len(self.generated) >= self.limit:
            self.finish = "length"
            return True
        return False

    def _chosen(self) -> bool:
        """The text is one of the choices and no other choice begins with it."""
        text = self.text_bytes.decode("utf-8", errors="ignore")
        return text in self.choices and not any(c != text and c.startswith(text) for c in self.choices)

    @property
    def last_token(self) -> int:
        return self.generated[-1]

    def text(self) -> str:
        """The text generated, cut where a stop string begins."""
        text = self.text_bytes.decode("utf-8", errors="replace")
        return text[:self.cut] if self.cut is not None else text

    def completion(self, prompt_tokens: int, total_s: float, counters: dict[str, Any]) -> Completion:
        """The :class:`Completion` of the finished sequence (``total_s``: its whole time)."""
        return Completion(text=self.text(), prompt_tokens=prompt_tokens, generated_tokens=len(self.generated),
                          ttft_s=self.ttft if self.ttft is not None else total_s, total_s=total_s,
                          finish_reason=self.finish or "length", counters=counters,
                          top_logprobs=self.top_logprobs)


@dataclass
class BatchSeq:
    """One request of a batched call: its prompt tokens, the KV cells it needs beyond the shared
    prefix, its slot, how many prompt tokens were fed, its sampler (None: the greedy argmax) and
    its decoding state."""

    index: int
    request: Request
    tokens: list[int]
    decode: SequenceDecode
    need: int = 0
    fed: int = 0
    slot: int = -1
    sampler: Any = None
    t_admit: float = 0.0


@dataclass
class BatchCall:
    """The state of one call of :meth:`~raq.backends.llama_batched.BatchedDecoder.complete_many`."""

    shared: int  # tokens of the shared prefix
    capacity: int  # KV cells the admitted sequences may reserve together
    t0: float
    pending: deque[BatchSeq]
    free_slots: list[int]
    active: list[BatchSeq] = field(default_factory=list)
    reserved: int = 0
    outputs: list[tuple[int, BatchSeq]] = field(default_factory=list)  # (batch index with logits, sequence)
    results: dict[int, Completion] = field(default_factory=dict)
    peak_active: int = 0
    steps: int = 0
    prompt_s: float = 0.0  # wall time of the prompt steps
    gen_only_s: float = 0.0  # wall time of the steps with new tokens only
    gen_only_tokens: int = 0


def add_prompt_tokens(batch: NativeBatch, call: BatchCall, *, joint: bool) -> bool:
    """Put prompt tokens of the call's sequences still reading their prompt into ``batch`` (and
    ``call.outputs`` for each prompt that ends in it); False when none is reading its prompt.

    By default one prompt per step (in ``n_batch`` chunks, like ``LlamaBackend.complete``): mixing
    one sequence's prompt tokens with other sequences' tokens in one batch changes how llama.cpp
    splits the work, and with it the rounding (3 of 24 Qwen answers differed that way). ``joint``
    (a scoring judge, where no answer must match single-sequence decoding) puts the prompts of
    all of them in one step, in slot order, as far as the batch holds them.
    """
    feeding = [q for q in call.active if q.fed < len(q.tokens)]  # in the order admitted
    if not feeding:
        return False
    for s in sorted(feeding, key=lambda q: q.slot) if joint else feeding[:1]:
        take = min(len(s.tokens) - s.fed, batch.capacity - batch.n)
        if take <= 0:
            break
        last = batch.add_run(s.tokens[s.fed:s.fed + take], s.fed, s.slot, s.fed + take == len(s.tokens))
        s.fed += take
        if s.fed == len(s.tokens):
            call.outputs.append((last, s))
    return True
