"""The Generator on real demo GGUFs through the real llama.cpp."""

from __future__ import annotations

import pytest

from conftest import demo_model
from raq.config import GenerationConfig, ModelConfig
from raq.generator import TEMPLATE_CHAT, TEMPLATE_COMPLETION, TEMPLATE_PAPER, Generator
from raq.prompts import paper_answer_prompt

pytestmark = pytest.mark.integration


def make(name: str, **generation) -> Generator:
    model = ModelConfig(id=name, gguf=name, prompt_format=generation.pop("prompt_format", "chat"))
    return Generator(model, GenerationConfig(max_tokens=generation.pop("max_tokens", 48), **generation),
                     demo_model(name))


def check_timing(answer) -> None:
    assert 0 < answer.ttft_s <= answer.total_s
    assert answer.prompt_s + answer.generation_s == pytest.approx(answer.total_s)
    # llama.cpp's own counters for the same call: the whole prompt was read, and every
    # generated token but the last was decoded (the last is sampled, not fed back).
    assert answer.counters["prompt_eval_tokens"] == answer.prompt_tokens
    assert answer.counters["eval_tokens"] in (answer.generated_tokens, answer.generated_tokens - 1)
    assert answer.counters["prompt_eval_ms"] / 1000 <= answer.ttft_s
    assert answer.prompt_tok_s == pytest.approx(answer.prompt_tokens / answer.ttft_s)


def test_chat_model_uses_its_gguf_template_and_stops_by_itself(super_bowl):
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


def test_model_without_template_gets_the_completion_prompt_and_its_stop(super_bowl):
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


def test_paper_protocol_sends_the_reference_prompt_and_clamps_max_tokens(super_bowl):
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


def test_a_context_too_long_for_n_ctx_is_cut_around_the_answer_not_crashed(super_bowl):
    from dataclasses import replace

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


def test_greedy_answers_are_reproducible(super_bowl):
    generator = make("smollm2-135m-instruct")
    try:
        first, second = generator.answer(super_bowl), generator.answer(super_bowl)
    finally:
        generator.close()
    assert first.text == second.text and first.generated_tokens == second.generated_tokens


def test_a_chat_template_from_the_config_replaces_a_missing_one(super_bowl):
    template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}assistant:{% endif %}")
    model = ModelConfig(id="gemma", gguf="gemma-3-270m", chat_template=template)
    generator = Generator(model, GenerationConfig(max_tokens=16), demo_model("gemma-3-270m"))
    try:
        answer = generator.answer(super_bowl)
    finally:
        generator.close()
    assert answer.template == "config-chat-template"
    assert answer.prompt.startswith("system: ") and answer.prompt.endswith("assistant:")


def test_skip_mode_records_an_empty_answer_instead_of_cutting_the_context(super_bowl):
    from dataclasses import replace

    long_question = replace(super_bowl, context="Filler. " * 400 + super_bowl.context)
    generator = make("smollm2-135m-instruct", n_ctx=256, max_tokens=32, long_context="skip")
    try:
        answer = generator.answer(long_question)
    finally:
        generator.close()
    assert answer.finish_reason == "skipped" and answer.text == "" and "skipped" in answer.notes[0]
