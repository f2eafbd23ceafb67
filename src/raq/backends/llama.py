"""In-process generation with llama.cpp (llama-cpp-python), timed with a monotonic clock.

:class:`LlamaBackend` implements :class:`~raq.backends.base.Backend` for one GGUF loaded in this
process. The model is loaded through llama-cpp-python's ``Llama``; the per-token loop runs on
llama.cpp's low-level API, which keeps raq's own cost per token to about 0.1 ms
(``benchmarks/README.md``). Prompt caching across calls is off by default: every prompt is read
in full, so prompt speed is comparable between questions. With ``reuse_prefix=True`` (for a
judge, whose prompts for the orders of one question share all but the answers' order) the tokens
a prompt shares with the previous one stay in the KV cache and only the rest is read, as
llama-cpp-python's server does. With ``n_parallel > 1`` the backend also owns a
:class:`~raq.backends.llama_batched.BatchedDecoder`, and ``complete_many`` decodes that many
requests together. With ``joint_prompts=True`` as well (a scoring judge, whose prompts for the
answers to one question differ only in the answer) that decoder keeps one pool of KV cells, reads
the prompts' shared prefix once and the rest of every prompt together in one batch.

Structured output (a request's ``schema`` or ``tool``) is decoded under a llama.cpp grammar
built as llama-cpp-python's server builds it, in the sampler chain its ``Llama`` builds; a
request's ``choices`` under a grammar of those alternatives. A request's ``logprobs`` are read
from each step's raw logits (before the grammar and the sampler).
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import BackendError
from .base import TEMPLATE_CONFIG, TEMPLATE_GGUF, Completion, PromptTooLong, Request, complete_each
from .llama_batched import PREFIX_ALIGN, BatchedDecoder
from .llama_decode import SequenceDecode
from .llama_native import (
    NativeBatch,
    choices_grammar,
    greedy_token,
    is_plain_greedy,
    kv_cache_log,
    make_sampler,
    quiet,
    schema_grammar,
    top_logprobs,
)

log = logging.getLogger(__name__)

BACKEND_NAME = "llama.cpp in-process"


class LlamaBackend:
    """One GGUF model loaded in this process (see the module docstring).

    ``lib`` (the ``llama_cpp`` module), ``llm`` (its ``Llama``), ``model`` (the loaded weights),
    ``vocab``, ``n_vocab`` and ``ctx`` (the single-sequence context) are public so that the
    batched decoder and the benchmarks can drive llama.cpp's C API on the same model.
    """

    def __init__(self, path: str | Path, *, n_ctx: int, n_batch: int, n_threads: int | None = None,
                 n_gpu_layers: int = 0, seed: int = 0, chat_template: str | None = None,
                 n_parallel: int = 1, reuse_prefix: bool = False, flash_attn: bool = False,
                 n_ubatch: int | None = None, joint_prompts: bool = False) -> None:
        try:
            import llama_cpp
        except ImportError as error:  # pragma: no cover - a dependency of raq
            raise BackendError("llama-cpp-python is not installed: pip install llama-cpp-python") from error
        if n_parallel < 1:
            raise ValueError("n_parallel must be at least 1")
        self.lib: Any = llama_cpp
        self.path = Path(path)
        self.n_threads = n_threads or os.cpu_count() or 1
        with kv_cache_log(llama_cpp) as kv_single:
            try:
                with quiet():
                    self.llm: Any = llama_cpp.Llama(
                        model_path=str(self.path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_ubatch or n_batch,
                        flash_attn=flash_attn,
                        n_threads=self.n_threads, n_threads_batch=self.n_threads, n_gpu_layers=n_gpu_layers,
                        seed=seed, logits_all=False, verbose=False,
                    )
            except (ValueError, RuntimeError) as error:
                raise BackendError(f"llama.cpp could not load {self.path}: {error}") from error
        self._n_ctx: int = self.llm.n_ctx()
        self.n_ctx: int | None = self._n_ctx
        self.n_batch = n_batch
        self.n_ubatch = min(n_ubatch or n_batch, n_batch)
        self.flash_attn = flash_attn
        self.n_gpu_layers = n_gpu_layers
        self.seed = seed
        self.capacity = n_parallel
        self.reuse_prefix = reuse_prefix
        self.joint_prompts = joint_prompts and n_parallel > 1
        self._cached: list[int] = []  # prompt tokens held in the KV cache (with reuse_prefix)
        gguf_template = self.llm.metadata.get("tokenizer.chat_template") or None
        self.chat_template: str | None = chat_template or gguf_template
        self.chat_template_source: str | None = (TEMPLATE_CONFIG if chat_template else
                                                 TEMPLATE_GGUF if gguf_template else None)
        self.model: Any = self.llm._model  # llama-cpp-python's LlamaModel: keeps the weights alive
        self.vocab: Any = self.model.vocab
        self.n_vocab: int = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self._formatter: Any = None
        self._batch: NativeBatch | None = None
        self._piece_buf = ctypes.create_string_buffer(256)
        self.batched: BatchedDecoder | None = None
        kv_batched = None
        if n_parallel > 1:
            with kv_cache_log(llama_cpp) as kv_batched:
                try:
                    self.batched = BatchedDecoder(  # joint: one pool of cells for the prompts read together
                        self, n_parallel=n_parallel, flash_attn=flash_attn,
                        n_ctx=self._n_ctx if joint_prompts else None, kv_unified=joint_prompts,
                        joint_prompts=joint_prompts, prefix_align=1 if joint_prompts else PREFIX_ALIGN)
                except BaseException:
                    self.llm.close()
                    raise
        sizes = [k.mib for k in (kv_single, kv_batched) if k is not None and k.mib is not None]
        self.kv_cache_mib: float | None = sum(sizes) if sizes else None  # every context, as llama.cpp allocated
        self.weights_mib = round(llama_cpp.llama_model_size(self.model.model) / 2**20, 1)
        log.debug("loaded %s (n_ctx %d, n_parallel %d)", self.path.name, self.n_ctx, n_parallel)

    @property
    def ctx(self) -> Any:
        """The single-sequence llama.cpp context (a ``llama_context`` pointer)."""
        return self.llm._ctx.ctx

    # -- prompts -----------------------------------------------------------------------------

    def render(self, request: Request) -> str:
        """The prompt as the model sees it: a prompt request's own text, or the chat template
        applied to the messages with the generation prompt. A ``tool`` request also hands the
        tool and the forced tool choice to the template, as llama-cpp-python's server does."""
        if request.messages is None:
            assert request.prompt is not None
            return request.prompt
        if self._formatter is None:
            self._formatter = self._make_formatter()
        tools = tool_choice = None
        if request.tool is not None:
            tools = [request.tool]
            tool_choice = {"type": "function", "function": {"name": request.tool["function"]["name"]}}
        return str(self._formatter(messages=list(request.messages), tools=tools, tool_choice=tool_choice).prompt)

    def _make_formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if self.chat_template is None:
            raise BackendError(f"{self.path.name} has no chat template")
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        return Jinja2ChatFormatter(
            template=self.chat_template,
            eos_token=self.model.token_get_text(eos) if eos != -1 else "",
            bos_token=self.model.token_get_text(bos) if bos != -1 else "",
        )

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        """Tokens of ``text``. Rendered chat prompts carry their special tokens as text
        (``special=True``, no extra BOS); plain prompts get the model's BOS and no specials."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=not special, special=special))

    def prompt_tokens(self, request: Request) -> list[int]:
        """The prompt tokens of ``request``: a rendered chat with ``special=True`` (no added BOS),
        a prompt request with ``request.special``."""
        return self.tokenize(self.render(request), special=True if request.is_chat else request.special)

    def count_tokens(self, request: Request) -> int:
        return len(self.prompt_tokens(request))

    @staticmethod
    def grammar(request: Request) -> str | None:
        """The GBNF grammar that constrains the reply, or None: a ``tool`` request's reply is the
        JSON arguments of its function (its ``parameters`` schema; the tool wins over ``schema``,
        as on the server), a ``schema`` request's reply JSON following that schema, a
        ``choices`` request's reply exactly one of them."""
        if request.choices:
            return choices_grammar(request.choices)
        if request.tool is not None:
            return schema_grammar(request.tool["function"]["parameters"])
        if request.schema is not None:
            return schema_grammar(request.schema)
        return None

    def sampler(self, request: Request) -> Any:
        """The native sampler chain for ``request`` (seeded with ``request.seed``), or None when
        the token is the argmax of the logits (plain greedy decoding, no grammar)."""
        grammar = self.grammar(request)
        if grammar is None and is_plain_greedy(request.sampling):
            return None
        return make_sampler(self.lib, request.sampling, request.seed, self.n_vocab, grammar=grammar,
                            vocab=self.vocab)

    # -- generation --------------------------------------------------------------------------

    def complete(self, request: Request) -> Completion:
        """Generate for ``request`` until an end-of-generation token, a stop string, or
        ``max_tokens`` (clamped to the room left in the context).

        The loop runs on llama.cpp's low-level API: the prompt is decoded in ``n_batch`` chunks
        (as ``Llama.eval`` does), then one token per ``llama_decode`` with a reused batch. Plain
        greedy decoding takes the argmax of the logits (the token llama.cpp's greedy sampler
        picks, without copying the vocabulary into a candidate array); other settings, and every
        grammar, use the native sampler chain that ``Llama.generate`` builds, seeded with
        ``request.seed``. Text, token counts and finish reasons equal ``Llama.generate``'s
        (``tests/test_llama_backend.py``). With ``request.logprobs`` every step's raw logits
        also give the most likely tokens (:func:`~raq.backends.llama_native.top_logprobs`).
        """
        lib, ctx, vocab, llm = self.lib, self.ctx, self.vocab, self.llm
        tokens = self.prompt_tokens(request)
        room = self._n_ctx - len(tokens)
        if room < 1:
            raise PromptTooLong(f"prompt of {len(tokens)} tokens does not fit the context of {self._n_ctx}")
        llm.reset()  # llama-cpp-python's record of the cache: empty, so its own API re-reads all
        keep = self._keep_prefix(tokens)
        lib.llama_perf_context_reset(ctx)
        if self._batch is None:
            self._batch = NativeBatch(lib, self.n_batch)
        batch, n_vocab, n_logprobs = self._batch, self.n_vocab, request.logprobs
        sampler = self.sampler(request)
        try:
            start = time.perf_counter()
            seq = SequenceDecode(lib, vocab, self._piece_buf, limit=min(request.max_tokens, room),
                                 stop=request.stop, start=start, choices=request.choices)
            batch.decode_run(ctx, tokens[keep:], keep, 0, last_logits=True)
            self._cached = tokens if self.reuse_prefix else []
            batch.clear()
            batch.add(0, 0, 0, True)  # from now on: one token of sequence 0, with logits
            c_batch, token_arr, pos_arr = batch.batch, batch.token, batch.pos
            c_batch.n_tokens = 1
            n_past = len(tokens)
            while True:
                alternatives = (top_logprobs(lib, ctx, -1, n_vocab, n_logprobs, vocab, self._piece_buf)
                                if n_logprobs else None)
                token = greedy_token(lib, ctx, -1, n_vocab) if sampler is None else lib.llama_sampler_sample(
                    sampler, ctx, -1)
                if seq.step(token, alternatives):
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
        perf = lib.llama_perf_context(ctx)
        counters = {"prompt_eval_ms": perf.t_p_eval_ms, "prompt_eval_tokens": perf.n_p_eval,
                    "eval_ms": perf.t_eval_ms, "eval_tokens": perf.n_eval}
        if self.reuse_prefix:
            counters["prompt_reused_tokens"] = keep
        return seq.completion(len(tokens), total, counters)

    def _keep_prefix(self, tokens: list[int]) -> int:
        """Empty the KV cache but for the tokens ``tokens`` shares with the previous prompt (with
        ``reuse_prefix``; at least one token is left to read, for its logits); how many are kept."""
        lib, memory = self.lib, self.lib.llama_get_memory(self.ctx)
        keep = 0
        for cached, token in zip(self._cached, tokens[:-1]):
            if cached != token:
                break
            keep += 1
        self._cached = []
        if keep and lib.llama_memory_seq_rm(memory, 0, keep, -1):
            return keep
        lib.llama_memory_seq_rm(memory, -1, 0, -1)  # also where a cache cannot be cut (sliding windows)
        return 0

    def complete_many(self, requests: Sequence[Request]) -> Iterator[tuple[int, Completion]]:
        """Capacity 1: one request after another, each yielded as it finishes. Capacity > 1: the
        batched decoder on the whole list, every completion yielded when the call ends (their
        ``counters`` carry ``batched``, ``slot``, ``queue_s``, ``shared_prefix_tokens`` and the
        call's ``batch_*`` figures)."""
        if self.batched is None:
            yield from complete_each(self, requests)
            return
        yield from enumerate(self.batched.complete_many(requests))

    def info(self) -> dict[str, Any]:
        """Settings and build facts that change results or speed."""
        meta = self.llm.metadata
        info = {
            "backend": BACKEND_NAME, "path": str(self.path),
            "n_ctx": self.n_ctx, "n_batch": self.n_batch, "n_ubatch": self.n_ubatch,
            "flash_attn": self.flash_attn, "n_threads": self.n_threads,
            "n_gpu_layers": self.n_gpu_layers, "seed": self.seed, "n_parallel": self.capacity,
            "reuse_prefix": self.reuse_prefix, "joint_prompts": self.joint_prompts,
            "architecture": meta.get("general.architecture"), "name": meta.get("general.name"),
            "file_mib": round(self.path.stat().st_size / 2**20, 1), "weights_mib": self.weights_mib,
            "kv_cache_mib": self.kv_cache_mib,
            "file_type": meta.get("general.file_type"),
            "chat_template": self.chat_template, "chat_template_source": self.chat_template_source,
            "llama_cpp_python": self.lib.__version__,
            "system_info": self.lib.llama_print_system_info().decode("utf-8", errors="replace").strip(),
        }
        if self.batched is not None:
            info.update(self.batched.info())
        return info

    def close(self) -> None:
        """Free the batched context, the model and its context now."""
        if self.batched is not None:
            self.batched.close()
            self.batched = None
        if self._batch is not None:
            self._batch.free()
            self._batch = None
        self.llm.close()
