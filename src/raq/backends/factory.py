"""Which Backend a config asks for: the one place that turns a contestant's or a judge's settings
into a loaded model or a client. A study takes a :class:`BackendFactory`; tests and users may
give their own (for example one that returns :class:`~raq.backends.fake.FakeBackend`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from ..config import SCORING_PROTOCOLS, GenerationConfig, JudgeConfig, ModelConfig
from ..errors import ConfigError
from .base import Backend
from .openai_http import NO_KEY, OpenAIBackend


def api_key_from_env(variable: str | None, owner: str) -> str:
    """The API key held by environment variable ``variable`` (never by a file); a placeholder
    when none is named (local servers need none)."""
    if not variable:
        return NO_KEY
    key = os.environ.get(variable)
    if not key:
        raise ConfigError(f"{owner}: environment variable {variable} is not set")
    return key


def served_contestant(model: ModelConfig) -> OpenAIBackend:
    """The client of a served contestant (not yet checked)."""
    return OpenAIBackend(model.base_urls, model.model or "", api_key_from_env(model.api_key_env, f"model {model.id!r}"),
                         max_in_flight=model.max_in_flight, timeout_s=model.timeout_s)


def remote_judge(judge: JudgeConfig) -> OpenAIBackend:
    """The client of a judge at an OpenAI-compatible endpoint (not yet checked)."""
    return OpenAIBackend(judge.base_urls, judge.model or "", api_key_from_env(judge.api_key_env, f"judge {judge.id!r}"),
                         max_in_flight=judge.max_in_flight, timeout_s=judge.timeout_s)


class Backends(Protocol):
    """What a study needs to open its models: a contestant's backend and a judge's."""

    def contestant(self, model: ModelConfig, generation: GenerationConfig, path: Path | None) -> Backend: ...

    def judge(self, judge: JudgeConfig, path: Path | None, log_path: Path) -> Backend: ...


class BackendFactory:
    """Opens the backend of a contestant or a judge as its config says."""

    def contestant(self, model: ModelConfig, generation: GenerationConfig, path: Path | None) -> Backend:
        """In-process llama.cpp for a GGUF (``generation.n_parallel`` sequences decoded together),
        else the OpenAI-compatible client, checked to serve the model."""
        if model.base_url:
            backend = served_contestant(model)
            backend.check()
            return backend
        if path is None:
            raise ValueError(f"model {model.id!r}: a GGUF path is needed")
        from .llama import LlamaBackend

        return LlamaBackend(path, n_ctx=generation.n_ctx, n_batch=generation.n_batch,
                            n_threads=generation.n_threads, n_gpu_layers=model.n_gpu_layers, seed=generation.seed,
                            chat_template=model.chat_template, n_parallel=generation.n_parallel,
                            flash_attn=generation.flash_attn)

    def judge(self, judge: JudgeConfig, path: Path | None, log_path: Path) -> Backend:
        """A local GGUF judge in-process or behind a llama.cpp server raq starts (its log at
        ``log_path``; for the scoring protocols with every token's logits kept, which its
        log-probabilities need); a remote judge through the OpenAI-compatible client, checked."""
        if judge.base_url:
            backend = remote_judge(judge)
            backend.check()
            return backend
        if path is None:
            raise ValueError(f"judge {judge.id!r}: a GGUF path is needed")
        if judge.runtime == "in-process":
            from .llama import LlamaBackend

            return LlamaBackend(path, n_ctx=judge.n_ctx, n_batch=judge.n_batch, n_threads=judge.n_threads,
                                n_gpu_layers=judge.n_gpu_layers, seed=judge.seed, reuse_prefix=True,
                                flash_attn=judge.flash_attn, joint_prompts=True,
                                n_parallel=judge.n_parallel if judge.protocol in SCORING_PROTOCOLS else 1)
        from .local_server import LocalServerBackend

        return LocalServerBackend(path, judge.id, n_ctx=judge.n_ctx, n_threads=judge.n_threads,
                                  n_gpu_layers=judge.n_gpu_layers, seed=judge.seed, log_path=log_path,
                                  timeout_s=judge.timeout_s, max_in_flight=judge.max_in_flight,
                                  logits_all=judge.protocol in SCORING_PROTOCOLS, flash_attn=judge.flash_attn)
