#!/usr/bin/env python
"""How fast raq runs models next to llama.cpp itself, measured in ONE run on one machine.

For every model (the demo GGUFs by default), interleaved over ``--repetitions`` rounds:

* ``llama-bench``   llama.cpp's own benchmark, built from the llama.cpp sources vendored in the
                    installed llama-cpp-python version (``--build-llama-bench`` builds it into
                    ``benchmarks/.build``), run as ``-p P -n G -d 0,P -fa 0 -b 512 -ub 512 -t T``:
                    prompt speed (ppP), generation speed from an empty context (tgG) and after a
                    P-token prompt (tgG @ dP: the same positions raq generates at).
* ``native``        a loop over the low-level C API inside this process, on the same context raq
                    uses: one ``llama_decode`` of the P-token prompt, then G single-token decodes
                    with a native greedy sampler; speeds from llama.cpp's own perf counters.
                    (``--ctx-effect N``: also on a context of N cells, e.g. a study's 2048.)
* ``raq``           ``LlamaBackend.complete`` (raq's single-sequence path) on a P-token prompt with
                    ``max_tokens=G``; speeds as raq reports them (``make_answer``: prompt tokens /
                    time to first token, generated tokens after the first / the time after it).
* ``highlevel``     llama-cpp-python's high-level ``Llama.generate`` on the same prompt, timed the
                    same way (what a loop on the high-level API costs; raq's loop replaced it).

Then the batched throughput mode (``raq.backends.llama_batched.BatchedDecoder``) against ``LlamaBackend.complete``
on real SQuAD questions (``--batched-model``, 24 questions, ``max_tokens`` 64), in ABBA order:
answers per second, the speed-up, and the rate of answers identical to single-sequence greedy.

raq's context has llama-bench's size for ``tgG @ dP`` (P + G cells, ``--n-ctx`` to change):
llama.cpp generates more slowly on a larger context without flash attention (the V cache is
stored transposed, so every step reads rows strided by the context size), and that cost belongs
to llama.cpp, not to the loop around it; ``--ctx-effect`` measures it.

Every phase records wall time and resident memory (current and peak within the phase; the peak of
the ``llama-bench`` child process is polled from /proc). Timings on a shared machine are noisy:
compare the ratios, which are formed from figures measured in the same round.

    python benchmarks/bench_llama.py                       # all demo models present in models/
    python benchmarks/bench_llama.py --models qwen2.5-coder-0.5b-instruct --repetitions 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing

BUILD_DIR = ROOT / "benchmarks" / ".build" / "llama-bench"
LLAMA_BENCH = BUILD_DIR / "bin" / "llama-bench"
MODELS_DIR = ROOT / "models"
from raq.models import CATALOG, DEMO_MODELS  # noqa: E402  (after the sys.path line above)

DEMO = {name: CATALOG[name].filename for name in DEMO_MODELS}
BATCHED_DEFAULT = "qwen2.5-coder-0.5b-instruct"


# -- memory -------------------------------------------------------------------------------------

def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Phase:
    """Wall time and RSS of one phase: ``rss_mib`` at the end, ``peak_rss_mib`` within the phase
    (or since the process started, when the peak cannot be reset: then ``peak_is_process_max``)."""

    log: list[dict[str, Any]] = []

    def __init__(self, name: str, **tags: Any) -> None:
        self.name, self.tags = name, tags

    def __enter__(self) -> "Phase":
        self.reset = _reset_peak()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.t0
        rss, hwm = _status_kib("VmRSS"), _status_kib("VmHWM")
        if hwm is None:  # not Linux: the process maximum
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.record = {"phase": self.name, **self.tags, "wall_s": round(wall, 3),
                       "rss_mib": round(rss / 1024, 1) if rss else None,
                       "peak_rss_mib": round(hwm / 1024, 1), "peak_is_process_max": not self.reset}
        Phase.log.append(self.record)


# -- llama-bench ----------------------------------------------------------------------------------

def llama_cpp_source() -> Path | None:
    """The llama.cpp sources vendored in the installed llama-cpp-python's sdist, if unpacked."""
    import llama_cpp

    env = os.environ.get("LLAMA_CPP_SRC")
    candidates = [Path(env)] if env else []
    candidates.append(Path(tempfile.gettempdir()) / "lcp" / f"llama_cpp_python-{llama_cpp.__version__}"
                      / "vendor" / "llama.cpp")
    for path in candidates:
        if (path / "tools" / "llama-bench" / "llama-bench.cpp").exists():
            return path
    return None


def build_llama_bench(jobs: int) -> Path:
    """Configure and build only the ``llama-bench`` target (about 15-30 min on 2 busy cores)."""
    src = llama_cpp_source()
    if src is None:
        raise SystemExit("llama.cpp sources not found: `pip download --no-deps --no-binary :all: "
                         "llama-cpp-python==<installed version>`, unpack it under /tmp/lcp/, or set LLAMA_CPP_SRC "
                         "to its vendor/llama.cpp folder")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    # as scripts/setup.sh builds llama-cpp-python: no AMX kernels on x86-64 (they crash on some AMX machines)
    no_amx = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    flags = [f"-DCMAKE_C_FLAGS={no_amx}", f"-DCMAKE_CXX_FLAGS={no_amx}"] if platform.machine() == "x86_64" else []
    subprocess.run(["cmake", "-S", str(src), "-B", str(BUILD_DIR), *gen, *flags, "-DCMAKE_BUILD_TYPE=Release",
                    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON",
                    "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF"], check=True)
    subprocess.run(["cmake", "--build", str(BUILD_DIR), "--target", "llama-bench", "-j", str(jobs)], check=True)
    return LLAMA_BENCH


def run_llama_bench(model: Path, n_prompt: int, n_gen: int, threads: int, flash_attn: bool = False) -> dict[str, Any]:
    """One llama-bench run (its own warm-up, 1 repetition); speeds, and the child's peak RSS."""
    cmd = [str(LLAMA_BENCH), "-m", str(model), "-p", str(n_prompt), "-n", str(n_gen), "-d", f"0,{n_prompt}",
           "-t", str(threads), "-b", "512", "-ub", "512", "-fa", "1" if flash_attn else "0", "-r", "1", "-o", "json"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        # the child's own peak RSS: poll its VmHWM (rusage's ru_maxrss of a child also counts
        # this process's memory at fork time, so it cannot be used)
        peak_kib = 0
        while proc.poll() is None:
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kib = max(peak_kib, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"llama-bench failed ({proc.returncode}): {err.read().decode(errors='replace')[-2000:]}")
        rows = json.loads(out.read().decode())
    result: dict[str, Any] = {"wall_s": round(wall, 2), "peak_rss_mib": round(peak_kib / 1024, 1) or None}
    for row in rows:
        if row["n_prompt"] and not row["n_gen"]:
            key = f"pp{row['n_prompt']}" + (f"@d{row['n_depth']}" if row["n_depth"] else "")
        else:
            key = f"tg{row['n_gen']}" + (f"@d{row['n_depth']}" if row["n_depth"] else "")
        result[key] = row["avg_ts"]
    result["build_commit"] = rows[0].get("build_commit") if rows else None
    return result


# -- in-process measurements ----------------------------------------------------------------------

def exact_prompt(backend: Any, n_tokens: int) -> tuple[str, int]:
    """A plain-text prompt (counting numbers, so greedy decoding keeps going) of at most
    ``n_tokens`` tokens, as close as the tokenizer allows; returns it and its token count."""
    head = "Count upward from one, writing every number, separated by commas: 1"
    parts = [head]
    i = 1
    def count(text: str) -> int:
        return len(backend.tokenize(text, special=False))

    while count("".join(parts)) < n_tokens:
        i += 1
        parts.append(f", {i}")
    while count("".join(parts)) > n_tokens and len(parts) > 1:
        parts.pop()
    text = "".join(parts) + ","
    if count(text) > n_tokens:
        text = text[:-1]
    return text, count(text)


def native_loop(backend: Any, tokens: list[int], n_gen: int) -> dict[str, float]:
    """llama.cpp through the C API on raq's own context: prompt in one decode, then ``n_gen``
    single-token decodes with greedy sampling. Speeds from llama.cpp's perf counters (time inside
    llama_decode), and from the wall clock (with sampling and the ctypes calls)."""
    from raq.backends.base import Sampling
    from raq.backends.llama_native import NativeBatch, make_sampler

    llm, lib, ctx = backend.llm, backend.lib, backend.ctx
    llm.reset()
    lib.llama_memory_seq_rm(lib.llama_get_memory(ctx), -1, 0, -1)
    lib.llama_perf_context_reset(ctx)
    batch = NativeBatch(lib, len(tokens))
    sampler = make_sampler(lib, Sampling(temperature=0.0), 0, backend.n_vocab)
    sample_s = 0.0
    try:
        t0 = time.perf_counter()
        batch.add_run(tokens, 0, 0, last_logits=True)
        batch.decode(ctx)
        t1 = time.perf_counter()
        token = lib.llama_sampler_sample(sampler, ctx, -1)
        batch.clear()
        batch.add(token, 0, 0, True)
        c_batch = batch.batch
        c_batch.n_tokens = 1
        t2 = time.perf_counter()
        for i in range(n_gen):
            batch.token[0] = token
            batch.pos[0] = len(tokens) + i
            if lib.llama_decode(ctx, c_batch) != 0:
                raise RuntimeError("llama_decode failed")
            s0 = time.perf_counter()
            token = lib.llama_sampler_sample(sampler, ctx, -1)
            sample_s += time.perf_counter() - s0
        t3 = time.perf_counter()
    finally:
        lib.llama_sampler_free(sampler)
        batch.free()
    perf = lib.llama_perf_context(ctx)
    llm.reset()
    return {"prompt_tokens": perf.n_p_eval, "gen_tokens": perf.n_eval,
            "prompt_tok_s": perf.n_p_eval / perf.t_p_eval_ms * 1e3,
            "gen_tok_s": perf.n_eval / perf.t_eval_ms * 1e3,
            "prompt_tok_s_wall": len(tokens) / (t1 - t0),
            "gen_tok_s_wall": n_gen / (t3 - t2),
            "sample_ms_per_token": sample_s / n_gen * 1e3}


def raq_figures(completion: Any) -> dict[str, float | None]:
    """Speeds as raq reports them (``raq.generator.make_answer``), plus the share of the
    generation time spent inside llama_decode (llama.cpp's perf counters)."""
    gen_s = max(completion.total_s - completion.ttft_s, 0.0)
    after_first = completion.generated_tokens - 1
    c = completion.counters
    decode_ms = c.get("eval_ms", 0.0)
    return {"prompt_tokens": completion.prompt_tokens, "gen_tokens": completion.generated_tokens,
            "finish_reason": completion.finish_reason,
            "prompt_tok_s": completion.prompt_tokens / completion.ttft_s if completion.ttft_s > 0 else None,
            "gen_tok_s": after_first / gen_s if after_first > 0 and gen_s > 0 else None,
            "gen_tok_s_in_decode": c["eval_tokens"] / decode_ms * 1e3 if decode_ms else None,
            "prompt_tok_s_in_decode": (c["prompt_eval_tokens"] / c["prompt_eval_ms"] * 1e3
                                       if c.get("prompt_eval_ms") else None),
            "overhead_ms_per_token": ((gen_s * 1e3 - decode_ms) / after_first) if after_first > 0 else None}


def median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def highlevel_complete(backend: Any, prompt: str, max_tokens: int) -> Any:
    """Greedy generation through llama-cpp-python's ``Llama.generate``, timed like raq's loop."""
    from raq.backends.base import Completion

    llm, lib, ctx = backend.llm, backend.lib, backend.ctx
    tokens = backend.tokenize(prompt, special=False)
    llm.reset()
    lib.llama_perf_context_reset(ctx)
    generated: list[int] = []
    ttft = None
    start = time.perf_counter()
    for token in llm.generate(tokens, temp=0.0, repeat_penalty=1.0):
        if ttft is None:
            ttft = time.perf_counter() - start
        if lib.llama_vocab_is_eog(backend.vocab, token):
            break
        llm.detokenize([token], prev_tokens=tokens + generated)
        generated.append(token)
        if len(generated) >= max_tokens:
            break
    total = time.perf_counter() - start
    perf = lib.llama_perf_context(ctx)
    return Completion(text="", prompt_tokens=len(tokens), generated_tokens=len(generated),
                      ttft_s=ttft if ttft is not None else total, total_s=total, finish_reason="",
                      counters={"eval_ms": perf.t_eval_ms, "eval_tokens": perf.n_eval})


def bench_model(name: str, path: Path, args: argparse.Namespace, have_bench: bool) -> dict[str, Any]:
    from raq.backends.base import Request
    from raq.backends.llama import LlamaBackend

    with Phase("load", model=name):
        backend = LlamaBackend(path, n_ctx=args.n_ctx, n_batch=512, n_threads=args.threads, seed=0,
                               flash_attn=args.flash_attn)
    prompt, n_prompt = exact_prompt(backend, args.n_prompt)
    tokens = backend.tokenize(prompt, special=False)
    backend.complete(Request(prompt="The capital of France is", max_tokens=4))  # untimed warm-up (greedy)

    def do_bench() -> dict[str, Any]:
        with Phase("llama-bench", model=name) as ph:
            result = run_llama_bench(path, n_prompt, args.n_gen, backend.n_threads, args.flash_attn)
        ph.record["child_peak_rss_mib"] = result["peak_rss_mib"]
        return result

    def do_native() -> dict[str, Any]:
        with Phase("native", model=name):
            return native_loop(backend, tokens, args.n_gen)

    def do_raq() -> dict[str, Any]:
        with Phase("raq", model=name):
            return raq_figures(backend.complete(Request(prompt=prompt, max_tokens=args.n_gen)))

    def do_high() -> dict[str, Any]:
        with Phase("highlevel", model=name):
            return raq_figures(highlevel_complete(backend, prompt, args.n_gen))

    runners: dict[str, Callable[[], dict[str, Any]]] = {"native": do_native, "raq": do_raq, "highlevel": do_high}
    other = None
    if args.ctx_effect:
        with Phase("load", model=f"{name} n_ctx {args.ctx_effect}"):
            other = LlamaBackend(path, n_ctx=args.ctx_effect, n_batch=512, n_threads=args.threads, seed=0,
                                 flash_attn=args.flash_attn)
        native_loop(other, tokens, 4)  # untimed warm-up

        def do_other() -> dict[str, Any]:
            with Phase("native-ctx", model=name):
                return native_loop(other, tokens, args.n_gen)

        runners["native-ctx"] = do_other
    if have_bench:
        runners = {"llama-bench": do_bench, **runners}
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in runners}
    order = list(runners)
    for rep in range(args.repetitions):
        for key in order[rep % len(order):] + order[:rep % len(order)]:  # rotate the order each round
            samples[key].append(runners[key]())
        print(f"  {name}: round {rep + 1}/{args.repetitions} done", file=sys.stderr, flush=True)
    backend.close()
    if other is not None:
        other.close()

    tg_d = f"tg{args.n_gen}@d{n_prompt}"
    # per-round ratios (same round = same machine state), then their median
    per_round: dict[str, list[float | None]] = {}

    def add(key: str, a: float | None, b: float | None) -> None:
        per_round.setdefault(key, []).append(ratio(a, b))

    for r in range(args.repetitions):
        raq, high, nat = samples["raq"][r], samples["highlevel"][r], samples["native"][r]
        if have_bench:
            lb = samples["llama-bench"][r]
            add("raq_prompt_vs_llama_bench", raq["prompt_tok_s"], lb[f"pp{n_prompt}"])
            add("raq_gen_vs_llama_bench_tg_at_depth", raq["gen_tok_s"], lb[tg_d])
            add("raq_gen_vs_llama_bench_tg", raq["gen_tok_s"], lb[f"tg{args.n_gen}"])
            add("highlevel_gen_vs_llama_bench_tg_at_depth", high["gen_tok_s"], lb[tg_d])
            add("native_gen_vs_llama_bench_tg_at_depth", nat["gen_tok_s"], lb[tg_d])
        # raq's speed against the speed of its own llama_decode calls (llama.cpp's perf counters):
        # the same calls on the same context in the same seconds, so machine noise cancels
        add("raq_gen_vs_its_decode_calls", raq["gen_tok_s"], raq["gen_tok_s_in_decode"])
        add("raq_prompt_vs_its_decode_calls", raq["prompt_tok_s"], raq["prompt_tok_s_in_decode"])
        add("raq_prompt_vs_native", raq["prompt_tok_s"], nat["prompt_tok_s"])
        add("raq_gen_vs_native", raq["gen_tok_s"], nat["gen_tok_s"])
        add("highlevel_gen_vs_native", high["gen_tok_s"], nat["gen_tok_s"])
        add("raq_gen_vs_highlevel", raq["gen_tok_s"], high["gen_tok_s"])
        if other is not None:
            wide = samples["native-ctx"][r]
            add("native_ctx_effect_prompt", wide["prompt_tok_s"], nat["prompt_tok_s"])
            add("native_ctx_effect_gen", wide["gen_tok_s"], nat["gen_tok_s"])

    def med(key: str, field: str) -> float | None:
        return median([s.get(field) for s in samples[key]])

    summary = {"model": name, "path": str(path), "prompt_tokens": n_prompt, "gen_tokens": args.n_gen,
               "n_ctx": backend.n_ctx, "ctx_effect_n_ctx": other.n_ctx if other is not None else None,
               "raq_prompt_tok_s": med("raq", "prompt_tok_s"), "raq_gen_tok_s": med("raq", "gen_tok_s"),
               "raq_gen_tok_s_in_decode": med("raq", "gen_tok_s_in_decode"),
               "raq_overhead_ms_per_token": med("raq", "overhead_ms_per_token"),
               "highlevel_gen_tok_s": med("highlevel", "gen_tok_s"),
               "highlevel_overhead_ms_per_token": med("highlevel", "overhead_ms_per_token"),
               "native_prompt_tok_s": med("native", "prompt_tok_s"), "native_gen_tok_s": med("native", "gen_tok_s"),
               "native_gen_tok_s_wall": med("native", "gen_tok_s_wall"),
               "native_sample_ms_per_token": med("native", "sample_ms_per_token"),
               "raq_generated_tokens": [s["gen_tokens"] for s in samples["raq"]]}
    if other is not None:
        summary.update({"native_ctx_prompt_tok_s": med("native-ctx", "prompt_tok_s"),
                        "native_ctx_gen_tok_s": med("native-ctx", "gen_tok_s")})
    if have_bench:
        summary.update({"llama_bench_pp_tok_s": med("llama-bench", f"pp{n_prompt}"),
                        "llama_bench_tg_tok_s": med("llama-bench", f"tg{args.n_gen}"),
                        "llama_bench_tg_at_depth_tok_s": med("llama-bench", tg_d)})
    summary["ratios"] = {k: median(v) for k, v in per_round.items()}
    summary["ratio_rounds"] = per_round
    return {"summary": summary, "samples": samples}


# -- batched mode ---------------------------------------------------------------------------------

def batched_questions(args: argparse.Namespace) -> list[Any]:
    """``--questions`` SQuAD v1.1 dev questions: a seeded random sample (almost every question
    about a different paragraph), or, with ``--batched-sample shared-context``, the cluster sample
    a study draws with ``data.per_context: --parallel`` (random paragraphs, up to that many
    questions each; SQuAD asks about 5 per paragraph)."""
    from raq.dataset import load_questions

    per_context = 1 if args.batched_sample == "random" else args.parallel
    return load_questions("squad-v1.1-dev", n=args.questions, seed=1, per_context=per_context)


def batched_calls(questions: list[Any]) -> list[list[int]]:
    """The batched calls of a study's throughput mode: the questions about one context together in
    a call of their own, so that their shared prefix (the instructions and the whole context,
    which comes before the question in every prompt) is evaluated once; the lone questions in one
    call (sharing the instructions)."""
    by_context: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        by_context.setdefault(q.context, []).append(i)
    calls = [idxs for idxs in by_context.values() if len(idxs) > 1]
    lone = [idxs[0] for idxs in by_context.values() if len(idxs) == 1]
    return calls + [lone] if lone else calls


def bench_batched(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    from raq.backends.base import Request
    from raq.backends.llama import LlamaBackend
    from raq.backends.llama_batched import BatchedDecoder
    from raq.config import GenerationConfig
    from raq.prompts import chat_answer_messages

    questions = batched_questions(args)
    max_tokens = args.batched_max_tokens
    settings = GenerationConfig(max_tokens=max_tokens, n_threads=args.threads)  # a study's defaults
    with Phase("load", model="batched"):
        backend = LlamaBackend(path, n_ctx=settings.n_ctx, n_batch=settings.n_batch, n_threads=args.threads,
                               seed=settings.seed)
    requests = [Request.chat(chat_answer_messages(q), max_tokens=max_tokens, seed=settings.seed) for q in questions]
    prompts = [backend.render(r) for r in requests]
    groups = batched_calls(questions)
    with Phase("batched-setup", model="batched"):
        batched = BatchedDecoder(backend, n_parallel=args.parallel, kv_unified=args.kv_unified)
    warm_up = Request(prompt="The capital of France is", max_tokens=4)
    backend.complete(warm_up)
    batched.complete_many([warm_up] * 2)

    def single() -> tuple[float, list[Any]]:
        with Phase("single-sequence", model="batched"):
            t0 = time.perf_counter()
            out = [backend.complete(r) for r in requests]
            return time.perf_counter() - t0, out

    def multi() -> tuple[float, list[Any]]:
        with Phase("batched", model="batched"):
            t0 = time.perf_counter()
            out: list[Any] = [None] * len(requests)
            for idxs in groups:
                for i, completion in zip(idxs, batched.complete_many([requests[i] for i in idxs])):
                    out[i] = completion
            return time.perf_counter() - t0, out

    rounds = []
    for rep in range(args.batched_repetitions):
        first, second = (single, multi) if rep % 2 == 0 else (multi, single)  # ABBA
        a, b = first(), second()
        (ts, single_out), (tb, batch_out) = (a, b) if first is single else (b, a)
        same = [x.text.strip() == y.text.strip() for x, y in zip(single_out, batch_out)]
        calls = {(a.counters["batch_wall_s"], a.counters["batch_steps"]): a.counters for a in batch_out}.values()
        gen_steps_s = sum(c["batch_generation_steps_s"] for c in calls)
        gen_steps_tokens = sum(c["batch_generation_steps_tokens"] for c in calls)
        single_gen_s = sum(x.total_s - x.ttft_s for x in single_out)
        single_gen_tokens = sum(max(x.generated_tokens - 1, 0) for x in single_out)
        rounds.append({
            "single_wall_s": ts, "batched_wall_s": tb, "speedup": ts / tb,
            "single_answers_per_s": len(prompts) / ts, "batched_answers_per_s": len(prompts) / tb,
            "single_gen_tokens": sum(c.generated_tokens for c in single_out),
            "batched_gen_tokens": sum(c.generated_tokens for c in batch_out),
            "identical": sum(same), "n": len(same),
            "single_prompt_share": sum(x.ttft_s for x in single_out) / ts,
            # decode throughput alone: single = tokens after the first / time after the first token;
            # batched = tokens of the steps that carried no prompt tokens / their time
            "single_gen_tok_s": single_gen_tokens / single_gen_s if single_gen_s else None,
            "batched_gen_tok_s": gen_steps_tokens / gen_steps_s if gen_steps_s else None,
            "batched_calls": len(calls),
            "batched_prompt_steps_s": sum(c["batch_prompt_steps_s"] for c in calls),
            "batched_generation_steps_s": gen_steps_s,
            "prefix_eval_s": sum(c["prefix_eval_s"] for c in calls),
            "mean_prompt_tokens": statistics.mean(a.prompt_tokens for a in batch_out),
            "mean_shared_prefix_tokens": statistics.mean(a.counters["shared_prefix_tokens"] for a in batch_out),
            "differing": [{"question_id": questions[i].question_id, "single": single_out[i].text,
                           "batched": batch_out[i].text} for i, s in enumerate(same) if not s],
        })
        print(f"  batched: round {rep + 1}/{args.batched_repetitions}: speed-up {ts / tb:.2f}x, "
              f"identical {sum(same)}/{len(same)}", file=sys.stderr, flush=True)
    batched.close()
    backend.close()
    return {"model": str(path), "n_parallel": args.parallel, "kv_unified": args.kv_unified,
            "questions": len(prompts), "sample": args.batched_sample,
            "distinct_contexts": len({q.context for q in questions}), "max_tokens": max_tokens,
            "speedup": median([r["speedup"] for r in rounds]),
            "single_answers_per_s": median([r["single_answers_per_s"] for r in rounds]),
            "batched_answers_per_s": median([r["batched_answers_per_s"] for r in rounds]),
            "identical_rate": sum(r["identical"] for r in rounds) / sum(r["n"] for r in rounds),
            "single_prompt_share": median([r["single_prompt_share"] for r in rounds]),
            "gen_speedup": median([ratio(r["batched_gen_tok_s"], r["single_gen_tok_s"]) for r in rounds]),
            "rounds": rounds}


# -- main -----------------------------------------------------------------------------------------

def resolve(model: str) -> tuple[str, Path]:
    if model in DEMO:
        return model, MODELS_DIR / DEMO[model]
    path = Path(model)
    return path.stem, path


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help=f"demo names ({', '.join(DEMO)}) or .gguf paths "
                        "(default: every demo model present)")
    parser.add_argument("--repetitions", type=int, default=3, help="interleaved rounds per model (default 3)")
    parser.add_argument("--json", type=Path, help="write every figure and sample to this file")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores, as raq)")
    parser.add_argument("--n-prompt", type=int, default=512)
    parser.add_argument("--flash-attn", action="store_true", help="llama.cpp's flash attention on (llama-bench -fa 1 "
                                                                   "and raq's backend alike)")
    parser.add_argument("--n-gen", type=int, default=128)
    parser.add_argument("--n-ctx", type=int, default=None,
                        help="context of raq's model (default: P + G, the context llama-bench gives tg@dP)")
    parser.add_argument("--ctx-effect", type=int, default=None, metavar="N_CTX",
                        help="also run the native loop on a context of N_CTX cells (e.g. 2048, a study's): "
                             "what the context size alone costs llama.cpp")
    parser.add_argument("--build-llama-bench", action="store_true", help="build llama-bench if it is missing")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="build jobs")
    parser.add_argument("--no-llama-bench", action="store_true", help="only the in-process measurements")
    parser.add_argument("--batched-model", default=BATCHED_DEFAULT, help="model for the batched mode ('none' skips)")
    parser.add_argument("--parallel", type=int, default=4, help="sequences per batch (default 4)")
    parser.add_argument("--kv-unified", action="store_true", help="batched mode with one unified KV cache")
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--batched-max-tokens", type=int, default=64)
    parser.add_argument("--batched-repetitions", type=int, default=2)
    parser.add_argument("--batched-sample", choices=("random", "shared-context"), default="random",
                        help="random SQuAD questions, or --parallel questions about each of several paragraphs")
    args = parser.parse_args(argv)
    args.threads = args.threads or os.cpu_count() or 1
    args.n_ctx = args.n_ctx or args.n_prompt + args.n_gen

    import llama_cpp

    have_bench = not args.no_llama_bench
    if have_bench and not LLAMA_BENCH.exists():
        if args.build_llama_bench:
            build_llama_bench(args.jobs)
        else:
            print(f"{LLAMA_BENCH} missing (use --build-llama-bench): llama.cpp's speed comes from the native "
                  "C-API loop only", file=sys.stderr)
            have_bench = False
    names = args.models or [n for n, f in DEMO.items() if (MODELS_DIR / f).exists()]
    if names == ["none"]:
        names = []
    report: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "threads": args.threads,
                    "load_avg_start": os.getloadavg(),
                    "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip()},
        "llama_cpp_python": llama_cpp.__version__, "llama_bench": str(LLAMA_BENCH) if have_bench else None,
        "models": [], "batched": None,
    }
    for model in names:
        name, path = resolve(model)
        if not path.exists():
            print(f"skip {name}: {path} missing", file=sys.stderr)
            continue
        print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
        report["models"].append(bench_model(name, path, args, have_bench))
    if args.batched_model != "none":
        _, path = resolve(args.batched_model)
        if path.exists():
            print(f"batched mode on {path.name} ...", file=sys.stderr, flush=True)
            report["batched"] = bench_batched(path, args)
    report["machine"]["load_avg_end"] = os.getloadavg()
    report["phases"] = Phase.log

    # -- print -----------------------------------------------------------------------------------
    print(f"\nllama-cpp-python {llama_cpp.__version__}, {args.threads} threads, {os.cpu_count()} cores, "
          f"load average {report['machine']['load_avg_start'][0]:.1f} -> {report['machine']['load_avg_end'][0]:.1f}")
    print(f"P = prompt tokens, G = {args.n_gen} generated tokens; raq's context {args.n_ctx} cells "
          f"(llama-bench's tg{args.n_gen}@dP: P + G); medians of {args.repetitions} interleaved rounds; "
          "ratios are medians of per-round ratios\n")
    head = ("model", "P", "pp lb", "pp raq", "ratio", "pp raq/calls", "tg lb", "tg lb@dP", "tg native", "tg raq",
            "raq/lb@dP", "raq/native", "tg raq/calls", "tg high", "high/lb@dP", "ovh ms/tok", "high ovh")
    rows = []
    for m in report["models"]:
        s, r = m["summary"], m["summary"]["ratios"]
        rows.append((s["model"], str(s["prompt_tokens"]), fmt(s.get("llama_bench_pp_tok_s")),
                     fmt(s["raq_prompt_tok_s"]),
                     fmt(r.get("raq_prompt_vs_llama_bench"), 2), fmt(r.get("raq_prompt_vs_its_decode_calls"), 3),
                     fmt(s.get("llama_bench_tg_tok_s")),
                     fmt(s.get("llama_bench_tg_at_depth_tok_s")), fmt(s["native_gen_tok_s"]), fmt(s["raq_gen_tok_s"]),
                     fmt(r.get("raq_gen_vs_llama_bench_tg_at_depth"), 2), fmt(r.get("raq_gen_vs_native"), 2),
                     fmt(r.get("raq_gen_vs_its_decode_calls"), 3), fmt(s["highlevel_gen_tok_s"]),
                     fmt(r.get("highlevel_gen_vs_llama_bench_tg_at_depth"), 2),
                     fmt(s["raq_overhead_ms_per_token"], 2), fmt(s["highlevel_overhead_ms_per_token"], 2)))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    print("\n(lb = llama-bench; tok/s; 'raq/calls' = raq's speed / the speed of its own llama_decode calls "
          "(llama.cpp's perf counters, same calls, same seconds: what raq's loop costs, free of machine noise); "
          "'ovh ms/tok' = generation wall time per token outside llama_decode)")
    for m in report["models"]:
        rounds = m["summary"]["ratio_rounds"]
        print(f"per-round raq/lb@dP, {m['summary']['model']}: "
              + ", ".join(fmt(v, 2) for v in rounds.get("raq_gen_vs_llama_bench_tg_at_depth", [])))
    for m in report["models"]:
        s, r = m["summary"], m["summary"]["ratios"]
        if s.get("ctx_effect_n_ctx"):
            print(f"context size, {s['model']}: llama.cpp's native loop on {s['ctx_effect_n_ctx']} cells vs "
                  f"{s['n_ctx']}: prompt {fmt(s['native_ctx_prompt_tok_s'])} vs {fmt(s['native_prompt_tok_s'])} "
                  f"tok/s ({fmt(r.get('native_ctx_effect_prompt'), 2)}), generation "
                  f"{fmt(s['native_ctx_gen_tok_s'])} vs {fmt(s['native_gen_tok_s'])} tok/s "
                  f"({fmt(r.get('native_ctx_effect_gen'), 2)})")
    b = report["batched"]
    if b:
        per_round = ", ".join(f"{r['speedup']:.2f}" for r in b["rounds"])
        print(f"\nbatched mode, {Path(b['model']).name}, {b['n_parallel']} sequences "
              f"(kv_unified={b['kv_unified']}), {b['questions']} SQuAD questions ({b['sample']}: "
              f"{b['distinct_contexts']} paragraphs), max_tokens {b['max_tokens']}:")
        print(f"  answers/s single {b['single_answers_per_s']:.3f}, batched {b['batched_answers_per_s']:.3f}, "
              f"speed-up {b['speedup']:.2f}x (per round: {per_round}); "
              f"identical answers {b['identical_rate']:.1%}")
        share = b["single_prompt_share"]
        print(f"  single-sequence time spent before the first token (prompt): {share:.0%}, so faster decoding "
              f"alone cannot give more than {1 / share:.2f}x answers/s (the shared prefix also saves prompt "
              f"work); decode-only throughput (generation steps) batched vs single: {fmt(b['gen_speedup'], 2)}x")
    print("\npeak RSS per phase (MiB):")
    for p in Phase.log:
        child = f", llama-bench child {p['child_peak_rss_mib']}" if "child_peak_rss_mib" in p else ""
        print(f"  {p.get('model', ''):>28} {p['phase']:<16} wall {p['wall_s']:8.2f} s  rss {p['rss_mib']}  "
              f"peak {p['peak_rss_mib']}{child}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
