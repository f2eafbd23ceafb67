"""The Generator: one contestant model answering questions from their context.

It builds the request the protocol asks for, fits it into the backend's context (cutting the
context around the answer when it is too long), has the backend complete it, and turns the
completion into an :class:`~raq.records.Answer` with its speed and length. It talks only to the
:class:`~raq.backends.base.Backend` contract.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from . import prompts
from .abstention import is_abstention
from .backends import base
from .backends.base import Backend, Completion, PromptTooLong, Request, Sampling
from .config import GenerationConfig, ModelConfig
from .metrics import paper_words, words
from .records import Answer, Question

#: Template names recorded on every answer.
TEMPLATE_PAPER = "paper-completion"
TEMPLATE_CHAT = "gguf-chat-template"
TEMPLATE_CONFIG = "config-chat-template"
TEMPLATE_SERVER = "server-chat-template"
TEMPLATE_COMPLETION = "completion"
_CHAT_TEMPLATES = {base.TEMPLATE_GGUF: TEMPLATE_CHAT, base.TEMPLATE_CONFIG: TEMPLATE_CONFIG,
                   base.TEMPLATE_SERVER: TEMPLATE_SERVER}

#: A note put on every answer decoded together with others.
BATCHED_NOTE = "batched decoding (n_parallel={n}): timings are shared-batch figures, not single-sequence speed"
_CUTS = 4  # at most this many shrinking steps of a context that does not fit
_CUT_COUNTED = 0.7  # the context kept per step when raq counts the tokens itself
_CUT_REFUSED = 0.6  # ... and when a server refused the prompt as too long
WARM_UP_PROMPT = "The capital of France is"


@dataclass
class Fitted:
    """A request that fits the context, and what fitting changed."""

    question: Question
    request: Request
    notes: list[str] = field(default_factory=list)
    context: str = ""


class Generator:
    """A contestant model that answers questions through a Backend."""

    def __init__(self, model: ModelConfig, generation: GenerationConfig, backend: Backend,
                 offer_abstention: bool = False) -> None:
        self.model = model
        self.generation = generation
        self.backend = backend
        #: Whether the raq prompts offer the fixed phrase for a question the text does not answer.
        self.offer_abstention = offer_abstention
        self.template, self.template_note = self._choose_template()
        self.sampling = Sampling(temperature=generation.temperature, top_p=generation.top_p,
                                 top_k=generation.top_k, min_p=generation.min_p,
                                 repeat_penalty=generation.repeat_penalty)

    @property
    def capacity(self) -> int:
        """How many answers the backend works on at once."""
        return self.backend.capacity

    def _choose_template(self) -> tuple[str, str]:
        if self.generation.protocol == "paper":
            return TEMPLATE_PAPER, ""
        if self.model.prompt_format == "completion":
            return TEMPLATE_COMPLETION, ""
        source = self.backend.chat_template_source
        if source is None:
            return TEMPLATE_COMPLETION, "the GGUF has no chat template: used the plain completion prompt"
        return _CHAT_TEMPLATES[source], ""

    def request(self, question: Question, context: str | None = None, max_tokens: int | None = None) -> Request:
        """The request for one question (with ``context`` instead of the question's own, if given)."""
        limit, sampling, seed = max_tokens or self.generation.max_tokens, self.sampling, self.generation.seed
        if self.template == TEMPLATE_PAPER:
            return Request(prompt=prompts.paper_answer_prompt(question, context), max_tokens=limit,
                           sampling=sampling, seed=seed)
        if self.template == TEMPLATE_COMPLETION:
            return Request(prompt=prompts.completion_answer_prompt(question, context, self.offer_abstention),
                           stop=prompts.COMPLETION_STOPS, max_tokens=limit, sampling=sampling, seed=seed)
        return Request.chat(prompts.chat_answer_messages(question, context, self.offer_abstention), max_tokens=limit,
                            sampling=sampling, seed=seed)

    def fit(self, question: Question) -> Fitted:
        """A request that fits the context with room for the answer, when the backend can count
        tokens (a server that cannot refuses a prompt that is too long instead)."""
        notes = [self.template_note] if self.template_note else []
        n_ctx, max_tokens = self.backend.n_ctx, self.generation.max_tokens
        context = question.context
        request = self.request(question, context)
        count = self.backend.count_tokens(request)
        if count is None or n_ctx is None:
            return Fitted(question, request, notes, context)
        for _ in range(_CUTS + 1):
            room = n_ctx - count
            if self.template == TEMPLATE_PAPER and room >= 1:
                if max_tokens > room:  # what the reference setup did silently
                    notes.append(f"max_tokens clamped from {max_tokens} to {room} (context {n_ctx})")
                return Fitted(question, replace(request, max_tokens=min(max_tokens, room)), notes, context)
            if room >= max_tokens:
                break
            context = prompts.excerpt(question.context, question.gold_answers, int(len(context) * _CUT_COUNTED))
            request = self.request(question, context)
            count = self.backend.count_tokens(request) or 0
        else:
            room = n_ctx - count  # the room left after the last cut
            if room < max_tokens:
                max_tokens = max(1, room)
                request = replace(request, max_tokens=max_tokens)
                notes.append(f"max_tokens reduced to {max_tokens}: the prompt fills the context")
        if context != question.context:
            notes.append(f"context cut to {len(context)} of {len(question.context)} characters, "
                         f"around the answer, to fit n_ctx {n_ctx}")
        return Fitted(question, request, notes, context)

    def must_skip(self, notes: Sequence[str]) -> bool:
        """Whether ``long_context: skip`` applies to a prompt that needed these fitting notes."""
        return self.generation.long_context == "skip" and any(
            n.startswith(("context cut", "max_tokens reduced")) for n in notes)

    def warm_up(self) -> None:
        """Short untimed calls (one per request slot), so the first timed answer does not pay for loading."""
        warm = Request(prompt=WARM_UP_PROMPT, max_tokens=4, sampling=self.sampling, seed=self.generation.seed)
        for _ in self.backend.complete_many([warm] * self.backend.capacity):
            pass

    def answer(self, question: Question) -> Answer:
        """Answer one question from its context."""
        return next(iter(self.answer_many([question])))

    def answer_many(self, questions: Sequence[Question]) -> Iterator[Answer]:
        """Answers to ``questions``, as the backend finishes them. Questions about one context
        are sent together, so that a backend that decodes several sequences at once reads the
        shared prompt once."""
        fitted = [self.fit(q) for q in questions]
        to_send: list[Fitted] = []
        for item in fitted:
            if self.must_skip(item.notes):
                yield self.skipped(item.question, f"the prompt does not fit n_ctx {self.backend.n_ctx} with "
                                                  f"max_tokens {self.generation.max_tokens}")
            else:
                to_send.append(item)
        for group in _groups(to_send) if self.capacity > 1 else [to_send]:
            yield from self._complete(group)

    def _complete(self, group: list[Fitted]) -> Iterator[Answer]:
        done: set[int] = set()
        try:
            for index, completion in self.backend.complete_many([f.request for f in group]):
                done.add(index)
                yield self._make(group[index], completion)
        except PromptTooLong:  # a server refused a prompt: the rest one by one, cut until they fit
            for index, item in enumerate(group):
                if index not in done:
                    yield self._refit(item)

    def _refit(self, item: Fitted) -> Answer:
        question, context = item.question, item.context
        for _ in range(_CUTS):
            request = self.request(question, context, item.request.max_tokens)
            try:
                completion = self.backend.complete(request)
            except PromptTooLong:
                if self.generation.long_context == "skip":
                    return self.skipped(question, "the server refused the prompt as too long")
                context = prompts.excerpt(question.context, question.gold_answers, int(len(context) * _CUT_REFUSED))
                continue
            notes = list(item.notes)
            if context != question.context:
                notes.append(f"context cut to {len(context)} of {len(question.context)} characters: "
                             "the server refused the full prompt")
            return self._make(Fitted(question, request, notes, context), completion)
        raise PromptTooLong(f"model {self.model.id!r}: the prompt for {question.question_id} does not fit "
                            "even with the context cut")

    def _make(self, item: Fitted, completion: Completion) -> Answer:
        notes = list(item.notes)
        if completion.counters.get("batched"):
            notes.append(BATCHED_NOTE.format(n=completion.counters["batched"]))
        return make_answer(item.question, self.model.id, self.backend.render(item.request), self.template,
                           completion, item.request.max_tokens, notes)

    def skipped(self, question: Question, reason: str) -> Answer:
        return skipped_answer(question, self.model.id, self.template, reason)

    def info(self) -> dict[str, object]:
        return {**self.backend.info(), "template": self.template, "template_note": self.template_note}

    def close(self) -> None:
        self.backend.close()


def _groups(items: list[Fitted]) -> list[list[Fitted]]:
    """Questions about one context in a group of their own (decoded together, their shared
    prompt read once); lone questions together in one group."""
    by_context: dict[str, list[Fitted]] = {}
    for item in items:
        by_context.setdefault(item.question.context, []).append(item)
    shared = [group for group in by_context.values() if len(group) > 1]
    lone = [group[0] for group in by_context.values() if len(group) == 1]
    return shared + ([lone] if lone else [])


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
        abstained=is_abstention(text),
    )


def skipped_answer(question: Question, model_id: str, template: str, reason: str) -> Answer:
    """An empty answer recorded for a question the model could not be asked (``long_context: skip``)."""
    return Answer(question_id=question.question_id, model_id=model_id, text="", prompt="", template=template,
                  prompt_tokens=None, generated_tokens=0, ttft_s=0.0, prompt_s=0.0, generation_s=0.0, total_s=0.0,
                  prompt_tok_s=None, generation_tok_s=None, words=0, words_paper=0, words_per_s_paper=0.0,
                  finish_reason="skipped", max_tokens=0, notes=[f"skipped: {reason}"], abstained=False)
