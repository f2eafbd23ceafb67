"""The batched throughput mode (raq.batched) against the single-sequence path, on SmolLM2.

One thread per context: these tests check answers, not speed, and a single thread is not
slowed down by other jobs on a busy machine the way two spinning threads are."""

from __future__ import annotations

import pytest

from raq.batched import BatchedContextTooSmall, BatchedGenerator
from raq.llama_native import stop_cut
from raq.llama_backend import PromptTooLong, Sampling

GREEDY = Sampling(temperature=0.0)


def test_stop_cut_waits_for_the_answer_to_begin():
    assert stop_cut(b"\n\nParis\nmore", ("\n",)) == len("\n\nParis")
    assert stop_cut(b"  \n", ("\n",)) is None
    assert stop_cut(b"a, b. c", (".", ",")) == 1
    assert stop_cut(b"abc", ()) is None


@pytest.fixture(scope="module")
def smol():
    from conftest import demo_model

    from raq.config import GenerationConfig, ModelConfig
    from raq.dataset import load_questions
    from raq.generator import Generator

    path = demo_model("smollm2-135m-instruct")
    generator = Generator(ModelConfig(id="smol", gguf=str(path)),
                          GenerationConfig(max_tokens=24, n_threads=1, n_ctx=1024), path)
    batched = BatchedGenerator(generator.backend, n_parallel=3)
    # the four shortest paragraphs of a sample keep prompt evaluation (most of the time) short
    questions = sorted(load_questions("squad-v1.1-dev", n=40, seed=1), key=lambda q: len(q.context))[:4]
    yield generator, batched, questions
    batched.close()
    generator.close()


@pytest.mark.integration
def test_batched_greedy_answers_match_single_sequence(smol):
    generator, batched, questions = smol
    built = [generator.build_prompt(q) for q in questions]
    prompts, stops, special = [b[0] for b in built], built[0][1], built[0][2]
    # 4 prompts on 3 slots: a sequence joins when another one finishes
    out = batched.complete_many(prompts, max_tokens=24, sampling=generator.sampling, stop=stops, special=special)
    ref = [generator.backend.complete(p, max_tokens=24, sampling=generator.sampling, stop=stops, special=special)
           for p in prompts]
    same = sum(a.text == b.text for a, b in zip(out, ref))
    assert same >= len(prompts) - 1, [(a.text, b.text) for a, b in zip(out, ref)]
    for prompt, c, r in zip(prompts, out, ref):
        assert c.prompt_tokens == len(generator.backend.tokenize(prompt, special=special)) == r.prompt_tokens
        assert c.counters["batched"] == 3
        assert c.counters["batch_answers"] == len(prompts)
        assert "eval_ms" not in c.counters  # batched figures never carry single-sequence counter names
        assert c.counters["shared_prefix_tokens"] >= 32  # the chat template's system prompt, at least
        assert c.counters["shared_prefix_tokens"] % 32 == 0  # aligned to llama.cpp's row groups
        assert 0 < c.ttft_s <= c.total_s <= c.counters["batch_wall_s"]
        assert 1 <= c.generated_tokens <= 24
    assert out[0].counters["batch_peak_parallel"] == 3
    # a second call with the same prompts reuses the cached prefix and gives the same answers
    again = batched.complete_many(prompts[:1], max_tokens=24, sampling=generator.sampling, stop=stops,
                                  special=special)
    assert again[0].text == out[0].text
    assert again[0].counters["prefix_reused_tokens"] >= out[0].counters["shared_prefix_tokens"]


@pytest.mark.integration
def test_stop_strings_and_max_tokens_per_sequence(smol):
    generator, batched, _ = smol
    backend = generator.backend
    prompts = ["Numbers: 1, 2, 3, 4, 5,", "Fruits: apple, banana, cherry,", "Days: Monday, Tuesday,",
               "Letters: a, b, c, d,"]
    limits = [1, 3, 20, 6]
    out = batched.complete_many(prompts, max_tokens=limits, sampling=GREEDY)
    for prompt, limit, c in zip(prompts, limits, out):
        ref = backend.complete(prompt, max_tokens=limit, sampling=GREEDY)
        assert c.generated_tokens <= limit
        assert (c.text, c.generated_tokens, c.finish_reason) == (ref.text, ref.generated_tokens, ref.finish_reason)
    assert out[0].generated_tokens == 1 and out[0].finish_reason == "length"
    stops = (",",)
    out = batched.complete_many(prompts, max_tokens=20, sampling=GREEDY, stop=stops)
    for prompt, c in zip(prompts, out):
        ref = backend.complete(prompt, max_tokens=20, sampling=GREEDY, stop=stops)
        assert "," not in c.text
        assert (c.text, c.generated_tokens, c.finish_reason) == (ref.text, ref.generated_tokens, ref.finish_reason)
    assert sum(c.finish_reason == "stop" for c in out) >= 3


@pytest.mark.integration
def test_context_budget_is_checked(smol):
    generator, batched, _ = smol
    long_prompt = "word " * 1200  # more than the 1024-token context of one sequence
    with pytest.raises(PromptTooLong):
        batched.complete_many(["Hello", long_prompt], max_tokens=4, sampling=GREEDY)
    small = BatchedGenerator(generator.backend, n_parallel=2, n_ctx=256, kv_unified=True)
    try:
        with pytest.raises(BatchedContextTooSmall):
            small.complete_many(["Hi " * 200, "Yo " * 200], max_tokens=100, sampling=GREEDY)
        # fits one at a time only: the second sequence waits for the first one's cells
        out = small.complete_many(["Hi " * 90, "Yo " * 90], max_tokens=60, sampling=GREEDY)
        assert out[0].counters["batch_peak_parallel"] == 1
        assert all(c.generated_tokens >= 1 for c in out)
    finally:
        small.close()


@pytest.mark.integration
def test_answer_many_labels_batched_answers(smol):
    from raq.batched import answer_many

    generator, batched, questions = smol
    answers = answer_many(generator, questions[:2], batched=batched)
    assert [a.question_id for a in answers] == [q.question_id for q in questions[:2]]
    for a in answers:
        assert a.model_id == "smol" and a.text
        assert a.counters["batched"] == 3
        assert any("batched decoding" in note for note in a.notes)


@pytest.mark.integration
def test_questions_about_one_context_share_its_prefix(smol):
    import dataclasses

    from raq.batched import answer_many

    generator, batched, questions = smol
    base = questions[0]
    asks = ["What is this text about?", "Name one thing the text mentions.", base.question]
    same_context = [dataclasses.replace(base, question_id=f"{base.question_id}-{i}", question=ask)
                    for i, ask in enumerate(asks)]
    mixed = [*same_context, questions[1], questions[2]]
    answers = answer_many(generator, mixed, batched=batched)
    assert [a.question_id for a in answers] == [q.question_id for q in mixed]
    context_tokens = len(generator.backend.tokenize(base.context, special=False))
    shared = [a.counters["shared_prefix_tokens"] for a in answers]
    # the context's questions shared the instructions and (nearly) the whole context; the two
    # lone questions shared the instructions only
    assert all(s >= context_tokens - 40 for s in shared[:3]) and all(s < context_tokens for s in shared[3:])
    for question, answer in zip(mixed, answers):
        single = generator.answer(question)
        assert (answer.text, answer.finish_reason) == (single.text, single.finish_reason)
        assert answer.decoding == "batched x3" and single.decoding == "single"
