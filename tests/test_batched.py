"""The batched throughput mode (raq.backends.llama_batched) against the single-sequence path, on
SmolLM2.

One thread per context: these tests check answers, not speed, and a single thread is not
slowed down by other jobs on a busy machine the way two spinning threads are."""

from __future__ import annotations

import dataclasses
import json

import pytest

from raq import prompts
from raq.backends.base import PromptTooLong, Request, Sampling
from raq.backends.llama import LlamaBackend
from raq.backends.llama_batched import BatchedContextTooSmall, BatchedDecoder
from raq.backends.llama_native import stop_cut

GREEDY = Sampling(temperature=0.0)


def test_stop_cut_waits_for_the_answer_to_begin():
    assert stop_cut(b"\n\nParis\nmore", ("\n",)) == len("\n\nParis")
    assert stop_cut(b"  \n", ("\n",)) is None
    assert stop_cut(b"a, b. c", (".", ",")) == 1
    assert stop_cut(b"abc", ()) is None


@pytest.fixture(scope="module")
def smol():
    from conftest import demo_model
    from raq.dataset import load_questions

    backend = LlamaBackend(demo_model("smollm2-135m-instruct"), n_ctx=1024, n_batch=512, n_threads=1, seed=2024,
                           n_parallel=3)
    # the four shortest paragraphs of a sample keep prompt evaluation (most of the time) short
    questions = sorted(load_questions("squad-v1.1-dev", n=40, seed=1), key=lambda q: len(q.context))[:4]
    yield backend, questions
    backend.close()


def answer_request(question, **settings) -> Request:
    return Request.chat(prompts.chat_answer_messages(question), **settings)


def batched(backend: LlamaBackend, requests: list[Request]):
    out = sorted(backend.complete_many(requests), key=lambda pair: pair[0])
    assert [i for i, _ in out] == list(range(len(requests)))
    return [c for _, c in out]


@pytest.mark.integration
def test_batched_greedy_answers_match_single_sequence(smol):
    backend, questions = smol
    assert backend.capacity == 3 and backend.info()["batched"] == 3
    requests = [answer_request(q, max_tokens=24) for q in questions]
    # 4 prompts on 3 slots: a sequence joins when another one finishes
    out = batched(backend, requests)
    ref = [backend.complete(r) for r in requests]
    same = sum(a.text == b.text for a, b in zip(out, ref))
    assert same >= len(requests) - 1, [(a.text, b.text) for a, b in zip(out, ref)]
    for request, c, r in zip(requests, out, ref):
        prompt = backend.render(request)
        assert c.prompt_tokens == len(backend.tokenize(prompt, special=True)) == r.prompt_tokens
        assert c.counters["batched"] == 3
        assert c.counters["batch_answers"] == len(requests)
        assert "eval_ms" not in c.counters  # batched figures never carry single-sequence counter names
        assert c.counters["shared_prefix_tokens"] >= 32  # the chat template's system prompt, at least
        assert c.counters["shared_prefix_tokens"] % 32 == 0  # aligned to llama.cpp's row groups
        assert 0 < c.ttft_s <= c.total_s <= c.counters["batch_wall_s"]
        assert 1 <= c.generated_tokens <= 24
    assert out[0].counters["batch_peak_parallel"] == 3
    # a second call with the same prompts reuses the cached prefix and gives the same answers
    again = batched(backend, requests[:1])
    assert again[0].text == out[0].text
    assert again[0].counters["prefix_reused_tokens"] >= out[0].counters["shared_prefix_tokens"]


@pytest.mark.integration
def test_stop_strings_and_max_tokens_per_sequence(smol):
    backend, _ = smol
    texts = ["Numbers: 1, 2, 3, 4, 5,", "Fruits: apple, banana, cherry,", "Days: Monday, Tuesday,",
             "Letters: a, b, c, d,"]
    limits = [1, 3, 20, 6]
    requests = [Request(prompt=t, max_tokens=limit) for t, limit in zip(texts, limits)]
    out = batched(backend, requests)
    for request, c in zip(requests, out):
        ref = backend.complete(request)
        assert c.generated_tokens <= request.max_tokens
        assert (c.text, c.generated_tokens, c.finish_reason) == (ref.text, ref.generated_tokens, ref.finish_reason)
    assert out[0].generated_tokens == 1 and out[0].finish_reason == "length"
    requests = [Request(prompt=t, max_tokens=20, stop=(",",)) for t in texts]
    out = batched(backend, requests)
    for request, c in zip(requests, out):
        ref = backend.complete(request)
        assert "," not in c.text
        assert (c.text, c.generated_tokens, c.finish_reason) == (ref.text, ref.generated_tokens, ref.finish_reason)
    assert sum(c.finish_reason == "stop" for c in out) >= 3


@pytest.mark.integration
def test_context_budget_is_checked(smol):
    backend, _ = smol
    long_prompt = "word " * 1200  # more than the 1024-token context of one sequence
    with pytest.raises(PromptTooLong):
        batched(backend, [Request(prompt="Hello", max_tokens=4), Request(prompt=long_prompt, max_tokens=4)])
    small = BatchedDecoder(backend, n_parallel=2, n_ctx=256, kv_unified=True)
    try:
        with pytest.raises(BatchedContextTooSmall):
            small.complete_many([Request(prompt="Hi " * 200, max_tokens=100),
                                 Request(prompt="Yo " * 200, max_tokens=100)])
        # fits one at a time only: the second sequence waits for the first one's cells
        out = small.complete_many([Request(prompt="Hi " * 90, max_tokens=60),
                                   Request(prompt="Yo " * 90, max_tokens=60)])
        assert out[0].counters["batch_peak_parallel"] == 1
        assert all(c.generated_tokens >= 1 for c in out)
        assert small.info() == {"batched": 2, "batched_n_ctx": small.n_ctx, "n_ctx_per_seq": 1024,
                                "batched_n_batch": 512}
    finally:
        small.close()


@pytest.mark.integration
def test_questions_about_one_context_share_its_prefix(smol):
    backend, questions = smol
    base = questions[0]
    asks = ["What is this text about?", "Name one thing the text mentions.", base.question]
    same_context = [dataclasses.replace(base, question_id=f"{base.question_id}-{i}", question=ask)
                    for i, ask in enumerate(asks)]
    requests = [answer_request(q, max_tokens=24) for q in same_context]
    out = batched(backend, requests)
    context_tokens = len(backend.tokenize(base.context, special=False))
    # the questions shared the instructions and (nearly) the whole context, which comes before
    # the question in every prompt; with other paragraphs in the call only the instructions
    assert all(c.counters["shared_prefix_tokens"] >= context_tokens - 40 for c in out)
    mixed = batched(backend, [*requests[:1], answer_request(questions[1], max_tokens=24)])
    assert all(c.counters["shared_prefix_tokens"] < context_tokens for c in mixed)
    for request, answer in zip(requests, out):
        single = backend.complete(request)
        assert (answer.text, answer.finish_reason) == (single.text, single.finish_reason)


@pytest.mark.integration
def test_batched_requests_keep_their_own_settings(smol, super_bowl):
    backend, questions = smol
    labels = ["A", "B", "C"]
    judge = Request.chat(prompts.judge_messages(super_bowl, ["Denver Broncos", "Carolina Panthers", "Denver"],
                                                labels, context_chars=300),
                         schema=prompts.ranking_schema(labels), max_tokens=48,
                         sampling=Sampling(temperature=0.0, repeat_penalty=1.1), seed=3)
    sampled = answer_request(questions[0], max_tokens=12, sampling=Sampling(temperature=0.8), seed=11)
    plain = answer_request(questions[1], max_tokens=12)
    out = batched(backend, [judge, sampled, plain])
    ranking = json.loads(out[0].text)["ranking"]
    assert len(ranking) == 3 and set(ranking) <= set(labels) and out[0].finish_reason == "stop"
    assert out[2].text == backend.complete(plain).text
    assert 1 <= out[1].generated_tokens <= 12
