"""The backend contract without models: Request validation, the scripted FakeBackend and its
factory, the OpenAI-compatible client's checks against the scripted endpoint, and which backend
the factory opens for a config."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from fake_endpoint import FakeEndpoint
from raq.backends.base import Backend, Completion, PromptTooLong, Request, Sampling, complete_each, prompt_tokens_read
from raq.backends.factory import BackendFactory, api_key_from_env, remote_judge, served_contestant
from raq.backends.fake import FakeBackend, FakeBackends, default_reply
from raq.backends.openai_http import NO_KEY, OpenAIBackend, short_error
from raq.config import GenerationConfig, JudgeConfig, ModelConfig
from raq.errors import BackendError, ConfigError, redact
from raq.prompts import PAPER_TOOL, ranking_schema
from study_fakes import stub_gguf

UNREACHABLE = "http://127.0.0.1:9/v1"
USER = [{"role": "user", "content": "What is it? Tell me now"}]


# --- Request -------------------------------------------------------------------------------

def test_a_request_has_exactly_one_of_messages_or_prompt() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Request()
    with pytest.raises(ValueError, match="exactly one"):
        Request(messages=tuple(USER), prompt="x")
    with pytest.raises(ValueError, match="max_tokens must be at least 1"):
        Request(prompt="x", max_tokens=0)


def test_a_chat_request_holds_copies_of_its_messages() -> None:
    messages = [{"role": "user", "content": "Grüße"}]
    request = Request.chat(messages, max_tokens=5, sampling=Sampling(temperature=0.5), stop=("\n",))
    messages[0]["content"] = "changed"
    assert request.is_chat and request.messages == ({"role": "user", "content": "Grüße"},)
    assert request.messages_json() == '[{"role": "user", "content": "Grüße"}]'  # not ASCII-escaped
    assert (request.max_tokens, request.sampling.temperature, request.stop) == (5, 0.5, ("\n",))
    assert not Request(prompt="p").is_chat and Request(prompt="p").messages_json() == "[]"


# --- FakeBackend ---------------------------------------------------------------------------

def test_fake_replies_come_in_turn_then_the_default() -> None:
    backend = FakeBackend(["first", lambda r: f"for {r.prompt}", ValueError("scripted")])
    assert backend.complete(Request(prompt="a")).text == "first"
    assert backend.complete(Request(prompt="b")).text == "for b"
    with pytest.raises(ValueError, match="scripted"):
        backend.complete(Request(prompt="c"))
    assert backend.complete(Request(prompt="one two three four")).text == "two three four"  # the default
    assert [r.prompt for r in backend.requests] == ["a", "b", "c", "one two three four"]


def test_fake_counts_words_and_reports_timings_without_sleeping() -> None:
    backend = FakeBackend(["w1 w2 w3 w4 w5"], prompt_s_per_token=0.5, s_per_token=2.0, name="n")
    completion = backend.complete(Request(prompt="p1 p2 p3 p4", max_tokens=3))
    assert completion == Completion(text="w1 w2 w3", prompt_tokens=4, generated_tokens=3, ttft_s=2.0, total_s=6.0,
                                    finish_reason="length", counters={"backend": "n"})


def test_fake_keeps_the_reply_inside_the_context() -> None:
    backend = FakeBackend(["a b c d e f g h"], n_ctx=8)
    completion = backend.complete(Request(prompt="p1 p2 p3 p4 p5", max_tokens=50))
    assert completion.text == "a b c" and completion.finish_reason == "length"
    with pytest.raises(PromptTooLong, match="8"):
        backend.complete(Request(prompt="x " * 8))
    assert len(backend.requests) == 1  # a prompt that does not fit is refused before it is taken


def test_fake_renders_chats_with_a_template_of_its_own() -> None:
    backend = FakeBackend()
    request = Request.chat([{"role": "system", "content": "S"}, *USER])
    assert backend.render(request) == "<|system|>\nS\n<|user|>\nWhat is it? Tell me now\n<|assistant|>\n"
    assert backend.count_tokens(request) == len(backend.render(request).split())
    assert backend.render(Request(prompt="plain")) == "plain"


def test_the_default_reply_fits_each_kind_of_request() -> None:
    ranking = Request.chat(USER, schema=ranking_schema(["A", "B", "C"]))
    assert json.loads(default_reply(ranking)) == {"ranking": ["A", "B", "C"]}
    assert default_reply(Request.chat(USER, schema={"type": "object"})) == "{}"
    assert json.loads(default_reply(Request.chat(USER, tool=PAPER_TOOL))) == {"rank": "1,2,3"}
    assert default_reply(Request.chat(USER)) == "Tell me now"


def test_fake_complete_many_info_and_close() -> None:
    backend = FakeBackend(["x", "y"], capacity=3, n_ctx=None)
    assert isinstance(backend, Backend)
    assert [(i, c.text) for i, c in backend.complete_many([Request(prompt="1"), Request(prompt="2")])] == \
        [(0, "x"), (1, "y")]
    assert [(i, c.text) for i, c in complete_each(backend, [Request(prompt="a b")])] == [(0, "a b")]
    assert backend.info() == {"backend": "fake", "name": "fake", "n_ctx": None, "capacity": 3}
    backend.close()
    assert backend.closed


def test_fake_backends_open_one_fake_per_contestant_and_judge(tmp_path: Path) -> None:
    model = ModelConfig(id="m1", gguf="a.gguf")
    judge = JudgeConfig(id="j1", gguf="j.gguf")
    factory = FakeBackends(judge=lambda j: FakeBackend(["scripted"], name=j))
    contestant = factory.contestant(model, GenerationConfig(), None)
    judged = factory.judge(judge, None, tmp_path / "log")
    assert factory.opened == {"m1": contestant, "judge:j1": judged}
    assert contestant.name == "m1" and judged.complete(Request(prompt="x")).text == "scripted"


# --- the OpenAI-compatible client ----------------------------------------------------------

def test_a_client_needs_a_base_url_and_a_known_structured_mode() -> None:
    with pytest.raises(BackendError, match="no base URL"):
        OpenAIBackend([], "m")
    with pytest.raises(ValueError, match="structured"):
        OpenAIBackend([UNREACHABLE], "m", structured="xml")


def test_check_names_an_unreachable_url() -> None:
    backend = OpenAIBackend(["http://127.0.0.1:9/v1"], "m")
    with pytest.raises(BackendError, match=r"http://127\.0\.0\.1:9/v1/? cannot be reached"):
        backend.check()
    backend.close()


def test_check_names_a_refused_key_without_showing_it() -> None:
    key = "sk-not-the-right-key-42"
    with FakeEndpoint(model="m", api_key="sk-right") as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "m", key)
        with pytest.raises(BackendError, match="refused the API key") as caught:
            backend.check()
        backend.close()
    assert endpoint.keys_seen == [key]
    assert key not in str(caught.value) and key[:8] not in str(caught.value) and "***" in str(caught.value)


def test_check_names_a_model_the_server_does_not_serve() -> None:
    with FakeEndpoint(model="served-one") as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "another")
        with pytest.raises(BackendError, match=r"does not serve 'another' \(it serves \['served-one'\]\)"):
            backend.check()
        OpenAIBackend([endpoint.base_url], "served-one").check()  # the served name passes


def test_check_takes_a_server_that_lists_no_models_at_its_word(caplog: pytest.LogCaptureFixture) -> None:
    with FakeEndpoint(model="m", list_models=False) as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "whatever")
        with caplog.at_level(logging.INFO, logger="raq.backends.openai_http"):
            backend.check()
    assert "does not list its models" in caplog.text and "using whatever as given" in caplog.text


def test_check_goes_through_every_base_url() -> None:
    with FakeEndpoint(model="m") as endpoint:
        backend = OpenAIBackend([endpoint.base_url, UNREACHABLE], "m", max_in_flight=3)
        assert backend.capacity == 6
        with pytest.raises(BackendError, match="127.0.0.1:9"):
            backend.check()
    info = backend.info()
    assert info == {"backend": "openai-compatible", "base_urls": [endpoint.base_url, UNREACHABLE], "model": "m",
                    "capacity": 6, "structured_output": "json_schema", "logprobs_served": None}


def test_a_tool_request_is_not_streamed_and_reads_the_reply() -> None:
    with FakeEndpoint(['{"rank": "2,1"}'], model="m") as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "m")
        completion = backend.complete(Request.chat(USER, tool=PAPER_TOOL))
    request = endpoint.requests[0]
    assert "stream" not in request and request["tools"] == [PAPER_TOOL]
    assert request["tool_choice"] == {"type": "function", "function": {"name": "return_rank"}}
    assert completion.text == '{"rank": "2,1"}' and completion.prompt_tokens == 1
    assert completion.counters["token_counts"] == "server usage" and completion.ttft_s == completion.total_s


def completion_of(prompt_tokens: int | None, **counters: object) -> Completion:
    return Completion(text="x", prompt_tokens=prompt_tokens, generated_tokens=1, ttft_s=0.1, total_s=0.1,
                      finish_reason="stop", counters=dict(counters))


def test_the_prompt_tokens_read_are_llama_cpps_count_else_the_prompt_less_what_a_server_cached() -> None:
    assert prompt_tokens_read(completion_of(40, prompt_eval_tokens=7, prompt_reused_tokens=33)) == 7
    assert prompt_tokens_read(completion_of(40, prompt_eval_tokens=7, prompt_cached_tokens=10)) == 7  # in-process wins
    assert prompt_tokens_read(completion_of(40, prompt_cached_tokens=32)) == 8
    assert prompt_tokens_read(completion_of(40, prompt_cached_tokens=0)) == 40
    assert prompt_tokens_read(completion_of(40, token_counts="server usage")) is None  # the server did not say
    assert prompt_tokens_read(completion_of(None, prompt_cached_tokens=32)) is None  # nor how long the prompt was
    assert prompt_tokens_read(completion_of(12, backend="fake")) is None


def test_the_prompt_tokens_a_server_cached_are_recorded_when_it_reports_them() -> None:
    with FakeEndpoint(["it is so", '{"rank": "1"}'], model="m", usage=True, cached_tokens=1) as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "m")
        streamed = backend.complete(Request.chat(USER))
        whole = backend.complete(Request.chat(USER, tool=PAPER_TOOL))  # not streamed
    assert streamed.counters["prompt_cached_tokens"] == 1 and streamed.prompt_tokens == 6  # the words of USER
    assert prompt_tokens_read(streamed) == 5
    assert whole.counters["prompt_cached_tokens"] == 1 and prompt_tokens_read(whole) == 0
    with FakeEndpoint(["it is so"], model="m", usage=True) as endpoint:
        plain = OpenAIBackend([endpoint.base_url], "m").complete(Request.chat(USER))
    assert plain.prompt_tokens == 6 and "prompt_cached_tokens" not in plain.counters
    assert prompt_tokens_read(plain) is None


def test_stop_strings_and_sampling_are_sent() -> None:
    with FakeEndpoint(["ok"], model="m") as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "m")
        backend.complete(Request(prompt="p", stop=("\n", "END"), seed=5,
                                 sampling=Sampling(temperature=0.2, top_p=0.5, top_k=3, min_p=0.1, repeat_penalty=1.2)))
    request = endpoint.requests[0]
    assert request["stop"] == ["\n", "END"] and request["seed"] == 5 and request["prompt"] == "p"
    assert (request["temperature"], request["top_p"], request["top_k"], request["min_p"],
            request["repeat_penalty"]) == (0.2, 0.5, 3, 0.1, 1.2)


def test_short_errors_are_one_line_bounded_and_masked() -> None:
    secret = "sk-abcdefgh-123456"
    message = short_error(RuntimeError(f"line one\nkey {secret} and {'x' * 400}"), secret)
    assert "\n" not in message and len(message) <= 300 and secret not in message and "***" in message
    assert short_error(RuntimeError("")) == "RuntimeError"
    assert redact("short key abc", "abc") == "short key abc"  # too short to be masked safely
    assert redact(f"placeholder {NO_KEY}", NO_KEY) == f"placeholder {NO_KEY}"


# --- the factory ---------------------------------------------------------------------------

def test_api_keys_come_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert api_key_from_env(None, "model 'm'") == NO_KEY
    monkeypatch.setenv("RAQ_FAST_KEY", "sk-from-env")
    assert api_key_from_env("RAQ_FAST_KEY", "model 'm'") == "sk-from-env"
    monkeypatch.delenv("RAQ_FAST_KEY")
    with pytest.raises(ConfigError, match="judge 'j': environment variable RAQ_FAST_KEY is not set"):
        api_key_from_env("RAQ_FAST_KEY", "judge 'j'")


def test_clients_take_their_settings_from_the_config() -> None:
    model = ModelConfig(id="m", base_url=[UNREACHABLE, "http://127.0.0.1:10/v1"], model="name", max_in_flight=3)
    client = served_contestant(model)
    assert client.base_urls == model.base_urls and client.model == "name" and client.capacity == 6
    judge = remote_judge(JudgeConfig(base_url=UNREACHABLE, model="jm", max_in_flight=2))
    assert judge.base_urls == [UNREACHABLE] and judge.model == "jm" and judge.capacity == 2


def test_the_factory_opens_served_models_checked() -> None:
    factory = BackendFactory()
    with FakeEndpoint(model="served") as endpoint:
        backend = factory.contestant(ModelConfig(id="m", base_url=endpoint.base_url, model="served"),
                                     GenerationConfig(), None)
        assert isinstance(backend, OpenAIBackend) and backend.model == "served"
        judge = factory.judge(JudgeConfig(base_url=endpoint.base_url, model="served"), None, Path("unused.log"))
        assert isinstance(judge, OpenAIBackend)
        with pytest.raises(BackendError, match="does not serve 'absent'"):
            factory.contestant(ModelConfig(id="m", base_url=endpoint.base_url, model="absent"), GenerationConfig(),
                               None)
    assert endpoint.requests == []  # checking lists models; it asks for no completion


def test_the_factory_needs_a_path_for_a_gguf(tmp_path: Path) -> None:
    factory = BackendFactory()
    with pytest.raises(ValueError, match="model 'm': a GGUF path is needed"):
        factory.contestant(ModelConfig(id="m", gguf="x.gguf"), GenerationConfig(), None)
    with pytest.raises(ValueError, match="judge 'j': a GGUF path is needed"):
        factory.judge(JudgeConfig(id="j", gguf="x.gguf"), None, tmp_path / "log")


@pytest.mark.parametrize("kind", ["contestant", "in-process judge"])
def test_the_factory_loads_a_gguf_in_process_with_llama_cpp(kind: str, tmp_path: Path) -> None:
    stub = Path(stub_gguf(tmp_path / "stub.gguf"))  # the magic only: llama.cpp refuses it
    factory = BackendFactory()
    with pytest.raises(BackendError, match="llama.cpp could not load"):
        if kind == "contestant":
            factory.contestant(ModelConfig(id="m", gguf=str(stub)), GenerationConfig(n_ctx=256), stub)
        else:
            factory.judge(JudgeConfig(id="j", gguf=str(stub), runtime="in-process"), stub, tmp_path / "log")
    assert not (tmp_path / "log").exists()  # no server was started


def test_the_factory_passes_flash_attention_to_every_local_runtime(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import raq.backends.llama as llama
    import raq.backends.local_server as local_server

    opened: list[tuple[str, dict[str, object]]] = []

    def recorder(name: str) -> Callable[..., FakeBackend]:
        def open_backend(*args: object, **kwargs: object) -> FakeBackend:
            opened.append((name, kwargs))
            return FakeBackend(name=name)

        return open_backend

    monkeypatch.setattr(llama, "LlamaBackend", recorder("in-process"))
    monkeypatch.setattr(local_server, "LocalServerBackend", recorder("server"))
    factory, path = BackendFactory(), tmp_path / "m.gguf"
    for flash in (False, True):
        factory.contestant(ModelConfig(id="m", gguf=str(path)), GenerationConfig(flash_attn=flash), path)
        factory.judge(JudgeConfig(id="j", gguf=str(path), runtime="in-process", flash_attn=flash), path,
                      tmp_path / "log")
        factory.judge(JudgeConfig(id="j", gguf=str(path), flash_attn=flash), path, tmp_path / "log")
    assert [(name, kwargs["flash_attn"]) for name, kwargs in opened] == [
        ("in-process", False), ("in-process", False), ("server", False),
        ("in-process", True), ("in-process", True), ("server", True)]


def test_complete_many_on_one_slot_runs_in_order_and_stops_when_dropped() -> None:
    with FakeEndpoint(model="m", default=lambda r: f"re {r['prompt']}") as endpoint:
        single = OpenAIBackend([endpoint.base_url], "m", max_in_flight=1)
        assert [(i, c.text) for i, c in single.complete_many([Request(prompt="a"), Request(prompt="b")])] == \
            [(0, "re a"), (1, "re b")]
        several = OpenAIBackend([endpoint.base_url], "m", max_in_flight=2)
        results = several.complete_many([Request(prompt=f"p{i}") for i in range(8)])
        first = next(results)
        results.close()  # the caller stopped early (an interrupt): what was not started is cancelled
        started = [r["prompt"] for r in endpoint.requests[2:]]
    assert first[1].text == f"re p{first[0]}" and f"p{first[0]}" in started
    assert set(started) <= {"p0", "p1"}  # at most the two in flight were sent (the second may be cancelled)
