"""A judge behind 1, 2 (or more) local llama.cpp servers of its GGUF, the machine's cores split
between them: the same answers judged through raq's judging path with ``judge.base_url`` the
list of the servers, judgements per second as a ratio to one endpoint, all in one run.

    python benchmarks/bench_judge_endpoints.py [--questions 20] [--max-endpoints 2]
        [--judge qwen2.5-coder-1.5b-instruct] [--run RUN_DIR] [--config config.yaml]
        [--protocol pointwise] [--max-in-flight 1] [--threads N] [--n-ctx 2048] [--rounds 1] [--json OUT]

What is judged: with ``--run``, the stored answers to the first ``--questions`` answered
questions of a recorded run, as its study judges them (``raq.judging.judged``, the judge settings
of the run's first judge); without, judge-check's ladders of answers of known quality built from
the first ``--questions`` questions of the config's dataset (``raq.judge_check``'s path, the
settings of the config's first judge). ``--protocol`` replaces the judge's protocol (then in one
order).

For each endpoint count (1, 2, ... ``--max-endpoints``; with ``--rounds 2`` then back down again)
the servers are started (threads per server = cores // endpoints, at least 1; the logits of every
token kept for the scoring protocols, as raq's own judge server does), each gets one untimed
warm-up request, everything is judged with ``max_in_flight`` requests in flight on each server,
and the servers are stopped before the next count. Reported per count: seconds, judgements per
second and its ratio to one endpoint (from the same run), requests per endpoint (from the
judgements' ``endpoints``), failed judgements, the judge's prompt tokens per judgement, and how
many rankings equal one endpoint's. No figure is an absolute finding: only the ratios of this one
run on this one machine.

A listwise judge (``--protocol raq``) gets no grammar on these servers through the remote path:
llama-cpp-python's server refuses a ``json_schema`` response format, and raq then asks for plain
text (its own local judge server asks for a JSON object with the schema instead).

Memory: each server of a scoring judge keeps ``n_ctx`` x the vocabulary in floats (about 1.2 GiB
for Qwen2.5 at ``--n-ctx 2048``) beside the model; the judge's prompts here fit in 2048 tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from raq import environment
from raq.backends.base import Request
from raq.backends.factory import BackendFactory
from raq.backends.local_server import LocalServer
from raq.backends.openai_http import OpenAIBackend
from raq.config import SCORING_PROTOCOLS, JudgeConfig, RunConfig, load_config, parse_recorded_config
from raq.judge_check import _judged, check_questions, with_unanswerable
from raq.judge_ladder import DEFAULT_RUNGS, build_ladders
from raq.judges import make_judge
from raq.judging import judged, stored_answers
from raq.models import resolve
from raq.progress import progress_bar
from raq.records import Judgement
from raq.store import RunDir

ROOT = Path(__file__).resolve().parents[1]
DEMO_JUDGE = "qwen2.5-coder-1.5b-instruct"
ALIAS = "judge"


class Work:
    """A fixed set of judgements to make: ``judge(settings, backend)`` makes them all."""

    def __init__(self, config: RunConfig, judge: JudgeConfig, run: Path | None, questions: int) -> None:
        self.config, self.judge, self.kind = config, judge, "run" if run else "ladders"
        if run is not None:
            stored = RunDir.open(run)
            self.answers = stored_answers(stored)
            answered = [q for q in stored.questions()
                        if all(m in self.answers.get(q.question_id, {}) for m in config.model_ids)]
            self.questions = answered[:questions]
            self.size = len(self.questions)
            return
        from raq.study_data import load_pool

        pool = load_pool(config.data)
        chosen = with_unanswerable(config, check_questions(config, questions), pool)
        self.ladders, self.skipped = build_ladders(chosen, pool, DEFAULT_RUNGS, seed=config.data.seed)
        self.size = len(self.ladders)

    def judge_all(self, settings: JudgeConfig, backend: Any) -> list[Judgement]:
        """Every judgement, as the study (``--run``) or judge-check (ladders) makes them."""
        if self.kind == "run":
            tasks = [(q, k) for q in self.questions for k in range(settings.orders)]
            in_flight = min(settings.in_flight, backend.capacity)  # as raq.judging.judge_answers decides
            return list(judged(make_judge(settings, backend), tasks, self.answers, self.config.model_ids, in_flight))
        tasks = [(ladder, k) for ladder in self.ladders for k in range(settings.orders)]
        with progress_bar(len(tasks), "judging", False) as bar:
            return list(_judged(settings, backend, tasks, bar))


def remote(judge: JudgeConfig, urls: Sequence[str], protocol: str | None, max_in_flight: int) -> JudgeConfig:
    """``judge`` served at ``urls`` (the model ``ALIAS``), ``max_in_flight`` on each; no API key (a
    remote judge's key is not sent to these local servers)."""
    data = {**judge.model_dump(), "gguf": None, "sha256": None, "runtime": "server", "base_url": list(urls),
            "model": ALIAS, "max_in_flight": max_in_flight, "api_key_env": None}
    if protocol and protocol != judge.protocol:
        data.update(protocol=protocol, orders=1, show_context=None)
    return JudgeConfig.model_validate(data)


def warm_up(urls: Sequence[str]) -> None:
    """One short untimed request to each server (its first one allocates its buffers)."""
    for url in urls:
        backend = OpenAIBackend([url], ALIAS, max_in_flight=1)
        try:
            backend.complete(Request.chat([{"role": "user", "content": "Say yes."}], max_tokens=2))
        finally:
            backend.close()


def one_count(work: Work, args: argparse.Namespace, gguf: Path, endpoints: int, logs: Path,
              round_index: int) -> dict[str, Any]:
    """Start ``endpoints`` servers, judge everything through them, stop them."""
    cores = args.threads or os.cpu_count() or 1
    threads = max(1, cores // endpoints)
    scoring = (args.protocol or work.judge.protocol) in SCORING_PROTOCOLS
    with ExitStack() as stack:
        servers = [stack.enter_context(LocalServer(gguf, ALIAS, n_ctx=args.n_ctx, n_threads=threads,
                                                   n_gpu_layers=work.judge.n_gpu_layers, seed=work.judge.seed,
                                                   logits_all=scoring, flash_attn=work.judge.flash_attn,
                                                   log_path=logs / f"r{round_index}-e{endpoints}-{i}.log"))
                   for i in range(endpoints)]
        urls = [server.base_url for server in servers]
        settings = remote(work.judge, urls, args.protocol, args.max_in_flight)
        warm_up(urls)
        backend = BackendFactory().judge(settings, None, logs / "unused.log")  # the study's remote judge, checked
        try:
            start = time.perf_counter()
            judgements = work.judge_all(settings, backend)
            seconds = time.perf_counter() - start
        finally:
            backend.close()
    used = Counter(url for j in judgements for url in j.endpoints)
    sent = [j.prompt_tokens for j in judgements if j.prompt_tokens is not None]
    return {"endpoints": endpoints, "round": round_index, "threads_per_server": threads, "seconds": round(seconds, 2),
            "judgements": len(judgements), "failed": sum(not j.ok for j in judgements),
            "judgements_per_s": len(judgements) / seconds if seconds > 0 else None,
            "requests_per_endpoint": [used[url] for url in urls],
            "prompt_tokens_per_judgement": sum(sent) / len(sent) if sent else None,
            "protocol": settings.protocol, "orders": settings.orders, "max_in_flight": settings.max_in_flight,
            "ranks": {f"{j.question_id}:{j.order_index}": j.ranks for j in judgements if j.ok}}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per endpoint count over its rounds: judgements per second, the ratio to one endpoint, and
    how many rankings equal one endpoint's (first round)."""
    counts = sorted({row["endpoints"] for row in rows})
    base = {row["endpoints"]: row for row in rows if row["round"] == 0}
    rate = {n: sum(r["judgements"] for r in rows if r["endpoints"] == n)
            / sum(r["seconds"] for r in rows if r["endpoints"] == n) for n in counts}
    reference = base[counts[0]]["ranks"]
    summary = []
    for n in counts:
        ranks = base[n]["ranks"]
        equal = sum(ranks.get(key) == value for key, value in reference.items())
        summary.append({"endpoints": n, "threads_per_server": base[n]["threads_per_server"],
                        "judgements_per_s": round(rate[n], 4),
                        "vs_one_endpoint": round(rate[n] / rate[counts[0]], 3),
                        "seconds": [r["seconds"] for r in rows if r["endpoints"] == n],
                        "failed": sum(r["failed"] for r in rows if r["endpoints"] == n),
                        "requests_per_endpoint": base[n]["requests_per_endpoint"],
                        "prompt_tokens_per_judgement": base[n]["prompt_tokens_per_judgement"],
                        "rankings_equal_to_first": f"{equal}/{len(reference)}"})
    return summary


def print_table(summary: list[dict[str, Any]], work: Work, settings: dict[str, Any]) -> None:
    print(f"\n{work.kind}: {work.size} questions, protocol {settings['protocol']}, orders {settings['orders']}, "
          f"max_in_flight {settings['max_in_flight']} per endpoint")
    print("| endpoints | threads per server | judgements/s | vs 1 endpoint | seconds | failed | requests per endpoint "
          "| prompt tokens per judgement | rankings equal to 1 endpoint's |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in summary:
        tokens = row["prompt_tokens_per_judgement"]
        print(f"| {row['endpoints']} | {row['threads_per_server']} | {row['judgements_per_s']:.3f} | "
              f"{row['vs_one_endpoint']:.2f}x | {', '.join(f'{s:.1f}' for s in row['seconds'])} | {row['failed']} | "
              f"{' / '.join(map(str, row['requests_per_endpoint']))} | "
              f"{'-' if tokens is None else f'{tokens:.0f}'} | {row['rankings_equal_to_first']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--max-endpoints", type=int, default=2)
    parser.add_argument("--judge", default=DEMO_JUDGE, help="the judge GGUF: a catalog name or a .gguf path")
    parser.add_argument("--run", type=Path, help="judge the stored answers of this run directory")
    parser.add_argument("--config", default=str(ROOT / "config.yaml"), help="dataset and judge settings (no --run)")
    parser.add_argument("--protocol", choices=["raq", "paper", "pointwise", "pairwise"])
    parser.add_argument("--max-in-flight", type=int, default=1, help="requests in flight on each server")
    parser.add_argument("--threads", type=int, help="cores to split between the servers (default: all)")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=1, help="2: the counts up, then down again")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.max_endpoints < 1 or args.questions < 1 or args.rounds < 1:
        parser.error("--max-endpoints, --questions and --rounds must be at least 1")
    if args.run is not None:
        manifest = RunDir.open(args.run).manifest()
        config = parse_recorded_config(manifest["config"], str(args.run / "manifest.json"))
    else:
        config = load_config(args.config)
    gguf = resolve(args.judge, Path(config.models_dir))[0]
    if not gguf.is_file():
        parser.error(f"{gguf} missing: python -m raq models fetch {args.judge}")
    work = Work(config, config.judge_list[0], args.run, args.questions)
    counts = list(range(1, args.max_endpoints + 1))
    order = [(r, n) for r in range(args.rounds) for n in (counts if r % 2 == 0 else counts[::-1])]
    rows = []
    with tempfile.TemporaryDirectory(prefix="raq-endpoints-") as logs:
        for round_index, endpoints in order:
            row = one_count(work, args, gguf, endpoints, Path(logs), round_index)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "ranks"}), flush=True)
    summary = summarise(rows)
    print_table(summary, work, rows[0])
    if args.json:
        report = {"judge": str(gguf), "work": work.kind, "questions": work.size, "args": vars(args),
                  "machine": {"platform": platform.platform(), "cpu": environment.cpu_model(),
                              "cores": os.cpu_count()},
                  "summary": summary, "rows": rows}
        args.json.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
