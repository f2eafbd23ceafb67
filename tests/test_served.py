"""Generation through an OpenAI-compatible server: the scripted endpoint over real HTTP
(streaming, several base URLs, token counts, fallbacks, prompts too long, keys kept secret), and
llama.cpp's own server on 127.0.0.1 with a real GGUF."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import demo_model
from fake_endpoint import FakeEndpoint, prompt_text
from raq.backends.base import PromptTooLong, Request
from raq.backends.local_server import LocalServer, LocalServerBackend
from raq.backends.openai_http import OpenAIBackend
from raq.config import GenerationConfig, ModelConfig
from raq.errors import BackendError
from raq.generator import TEMPLATE_PAPER, TEMPLATE_SERVER, Generator
from raq.prompts import paper_answer_prompt
from raq.records import Question

KEY = "sk-served-secret-0123456789"


def served(urls: str | list[str], **changes: Any) -> ModelConfig:
    return ModelConfig(id="smol-served", base_url=urls, model="smol", **changes)


def generator_on(endpoints: list[FakeEndpoint], max_tokens: int = 32, max_in_flight: int = 2,
                 **generation: Any) -> Generator:
    urls = [e.base_url for e in endpoints]
    backend = OpenAIBackend(urls, "smol", KEY, max_in_flight=max_in_flight)
    return Generator(served(urls, max_in_flight=max_in_flight),
                     GenerationConfig(max_tokens=max_tokens, **generation), backend)


# --- the scripted endpoint -----------------------------------------------------------------

def test_a_served_chat_answer_is_streamed_and_counted_in_chunks(super_bowl: Question) -> None:
    with FakeEndpoint(["The Denver Broncos."], model="smol") as endpoint:
        generator = generator_on([endpoint])
        answer = generator.answer(super_bowl)
        generator.close()
    request = endpoint.requests[0]
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    assert request["model"] == "smol" and request["max_tokens"] == 32 and request["seed"] == 2024
    assert (request["top_k"], request["min_p"], request["repeat_penalty"]) == (40, 0.05, 1.0)
    assert super_bowl.context in request["messages"][1]["content"]
    assert answer.template == TEMPLATE_SERVER and answer.text == "The Denver Broncos."
    assert answer.prompt == Request.chat(request["messages"]).messages_json()
    assert 0 < answer.ttft_s <= answer.total_s
    assert answer.prompt_tokens is None and answer.prompt_tok_s is None  # the server reported no usage
    assert answer.generated_tokens == 5  # "The Denver Broncos." streamed in pieces of 4 characters
    assert answer.counters["token_counts"] == "stream chunks"
    assert answer.counters["base_url"].startswith(endpoint.base_url)
    assert answer.finish_reason == "stop"


def test_the_servers_usage_report_is_preferred_to_chunk_counts(super_bowl: Question) -> None:
    with FakeEndpoint(["Denver Broncos won it"], model="smol", usage=True) as endpoint:
        generator = generator_on([endpoint])
        answer = generator.answer(super_bowl)
        generator.close()
    assert answer.counters["token_counts"] == "server usage"
    assert answer.generated_tokens == 4  # the usage report's words, not the 6 chunks
    assert answer.prompt_tokens == len(prompt_text(endpoint.requests[0]).split())
    assert answer.prompt_tok_s == pytest.approx(answer.prompt_tokens / answer.ttft_s)


def test_served_paper_protocol_sends_the_reference_completion_prompt(super_bowl: Question) -> None:
    with FakeEndpoint(["Denver Broncos"], model="smol") as endpoint:
        generator = generator_on([endpoint], max_tokens=16, protocol="paper", temperature=0.7)
        answer = generator.answer(super_bowl)
        generator.close()
    request = endpoint.requests[0]
    assert "messages" not in request and request["prompt"] == paper_answer_prompt(super_bowl)
    assert request["temperature"] == 0.7 and request["max_tokens"] == 16
    assert answer.template == TEMPLATE_PAPER and answer.prompt == paper_answer_prompt(super_bowl)
    assert answer.text == "Denver Broncos" and answer.notes == []


class InFlight:
    """A reply that takes a while and records how many requests were in progress at once."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds, self.now, self.most = seconds, 0, 0
        self.lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> str:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1
        return "answer " + request["messages"][1]["content"].split("Question: ")[1]


def test_requests_are_spread_over_every_base_url_with_a_bound(super_bowl: Question) -> None:
    first, second = InFlight(), InFlight()
    questions = [replace(super_bowl, question_id=f"q{i}", question=f"question {i}?") for i in range(6)]
    with FakeEndpoint(model="smol", default=first) as a, FakeEndpoint(model="smol", default=second) as b:
        generator = generator_on([a, b], max_in_flight=1)
        assert generator.capacity == 2
        answers = list(generator.answer_many(questions))
        per_url = generator.backend.requests_per_url
        generator.close()
    assert sorted(a.question_id for a in answers) == sorted(q.question_id for q in questions)
    assert all(a.text == f"answer question {a.question_id[1:]}?" for a in answers)  # each its own reply
    assert all(count >= 1 for count in per_url) and sum(per_url) == 6
    assert first.most == 1 and second.most == 1  # max_in_flight per base URL


def test_complete_many_keeps_capacity_requests_in_flight_and_yields_as_they_finish() -> None:
    def slow_first(request: dict[str, Any]) -> str:
        text = prompt_text(request)
        time.sleep(0.4 if text == "p0" else 0.01)
        return f"done {text}"

    with FakeEndpoint(model="smol", default=slow_first) as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "smol", max_in_flight=3)
        results = list(backend.complete_many([Request(prompt=f"p{i}") for i in range(5)]))
        backend.close()
    assert sorted(index for index, _ in results) == [0, 1, 2, 3, 4]
    assert all(completion.text == f"done p{index}" for index, completion in results)
    assert results[-1][0] == 0  # the slow one finished last; the others did not wait for it


def test_a_server_that_refuses_llama_cpp_sampling_fields_gets_them_no_more(super_bowl: Question) -> None:
    with FakeEndpoint(["Denver Broncos", "Broncos"], model="smol", refuse_extras=True) as endpoint:
        generator = generator_on([endpoint])
        first = generator.answer(super_bowl)
        second = generator.answer(super_bowl)
        generator.close()
    assert [r.get("top_k") for r in endpoint.requests] == [40, None, None]
    assert (first.text, second.text) == ("Denver Broncos", "Broncos")
    assert generator.backend.send_extras is False


def test_structured_output_falls_back_from_json_schema_to_text() -> None:
    schema = {"type": "object", "properties": {"ranking": {"type": "array"}}}
    with FakeEndpoint(['{"ranking": ["B", "A"]}'], refuse_structured=True) as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "fake-judge")
        completion = backend.complete(Request.chat([{"role": "user", "content": "rank"}], schema=schema))
        assert backend.complete(Request.chat([{"role": "user", "content": "again"}], schema=schema)).text
        backend.close()
    assert endpoint.requests[0]["response_format"]["type"] == "json_schema"
    assert endpoint.requests[0]["response_format"]["json_schema"]["schema"] == schema
    assert all("response_format" not in r for r in endpoint.requests[1:])
    assert completion.text == '{"ranking": ["B", "A"]}' and backend.structured == "text"


def test_a_json_object_server_gets_the_schema_inside_response_format() -> None:
    schema = {"type": "object"}
    with FakeEndpoint(["{}"]) as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "fake-judge", structured="json_object")
        backend.complete(Request.chat([{"role": "user", "content": "x"}], schema=schema))
        backend.close()
    assert endpoint.requests[0]["response_format"] == {"type": "json_object", "schema": schema}


def long_question(question: Question) -> Question:
    return replace(question, context="Filler sentence about nothing. " * 60 + question.context
                   + " More filler here." * 60)


def test_a_prompt_the_server_refuses_as_too_long_is_cut_around_the_answer(super_bowl: Question) -> None:
    question = long_question(super_bowl)
    with FakeEndpoint(["Denver Broncos"], model="smol", max_prompt_chars=1500) as endpoint:
        generator = generator_on([endpoint])
        answer = generator.answer(question)
        generator.close()
    sent = [prompt_text(r) for r in endpoint.requests]
    assert len(sent[0]) > 1500 and len(sent[-1]) <= 1500
    assert all(len(b) <= len(a) for a, b in zip(sent, sent[1:])) and len(set(map(len, sent))) >= 3  # cut twice
    assert answer.text == "Denver Broncos" and "Denver Broncos" in answer.prompt
    assert any(n.startswith("context cut to") and "server refused the full prompt" in n for n in answer.notes)


def test_skip_mode_records_a_skipped_answer_when_the_server_refuses_the_prompt(super_bowl: Question) -> None:
    with FakeEndpoint(model="smol", max_prompt_chars=1500) as endpoint:
        generator = generator_on([endpoint], long_context="skip")
        answer = generator.answer(long_question(super_bowl))
        generator.close()
    assert answer.finish_reason == "skipped" and answer.text == ""
    assert answer.notes == ["skipped: the server refused the prompt as too long"]


def test_a_prompt_that_never_fits_raises_prompt_too_long(super_bowl: Question) -> None:
    with FakeEndpoint(model="smol", max_prompt_chars=10) as endpoint:
        generator = generator_on([endpoint])
        with pytest.raises(PromptTooLong, match=super_bowl.question_id):
            generator.answer(super_bowl)
        generator.close()


def test_a_structured_request_refused_as_too_long_keeps_structured_output() -> None:
    with FakeEndpoint(max_prompt_chars=5) as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "fake-judge")
        with pytest.raises(PromptTooLong, match="context"):
            backend.complete(Request.chat([{"role": "user", "content": "a long prompt"}], schema={"type": "object"}))
        backend.close()
    assert backend.structured == "json_schema" and len(endpoint.requests) == 1


def test_the_api_key_never_appears_in_an_error_message(super_bowl: Question) -> None:
    with FakeEndpoint([422], model="smol") as endpoint:
        endpoint.error_message = f"request from key {KEY} is malformed"
        generator = generator_on([endpoint])
        with pytest.raises(BackendError) as caught:
            generator.answer(super_bowl)
        generator.close()
    assert endpoint.keys_seen[-1] == KEY  # the key was sent ...
    message = str(caught.value)
    assert KEY not in message and KEY[:8] not in message and "***" in message  # ... and never shown
    assert endpoint.base_url in message and "'smol'" in message


def test_a_refused_key_while_answering_is_an_error_without_the_key(super_bowl: Question) -> None:
    with FakeEndpoint(model="smol", api_key="sk-the-right-one") as endpoint:
        generator = generator_on([endpoint])
        with pytest.raises(BackendError, match="failed for 'smol'") as caught:
            generator.answer(super_bowl)
        generator.close()
    assert "Incorrect API key" in str(caught.value) and KEY not in str(caught.value)


# --- a real llama.cpp server ---------------------------------------------------------------

@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two llama.cpp servers of the same small model, as a tiny cluster."""
    path = demo_model("smollm2-135m-instruct")
    log = tmp_path_factory.mktemp("servers")
    with LocalServer(path, "smol", n_ctx=1024, n_threads=1, log_path=log / "a.log") as first, \
            LocalServer(path, "smol", n_ctx=1024, n_threads=1, log_path=log / "b.log") as second:
        yield [first.base_url, second.base_url]


def real_generator(urls: str | list[str], max_in_flight: int = 2, **generation: Any) -> Generator:
    backend = OpenAIBackend([urls] if isinstance(urls, str) else urls, "smol", max_in_flight=max_in_flight)
    return Generator(served(urls, max_in_flight=max_in_flight), GenerationConfig(**generation), backend)


@pytest.mark.integration
def test_a_real_served_chat_answer_is_streamed_and_timed(servers: list[str], super_bowl: Question) -> None:
    generator = real_generator(servers[0], max_tokens=32)
    try:
        generator.backend.check()
        generator.warm_up()
        answer = generator.answer(super_bowl)
    finally:
        generator.close()
    assert answer.template == TEMPLATE_SERVER and answer.text
    assert 0 < answer.ttft_s <= answer.total_s
    assert 1 <= answer.generated_tokens <= 32
    assert answer.counters["token_counts"] in ("server usage", "stream chunks")
    assert answer.counters["base_url"].startswith(servers[0])


@pytest.mark.integration
def test_real_served_paper_protocol_sends_the_reference_prompt(servers: list[str], super_bowl: Question) -> None:
    generator = real_generator(servers[0], protocol="paper", max_tokens=16, temperature=0.7)
    try:
        answer = generator.answer(super_bowl)
    finally:
        generator.close()
    assert answer.template == TEMPLATE_PAPER
    assert answer.prompt == paper_answer_prompt(super_bowl)
    assert answer.generated_tokens <= 16


@pytest.mark.integration
def test_real_requests_are_spread_over_every_base_url(servers: list[str], super_bowl: Question) -> None:
    generator = real_generator(servers, max_in_flight=1, max_tokens=8)
    questions = [replace(super_bowl, question_id=f"q{i}") for i in range(6)]
    try:
        assert generator.capacity == 2
        answers = list(generator.answer_many(questions))
        per_url = generator.backend.requests_per_url
    finally:
        generator.close()
    assert sorted(a.question_id for a in answers) == sorted(q.question_id for q in questions)
    assert all(count >= 1 for count in per_url) and sum(per_url) == 6


@pytest.mark.integration
def test_a_name_the_real_server_does_not_serve_is_refused(servers: list[str]) -> None:
    backend = OpenAIBackend([servers[0]], "no-such-model")
    try:
        with pytest.raises(BackendError, match="does not serve 'no-such-model'"):
            backend.check()
    finally:
        backend.close()


@pytest.mark.integration
def test_a_local_server_backend_serves_a_real_gguf(tmp_path: Path, super_bowl: Question) -> None:
    backend = LocalServerBackend(demo_model("smollm2-135m-instruct"), "smol", n_ctx=1024, n_threads=1,
                                 log_path=tmp_path / "server.log")
    try:
        generator = Generator(ModelConfig(id="smol", gguf="smollm2-135m-instruct"), GenerationConfig(max_tokens=8),
                              backend)
        answer = generator.answer(super_bowl)
    finally:
        backend.close()
    assert answer.template == TEMPLATE_SERVER and answer.generated_tokens <= 8
    assert backend.server.process is None
