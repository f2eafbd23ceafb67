"""LlamaBackend.complete (raq's low-level decoding loop) against llama-cpp-python's own
high-level ``Llama.generate`` on a real GGUF: same text, token counts, finish reasons and
llama.cpp counters, greedy and sampled; and structured output (a JSON schema or a tool) against
``Llama.create_chat_completion``, the code llama-cpp-python's server runs for a chat request."""

from __future__ import annotations

import json

import pytest

from raq import prompts
from raq.backends.base import Backend, Completion, PromptTooLong, Request, Sampling
from raq.backends.llama import LlamaBackend
from raq.backends.llama_native import stop_cut

#: What llama-cpp-python's server samples with for a chat request that sets only the temperature
#: (its request model's defaults): a repeat penalty of 1.1 over the last 64 tokens.
SERVER_SAMPLING = Sampling(temperature=0.0, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.1)


def generate_reference(backend: LlamaBackend, request: Request) -> Completion:
    """The same contract implemented on ``Llama.generate`` (llama-cpp-python's high-level API)."""
    llm, lib, sampling = backend.llm, backend.lib, request.sampling
    tokens = backend.prompt_tokens(request)
    limit = min(request.max_tokens, backend.llm.n_ctx() - len(tokens))
    llm.reset()
    lib.llama_perf_context_reset(backend.ctx)
    generated: list[int] = []
    text_bytes = bytearray()
    finish, cut = "length", None
    for token in llm.generate(tokens, temp=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
                              min_p=sampling.min_p, repeat_penalty=sampling.repeat_penalty):
        if lib.llama_vocab_is_eog(backend.vocab, token):
            finish = "stop"
            break
        text_bytes += llm.detokenize([token], prev_tokens=tokens + generated)
        generated.append(token)
        if request.stop and (cut := stop_cut(text_bytes, request.stop)) is not None:
            finish = "stop"
            break
        if len(generated) >= limit:
            break
    text = text_bytes.decode("utf-8", errors="replace")
    perf = lib.llama_perf_context(backend.ctx)
    return Completion(text=text[:cut] if cut is not None else text, prompt_tokens=len(tokens),
                      generated_tokens=len(generated), ttft_s=0.0, total_s=0.0, finish_reason=finish,
                      counters={"prompt_eval_tokens": perf.n_p_eval, "eval_tokens": perf.n_eval})


@pytest.fixture(scope="module")
def smol():
    from conftest import demo_model

    backend = LlamaBackend(demo_model("smollm2-135m-instruct"), n_ctx=512, n_batch=64, n_threads=1, seed=7)
    yield backend
    backend.close()


CASES = [
    ("greedy, EOS", Sampling(temperature=0.0), {"max_tokens": 40}, True),
    ("greedy, length", Sampling(temperature=0.0), {"max_tokens": 5}, False),
    ("greedy, stop string", Sampling(temperature=0.0), {"max_tokens": 30, "stop": (",",)}, False),
    ("sampled with penalty", Sampling(temperature=0.7, repeat_penalty=1.1), {"max_tokens": 30}, False),
    ("greedy with penalty", Sampling(temperature=0.0, repeat_penalty=1.1), {"max_tokens": 30}, False),
]


@pytest.mark.integration
@pytest.mark.parametrize("name,sampling,args,chat", CASES, ids=[c[0] for c in CASES])
def test_complete_matches_llama_generate(smol, name, sampling, args, chat):
    if chat:
        request = Request.chat([{"role": "user", "content": "Name one colour. One word."}], sampling=sampling,
                               seed=smol.seed, **args)
    else:  # long enough for several n_batch chunks of the prompt
        prompt = "Fruits: " + ", ".join(["apple", "banana", "cherry", "date", "elderberry"] * 20) + ","
        request = Request(prompt=prompt, sampling=sampling, seed=smol.seed, **args)
    ours = smol.complete(request)
    ref = generate_reference(smol, request)
    assert (ours.text, ours.generated_tokens, ours.finish_reason, ours.prompt_tokens) == \
        (ref.text, ref.generated_tokens, ref.finish_reason, ref.prompt_tokens)
    assert ours.counters["prompt_eval_tokens"] == ref.counters["prompt_eval_tokens"] == ours.prompt_tokens
    assert ours.counters["eval_tokens"] == ref.counters["eval_tokens"]
    assert ours.generated_tokens >= 1 and 0 < ours.ttft_s <= ours.total_s
    if name == "greedy, stop string":
        assert ours.finish_reason == "stop" and "," not in ours.text


@pytest.mark.integration
def test_repeated_calls_do_not_leak_state(smol):
    request = Request(prompt="The three primary colours are", max_tokens=12)
    first = smol.complete(request)
    smol.complete(Request(prompt="Something else entirely, to fill the cache with other tokens.", max_tokens=8,
                          sampling=Sampling(temperature=0.9)))
    again = smol.complete(request)
    assert again.text == first.text and again.counters["prompt_eval_tokens"] == first.prompt_tokens


@pytest.mark.integration
def test_the_contract(smol):
    assert isinstance(smol, Backend)
    assert smol.capacity == 1 and smol.chat_template_source == "gguf" and smol.chat_template
    chat = Request.chat([{"role": "user", "content": "Hello"}])
    rendered = smol.render(chat)
    assert rendered.endswith("assistant\n") and "Hello" in rendered
    assert smol.count_tokens(chat) == len(smol.tokenize(rendered, special=True))
    plain = Request(prompt="<|im_start|>Hello")
    assert smol.render(plain) == plain.prompt
    assert smol.count_tokens(plain) == len(smol.tokenize(plain.prompt, special=False))
    assert smol.count_tokens(Request(prompt=plain.prompt, special=True)) < smol.count_tokens(plain)
    with pytest.raises(PromptTooLong):
        smol.complete(Request(prompt="word " * 600, max_tokens=4))
    out = list(smol.complete_many([Request(prompt="One, two,", max_tokens=3), Request(prompt="A, B,", max_tokens=2)]))
    assert [i for i, _ in out] == [0, 1] and [c.generated_tokens for _, c in out] == [3, 2]
    info = smol.info()
    assert info["backend"] == "llama.cpp in-process" and info["n_parallel"] == 1 and info["n_ctx"] == 512
    assert info["flash_attn"] is False and info["n_batch"] == info["n_ubatch"] == 64
    assert "batched" not in info


@pytest.mark.integration
def test_flash_attention_completes_requests_and_is_recorded():
    from conftest import demo_model

    backend = LlamaBackend(demo_model("smollm2-135m-instruct"), n_ctx=512, n_batch=64, n_threads=1, seed=7,
                           flash_attn=True, n_ubatch=32)
    try:
        completion = backend.complete(Request.chat([{"role": "user", "content": "Name one colour."}], max_tokens=6))
        info = backend.info()
    finally:
        backend.close()
    assert completion.text.strip() and 1 <= completion.generated_tokens <= 6
    assert completion.prompt_tokens == completion.counters["prompt_eval_tokens"]
    assert info["flash_attn"] is True and info["n_ubatch"] == 32 and info["n_batch"] == 64


def judge_request(super_bowl, **settings) -> tuple[list[dict[str, str]], Request]:
    labels = ["A", "B", "C"]
    messages = prompts.judge_messages(super_bowl, ["Denver Broncos", "Carolina Panthers", "the Broncos"], labels,
                                      context_chars=400)
    return messages, Request.chat(messages, schema=prompts.ranking_schema(labels), **settings)


@pytest.mark.integration
def test_schema_request_returns_json_valid_against_the_schema(smol, super_bowl):
    jsonschema = pytest.importorskip("jsonschema")
    messages, request = judge_request(super_bowl, max_tokens=64, sampling=SERVER_SAMPLING, seed=3)
    ours = smol.complete(request)
    assert ours.finish_reason == "stop", ours.text
    jsonschema.validate(json.loads(ours.text), request.schema)
    # what llama-cpp-python's server answers to the same chat request with that response_format
    ref = smol.llm.create_chat_completion(
        messages=messages, response_format={"type": "json_object", "schema": request.schema}, temperature=0.0,
        repeat_penalty=SERVER_SAMPLING.repeat_penalty, max_tokens=64, seed=3)
    assert ours.text == ref["choices"][0]["message"]["content"]
    # a prompt that does not ask for JSON still gets it; sampled decoding too
    haiku = Request.chat([{"role": "user", "content": "Write a haiku about the sea."}], schema=request.schema,
                         max_tokens=48, sampling=Sampling(temperature=0.8), seed=5)
    for completion in (smol.complete(haiku), smol.complete(Request.chat(haiku.messages, schema=request.schema,
                                                                        max_tokens=48))):
        assert completion.finish_reason == "stop", completion.text
        jsonschema.validate(json.loads(completion.text), request.schema)


@pytest.mark.integration
def test_tool_request_returns_the_function_arguments(smol):
    jsonschema = pytest.importorskip("jsonschema")
    labels = ["1", "2", "3"]
    messages = [{"role": "user", "content": prompts.paper_judge_prompt(
        "Denver Broncos", ["Denver Broncos", "Carolina Panthers", "the Broncos"], labels)}]
    request = Request.chat(messages, tool=prompts.PAPER_TOOL, max_tokens=64, sampling=SERVER_SAMPLING, seed=3)
    ours = smol.complete(request)
    assert ours.finish_reason == "stop", ours.text
    jsonschema.validate(json.loads(ours.text), prompts.PAPER_TOOL["function"]["parameters"])
    ref = smol.llm.create_chat_completion(
        messages=messages, tools=[prompts.PAPER_TOOL], temperature=0.0,
        tool_choice={"type": "function", "function": {"name": "return_rank"}},
        repeat_penalty=SERVER_SAMPLING.repeat_penalty, max_tokens=64, seed=3)
    assert ours.text == ref["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]


@pytest.mark.integration
def test_a_tool_is_shown_to_a_template_that_renders_tools():
    from conftest import demo_model

    backend = LlamaBackend(demo_model("qwen2.5-coder-0.5b-instruct"), n_ctx=256, n_batch=32, n_threads=1)
    try:
        messages = [{"role": "user", "content": "Rank them."}]
        assert "return_rank" in backend.render(Request.chat(messages, tool=prompts.PAPER_TOOL))
        assert "return_rank" not in backend.render(Request.chat(messages))
    finally:
        backend.close()


@pytest.mark.integration
def test_reusing_the_prompt_prefix_reads_only_the_new_part_and_gives_the_same_replies(smol, super_bowl):
    """A judge's orders of one question share most of their prompt: with ``reuse_prefix`` only
    the part after the shared tokens is read, and the replies equal those of a full read."""
    from conftest import demo_model

    shown = [["Denver Broncos", "Carolina Panthers", "the Broncos"],
             ["the Broncos", "Denver Broncos", "Carolina Panthers"]]
    requests = [Request.chat(prompts.judge_messages(super_bowl, texts, ["A", "B", "C"], context_chars=400),
                             schema=prompts.ranking_schema(["A", "B", "C"]), max_tokens=24) for texts in shown]
    reusing = LlamaBackend(demo_model("smollm2-135m-instruct"), n_ctx=512, n_batch=64, n_threads=1, seed=7,
                           reuse_prefix=True)
    try:
        first, second = (reusing.complete(request) for request in requests)
        third = reusing.complete(requests[1])  # the same prompt again: all but its last token kept
    finally:
        reusing.close()
    assert first.counters["prompt_reused_tokens"] == 0
    prompt_tokens = smol.count_tokens(requests[1])
    assert 0 < second.counters["prompt_reused_tokens"] < prompt_tokens
    assert second.counters["prompt_eval_tokens"] == prompt_tokens - second.counters["prompt_reused_tokens"]
    assert third.counters["prompt_reused_tokens"] == prompt_tokens - 1
    assert second.prompt_tokens == third.prompt_tokens == prompt_tokens  # counts are of the whole prompt
    assert [c.text for c in (first, second, third)] == [smol.complete(r).text for r in (*requests, requests[1])]
    assert "prompt_reused_tokens" not in smol.complete(requests[0]).counters


@pytest.mark.integration
def test_the_kv_cache_file_and_weights_sizes_are_recorded_as_llama_cpp_allocated_them(capfd):
    """SmolLM2 has no sliding-window layers: its KV cache is n_ctx x layers x KV heads x head size x
    2 (K and V) x 2 bytes (f16), once for the single context and once more for the batched one."""
    from conftest import demo_model
    from raq.backends import llama_native

    path = demo_model("smollm2-135m-instruct")
    single = LlamaBackend(path, n_ctx=512, n_batch=64, n_threads=1)
    lib, model = single.lib, single.model.model
    head_size = lib.llama_model_n_embd(model) // lib.llama_model_n_head(model)
    per_cell = lib.llama_model_n_layer(model) * lib.llama_model_n_head_kv(model) * head_size * 2 * 2
    info = single.info()
    single.close()
    assert info["kv_cache_mib"] == pytest.approx(512 * per_cell / 2**20)
    assert info["file_mib"] == pytest.approx(path.stat().st_size / 2**20, abs=0.1)
    assert 0.5 * info["file_mib"] < info["weights_mib"] <= info["file_mib"]

    batched = LlamaBackend(path, n_ctx=512, n_batch=64, n_threads=1, n_parallel=2)
    both = batched.info()
    batched.close()
    assert both["kv_cache_mib"] == pytest.approx((512 + both["batched_n_ctx"]) * per_cell / 2**20)
    assert not llama_native._capture  # the log goes back to llama-cpp-python's own callback
    capfd.readouterr()
    verbose = lib.Llama(model_path=str(path), n_ctx=256, n_batch=64, n_threads=1, verbose=True)
    verbose.close()
    assert "llama_kv_cache" in capfd.readouterr().err  # llama-cpp-python's own log callback is back
