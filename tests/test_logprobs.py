"""Token log-probabilities and fixed-choice replies in the backend contract: the request's
checks, the merge of same-text alternatives, the choices grammar, the fake backend, the
OpenAI-compatible client against the scripted endpoint (read, streamed and whole; refused and
ignored); and, on the real tiny GGUF, in-process llama.cpp (one sequence and batched) and
llama.cpp's server with and without ``logits_all``."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from fake_endpoint import LOGPROBS_REFUSAL, FakeEndpoint, TokenReply
from raq.backends.base import MAX_LOGPROBS, Request, Sampling, merge_alternatives
from raq.backends.fake import FakeBackend, ScriptedReply
from raq.backends.llama_native import choices_grammar, gbnf_literal
from raq.backends.openai_http import OpenAIBackend, chat_alternatives, completion_alternatives
from raq.prompts import PAPER_TOOL

USER = [{"role": "user", "content": "Grade it: 0, 1 or 2?"}]
GRADES = TokenReply(["2"], [{"2": -0.1, "1": -2.5, "0": -4.0}])


# --- the request ---------------------------------------------------------------------------

def test_logprobs_are_checked() -> None:
    assert Request(prompt="p").logprobs == 0 and Request(prompt="p", logprobs=MAX_LOGPROBS).logprobs == 20
    for wrong in (-1, 21, True, 2.0):
        with pytest.raises(ValueError, match="logprobs must be an integer from 0 to 20"):
            Request(prompt="p", logprobs=wrong)


def test_choices_are_checked() -> None:
    request = Request.chat(USER, choices=["0", "1", "2"])
    assert request.choices == ("0", "1", "2") and Request(prompt="p").choices == ()
    for wrong, message in ((("A", ""), "non-empty"), (("A", "A"), "distinct"), ("AB", "not one string"),
                           (("A", 1), "non-empty string")):
        with pytest.raises(ValueError, match=message):
            Request(prompt="p", choices=wrong)
    with pytest.raises(ValueError, match="cannot be combined"):
        Request.chat(USER, choices=("A", "B"), schema={"type": "object"})
    with pytest.raises(ValueError, match="cannot be combined"):
        Request.chat(USER, choices=("A", "B"), tool=PAPER_TOOL)


def test_alternatives_with_the_same_text_are_merged() -> None:
    merged = merge_alternatives([("a", math.log(0.2)), ("b", math.log(0.3)), ("a", math.log(0.25)),
                                 ("c", math.log(0.1)), ("d", -math.inf), ("d", -math.inf)], 3)
    assert list(merged) == ["a", "b", "c"]  # most likely first, cut to 3
    assert merged["a"] == pytest.approx(math.log(0.45)) and merged["b"] == pytest.approx(math.log(0.3))
    assert merge_alternatives([("d", -math.inf), ("d", -math.inf)], 5) == {"d": -math.inf}
    assert merge_alternatives([], 5) == {}


def test_the_choices_grammar_escapes_every_choice() -> None:
    assert choices_grammar(("0", "1", "2")) == 'root ::= "0" | "1" | "2"'
    assert gbnf_literal('say "hi"') == '"say \\"hi\\""'
    assert gbnf_literal("a\\b") == '"a\\\\b"'
    assert gbnf_literal("x\ny\t\x7f") == '"x\\x0Ay\\x09\\x7F"'
    assert gbnf_literal("Grüße") == '"Grüße"'


# --- the fake backend ----------------------------------------------------------------------

def test_fake_gives_every_word_a_certain_logprob_when_asked() -> None:
    backend = FakeBackend(["one two three", "one two three", "one two three"])
    assert backend.complete(Request(prompt="p", logprobs=5)).top_logprobs == [{"one": 0.0}, {"two": 0.0},
                                                                           {"three": 0.0}]
    assert backend.complete(Request(prompt="p")).top_logprobs == []  # not asked for
    cut = backend.complete(Request(prompt="p", logprobs=1, max_tokens=2))
    assert cut.text == "one two" and cut.top_logprobs == [{"one": 0.0}, {"two": 0.0}]


def test_fake_returns_scripted_logprobs() -> None:
    scripted = ScriptedReply("2", [{"2": -0.1, "1": -2.4}])
    backend = FakeBackend([scripted, scripted, lambda request: ScriptedReply(request.prompt or "", [{"x": -1.0}])])
    completion = backend.complete(Request(prompt="p", logprobs=2))
    assert completion.text == "2" and completion.top_logprobs == [{"2": -0.1, "1": -2.4}]
    assert backend.complete(Request(prompt="p")).top_logprobs == []
    assert backend.complete(Request(prompt="x", logprobs=1)).top_logprobs == [{"x": -1.0}]
    completion.top_logprobs[0]["2"] = 0.0
    assert scripted.top_logprobs[0]["2"] == -0.1  # the completion holds a copy


def test_fake_answers_a_choices_request_with_its_first_choice() -> None:
    backend = FakeBackend()
    assert backend.complete(Request.chat(USER, choices=("B", "A"))).text == "B"


# --- the OpenAI-compatible client ----------------------------------------------------------

def test_served_chat_logprobs_are_read_whole_first_then_streamed() -> None:
    later = TokenReply(["1", "."], [{"1": -0.2, "2": -1.9, " 1": -3.0}, {".": -0.01, "!": -5.0}])
    with FakeEndpoint([GRADES, later], model="m") as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "m")
        first = backend.complete(Request.chat(USER, logprobs=2, max_tokens=4))
        second = backend.complete(Request.chat(USER, logprobs=2, max_tokens=4))
        backend.close()
    probe, streamed = endpoint.requests
    assert "stream" not in probe and probe["logprobs"] is True and probe["top_logprobs"] == 2
    assert streamed["stream"] is True and streamed["top_logprobs"] == 2
    assert first.text == "2" and first.top_logprobs == [{"2": -0.1, "1": -2.5}]
    assert second.text == "1." and second.top_logprobs == [{"1": -0.2, "2": -1.9}, {".": -0.01, "!": -5.0}]
    assert backend.send_logprobs is True and backend.info()["logprobs_served"] is True


def test_served_completion_logprobs_are_read() -> None:
    reply = TokenReply([" Paris", " it"], [{" Paris": -0.3, " Lyon": -2.0}, {" it": -1.0, " is": -1.1}])
    with FakeEndpoint([reply, reply], model="m") as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "m")
        whole, streamed = (backend.complete(Request(prompt="The capital is", logprobs=2)) for _ in range(2))
        backend.close()
    assert [r["logprobs"] for r in endpoint.requests] == [2, 2] and endpoint.requests[1]["stream"] is True
    assert whole.top_logprobs == streamed.top_logprobs == reply.top_logprobs
    assert whole.text == streamed.text == " Paris it"


def test_same_text_alternatives_of_a_server_are_merged_and_cut() -> None:
    def top(token: str, p: float) -> SimpleNamespace:
        return SimpleNamespace(token=token, logprob=math.log(p))

    chat = SimpleNamespace(content=[
        SimpleNamespace(token="A", logprob=math.log(0.5), top_logprobs=[top("A", 0.5), top("\ufffd", 0.1),
                                                                        top("\ufffd", 0.15), top("B", 0.2)]),
        SimpleNamespace(token="C", logprob=math.log(0.9), top_logprobs=[])])  # its own token only
    merged = chat_alternatives(chat, 2)
    assert merged[0] == pytest.approx({"A": math.log(0.5), "\ufffd": math.log(0.25)}) and list(merged[0])[0] == "A"
    assert merged[1] == pytest.approx({"C": math.log(0.9)})
    assert chat_alternatives(None, 2) == [] and chat_alternatives(SimpleNamespace(content=None), 2) == []
    completion = SimpleNamespace(top_logprobs=[{"x": -0.1, "y": -3.0, "z": -2.0}, None])
    assert completion_alternatives(completion, 2) == [{"x": -0.1, "z": -2.0}, {}]


def test_a_refusal_of_logprobs_is_found_at_once_and_they_are_asked_no_more(
        caplog: pytest.LogCaptureFixture) -> None:
    with FakeEndpoint(["2", "1", "0"], model="m", refuse_logprobs=True) as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "m")
        with caplog.at_level(logging.INFO, logger="raq.backends.openai_http"):
            replies = [backend.complete(Request.chat(USER, logprobs=5)) for _ in range(3)]
        backend.close()
    assert [c.text for c in replies] == ["2", "1", "0"] and all(c.top_logprobs == [] for c in replies)
    assert "logprobs" in endpoint.requests[0] and all("logprobs" not in r for r in endpoint.requests[1:])
    assert len(endpoint.requests) == 4 and all(r["stream"] for r in endpoint.requests[1:])  # the 500: not retried
    assert caplog.text.count("does not give logprobs") == 1 and LOGPROBS_REFUSAL in caplog.text
    assert backend.send_logprobs is False and backend.info()["logprobs_served"] is False


def test_a_stream_broken_by_a_logprobs_refusal_is_asked_again_without_them() -> None:
    with FakeEndpoint(["served"], model="m", refuse_logprobs=True) as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "m")
        backend.send_logprobs = True  # as if another base URL of the backend had given them
        completion = backend.complete(Request(prompt="p", logprobs=3))
        backend.close()
    assert completion.text == "served" and completion.top_logprobs == []
    assert [r["stream"] for r in endpoint.requests] == [True, True] and "logprobs" not in endpoint.requests[1]
    assert backend.send_logprobs is False


def test_a_server_that_ignores_logprobs_is_asked_for_them_no_more(caplog: pytest.LogCaptureFixture) -> None:
    with FakeEndpoint(["2", "1"], model="m", give_logprobs=False) as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "m")
        with caplog.at_level(logging.INFO, logger="raq.backends.openai_http"):
            replies = [backend.complete(Request.chat(USER, logprobs=5)) for _ in range(2)]
        backend.close()
    assert [c.text for c in replies] == ["2", "1"] and all(c.top_logprobs == [] for c in replies)
    assert "logprobs" not in endpoint.requests[1] and "its reply had none" in caplog.text


def test_a_failed_probe_is_repeated_with_the_clients_retries() -> None:
    with FakeEndpoint([503, GRADES], model="m") as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "m")
        completion = backend.complete(Request.chat(USER, logprobs=3))
        backend.close()
    assert completion.text == "2" and list(completion.top_logprobs[0]) == ["2", "1", "0"]
    assert len(endpoint.requests) == 2 and backend.send_logprobs is True


def test_a_tool_call_reads_logprobs_from_the_whole_reply() -> None:
    with FakeEndpoint([GRADES], model="m") as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "m")
        completion = backend.complete(Request.chat(USER, tool=PAPER_TOOL, logprobs=1))
        backend.close()
    assert endpoint.requests[0]["tools"] == [PAPER_TOOL] and endpoint.requests[0]["top_logprobs"] == 1
    assert completion.top_logprobs == [{"2": -0.1}]


def test_choices_send_no_constraint_to_a_server() -> None:
    with FakeEndpoint(["maybe"], model="m") as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "m")
        completion = backend.complete(Request.chat(USER, choices=("0", "1", "2")))
        backend.close()
    request = endpoint.requests[0]
    assert completion.text == "maybe"  # not constrained: the caller parses the reply
    assert not {"choices", "grammar", "response_format", "logprobs"} & set(request) and request["stream"] is True


# --- in-process llama.cpp on a real GGUF ---------------------------------------------------

@pytest.fixture(scope="module")
def smol():
    from conftest import demo_model
    from raq.backends.llama import LlamaBackend

    backend = LlamaBackend(demo_model("smollm2-135m-instruct"), n_ctx=512, n_batch=64, n_threads=1, seed=7)
    yield backend
    backend.close()


COLOUR = [{"role": "user", "content": "Name one colour."}]


def assert_normalised(top_logprobs: list[dict[str, float]], text: str) -> None:
    """Every step's alternatives are log-probabilities of at most one in all, most likely
    first; the most likely ones, joined, are the greedy text."""
    for alternatives in top_logprobs:
        values = list(alternatives.values())
        assert all(v <= 0.0 for v in values) and values == sorted(values, reverse=True)
        assert sum(math.exp(v) for v in values) <= 1.0 + 1e-9
    assert "".join(next(iter(a)) for a in top_logprobs) == text


@pytest.mark.integration
def test_in_process_logprobs_are_normalised_and_the_greedy_token_is_the_most_likely(smol) -> None:
    completion = smol.complete(Request.chat(COLOUR, max_tokens=6, logprobs=20))
    assert completion.finish_reason == "length" and len(completion.top_logprobs) == completion.generated_tokens == 6
    assert all(len(a) <= 20 for a in completion.top_logprobs) and len(completion.top_logprobs[0]) >= 15
    assert_normalised(completion.top_logprobs, completion.text)
    plain = smol.complete(Request.chat(COLOUR, max_tokens=6))
    assert plain.top_logprobs == [] and plain.text == completion.text  # reading them changes nothing
    again = smol.complete(Request.chat(COLOUR, max_tokens=6, logprobs=20))
    assert again.top_logprobs == completion.top_logprobs  # greedy: the same, call after call
    short = smol.complete(Request.chat([{"role": "user", "content": "Name one colour. One word."}], max_tokens=40,
                                       logprobs=3))
    assert short.finish_reason == "stop" and len(short.top_logprobs) == short.generated_tokens  # no dict for EOS


@pytest.mark.integration
def test_in_process_choices_constrain_the_reply(smol) -> None:
    question = [{"role": "user", "content": "Is the sky green? Answer 0 (no), 1 (unsure) or 2 (yes)."}]
    completion = smol.complete(Request.chat(question, choices=("0", "1", "2"), max_tokens=4, logprobs=5))
    assert completion.text in ("0", "1", "2") and completion.finish_reason == "stop"
    assert len(completion.top_logprobs) == completion.generated_tokens == 1  # raw: not limited to the choices
    odd = ('the "first" one', "the second\\one", "None of them")
    for seed in range(3):
        sampled = smol.complete(Request.chat(COLOUR, choices=odd, max_tokens=12, seed=seed,
                                             sampling=Sampling(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0)))
        assert sampled.text in odd and sampled.finish_reason == "stop"


@pytest.mark.integration
def test_a_one_token_choice_ends_without_reading_the_end_of_generation(smol) -> None:
    question = [{"role": "user", "content": "Is the sky green? Answer 0 (no), 1 (unsure) or 2 (yes)."}]
    choices = ("0", "1", "2")
    completion = smol.complete(Request.chat(question, choices=choices, max_tokens=4, logprobs=20))
    assert completion.text in choices and completion.finish_reason == "stop" and completion.generated_tokens == 1
    # no llama_decode after the prompt: llama.cpp's eval counters stay at their floor (it reports at least 1 run)
    assert completion.counters["eval_ms"] == 0.0 and completion.counters["eval_tokens"] <= 1
    ranked = [text for text in completion.top_logprobs[0] if text in choices]
    assert ranked and completion.text == ranked[0]  # the greedy pick among the choices, as with the end read


@pytest.mark.integration
def test_a_choice_that_a_longer_choice_extends_is_read_on(smol) -> None:
    question = [{"role": "user", "content": "What is 6 + 6? Reply with the number only."}]
    completion = smol.complete(Request.chat(question, choices=("1", "12"), max_tokens=4))
    assert completion.text in ("1", "12") and completion.finish_reason == "stop"
    assert completion.counters["eval_ms"] > 0.0  # after "1" the next step was decoded to tell "1" from "12"


@pytest.mark.integration
def test_batched_choices_end_without_a_step_of_new_tokens(smol) -> None:
    from conftest import demo_model
    from raq.backends.llama import LlamaBackend

    questions = ["Is the sky green? Answer 0 (no), 1 (unsure) or 2 (yes).", "Is water wet? Answer 0, 1 or 2."]
    requests = [Request.chat([{"role": "user", "content": q}], choices=("0", "1", "2"), max_tokens=4)
                for q in questions]
    backend = LlamaBackend(demo_model("smollm2-135m-instruct"), n_ctx=512, n_batch=64, n_threads=1, n_parallel=2)
    try:
        results = dict(backend.complete_many(requests))
    finally:
        backend.close()
    assert [results[i].text for i in range(2)] == [smol.complete(r).text for r in requests]
    assert all(c.finish_reason == "stop" and c.generated_tokens == 1 for c in results.values())
    assert results[0].counters["batch_generation_steps_tokens"] == 0  # every step read a prompt


@pytest.mark.integration
def test_batched_decoding_gives_logprobs_and_keeps_choices() -> None:
    from conftest import demo_model
    from raq.backends.llama import LlamaBackend

    backend = LlamaBackend(demo_model("smollm2-135m-instruct"), n_ctx=512, n_batch=64, n_threads=1, n_parallel=2)
    try:
        requests = [Request.chat(COLOUR, max_tokens=5, logprobs=4),
                    Request.chat(USER, choices=("0", "1", "2"), max_tokens=3, logprobs=2), Request(prompt="A, B,",
                                                                                               max_tokens=3)]
        results = dict(backend.complete_many(requests))
    finally:
        backend.close()
    assert results[0].counters["batched"] == 2 and len(results[0].top_logprobs) == 5
    assert_normalised(results[0].top_logprobs, results[0].text)
    assert results[1].text in ("0", "1", "2") and len(results[1].top_logprobs) == results[1].generated_tokens
    assert results[2].top_logprobs == []


# --- llama.cpp's server on a real GGUF -----------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("logits_all", [False, True], ids=["refuses", "serves"])
def test_a_real_llama_cpp_server_gives_logprobs_only_with_logits_all(smol, tmp_path: Path, logits_all: bool) -> None:
    from conftest import demo_model
    from raq.backends.local_server import LocalServerBackend

    backend = LocalServerBackend(demo_model("smollm2-135m-instruct"), "smol", n_ctx=512, n_threads=1,
                                 log_path=tmp_path / "server.log", logits_all=logits_all)
    try:
        first, second = (backend.complete(Request.chat(COLOUR, max_tokens=5, logprobs=3)) for _ in range(2))
        completion = backend.complete(Request(prompt="The sky is", max_tokens=4, logprobs=3))
        served = backend.http.send_logprobs
    finally:
        backend.close()
    assert first.text and first.text == second.text and completion.text
    assert served is logits_all
    if not logits_all:
        assert first.top_logprobs == second.top_logprobs == completion.top_logprobs == []
        return
    assert first.top_logprobs == second.top_logprobs and len(first.top_logprobs) == first.generated_tokens
    assert_normalised(first.top_logprobs, first.text)
    assert len(completion.top_logprobs) == completion.generated_tokens
    ours = smol.complete(Request.chat(COLOUR, max_tokens=5, logprobs=3))  # the same model in this process
    assert ours.text == first.text and ours.top_logprobs[0] == pytest.approx(first.top_logprobs[0], abs=0.05)
