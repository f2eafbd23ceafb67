"""Throughput mode: one model decodes the answers to several prompts together in one batch.

For quality studies, where answers per hour matter more than per-answer latency, a
:class:`BatchedGenerator` puts the next token of up to ``n_parallel`` sequences into one
``llama_decode`` call (llama.cpp's multi-sequence batch API, through llama-cpp-python's low-level
bindings): a decode step for 4 sequences costs much less than 4 steps for 1. Prompt evaluation
is not sped up (it is batched already), so the gain in answers per second depends on how much of
the time goes to generation; ``benchmarks/README.md`` has measured figures.

How it works:

* Every prompt is tokenized exactly as :meth:`LlamaBackend.complete` does. The longest token
  prefix shared by all prompts of a call (the chat template's system prompt, and more when
  several questions share a paragraph), cut to a multiple of :data:`PREFIX_ALIGN` tokens, is
  evaluated once into a reserved sequence and copied to each sequence with ``llama_memory_seq_cp``. The prefix stays cached between calls; a later
  call evaluates only the part of its prefix that differs.
* Sequences are scheduled continuously: when one answer finishes (end-of-generation token,
  a stop string, or its token limit) its slot takes the next prompt. A prompt is decoded in
  steps of its own (``n_batch`` tokens at a time, as the single-sequence path does); the other
  steps carry one new token for every sequence that is generating. Mixing prompt tokens and
  other sequences' new tokens in one step is no faster and changes llama.cpp's rounding enough
  to change some greedy answers.
* Plain greedy decoding (temperature 0, no repeat penalty) takes the argmax of each sequence's
  logits; other settings give each sequence its own native sampler chain (the same chain and
  seed as llama-cpp-python's ``Llama.generate``).
* By default every sequence has its own KV-cache stream (``kv_unified=False``), laid out as in
  a single-sequence context; with it, greedy answers matched single-sequence greedy answers for
  24 of 24 SQuAD questions on Qwen2.5-0.5B. ``kv_unified=True`` shares one pool of cells (the
  prefix is stored once, streams need not be sized for the longest sequence), but attention
  then runs over other sequences' cells too, which is slower for long prompts and rounds
  differently.

Context budget: each sequence's positions are limited by ``n_ctx_per_seq`` (default: the
backend's ``n_ctx``), and ``max_tokens`` is clamped to the room left there, exactly like the
single-sequence path, so answers are comparable. A sequence needs
``len(prompt) - shared_prefix + max_tokens`` KV cells beyond the shared prefix. Without a
unified cache llama.cpp splits ``n_ctx`` into ``n_parallel + 1`` equal streams (one holds the
prefix), each of which must hold prefix + that; the default ``n_ctx`` is
``(n_parallel + 1) * n_ctx_per_seq`` (KV memory: 5 x a single-sequence context for 4
sequences). With a unified cache the default is ``n_parallel * n_ctx_per_seq`` and a prompt is
admitted only when the cells it may need are free, so the cache never overflows. A prompt that
cannot fit even alone raises :class:`BatchedContextTooSmall`; one longer than
``n_ctx_per_seq`` raises :class:`~raq.llama_backend.PromptTooLong`.

Timings of batched answers are **not** single-sequence timings: the decode steps are shared.
Every :class:`~raq.llama_backend.Completion` produced here has ``counters["batched"] =
n_parallel``; ``ttft_s`` and ``total_s`` are measured from the moment the sequence was admitted
to a slot (they include other sequences' work in the shared steps; ``counters["queue_s"]`` says
how long it waited for a slot), and ``counters["batch_wall_s"]`` / ``counters["batch_answers"]``
give the throughput of the call. llama.cpp's perf counters are for the whole call and carry a
``batch_`` prefix, so they cannot be mistaken for single-sequence counters.
"""

from __future__ import annotations

import ctypes
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any


from .errors import BackendError
from .llama_backend import Completion, LlamaBackend, PromptTooLong, Sampling
from .llama_native import (NativeBatch, greedy_token, is_plain_greedy, make_sampler, quiet, stop_cut,
                           token_piece)

if TYPE_CHECKING:  # pragma: no cover
    from .generator import Generator
    from .records import Answer, Question

#: The shared prefix is cut to a multiple of this many tokens. llama.cpp's CPU matrix kernels
#: work on groups of rows (4 for the repacked Q4_K/Q4_0 kernels) and leftover rows take another
#: kernel that rounds differently; a prefix that ends inside a group would change how the rest of
#: the prompt is grouped. (Gemma-3 with an unaligned 3-token prefix: 2 of 6 greedy answers
#: differed from single-sequence decoding, none with the prefix cut to 0.)
PREFIX_ALIGN = 32
#: A note put on every answer produced in batched mode.
BATCHED_NOTE = "batched decoding (n_parallel={n}): timings are shared-batch figures, not single-sequence speed"


class BatchedContextTooSmall(BackendError):
    """A prompt and its answer do not fit the batched context even alone."""


@dataclass
class _Seq:
    index: int
    tokens: list[int]
    limit: int
    need: int
    slot: int = -1
    fed: int = 0
    sampler: Any = None
    generated: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    t_admit: float = 0.0
    ttft: float | None = None
    finish: str | None = None
    cut: int | None = None


class BatchedGenerator:
    """Decode several prompts for ONE loaded model together (see the module docstring).

    ``backend`` is a loaded :class:`LlamaBackend`; its model weights are reused (a second
    llama.cpp context is created on them), and its tokenizer is used so that prompt tokens are
    identical to the single-sequence path. Use :meth:`load` to start from a GGUF path.
    """

    def __init__(self, backend: LlamaBackend, *, n_parallel: int = 4, n_ctx: int | None = None,
                 n_ctx_per_seq: int | None = None, n_batch: int | None = None, n_threads: int | None = None,
                 seed: int | None = None, flash_attn: bool = False, keep_prefix: bool = True,
                 kv_unified: bool = False, share_prefix: bool = True) -> None:
        lib = backend._lib
        if n_parallel < 1:
            raise ValueError("n_parallel must be at least 1")
        if n_parallel + 1 > lib.llama_max_parallel_sequences():
            raise ValueError(f"n_parallel must be below {lib.llama_max_parallel_sequences()}")
        self._lib = lib
        self.backend = backend
        self.n_parallel = n_parallel
        self.n_ctx_per_seq = n_ctx_per_seq or backend.n_ctx
        self.n_batch = n_batch or backend.n_batch
        self.n_threads = n_threads or backend.n_threads
        self.seed = backend.seed if seed is None else seed
        self.keep_prefix = keep_prefix
        self.kv_unified = kv_unified
        self.share_prefix = share_prefix
        self._model = backend._llm._model  # keeps the weights alive with the backend
        self._vocab = self._model.vocab
        self._n_vocab = lib.llama_vocab_n_tokens(self._vocab)
        params = lib.llama_context_default_params()
        n_streams = 1 if kv_unified else n_parallel + 1
        params.n_ctx = n_ctx or (self.n_parallel if kv_unified else n_streams) * self.n_ctx_per_seq
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = n_parallel + 1  # one more sequence holds the shared prefix
        params.n_threads = self.n_threads
        params.n_threads_batch = self.n_threads
        params.kv_unified = kv_unified
        params.flash_attn_type = (lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED)  # as LlamaBackend
        params.no_perf = False
        params.embeddings = False
        with quiet():
            self._ctx = lib.llama_init_from_model(self._model.model, params)
        if self._ctx is None:
            raise BackendError(f"llama.cpp could not create a batched context (n_ctx {params.n_ctx}, "
                               f"{n_parallel} sequences) for {backend.path}")
        self.n_ctx = lib.llama_n_ctx(self._ctx)
        self.n_ctx_seq = lib.llama_n_ctx_seq(self._ctx)  # cells one sequence can use
        self._mem = lib.llama_get_memory(self._ctx)
        self._batch = NativeBatch(lib, max(self.n_batch, n_parallel))
        self._prefix_seq = n_parallel
        self._prefix: list[int] = []  # tokens held by the prefix sequence
        self._piece = ctypes.create_string_buffer(256)

    @classmethod
    def load(cls, path: str | Path, *, n_parallel: int = 4, n_ctx_per_seq: int = 2048, n_batch: int = 512,
             n_threads: int | None = None, n_gpu_layers: int = 0, seed: int = 0, **kwargs: Any) -> "BatchedGenerator":
        """Load ``path`` (a small single-sequence context comes with it, for tokenizing and
        chat templates) and make a batched generator for it."""
        backend = LlamaBackend(path, n_ctx=min(n_ctx_per_seq, 512), n_batch=min(n_batch, 512),
                               n_threads=n_threads, n_gpu_layers=n_gpu_layers, seed=seed)
        return cls(backend, n_parallel=n_parallel, n_ctx_per_seq=n_ctx_per_seq, n_batch=n_batch, **kwargs)

    # -- helpers ---------------------------------------------------------------------------

    def tokenize(self, prompt: str, *, special: bool) -> list[int]:
        return self.backend.tokenize(prompt, special=special)

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

    # -- the work --------------------------------------------------------------------------

    def complete_many(self, prompts: Sequence[str], *, max_tokens: int | Sequence[int],
                      sampling: Sampling | None = None, stop: Sequence[str] = (),
                      special: bool = False) -> list[Completion]:
        """Generate an answer for every prompt (in order), each until an end-of-generation token,
        a stop string, or its ``max_tokens`` (clamped to the room left in ``n_ctx_per_seq``)."""
        lib, ctx, mem = self._lib, self._ctx, self._mem
        sampling = sampling or Sampling()
        n = len(prompts)
        if n == 0:
            return []
        limits = [max_tokens] * n if isinstance(max_tokens, int) else list(max_tokens)
        if len(limits) != n:
            raise ValueError("max_tokens must be an int or one value per prompt")
        all_tokens = [self.tokenize(p, special=special) for p in prompts]
        for i, toks in enumerate(all_tokens):
            if not toks:
                raise BackendError(f"prompt {i} has no tokens")
            room = self.n_ctx_per_seq - len(toks)
            if room < 1:
                raise PromptTooLong(f"prompt {i} of {len(toks)} tokens does not fit the context of "
                                    f"{self.n_ctx_per_seq}")
            limits[i] = max(1, min(limits[i], room))

        # the shared prefix: common to all prompts, leaving at least one token per sequence
        shared = min(len(t) for t in all_tokens) - 1 if self.share_prefix else 0
        first = all_tokens[0]
        for toks in all_tokens[1:]:
            k = 0
            while k < shared and toks[k] == first[k]:
                k += 1
            shared = k
        shared -= shared % PREFIX_ALIGN
        # unified: one pool of cells for all sequences (the prefix stored once);
        # otherwise every sequence has its own stream of n_ctx_seq cells holding a copy of the prefix
        capacity = (self.n_ctx if self.kv_unified else self.n_ctx_seq) - shared
        seqs = [_Seq(index=i, tokens=t, limit=limits[i], need=len(t) - shared + limits[i], fed=shared)
                for i, t in enumerate(all_tokens)]
        for s in seqs:
            if s.need > capacity:
                raise BatchedContextTooSmall(
                    f"prompt {s.index} needs {s.need} KV cells beyond the {shared}-token shared prefix, "
                    f"but a sequence of the batched context has {capacity + shared} cells "
                    f"(n_ctx {self.n_ctx}, kv_unified={self.kv_unified}): raise n_ctx")
        if not self.kv_unified:
            capacity = self.n_parallel * capacity  # every slot has its own room: admission never waits

        greedy = is_plain_greedy(sampling)
        lib.llama_perf_context_reset(ctx)
        t0 = time.perf_counter()
        if not self.keep_prefix:
            self._prefix = []
            lib.llama_memory_clear(mem, True)
        reused = self._set_prefix(first[:shared])
        t_prefix = time.perf_counter() - t0

        pending = deque(seqs)
        active: list[_Seq] = []
        free_slots = list(range(self.n_parallel))
        reserved = 0
        results: list[Completion | None] = [None] * n
        batch = self._batch
        outputs: list[tuple[int, _Seq]] = []
        peak_active = steps = 0
        prompt_s = gen_only_s = 0.0  # wall time of prompt steps / of steps with new tokens only
        gen_only_tokens = 0
        try:
            while pending or active:
                while pending and free_slots and reserved + pending[0].need <= capacity:
                    s = pending.popleft()
                    s.slot = min(free_slots)  # keeps the busy slots together (see below)
                    free_slots.remove(s.slot)
                    lib.llama_memory_seq_rm(mem, s.slot, -1, -1)
                    if shared:
                        lib.llama_memory_seq_cp(mem, self._prefix_seq, s.slot, -1, -1)
                    s.sampler = None if greedy else make_sampler(lib, sampling, self.seed, self._n_vocab)
                    s.t_admit = time.perf_counter()
                    reserved += s.need
                    active.append(s)
                peak_active = max(peak_active, len(active))
                batch.clear()
                outputs.clear()
                # A prompt is decoded on its own (in n_batch chunks, like LlamaBackend.complete); the
                # sequences' new tokens go together in the other steps. Mixing one sequence's prompt
                # tokens with other sequences' new tokens in one batch changes how llama.cpp splits
                # the work, and with it the rounding: 3 of 24 Qwen answers differed that way.
                prefilling = next((s for s in active if s.fed < len(s.tokens)), None)
                if prefilling is not None:
                    s = prefilling
                    take = min(len(s.tokens) - s.fed, batch.capacity)
                    last = batch.add_run(s.tokens[s.fed:s.fed + take], s.fed, s.slot, s.fed + take == len(s.tokens))
                    s.fed += take
                    if s.fed == len(s.tokens):
                        outputs.append((last, s))
                else:
                    # in slot order: with a stream per sequence llama.cpp computes consecutive
                    # sequence ids in one pass and splits the batch at every gap or step back
                    # (4 sequences in the order 1, 2, 3, 0 took 1.5x as long as 0, 1, 2, 3)
                    for s in sorted(active, key=lambda q: q.slot):
                        outputs.append((batch.add(s.generated[-1], len(s.tokens) + len(s.generated) - 1,
                                                  s.slot, True), s))
                t_step = time.perf_counter()
                batch.decode(ctx)
                for idx, s in outputs:
                    token = (greedy_token(lib, ctx, idx, self._n_vocab) if greedy
                             else lib.llama_sampler_sample(s.sampler, ctx, idx))
                    if s.ttft is None:
                        s.ttft = time.perf_counter() - s.t_admit
                    if lib.llama_vocab_is_eog(self._vocab, token):
                        s.finish = "stop"
                    else:
                        s.text += token_piece(lib, self._vocab, token, self._piece)
                        s.generated.append(token)
                        if stop:
                            s.cut = stop_cut(s.text, stop)
                            if s.cut is not None:
                                s.finish = "stop"
                        if s.finish is None and len(s.generated) >= s.limit:
                            s.finish = "length"
                    if s.finish is not None:
                        total = time.perf_counter() - s.t_admit
                        text = s.text.decode("utf-8", errors="replace")
                        if s.cut is not None:
                            text = text[:s.cut]
                        results[s.index] = Completion(
                            text=text, prompt_tokens=len(s.tokens), generated_tokens=len(s.generated),
                            ttft_s=s.ttft, total_s=total, finish_reason=s.finish,
                            counters={"batched": self.n_parallel, "slot": s.slot,
                                      "queue_s": s.t_admit - t0, "shared_prefix_tokens": shared})
                        lib.llama_memory_seq_rm(mem, s.slot, -1, -1)
                        if s.sampler is not None:
                            lib.llama_sampler_free(s.sampler)
                            s.sampler = None
                        free_slots.append(s.slot)
                        reserved -= s.need
                        active.remove(s)
                steps += 1
                if prefilling is not None:
                    prompt_s += time.perf_counter() - t_step
                else:
                    gen_only_s += time.perf_counter() - t_step
                    gen_only_tokens += batch.n
        finally:
            for s in active:
                if s.sampler is not None:
                    lib.llama_sampler_free(s.sampler)
                lib.llama_memory_seq_rm(mem, s.slot, -1, -1)
        wall = time.perf_counter() - t0
        perf = lib.llama_perf_context(ctx)
        common = {"batch_answers": n, "batch_wall_s": wall, "batch_peak_parallel": peak_active,
                  "batch_steps": steps, "batch_prompt_steps_s": prompt_s, "batch_generation_steps_s": gen_only_s,
                  "batch_generation_steps_tokens": gen_only_tokens,
                  "batch_generated_tokens": sum(c.generated_tokens for c in results if c is not None),
                  "prefix_eval_s": t_prefix, "prefix_reused_tokens": reused,
                  "batch_prompt_eval_ms": perf.t_p_eval_ms, "batch_prompt_eval_tokens": perf.n_p_eval,
                  "batch_eval_ms": perf.t_eval_ms, "batch_eval_tokens": perf.n_eval}
        out: list[Completion] = []
        for c in results:
            assert c is not None
            c.counters.update(common)
            out.append(c)
        return out

    def info(self) -> dict[str, Any]:
        return {**self.backend.info(), "batched": self.n_parallel, "batched_n_ctx": self.n_ctx,
                "n_ctx_per_seq": self.n_ctx_per_seq, "batched_n_batch": self.n_batch}

    def close(self) -> None:
        """Free the batched context (the backend, and so the model, stays loaded)."""
        if self._ctx is not None:
            self._batch.free()
            self._lib.llama_free(self._ctx)
            self._ctx = None
            self._prefix = []

    def __enter__(self) -> "BatchedGenerator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


def answer_many(generator: "Generator", questions: Sequence["Question"], *, n_parallel: int = 4,
                batched: BatchedGenerator | None = None) -> list["Answer"]:
    """Answer ``questions`` with ``generator``'s model in batched mode: the same prompts, fitting
    and sampling as :meth:`Generator.answer`, but decoded ``n_parallel`` at a time. Every answer
    carries :data:`BATCHED_NOTE` and ``counters["batched"]``.

    Questions about the same context are decoded together in a call of their own, so that their
    shared prefix (the instructions and the whole context, which comes before the question in
    every prompt) is evaluated once; the other questions share one call (and the instructions)."""
    from .generator import make_answer

    own = batched is None
    if batched is None:
        batched = BatchedGenerator(generator.backend, n_parallel=n_parallel)
    try:
        fitted = [generator._fit(q) for q in questions]
        answers: list[Answer | None] = [None] * len(questions)
        calls: dict[tuple[tuple[str, ...], bool, str], list[int]] = {}
        for i, (_, stops, special, _, notes) in enumerate(fitted):
            if generator.must_skip(notes):
                answers[i] = generator.skipped(questions[i])
                continue
            calls.setdefault((tuple(stops), special, questions[i].context), []).append(i)
        merged: dict[tuple[tuple[str, ...], bool, str], list[int]] = {}
        for (stops, special, context), idxs in calls.items():  # lone questions: one call per kind
            merged.setdefault((stops, special, context if len(idxs) > 1 else ""), []).extend(idxs)
        for (stops, special, _), idxs in merged.items():
            completions = batched.complete_many([fitted[i][0] for i in idxs],
                                                max_tokens=[fitted[i][3] for i in idxs],
                                                sampling=generator.sampling, stop=stops, special=special)
            for i, completion in zip(idxs, completions):
                prompt, _, _, max_tokens, notes = fitted[i]
                notes = [*notes, BATCHED_NOTE.format(n=batched.n_parallel)]
                answers[i] = make_answer(questions[i], generator.model.id, prompt, generator.template,
                                         completion, max_tokens, notes)
        return [a for a in answers if a is not None]
    finally:
        if own:
            batched.close()
