"""Throughput mode: one model decodes the answers to several requests together in one batch.

For quality studies, where answers per hour matter more than per-answer latency, a
:class:`BatchedDecoder` puts the next token of up to ``n_parallel`` sequences into one
``llama_decode`` call (llama.cpp's multi-sequence batch API, through llama-cpp-python's low-level
bindings): a decode step for 4 sequences costs much less than 4 steps for 1. Prompt evaluation
is not sped up (it is batched already), so the gain in answers per second depends on how much of
the time goes to generation; ``benchmarks/README.md`` has measured figures.

* Every request is rendered and tokenized exactly as :meth:`LlamaBackend.complete` does. The
  longest token prefix shared by all prompts of a call (the chat template's system prompt, and
  more when several questions share a paragraph), cut to a multiple of :data:`PREFIX_ALIGN`
  tokens, is evaluated once into a reserved sequence and copied to each sequence with
  ``llama_memory_seq_cp``. It stays cached: a later call evaluates only the part that differs.
* Sequences are scheduled continuously: when one answer finishes (end-of-generation token, a stop
  string, or its token limit) its slot takes the next prompt. A prompt is decoded in steps of its
  own (``n_batch`` tokens at a time, as the single-sequence path does); the other steps carry one
  new token for every generating sequence. Mixing prompt tokens and other sequences' new tokens in
  one step is no faster and changes llama.cpp's rounding enough to change some greedy answers.
* Plain greedy decoding (temperature 0, no repeat penalty, no grammar) takes the argmax of each
  sequence's logits; other settings give each sequence its own native sampler chain
  (:meth:`LlamaBackend.sampler`: ``Llama.generate``'s chain, seeded with the request's seed).
  Every request keeps its own sampling, stops, grammar (a schema, a tool or choices), limit and
  ``logprobs`` (read from its own logits row of each step, as the single-sequence path does).
* By default every sequence has its own KV-cache stream (``kv_unified=False``), laid out as in
  a single-sequence context; with it, greedy answers matched single-sequence greedy answers for
  24 of 24 SQuAD questions on Qwen2.5-0.5B. ``kv_unified=True`` shares one pool of cells (the
  prefix is stored once, streams need not be sized for the longest sequence), but attention
  then runs over other sequences' cells too, which is slower for long prompts and rounds
  differently.

Context budget: each sequence's positions are limited by ``n_ctx_per_seq`` (default: the
backend's ``n_ctx``) and ``max_tokens`` is clamped to the room left there, exactly like the
single-sequence path. A sequence needs ``len(prompt) - shared_prefix + max_tokens`` KV cells
beyond the shared prefix. Without a unified cache llama.cpp splits ``n_ctx`` into
``n_parallel + 1`` equal streams (one holds the prefix), each of which must hold prefix + that;
the default ``n_ctx`` is ``(n_parallel + 1) * n_ctx_per_seq`` (KV memory: 5 x a single-sequence
context for 4 sequences). With a unified cache the default is ``n_parallel * n_ctx_per_seq`` and
a prompt is admitted only when the cells it may need are free, so the cache never overflows. A
prompt that cannot fit even alone raises :class:`BatchedContextTooSmall`; one longer than
``n_ctx_per_seq`` raises :class:`~raq.backends.base.PromptTooLong`.

Timings of batched answers are **not** single-sequence timings: the decode steps are shared.
Every completion has ``counters["batched"] = n_parallel``; ``ttft_s`` and ``total_s`` run from
the moment the sequence was admitted to a slot (``counters["queue_s"]``: how long it waited for
one), and ``batch_wall_s`` / ``batch_answers`` give the call's throughput. llama.cpp's perf
counters are for the whole call and carry a ``batch_`` prefix, so they cannot be mistaken for
single-sequence counters.
"""

from __future__ import annotations

import contextlib
import ctypes
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

from ..errors import BackendError
from .base import Completion, PromptTooLong, Request
from .llama_decode import BatchCall, BatchSeq, SequenceDecode, add_prompt_tokens
from .llama_native import NativeBatch, greedy_token, new_context, top_logprobs

#: The shared prefix is cut to a multiple of this many tokens. llama.cpp's CPU matrix kernels
#: work on groups of rows (4 for the repacked Q4_K/Q4_0 kernels) and leftover rows take another
#: kernel that rounds differently; a prefix that ends inside a group would change how the rest of
#: the prompt is grouped. (Gemma-3 with an unaligned 3-token prefix: 2 of 6 greedy answers
#: differed from single-sequence decoding, none with the prefix cut to 0.)
PREFIX_ALIGN = 32


class BatchedContextTooSmall(BackendError):
    """A prompt and its answer do not fit the batched context even alone."""


class DecoderHost(Protocol):
    """What the decoder uses of a loaded model: :class:`~raq.backends.llama.LlamaBackend`."""

    lib: Any
    model: Any
    vocab: Any
    n_vocab: int
    n_ctx: int | None
    n_batch: int
    n_threads: int
    path: Any

    def prompt_tokens(self, request: Request) -> list[int]: ...

    def sampler(self, request: Request) -> Any: ...


class BatchedDecoder:
    """Decode several requests for ONE loaded model together (see the module docstring).

    ``backend`` is a loaded :class:`LlamaBackend`; its model weights are reused (a second
    llama.cpp context is created on them), and its rendering and tokenizer are used so that
    prompt tokens are identical to the single-sequence path. ``seed`` overrides every request's
    sampler seed (default: each request's own).
    """

    def __init__(self, backend: DecoderHost, *, n_parallel: int = 4, n_ctx: int | None = None,
                 n_ctx_per_seq: int | None = None, n_batch: int | None = None, n_threads: int | None = None,
                 seed: int | None = None, flash_attn: bool = False, keep_prefix: bool = True,
                 kv_unified: bool = False, share_prefix: bool = True, joint_prompts: bool = False,
                 prefix_align: int = PREFIX_ALIGN) -> None:
        lib = backend.lib
        if n_parallel < 1:
            raise ValueError("n_parallel must be at least 1")
        if n_parallel + 1 > lib.llama_max_parallel_sequences():
            raise ValueError(f"n_parallel must be below {lib.llama_max_parallel_sequences()}")
        self._lib = lib
        self.backend = backend
        self.n_parallel = n_parallel
        per_seq = n_ctx_per_seq or backend.n_ctx
        if not per_seq:
            raise ValueError("n_ctx_per_seq is needed: the backend does not say its context size")
        self.n_ctx_per_seq: int = per_seq
        self.n_batch = n_batch or backend.n_batch
        self.n_threads = n_threads or backend.n_threads
        self.seed = seed
        self.keep_prefix = keep_prefix
        self.kv_unified = kv_unified
        self.share_prefix = share_prefix
        self.joint_prompts = joint_prompts
        self.prefix_align = max(1, prefix_align)
        self._vocab = backend.vocab
        self._n_vocab = backend.n_vocab
        n_streams = 1 if kv_unified else n_parallel + 1
        n_ctx = n_ctx or (self.n_parallel if kv_unified else n_streams) * self.n_ctx_per_seq
        # one more sequence holds the shared prefix
        self._ctx = new_context(lib, backend.model, n_ctx=n_ctx, n_batch=self.n_batch, n_seq_max=n_parallel + 1,
                                n_threads=self.n_threads, kv_unified=kv_unified, flash_attn=flash_attn)
        if self._ctx is None:
            raise BackendError(f"llama.cpp could not create a batched context (n_ctx {n_ctx}, "
                               f"{n_parallel} sequences) for {backend.path}")
        self._model = backend.model  # keeps the weights alive while the context lives
        self.n_ctx: int = lib.llama_n_ctx(self._ctx)
        self.n_ctx_seq: int = lib.llama_n_ctx_seq(self._ctx)  # cells one sequence can use
        self._mem = lib.llama_get_memory(self._ctx)
        self._batch = NativeBatch(lib, max(self.n_batch, n_parallel))
        self._prefix_seq = n_parallel
        self._prefix: list[int] = []  # tokens held by the prefix sequence
        self._piece = ctypes.create_string_buffer(256)

    # -- the work --------------------------------------------------------------------------

    def complete_many(self, requests: Sequence[Request]) -> list[Completion]:
        """Complete every request (results in order), each until an end-of-generation token, a
        stop string, or its ``max_tokens`` (clamped to the room left in ``n_ctx_per_seq``)."""
        if not requests:
            return []
        if self._ctx is None:
            raise BackendError("the batched decoder is closed")
        lib, ctx, batch = self._lib, self._ctx, self._batch
        seqs = self._sequences(requests)
        shared = self._shared_prefix([s.tokens for s in seqs])
        capacity = self._budget(seqs, shared)
        lib.llama_perf_context_reset(ctx)
        t0 = time.perf_counter()
        if not self.keep_prefix:
            self._prefix = []
            lib.llama_memory_clear(self._mem, True)
        reused = self._set_prefix(seqs[0].tokens[:shared])
        t_prefix = time.perf_counter() - t0
        call = BatchCall(shared=shared, capacity=capacity, t0=t0, pending=deque(seqs),
                     free_slots=list(range(self.n_parallel)))
        try:
            while call.pending or call.active:
                self._admit(call)
                call.peak_active = max(call.peak_active, len(call.active))
                prefilling = self._build_step(call)
                t_step = time.perf_counter()
                batch.decode(ctx)
                self._sample(call)
                call.steps += 1
                if prefilling:
                    call.prompt_s += time.perf_counter() - t_step
                else:
                    call.gen_only_s += time.perf_counter() - t_step
                    call.gen_only_tokens += batch.n
        finally:
            for s in call.active:
                if s.sampler is not None:
                    lib.llama_sampler_free(s.sampler)
                lib.llama_memory_seq_rm(self._mem, s.slot, -1, -1)
        return self._finish(call, len(seqs), t_prefix, reused)

    def _sequences(self, requests: Sequence[Request]) -> list[BatchSeq]:
        """Every request's prompt tokens and token limit (checked against ``n_ctx_per_seq``)."""
        seqs = []
        for i, request in enumerate(requests):
            tokens = self.backend.prompt_tokens(request)
            if not tokens:
                raise BackendError(f"prompt {i} has no tokens")
            room = self.n_ctx_per_seq - len(tokens)
            if room < 1:
                raise PromptTooLong(f"prompt {i} of {len(tokens)} tokens does not fit the context of "
                                    f"{self.n_ctx_per_seq}")
            limit = min(request.max_tokens, room)
            if request.choices:  # the grammar allows one choice: never more tokens than its characters
                limit = min(limit, max(len(c.encode("utf-8")) for c in request.choices) + 1)
            decode = SequenceDecode(self._lib, self._vocab, self._piece, limit=max(1, limit),
                                    stop=request.stop, start=0.0, choices=request.choices)
            seqs.append(BatchSeq(index=i, request=request, tokens=tokens, decode=decode))
        return seqs

    def _shared_prefix(self, all_tokens: list[list[int]]) -> int:
        """The shared prefix: common to all prompts, leaving at least one token per sequence,
        cut to a multiple of :data:`PREFIX_ALIGN`."""
        shared = min(len(t) for t in all_tokens) - 1 if self.share_prefix else 0
        first = all_tokens[0]
        for tokens in all_tokens[1:]:
            k = 0
            while k < shared and tokens[k] == first[k]:
                k += 1
            shared = k
        return shared - shared % self.prefix_align

    def _budget(self, seqs: list[BatchSeq], shared: int) -> int:
        """The KV cells the admitted sequences may reserve together; sets each one's need."""
        # unified: one pool of cells for all sequences (the prefix stored once);
        # otherwise every sequence has its own stream of n_ctx_seq cells holding a copy of the prefix
        capacity = (self.n_ctx if self.kv_unified else self.n_ctx_seq) - shared
        for s in seqs:
            s.need, s.fed = len(s.tokens) - shared + s.decode.limit, shared
            if s.need > capacity:
                raise BatchedContextTooSmall(
                    f"prompt {s.index} needs {s.need} KV cells beyond the {shared}-token shared prefix, "
                    f"but a sequence of the batched context has {capacity + shared} cells "
                    f"(n_ctx {self.n_ctx}, kv_unified={self.kv_unified}): raise n_ctx")
        if not self.kv_unified:
            capacity = self.n_parallel * capacity  # every slot has its own room: admission never waits
        return capacity

    def _set_prefix(self, prefix: list[int]) -> int:
        """Make the prefix sequence hold ``prefix``; returns how many tokens were reused."""
        lib, mem, ps = self._lib, self._mem, self._prefix_seq
        keep = 0
        for a, b in zip(self._prefix, prefix):
            if a != b:
                break
            keep += 1
        if keep < len(self._prefix):
            if not lib.llama_memory_seq_rm(mem, ps, keep, -1):  # e.g. sliding-window caches
                lib.llama_memory_seq_rm(mem, ps, -1, -1)
                keep = 0
            self._prefix = self._prefix[:keep]
        self._batch.decode_run(self._ctx, prefix[keep:], keep, ps, last_logits=False)
        self._prefix = list(prefix)
        return keep

    def _admit(self, call: BatchCall) -> None:
        """Give free slots to pending sequences while their KV cells fit."""
        lib, mem = self._lib, self._mem
        while call.pending and call.free_slots and call.reserved + call.pending[0].need <= call.capacity:
            s = call.pending.popleft()
            s.slot = min(call.free_slots)  # keeps the busy slots together (see _build_step)
            call.free_slots.remove(s.slot)
            lib.llama_memory_seq_rm(mem, s.slot, -1, -1)
            if call.shared:
                lib.llama_memory_seq_cp(mem, self._prefix_seq, s.slot, -1, -1)
            request = s.request if self.seed is None else replace(s.request, seed=self.seed)
            s.sampler = self.backend.sampler(request)
            s.t_admit = s.decode.start = time.perf_counter()
            call.reserved += s.need
            call.active.append(s)

    def _build_step(self, call: BatchCall) -> bool:
        """Fill the batch of one decode step and ``call.outputs``; True for a prompt step."""
        batch = self._batch
        batch.clear()
        call.outputs.clear()
        if add_prompt_tokens(batch, call, joint=self.joint_prompts):
            return True
        # in slot order: with a stream per sequence llama.cpp computes consecutive
        # sequence ids in one pass and splits the batch at every gap or step back
        # (4 sequences in the order 1, 2, 3, 0 took 1.5x as long as 0, 1, 2, 3)
        for q in sorted(call.active, key=lambda q: q.slot):
            position = len(q.tokens) + len(q.decode.generated) - 1
            call.outputs.append((batch.add(q.decode.last_token, position, q.slot, True), q))
        return False

    def _sample(self, call: BatchCall) -> None:
        """Sample the next token of every sequence with logits in the step; retire finished ones."""
        lib, ctx, n_vocab = self._lib, self._ctx, self._n_vocab
        for idx, s in call.outputs:
            n = s.request.logprobs
            alternatives = top_logprobs(lib, ctx, idx, n_vocab, n, self._vocab, self._piece) if n else None
            token = (greedy_token(lib, ctx, idx, n_vocab) if s.sampler is None
                     else lib.llama_sampler_sample(s.sampler, ctx, idx))
            if s.decode.step(token, alternatives):
                self._retire(call, s)

    def _retire(self, call: BatchCall, s: BatchSeq) -> None:
        """Record a finished sequence's completion and free its slot, cells and sampler."""
        total = time.perf_counter() - s.t_admit
        call.results[s.index] = s.decode.completion(
            len(s.tokens), total, {"batched": self.n_parallel, "slot": s.slot, "queue_s": s.t_admit - call.t0,
                                   "shared_prefix_tokens": call.shared,
                                   "prompt_read_tokens": len(s.tokens) - call.shared})
        self._lib.llama_memory_seq_rm(self._mem, s.slot, -1, -1)
        if s.sampler is not None:
            self._lib.llama_sampler_free(s.sampler)
            s.sampler = None
        call.free_slots.append(s.slot)
        call.reserved -= s.need
        call.active.remove(s)

    def _finish(self, call: BatchCall, n: int, t_prefix: float, reused: int) -> list[Completion]:
        """The completions in request order, each with the call's ``batch_*`` figures."""
        wall = time.perf_counter() - call.t0
        perf = self._lib.llama_perf_context(self._ctx)
        results = [call.results[i] for i in range(n)]
        common = {"batch_answers": n, "batch_wall_s": wall, "batch_peak_parallel": call.peak_active,
                  "batch_steps": call.steps, "batch_prompt_steps_s": call.prompt_s,
                  "batch_generation_steps_s": call.gen_only_s,
                  "batch_generation_steps_tokens": call.gen_only_tokens,
                  "batch_generated_tokens": sum(c.generated_tokens for c in results),
                  "prefix_eval_s": t_prefix, "prefix_reused_tokens": reused,
                  "batch_prompt_eval_ms": perf.t_p_eval_ms, "batch_prompt_eval_tokens": perf.n_p_eval,
                  "batch_eval_ms": perf.t_eval_ms, "batch_eval_tokens": perf.n_eval}
        for c in results:
            c.counters.update(common)
        results[0].counters["prompt_read_tokens"] += call.shared - reused  # the prefix, read once per call
        return results

    # -- the rest --------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The batched decoder's own settings (the backend's are in ``LlamaBackend.info``)."""
        return {"batched": self.n_parallel, "batched_n_ctx": self.n_ctx, "n_ctx_per_seq": self.n_ctx_per_seq,
                "batched_n_batch": self.n_batch}

    def close(self) -> None:
        """Free the batched context (the backend, and so the model, stays loaded)."""
        if self._ctx is not None:
            self._batch.free()
            self._lib.llama_free(self._ctx)
            self._ctx = None
            self._prefix = []

    def __del__(self) -> None:  # pragma: no cover - best effort, also at interpreter exit
        with contextlib.suppress(Exception):
            self.close()
