"""LlamaBackend.complete (raq's low-level decoding loop) against llama-cpp-python's own
high-level ``Llama.generate`` on a real GGUF: same text, token counts, finish reasons and
llama.cpp counters, greedy and sampled."""

from __future__ import annotations

import pytest

from raq.llama_backend import Completion, LlamaBackend, Sampling
from raq.llama_native import stop_cut


def generate_reference(backend: LlamaBackend, prompt: str, *, max_tokens: int, sampling: Sampling,
                       stop: tuple[str, ...] = (), special: bool = False) -> Completion:
    """The same contract implemented on ``Llama.generate`` (llama-cpp-python's high-level API)."""
    llm, lib = backend._llm, backend._lib
    tokens = backend.tokenize(prompt, special=special)
    limit = min(max_tokens, backend.n_ctx - len(tokens))
    llm.reset()
    lib.llama_perf_context_reset(llm._ctx.ctx)
    generated: list[int] = []
    text_bytes = bytearray()
    finish, cut = "length", None
    for token in llm.generate(tokens, temp=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
                              min_p=sampling.min_p, repeat_penalty=sampling.repeat_penalty):
        if lib.llama_vocab_is_eog(llm._model.vocab, token):
            finish = "stop"
            break
        text_bytes += llm.detokenize([token], prev_tokens=tokens + generated)
        generated.append(token)
        if stop and (cut := stop_cut(text_bytes, stop)) is not None:
            finish = "stop"
            break
        if len(generated) >= limit:
            break
    text = text_bytes.decode("utf-8", errors="replace")
    perf = lib.llama_perf_context(llm._ctx.ctx)
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
    ("greedy, EOS", Sampling(temperature=0.0), dict(max_tokens=40), True),
    ("greedy, length", Sampling(temperature=0.0), dict(max_tokens=5), False),
    ("greedy, stop string", Sampling(temperature=0.0), dict(max_tokens=30, stop=(",",)), False),
    ("sampled with penalty", Sampling(temperature=0.7, repeat_penalty=1.1), dict(max_tokens=30), False),
    ("greedy with penalty", Sampling(temperature=0.0, repeat_penalty=1.1), dict(max_tokens=30), False),
]


@pytest.mark.integration
@pytest.mark.parametrize("name,sampling,args,chat", CASES, ids=[c[0] for c in CASES])
def test_complete_matches_llama_generate(smol, name, sampling, args, chat):
    if chat:
        prompt = smol.render_chat([{"role": "user", "content": "Name one colour. One word."}])
        args = {**args, "special": True}
    else:  # long enough for several n_batch chunks of the prompt
        prompt = "Fruits: " + ", ".join(["apple", "banana", "cherry", "date", "elderberry"] * 20) + ","
    ours = smol.complete(prompt, sampling=sampling, **args)
    ref = generate_reference(smol, prompt, sampling=sampling, **args)
    assert (ours.text, ours.generated_tokens, ours.finish_reason, ours.prompt_tokens) == \
        (ref.text, ref.generated_tokens, ref.finish_reason, ref.prompt_tokens)
    assert ours.counters["prompt_eval_tokens"] == ref.counters["prompt_eval_tokens"] == ours.prompt_tokens
    assert ours.counters["eval_tokens"] == ref.counters["eval_tokens"]
    assert ours.generated_tokens >= 1 and 0 < ours.ttft_s <= ours.total_s
    if name == "greedy, stop string":
        assert ours.finish_reason == "stop" and "," not in ours.text


@pytest.mark.integration
def test_repeated_calls_do_not_leak_state(smol):
    prompt = "The three primary colours are"
    first = smol.complete(prompt, max_tokens=12, sampling=Sampling(temperature=0.0))
    smol.complete("Something else entirely, to fill the cache with other tokens.", max_tokens=8,
                  sampling=Sampling(temperature=0.9))
    again = smol.complete(prompt, max_tokens=12, sampling=Sampling(temperature=0.0))
    assert again.text == first.text and again.counters["prompt_eval_tokens"] == first.prompt_tokens
