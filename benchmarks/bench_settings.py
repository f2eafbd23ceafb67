"""llama.cpp settings on raq's own path at a study's real prompts: flash attention off and on,
for every contestant of a run directory and its judge, in ABBA order within one process.

    python benchmarks/bench_settings.py RUN_DIR [--questions 16] [--json OUT]

Each contestant answers the stored prompts of its first ``--questions`` answers again, with the
same number of generated tokens as stored (so both settings do the same work); the judge grades
the stored answers of the first half as many questions as the study's pointwise judge does
(prefix kept between requests). Reported per setting and round: wall time, prompt and generation
speed (llama.cpp's perf counters), and how many replies are identical between the two settings.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import raq
from raq import prompts
from raq.backends.base import Request
from raq.backends.llama import LlamaBackend
from raq.config import parse_config
from raq.judge import LOGPROBS, judge_sampling

ORDER = (False, True, True, False)


def timed(path: Path, requests: list[Request], *, flash_attn: bool, reuse_prefix: bool, n_ctx: int) -> dict[str, Any]:
    backend = LlamaBackend(path, n_ctx=n_ctx, n_batch=512, flash_attn=flash_attn, reuse_prefix=reuse_prefix)
    try:
        backend.complete(requests[0])  # untimed warm-up
        backend._cached = []
        prompt_ms = prompt_n = eval_ms = eval_n = 0.0
        texts = []
        start = time.perf_counter()
        for request in requests:
            completion = backend.complete(request)
            counters = completion.counters
            prompt_ms += counters["prompt_eval_ms"]
            prompt_n += counters["prompt_eval_tokens"]
            eval_ms += counters["eval_ms"]
            eval_n += counters["eval_tokens"]
            texts.append(completion.text)
        wall = time.perf_counter() - start
    finally:
        backend.close()
    return {"wall_s": round(wall, 2), "prompt_tok_s": round(prompt_n / prompt_ms * 1000, 1),
            "generation_tok_s": round(eval_n / eval_ms * 1000, 1) if eval_ms else None,
            "prompt_tokens_read": int(prompt_n), "texts": texts}


def compare(path: Path, requests: list[Request], *, reuse_prefix: bool, n_ctx: int) -> dict[str, Any]:
    rounds = [{"flash_attn": fa, **timed(path, requests, flash_attn=fa, reuse_prefix=reuse_prefix, n_ctx=n_ctx)}
              for fa in ORDER]
    off, on = rounds[0]["texts"], rounds[1]["texts"]
    for r in rounds:
        del r["texts"]
    walls = {fa: [r["wall_s"] for r in rounds if r["flash_attn"] is fa] for fa in (False, True)}
    return {"rounds": rounds, "identical": f"{sum(a == b for a, b in zip(off, on))}/{len(off)}",
            "wall_on_over_off": round(sum(walls[True]) / sum(walls[False]), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = raq.load_run(args.run_dir)
    config = parse_config(results.manifest["config"], str(args.run_dir / "manifest.json"))
    files = results.manifest["files"]
    report: dict[str, Any] = {"run": str(args.run_dir), "questions": args.questions}
    for model in config.model_ids:
        stored = [a for a in results.answers if a.model_id == model][:args.questions]
        requests = [Request(prompt=a.prompt, special=True, max_tokens=max(1, a.generated_tokens)) for a in stored
                    if not a.prompt.startswith("[")]  # a served prompt is recorded as JSON messages
        report[model] = compare(Path(files[model]["path"]), requests, reuse_prefix=False, n_ctx=config.generation.n_ctx)
        print(model, json.dumps(report[model]), flush=True)
    judge = config.judge_list[0]
    questions = {q.question_id: q for q in results.questions}
    texts: dict[str, list[str]] = {}
    for answer in results.answers:
        texts.setdefault(answer.question_id, []).append(answer.text)
    sampling = judge_sampling(judge)
    requests = [Request.chat(prompts.pointwise_messages(questions[qid], text, grades=judge.grades), max_tokens=4,
                             sampling=sampling, choices=prompts.GRADES[judge.grades], logprobs=LOGPROBS)
                for qid in list(texts)[:max(1, args.questions // 2)] for text in texts[qid]]
    report[f"judge:{judge.id}"] = compare(Path(files[f"judge:{judge.id}"]["path"]), requests, reuse_prefix=True,
                                          n_ctx=judge.n_ctx)
    print(f"judge:{judge.id}", json.dumps(report[f"judge:{judge.id}"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
