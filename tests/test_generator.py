"""The Generator: templates, fitting a prompt into the context, grouping questions for batched
decoding and the answer's figures on the scripted FakeBackend; and on real demo GGUFs through
the real llama.cpp."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import pytest

from conftest import demo_model
from raq import prompts
from raq.backends import base
from raq.backends.base import Completion, PromptTooLong, Request
from raq.backends.factory import BackendFactory
from raq.backends.fake import FakeBackend
from raq.config import GenerationConfig, ModelConfig
from raq.generator import (
    BATCHED_NOTE,
    TEMPLATE_CHAT,
    TEMPLATE_COMPLETION,
    TEMPLATE_CONFIG,
    TEMPLATE_PAPER,
    TEMPLATE_SERVER,
    WARM_UP_PROMPT,
    Generator,
)
from raq.prompts import paper_answer_prompt
from raq.records import Question


def fake_generator(backend: FakeBackend, prompt_format: str = "chat", **generation: Any) -> Generator:
    model = ModelConfig(id="fake-model", gguf="fake.gguf", prompt_format=prompt_format)
    generation.setdefault("max_tokens", 32)
    return Generator(model, GenerationConfig(**generation), backend)


def padded(question: Question, words: int = 150) -> Question:
    """The question with filler before and after its context (the answer stays in the middle)."""
    return replace(question, context="Filler sentence about nothing. " * words + question.context
                   + " More filler here." * words)


# --- templates -----------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "template"), [(base.TEMPLATE_GGUF, TEMPLATE_CHAT),
                                                  (base.TEMPLATE_CONFIG, TEMPLATE_CONFIG),
                                                  (base.TEMPLATE_SERVER, TEMPLATE_SERVER)])
def test_a_chat_model_uses_the_template_its_backend_has(super_bowl: Question, source: str, template: str) -> None:
    backend = FakeBackend(["Denver Broncos"], chat_template_source=source)
    generator = fake_generator(backend, temperature=0.3, top_k=7, seed=11)
    answer = generator.answer(super_bowl)
    (request,) = backend.requests
    assert generator.template == template and answer.template == template and answer.notes == []
    assert request.messages == tuple(prompts.chat_answer_messages(super_bowl)) and request.stop == ()
    assert (request.sampling.temperature, request.sampling.top_k, request.seed) == (0.3, 7, 11)
    assert answer.prompt == backend.render(request) and answer.prompt.endswith("<|assistant|>\n")


def test_a_model_without_a_chat_template_gets_the_completion_prompt_and_a_note(super_bowl: Question) -> None:
    backend = FakeBackend(["Denver Broncos"], chat_template_source=None)
    answer = fake_generator(backend).answer(super_bowl)
    (request,) = backend.requests
    assert answer.template == TEMPLATE_COMPLETION
    assert request.prompt == prompts.completion_answer_prompt(super_bowl) and request.stop == ("\n",)
    assert answer.notes == ["the GGUF has no chat template: used the plain completion prompt"]


def test_prompt_format_completion_is_chosen_without_a_note(super_bowl: Question) -> None:
    backend = FakeBackend(["Denver Broncos"])
    answer = fake_generator(backend, prompt_format="completion").answer(super_bowl)
    assert answer.template == TEMPLATE_COMPLETION and answer.notes == []
    assert backend.requests[0].prompt == prompts.completion_answer_prompt(super_bowl)


def test_the_paper_protocol_sends_the_reference_prompt_and_clamps_max_tokens(super_bowl: Question) -> None:
    backend = FakeBackend(["Denver Broncos"], n_ctx=256)
    answer = fake_generator(backend, protocol="paper", max_tokens=2000, n_ctx=256).answer(super_bowl)
    (request,) = backend.requests
    prompt_tokens = len(paper_answer_prompt(super_bowl).split())
    assert answer.template == TEMPLATE_PAPER and request.prompt == paper_answer_prompt(super_bowl)
    assert request.max_tokens == answer.max_tokens == 256 - prompt_tokens
    assert answer.notes == [f"max_tokens clamped from 2000 to {256 - prompt_tokens} (context 256)"]


def test_warm_up_sends_one_short_untimed_request_per_slot() -> None:
    backend = FakeBackend(capacity=3)
    fake_generator(backend).warm_up()
    assert [(r.prompt, r.max_tokens) for r in backend.requests] == [(WARM_UP_PROMPT, 4)] * 3


# --- fitting the context -------------------------------------------------------------------

def test_a_context_too_long_for_n_ctx_is_cut_around_the_answer(super_bowl: Question) -> None:
    question = padded(super_bowl)
    backend = FakeBackend(["Denver Broncos"], n_ctx=400)
    assert backend.count_tokens(Request.chat(prompts.chat_answer_messages(question))) > 1000
    answer = fake_generator(backend, max_tokens=32).answer(question)
    (request,) = backend.requests
    assert backend.count_tokens(request) + 32 <= 400 and request.max_tokens == answer.max_tokens == 32
    assert "Denver Broncos" in answer.prompt and "Super Bowl 50" in answer.prompt
    (note,) = answer.notes
    assert note.startswith("context cut to ") and f"of {len(question.context)} characters" in note
    assert "around the answer, to fit n_ctx 400" in note


def test_a_prompt_that_still_fills_the_context_gets_fewer_tokens_to_answer(super_bowl: Question) -> None:
    question = replace(padded(super_bowl, 20), question="Which team " + "really " * 330 + "won?")
    backend = FakeBackend(["Denver Broncos"], n_ctx=400)
    answer = fake_generator(backend, max_tokens=32).answer(question)
    (request,) = backend.requests
    room = 400 - backend.count_tokens(request)
    assert 1 <= room < 32 and request.max_tokens == answer.max_tokens == room  # all the room that is left
    assert f"max_tokens reduced to {room}: the prompt fills the context" in answer.notes
    assert any(n.startswith("context cut to") for n in answer.notes)


def test_skip_mode_records_an_empty_answer_and_sends_nothing(super_bowl: Question) -> None:
    backend = FakeBackend(n_ctx=400)
    generator = fake_generator(backend, long_context="skip")
    answers = {a.question_id: a for a in generator.answer_many([super_bowl, replace(padded(super_bowl),
                                                                                    question_id="long")])}
    short, long = answers[super_bowl.question_id], answers["long"]
    assert short.finish_reason == "stop" and short.notes == []
    assert long.question_id == "long" and long.finish_reason == "skipped" and long.text == ""
    assert long.notes == ["skipped: the prompt does not fit n_ctx 400 with max_tokens 32"]
    assert long.generated_tokens == 0 and long.max_tokens == 0
    assert len(backend.requests) == 1  # only the short question was asked


def test_a_prompt_that_never_fits_raises_prompt_too_long(super_bowl: Question) -> None:
    question = replace(super_bowl, question="why " * 500)
    backend = FakeBackend(n_ctx=300)
    with pytest.raises(PromptTooLong, match=f"{super_bowl.question_id} does not fit"):
        fake_generator(backend).answer(question)


def test_a_backend_that_cannot_count_leaves_the_prompt_whole(super_bowl: Question) -> None:
    class Uncounted(FakeBackend):
        def count_tokens(self, request: Request) -> int | None:
            return None

    backend = Uncounted(n_ctx=None)
    answer = fake_generator(backend).answer(padded(super_bowl))
    assert backend.requests[0].messages == tuple(prompts.chat_answer_messages(padded(super_bowl)))
    assert answer.notes == []


# --- grouping and batched decoding ---------------------------------------------------------

class Batched(FakeBackend):
    """Serves ``capacity`` requests at once: records each batch, finishes it in reverse order,
    and marks completions as batched."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity=capacity, default=lambda r: "answer to " + r.messages[-1]["content"].split()[-1])
        self.batches: list[list[str]] = []

    def complete_many(self, requests: Sequence[Request]) -> Iterator[tuple[int, Completion]]:
        self.batches.append([r.messages[-1]["content"].split()[-1] for r in requests])
        done = [self.complete(r) for r in requests]
        for index in reversed(range(len(requests))):
            done[index].counters["batched"] = self.capacity
            yield index, done[index]


def questions_about(question: Question) -> list[Question]:
    other = replace(question, context="Another paragraph entirely.")
    third = replace(question, context="A third paragraph.")
    return [replace(question, question_id="a1", question="first a1"), replace(other, question_id="b1",
            question="lone b1"), replace(question, question_id="a2", question="second a2"),
            replace(third, question_id="c1", question="lone c1"), replace(question, question_id="a3",
            question="third a3")]


def test_questions_about_one_context_are_sent_together_when_the_backend_batches(super_bowl: Question) -> None:
    backend = Batched(capacity=4)
    answers = list(fake_generator(backend).answer_many(questions_about(super_bowl)))
    assert backend.batches == [["a1", "a2", "a3"], ["b1", "c1"]]
    assert sorted(a.question_id for a in answers) == ["a1", "a2", "a3", "b1", "c1"]
    assert all(a.text == f"answer to {a.question_id}" for a in answers)  # each answer kept its question
    assert all(a.decoding == "batched x4" and BATCHED_NOTE.format(n=4) in a.notes for a in answers)


def test_a_backend_of_one_sequence_gets_every_question_in_one_call(super_bowl: Question) -> None:
    backend = Batched(capacity=1)
    list(fake_generator(backend).answer_many(questions_about(super_bowl)))
    assert backend.batches == [["a1", "b1", "a2", "c1", "a3"]]


# --- the answer's figures ------------------------------------------------------------------

def test_speed_and_length_come_from_the_completions_timings(super_bowl: Question) -> None:
    backend = FakeBackend(["  The Denver Broncos, from Denver.  "], prompt_s_per_token=0.002, s_per_token=0.05)
    answer = fake_generator(backend).answer(super_bowl)
    prompt_tokens = backend.count_tokens(backend.requests[0])
    assert answer.text == "The Denver Broncos, from Denver." and answer.finish_reason == "stop"
    assert answer.prompt_tokens == prompt_tokens and answer.generated_tokens == 5
    assert answer.ttft_s == answer.prompt_s == pytest.approx(prompt_tokens * 0.002)
    assert answer.generation_s == pytest.approx(4 * 0.05)
    assert answer.total_s == pytest.approx(answer.ttft_s + 4 * 0.05)
    assert answer.prompt_tok_s == pytest.approx(500.0) and answer.generation_tok_s == pytest.approx(20.0)
    assert answer.words == 5 and answer.words_paper == 5
    assert answer.words_per_s_paper == pytest.approx(5 / answer.total_s)
    assert answer.counters == {"backend": "fake"} and answer.decoding == "single"


def test_a_reply_cut_at_max_tokens_has_finish_reason_length_and_no_speed_without_time(super_bowl: Question) -> None:
    backend = FakeBackend(["one two three four five six"], prompt_s_per_token=0.0, s_per_token=0.0)
    answer = fake_generator(backend, max_tokens=3).answer(super_bowl)
    assert answer.text == "one two three" and answer.finish_reason == "length" and answer.generated_tokens == 3
    assert answer.prompt_tok_s is None and answer.generation_tok_s is None and answer.words_per_s_paper == 0.0


def test_info_and_close_go_to_the_backend() -> None:
    backend = FakeBackend(name="x", chat_template_source=None)
    generator = fake_generator(backend)
    assert generator.info() == {**backend.info(), "template": TEMPLATE_COMPLETION,
                                "template_note": "the GGUF has no chat template: used the plain completion prompt"}
    generator.close()
    assert backend.closed


# --- real GGUFs ----------------------------------------------------------------------------

def make(name: str, **generation: Any) -> Generator:
    model = ModelConfig(id=name, gguf=name, prompt_format=generation.pop("prompt_format", "chat"),
                        chat_template=generation.pop("chat_template", None))
    settings = GenerationConfig(max_tokens=generation.pop("max_tokens", 48), **generation)
    return Generator(model, settings, BackendFactory().contestant(model, settings, demo_model(name)))


def check_timing(answer: Any) -> None:
    assert 0 < answer.ttft_s <= answer.total_s
    assert answer.prompt_s + answer.generation_s == pytest.approx(answer.total_s)
    # llama.cpp's own counters for the same call: the whole prompt was read, and every
    # generated token but the last was decoded (the last is sampled, not fed back).
    assert answer.counters["prompt_eval_tokens"] == answer.prompt_tokens
    assert answer.counters["eval_tokens"] in (answer.generated_tokens, answer.generated_tokens - 1)
    assert answer.counters["prompt_eval_ms"] / 1000 <= answer.ttft_s
    assert answer.prompt_tok_s == pytest.approx(answer.prompt_tokens / answer.ttft_s)


@pytest.mark.integration
def test_chat_model_uses_its_gguf_template_and_stops_by_itself(super_bowl: Question) -> None:
    generator = make("smollm2-135m-instruct")
    try:
        assert generator.template == TEMPLATE_CHAT
        generator.warm_up()
        answer = generator.answer(super_bowl)
    finally:
        generator.close()
    assert answer.prompt.startswith("<|im_start|>system") and answer.prompt.endswith("<|im_start|>assistant\n")
    assert answer.template == TEMPLATE_CHAT
    assert answer.text and answer.finish_reason in ("stop", "length")
    assert answer.generated_tokens <= 48
    check_timing(answer)


@pytest.mark.integration
def test_model_without_template_gets_the_completion_prompt_and_its_stop(super_bowl: Question) -> None:
    generator = make("gemma-3-270m")  # asks for chat, but the GGUF has no template
    try:
        assert generator.backend.chat_template is None
        assert generator.template == TEMPLATE_COMPLETION
        answer = generator.answer(super_bowl)
    finally:
        generator.close()
    assert answer.template == TEMPLATE_COMPLETION
    assert any("no chat template" in note for note in answer.notes)
    assert "\n" not in answer.text  # the newline stop ended the answer
    assert "Denver Broncos" in answer.text
    check_timing(answer)


@pytest.mark.integration
def test_paper_protocol_sends_the_reference_prompt_and_clamps_max_tokens(super_bowl: Question) -> None:
    generator = make("smollm2-135m-instruct", protocol="paper", n_ctx=256, max_tokens=2000, temperature=0.7)
    try:
        assert generator.template == TEMPLATE_PAPER
        answer = generator.answer(super_bowl)
    finally:
        generator.close()
    assert answer.prompt == paper_answer_prompt(super_bowl)
    assert answer.max_tokens == 256 - answer.prompt_tokens
    assert any("max_tokens clamped from 2000" in note for note in answer.notes)
    assert answer.prompt_tokens + answer.generated_tokens <= 256


@pytest.mark.integration
def test_a_context_too_long_for_n_ctx_is_cut_around_the_answer_not_crashed(super_bowl: Question) -> None:
    long_question = replace(super_bowl, context=("Filler sentence about nothing. " * 150) + super_bowl.context
                            + (" More filler here." * 150))
    generator = make("smollm2-135m-instruct", n_ctx=512, max_tokens=32)
    try:
        answer = generator.answer(long_question)
    finally:
        generator.close()
    assert answer.prompt_tokens + 32 <= 512
    assert "Denver Broncos" in answer.prompt
    assert any("context cut" in note for note in answer.notes)


@pytest.mark.integration
def test_greedy_answers_are_reproducible(super_bowl: Question) -> None:
    generator = make("smollm2-135m-instruct")
    try:
        first, second = generator.answer(super_bowl), generator.answer(super_bowl)
    finally:
        generator.close()
    assert first.text == second.text and first.generated_tokens == second.generated_tokens


@pytest.mark.integration
def test_a_chat_template_from_the_config_replaces_a_missing_one(super_bowl: Question) -> None:
    template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}assistant:{% endif %}")
    generator = make("gemma-3-270m", chat_template=template, max_tokens=16)
    try:
        answer = generator.answer(super_bowl)
    finally:
        generator.close()
    assert answer.template == "config-chat-template"
    assert answer.prompt.startswith("system: ") and answer.prompt.endswith("assistant:")


@pytest.mark.integration
def test_skip_mode_records_an_empty_answer_instead_of_cutting_the_context(super_bowl: Question) -> None:
    long_question = replace(super_bowl, context="Filler. " * 400 + super_bowl.context)
    generator = make("smollm2-135m-instruct", n_ctx=256, max_tokens=32, long_context="skip")
    try:
        answer = generator.answer(long_question)
    finally:
        generator.close()
    assert answer.finish_reason == "skipped" and answer.text == "" and "skipped" in answer.notes[0]
