"""Generation through a real OpenAI-compatible server: llama.cpp's own server on 127.0.0.1."""

from __future__ import annotations

from dataclasses import replace

import pytest

from conftest import demo_model
from raq.config import GenerationConfig, ModelConfig
from raq.errors import BackendError
from raq.generator import TEMPLATE_PAPER, TEMPLATE_SERVER, Generator
from raq.pipeline import _answers
from raq.prompts import paper_answer_prompt
from raq.server import LocalServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two llama.cpp servers of the same small model, as a tiny cluster."""
    path = demo_model("smollm2-135m-instruct")
    log = tmp_path_factory.mktemp("servers")
    with LocalServer(path, "smol", n_ctx=1024, n_threads=1, log_path=log / "a.log") as first, \
            LocalServer(path, "smol", n_ctx=1024, n_threads=1, log_path=log / "b.log") as second:
        yield [first.base_url, second.base_url]


def served(urls, **changes) -> ModelConfig:
    return ModelConfig(id="smol-served", base_url=urls, model="smol", **changes)


def test_a_served_chat_answer_is_streamed_and_timed(servers, super_bowl):
    generator = Generator(served(servers[0]), GenerationConfig(max_tokens=32))
    try:
        generator.backend.check_model()
        generator.warm_up()
        answer = generator.answer(super_bowl)
    finally:
        generator.close()
    assert answer.template == TEMPLATE_SERVER and answer.text
    assert 0 < answer.ttft_s <= answer.total_s
    assert 1 <= answer.generated_tokens <= 32
    assert answer.counters["token_counts"] in ("server usage", "stream chunks")
    assert answer.counters["base_url"].startswith(servers[0])


def test_served_paper_protocol_sends_the_reference_completion_prompt(servers, super_bowl):
    generator = Generator(served(servers[0]), GenerationConfig(protocol="paper", max_tokens=16, temperature=0.7))
    try:
        answer = generator.answer(super_bowl)
    finally:
        generator.close()
    assert answer.template == TEMPLATE_PAPER
    assert answer.prompt == paper_answer_prompt(super_bowl)
    assert answer.generated_tokens <= 16


def test_requests_are_spread_over_every_base_url_with_a_bound(servers, super_bowl):
    generator = Generator(served(servers, max_in_flight=1), GenerationConfig(max_tokens=8))
    questions = [replace(super_bowl, question_id=f"q{i}") for i in range(6)]
    try:
        assert generator.capacity == 2
        answers = list(_answers(generator, questions))
        per_url = generator.backend.requests_per_url
    finally:
        generator.close()
    assert sorted(a.question_id for a in answers) == sorted(q.question_id for q in questions)
    assert all(count >= 1 for count in per_url) and sum(per_url) == 6


def test_a_name_the_server_does_not_serve_is_refused(servers):
    generator = Generator(ModelConfig(id="x", base_url=servers[0], model="no-such-model"), GenerationConfig())
    try:
        with pytest.raises(BackendError, match="does not serve 'no-such-model'"):
            generator.backend.check_model()
    finally:
        generator.close()
