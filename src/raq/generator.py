"""The Generator: one contestant model answering questions from their context.

It builds the prompt the protocol asks for, fits it into the context, calls the backend
(llama.cpp in this process, or an OpenAI-compatible server), and turns the completion into
an :class:`~raq.records.Answer` with its speed and length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import prompts
from .config import GenerationConfig, ModelConfig
from .llama_backend import Completion, LlamaBackend, Sampling
from .metrics import paper_words, words
from .records import Answer, Question

#: Template names recorded on every answer.
TEMPLATE_PAPER = "paper-completion"
TEMPLATE_CHAT = "gguf-chat-template"
TEMPLATE_CONFIG = "config-chat-template"
TEMPLATE_SERVER = "server-chat-template"
TEMPLATE_COMPLETION = "completion"

_CUTS = 4  # at most this many shrinking steps of a context that does not fit


class Generator:
    """A contestant model that answers questions, in-process (GGUF) or served (OpenAI API)."""

    def __init__(self, model: ModelConfig, generation: GenerationConfig, path: str | Path | None = None,
                 api_key: str = "not-needed") -> None:
        self.model = model
        self.generation = generation
        self.served = bool(model.base_url)
        if self.served:
            from .served_backend import ServedBackend

            self.backend: Any = ServedBackend(model.base_urls, model.model or "", api_key,
                                              max_in_flight=model.max_in_flight, timeout_s=model.timeout_s)
        else:
            if path is None:
                raise ValueError(f"model {model.id!r}: a GGUF path is needed")
            self.backend = LlamaBackend(path, n_ctx=generation.n_ctx, n_batch=generation.n_batch,
                                        n_threads=generation.n_threads, n_gpu_layers=model.n_gpu_layers,
                                        seed=generation.seed, chat_template=model.chat_template)
        self.template, self.template_note = self._choose_template()
        self.sampling = Sampling(temperature=generation.temperature, top_p=generation.top_p,
                                 top_k=generation.top_k, min_p=generation.min_p,
                                 repeat_penalty=generation.repeat_penalty)

    @property
    def capacity(self) -> int:
        """How many answers may be requested at once (1 in-process)."""
        return getattr(self.backend, "capacity", 1)

    def _choose_template(self) -> tuple[str, str]:
        if self.generation.protocol == "paper":
            return TEMPLATE_PAPER, ""
        if self.model.prompt_format == "completion":
            return TEMPLATE_COMPLETION, ""
        if self.served:
            return TEMPLATE_SERVER, ""
        if self.model.chat_template:
            return TEMPLATE_CONFIG, ""
        if self.backend.chat_template is None:
            return TEMPLATE_COMPLETION, "the GGUF has no chat template: used the plain completion prompt"
        return TEMPLATE_CHAT, ""

    def build_prompt(self, question: Question, context: str | None = None) -> tuple[str, tuple[str, ...], bool]:
        """The prompt text, its stop strings, and whether it carries special tokens as text."""
        if self.template == TEMPLATE_PAPER:
            return prompts.paper_answer_prompt(question, context), (), False
        if self.template in (TEMPLATE_CHAT, TEMPLATE_CONFIG):
            return self.backend.render_chat(prompts.chat_answer_messages(question, context)), (), True
        if self.template == TEMPLATE_SERVER:  # the server applies the template to the messages
            return json.dumps(prompts.chat_answer_messages(question, context), ensure_ascii=False), (), False
        return prompts.completion_answer_prompt(question, context), prompts.COMPLETION_STOPS, False

    def _fit(self, question: Question) -> tuple[str, tuple[str, ...], bool, int, list[str]]:
        """A prompt that fits the context with room for the answer; notes say what was changed."""
        notes = [self.template_note] if self.template_note else []
        n_ctx, max_tokens = self.backend.n_ctx, self.generation.max_tokens
        context = question.context
        for _ in range(_CUTS + 1):
            prompt, stops, special = self.build_prompt(question, context)
            room = n_ctx - self.backend.count_tokens(prompt, special=special)
            if self.template == TEMPLATE_PAPER and room >= 1:
                if max_tokens > room:  # what the reference setup did silently
                    notes.append(f"max_tokens clamped from {max_tokens} to {room} (context {n_ctx})")
                    max_tokens = room
                return prompt, stops, special, max_tokens, notes
            if room >= max_tokens:
                break
            context = prompts.excerpt(question.context, question.gold_answers, int(len(context) * 0.7))
        else:
            max_tokens = max(1, room)
            notes.append(f"max_tokens reduced to {max_tokens}: the prompt fills the context")
        if context != question.context:
            notes.append(f"context cut to {len(context)} of {len(question.context)} characters, "
                         f"around the answer, to fit n_ctx {n_ctx}")
        return prompt, stops, special, max_tokens, notes

    def warm_up(self) -> None:
        """One short untimed call, so the first timed answer does not pay for loading."""
        if self.served:
            self.backend.complete(prompt="The capital of France is", max_tokens=4, sampling=self.sampling,
                                  seed=self.generation.seed)
        else:
            self.backend.complete("The capital of France is", max_tokens=4, sampling=self.sampling)

    def answer(self, question: Question) -> Answer:
        """Answer one question from its context."""
        if self.served:
            return self._answer_served(question)
        prompt, stops, special, max_tokens, notes = self._fit(question)
        if self.must_skip(notes):
            return self.skipped(question)
        completion = self.backend.complete(prompt, max_tokens=max_tokens, sampling=self.sampling,
                                           stop=stops, special=special)
        return make_answer(question, self.model.id, prompt, self.template, completion, max_tokens, notes)

    def must_skip(self, notes: list[str]) -> bool:
        """Whether ``long_context: skip`` applies to a prompt that needed these fitting notes."""
        return self.generation.long_context == "skip" and any(
            n.startswith(("context cut", "max_tokens reduced")) for n in notes)

    def skipped(self, question: Question) -> Answer:
        return skipped_answer(question, self.model.id, self.template, "the prompt does not fit n_ctx "
                              f"{self.backend.n_ctx} with max_tokens {self.generation.max_tokens}")

    def _answer_served(self, question: Question) -> Answer:
        from .served_backend import ContextTooLong

        notes = [self.template_note] if self.template_note else []
        context = question.context
        for _ in range(_CUTS):
            prompt, stops, _special = self.build_prompt(question, context)
            request = {"messages": json.loads(prompt)} if self.template == TEMPLATE_SERVER else {"prompt": prompt}
            try:
                completion = self.backend.complete(**request, max_tokens=self.generation.max_tokens,
                                                   sampling=self.sampling, stop=stops, seed=self.generation.seed)
            except ContextTooLong:
                if self.generation.long_context == "skip":
                    return skipped_answer(question, self.model.id, self.template, "the server refused the prompt "
                                          "as too long")
                context = prompts.excerpt(question.context, question.gold_answers, int(len(context) * 0.6))
                continue
            if context != question.context:
                notes.append(f"context cut to {len(context)} of {len(question.context)} characters: "
                             "the server refused the full prompt")
            return make_answer(question, self.model.id, prompt, self.template, completion,
                               self.generation.max_tokens, notes)
        raise ContextTooLong(f"model {self.model.id!r}: the prompt for {question.question_id} does not fit "
                             "even with the context cut")

    def info(self) -> dict[str, Any]:
        return {**self.backend.info(), "template": self.template, "template_note": self.template_note}

    def close(self) -> None:
        self.backend.close()


def make_answer(question: Question, model_id: str, prompt: str, template: str, completion: Completion,
                max_tokens: int, notes: list[str]) -> Answer:
    """Turn a completion into an Answer with derived speed and length figures."""
    text = completion.text.strip()
    generation_s = max(completion.total_s - completion.ttft_s, 0.0)
    after_first = completion.generated_tokens - 1
    prompt_tok_s = (completion.prompt_tokens / completion.ttft_s
                    if completion.prompt_tokens and completion.ttft_s > 0 else None)
    return Answer(
        question_id=question.question_id, model_id=model_id, text=text, prompt=prompt, template=template,
        prompt_tokens=completion.prompt_tokens, generated_tokens=completion.generated_tokens,
        ttft_s=completion.ttft_s, prompt_s=completion.ttft_s, generation_s=generation_s,
        total_s=completion.total_s, prompt_tok_s=prompt_tok_s,
        generation_tok_s=after_first / generation_s if after_first > 0 and generation_s > 0 else None,
        words=words(text), words_paper=paper_words(text),
        words_per_s_paper=paper_words(text) / completion.total_s if completion.total_s > 0 else 0.0,
        finish_reason=completion.finish_reason, max_tokens=max_tokens, notes=notes,
        counters=completion.counters,
        decoding=f"batched x{completion.counters['batched']}" if completion.counters.get("batched") else "single",
    )


def skipped_answer(question: Question, model_id: str, template: str, reason: str) -> Answer:
    """An empty answer recorded for a question the model could not be asked (``long_context: skip``)."""
    return Answer(question_id=question.question_id, model_id=model_id, text="", prompt="", template=template,
                  prompt_tokens=None, generated_tokens=0, ttft_s=0.0, prompt_s=0.0, generation_s=0.0, total_s=0.0,
                  prompt_tok_s=None, generation_tok_s=None, words=0, words_paper=0, words_per_s_paper=0.0,
                  finish_reason="skipped", max_tokens=0, notes=[f"skipped: {reason}"])
