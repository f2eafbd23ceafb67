"""Time to a verdict: the demo study end to end under three settings, on the same questions and
models, one after the other in one process:

- ``2026-12-01``: the demo as raq ran it on 2026-12-01 (``benchmarks/configs/demo-2026-12-01.yaml``:
  a listwise judge on a llama.cpp server, every question in 3 orders);
- ``default``: today's ``config.yaml`` (its judge-check included, as ``python -m raq run`` runs it);
- ``reference``: the reference study's settings (``--config demo-paper``: completion prompt, no
  stops, n_batch 8, max_tokens 2000, temperature 0.7, the reference judge prompt in one order).

    python benchmarks/bench_study.py [--limit 60] [--settings 2026-12-01,default,reference]
        [--check-questions 20] [--batched N] [--out DIR] [--json OUT]

For each run: wall time and the phases (wall time and peak resident memory of raq plus its child
processes, i.e. a judge's llama.cpp server, sampled every 0.2 s), tokens and words per answer, the
judge's prompt tokens per question (sent, and read: not served from the judge's cache; for a judge
on a server, which does not report its cache, counted by replaying the prompts through the
judge's tokenizer with the server's rule: the prefix shared with the previous prompt is kept),
and the judge-check pairwise accuracy of its judge settings (a run whose config has
``judge.check`` reports its own; the others are checked on ``--check-questions`` questions after
their timed run, untimed). Ratios are wall times of this one invocation. ``--batched N`` adds the
default study's answering in throughput mode (``generation.n_parallel: N``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import raq
from raq.backends.base import Request
from raq.config import load_config
from raq.report_judge_check import CHECK_FILE

ROOT = Path(__file__).resolve().parents[1]
PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20
SETTINGS = {"2026-12-01": str(ROOT / "benchmarks" / "configs" / "demo-2026-12-01.yaml"),
            "default": str(ROOT / "config.yaml"),
            "reference": "demo-paper"}


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as handle:
                    todo.extend(int(c) for c in handle.read().split())
        except OSError:
            continue
    return pids


def tree_rss_mib() -> float:
    total = 0.0
    for pid in _tree(os.getpid()):
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * PAGE_MIB
        except OSError:
            pass
    return total


class PhaseMemory:
    """Wall time and peak resident memory (this process + children) of each phase of a run."""

    def __init__(self) -> None:
        self.phases: list[dict] = []
        self._peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self._peak = max(self._peak, tree_rss_mib())

    def start(self) -> None:
        self._thread.start()
        self.mark("start")

    def mark(self, name: str) -> None:
        now, rss = time.perf_counter(), tree_rss_mib()
        if self.phases:
            last = self.phases[-1]
            last["wall_s"] = round(now - last["t0"], 1)
            last["peak_rss_mib"] = round(max(self._peak, rss), 1)
        self._peak = rss
        self.phases.append({"phase": name.split(" in ")[0].split(" of ")[0], "t0": now})

    def stop(self) -> list[dict]:
        self.mark("end")
        self._stop.set()
        self._thread.join()
        return [{k: v for k, v in p.items() if k != "t0"} for p in self.phases[:-1]]


def judgement_prompts(judge: Any, config: Any, question: Any, texts: dict[str, str],
                      judgement: Any) -> list[list[dict[str, str]]]:
    """The first-try chat messages of each request a judgement made, in order."""
    from raq import prompts

    if config.protocol == "pointwise":
        return [prompts.pointwise_messages(question, texts[m], grades=config.grades, context_chars=config.context_chars,
                                           show_context=config.context_shown) for m in judgement.order]
    if config.protocol == "pairwise":
        return [prompts.pairwise_messages(question, texts[a], texts[b], judge.labels,
                                          context_chars=config.context_chars, show_context=config.context_shown)
                for a, b in itertools.permutations(judgement.order, 2)]
    return [judge.messages_for(question, [texts[m] for m in judgement.order], judgement.labels)]


def replayed_reads(run_dir: Path, judge_gguf: Path) -> tuple[list[int], list[int]]:
    """Prompt tokens sent and read by a prefix-keeping server for each judgement of ``run_dir``,
    in the order they were made: each prompt, and each prompt less the prefix it shares with the
    previous one (first tries; a retry is counted as a whole prompt)."""
    from raq.backends.llama import LlamaBackend
    from raq.config import parse_config
    from raq.judges import make_judge

    results = raq.load_run(run_dir)
    study = parse_config(results.manifest["config"], str(run_dir / "manifest.json"))
    backend = LlamaBackend(judge_gguf, n_ctx=8192, n_batch=512)
    questions = {q.question_id: q for q in results.questions}
    texts: dict[str, dict[str, str]] = {}
    for answer in results.answers:
        texts.setdefault(answer.question_id, {})[answer.model_id] = answer.text
    previous: list[int] = []
    sent, reads = [], []
    try:
        configs = {j.id: j for j in study.judge_list}
        judges = {j.id: make_judge(j, backend) for j in study.judge_list}
        for judgement in results.judgements:
            question = questions[judgement.question_id]
            read = total = 0
            for messages in judgement_prompts(judges[judgement.judge_id], configs[judgement.judge_id], question,
                                              texts[question.question_id], judgement):
                tokens = backend.prompt_tokens(Request.chat(messages))
                kept = 0
                for a, b in zip(previous, tokens[:-1]):
                    if a != b:
                        break
                    kept += 1
                read += len(tokens) - kept
                total += len(tokens)
                previous = tokens
            extra = judgement.attempts - 1 if configs[judgement.judge_id].protocol in ("raq", "paper") else 0
            reads.append(read + extra * len(previous))
            sent.append(total + extra * len(previous))
    finally:
        backend.close()
    return sent, reads


def judge_tokens(run_dir: Path, judge_gguf: Path | None) -> dict[str, Any]:
    """The judge's prompt tokens per question: sent, and read (see :func:`replayed_reads`)."""
    judgements = raq.load_run(run_dir).judgements
    questions = len({j.question_id for j in judgements}) or 1
    sent: list[int | None] = [j.prompt_tokens for j in judgements]
    read: list[int | None] = [j.prompt_tokens_read for j in judgements]
    how = "recorded by the judge's backend"
    if any(r is None for r in read) and judge_gguf is not None:
        replayed_sent, replayed_read = replayed_reads(run_dir, judge_gguf)
        how = "replayed through the judge's tokenizer"
        read = list(replayed_read)
        sent = [s if s is not None else r for s, r in zip(sent, replayed_sent)]
    return {"sent_per_question": per_question(sent, questions), "read_per_question": per_question(read, questions),
            "read_counted": how, "judgements": len(judgements), "questions": questions}


def per_question(counts: list[int | None], questions: int) -> float | None:
    known = [c for c in counts if c is not None]
    return sum(known) / questions if len(known) == len(counts) else None


def check_accuracy(path: Path) -> dict[str, Any] | None:
    """The last check's pairwise accuracy and settings in a judge_check.json."""
    if not path.exists():
        return None
    check = json.loads(path.read_text())["checks"][-1]
    metrics = check["metrics"]
    return {"pairwise_accuracy": metrics["pairwise_accuracy"], "wrong_first": metrics["wrong_first"],
            "questions": metrics["questions"], "protocol": check["protocol"], "orders": check["orders"],
            "seconds": round(metrics["seconds"], 1), "file": str(path)}


def timed_study(name: str, config: str, limit: int, judge: bool, out: Path, **overrides: Any) -> dict:
    memory = PhaseMemory()
    memory.start()
    start = time.perf_counter()
    results = raq.evaluate(config, limit=limit, out=out / name, judge=judge, progress=False, on_phase=memory.mark,
                           **overrides)
    seconds = time.perf_counter() - start
    phases = memory.stop()
    answers = results.table
    report: dict[str, Any] = {
        "config": config, "overrides": overrides, "seconds": round(seconds, 1), "questions": limit,
        "answers": len(answers), "mean_generated_tokens": float(answers["generated_tokens"].mean()),
        "mean_words": float(answers["words"].mean()), "phases": phases, "run_dir": str(results.run_dir),
        "judge": None, "judge_tokens": None, "judge_check": None}
    if not judge:
        return report
    judge_config = load_config(config).judge_list[0]
    file = results.manifest.get("files", {}).get(f"judge:{judge_config.id}")
    report["judge"] = {"protocol": judge_config.protocol, "orders": judge_config.orders,
                       "runtime": judge_config.runtime, "check": judge_config.check}
    report["judge_tokens"] = judge_tokens(results.run_dir, Path(file["path"]) if file else None)
    report["judge_check"] = check_accuracy(results.run_dir / CHECK_FILE)
    return report


def untimed_check(name: str, run: dict[str, Any], out: Path, questions: int) -> dict[str, Any] | None:
    """judge-check of a run's judge settings on ``questions`` questions (no stability repeats),
    for a config without ``judge.check``; after every timed run, so it delays none of them."""
    start = time.perf_counter()
    checked = raq.check_judge(run["config"], questions=questions, repeats=0, out=out / f"{name}-{CHECK_FILE}",
                              progress=False)
    found = check_accuracy(checked.path)
    if found is not None:
        found["untimed_check_wall_s"] = round(time.perf_counter() - start, 1)
    return found


def print_report(report: dict[str, Any]) -> None:
    runs = report["runs"]
    for name, run in runs.items():
        print(f"{name:>16}: {run['seconds']:8.1f} s  {run['answers']} answers, "
              f"{run['mean_generated_tokens']:.0f} tokens/answer, {run['mean_words']:.0f} words/answer  "
              f"({run['run_dir']})")
        for phase in run["phases"]:
            print(f"{'':>18}{phase['phase']:<22} {phase['wall_s']:8.1f} s   peak RSS {phase['peak_rss_mib']:8.1f} MiB")
        tokens, check = run.get("judge_tokens"), run.get("judge_check")
        if tokens:
            sent = tokens["sent_per_question"]
            print(f"{'':>18}judge prompt tokens per question: {tokens['read_per_question']:.0f} read"
                  + (f", {sent:.0f} sent" if sent is not None else "") + f" ({tokens['read_counted']})")
        if check:
            acc = check["pairwise_accuracy"]
            print(f"{'':>18}judge-check ({check['protocol']}, {check['orders']} order(s), {check['questions']} "
                  f"questions): pairwise accuracy {acc['mean']:.1%} [{acc['ci_low']:.1%}, {acc['ci_high']:.1%}]")
    for name, ratio in report["ratios"].items():
        print(f"{name:>40}: {ratio:.2f}x")


def ratios(runs: dict[str, dict]) -> dict[str, float]:
    """Wall-time ratios of the default run against the others (and the batched answering phase)."""
    out: dict[str, float] = {}
    if "default" not in runs:
        return out
    base = runs["default"]["seconds"]
    for name in ("2026-12-01", "reference"):
        if name in runs:
            out[f"{name} / default (whole study)"] = round(runs[name]["seconds"] / base, 2)
    tokens = {n: (r.get("judge_tokens") or {}).get("read_per_question") for n, r in runs.items()}
    today, default = tokens.get("2026-12-01"), tokens.get("default")
    if today and default:
        out["judge tokens read per question, 2026-12-01 / default"] = round(today / default, 2)
    for name, run in runs.items():
        if "batched" in name:
            single = next(p["wall_s"] for p in runs["default"]["phases"] if p["phase"] == "answering")
            batched = next(p["wall_s"] for p in run["phases"] if p["phase"] == "answering")
            out[f"answering, single / {name}"] = round(single / batched, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"which runs, in this order (of {', '.join(SETTINGS)})")
    parser.add_argument("--no-judge", action="store_true", help="time answering only")
    parser.add_argument("--check-questions", type=int, default=20,
                        help="judge-check questions for the settings whose config has no judge.check (0: none)")
    parser.add_argument("--batched", type=int, default=0, metavar="N",
                        help="also time the default study's answering in throughput mode with N sequences")
    parser.add_argument("--out", help="keep the run directories here (default: a temporary folder)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown} (known: {', '.join(SETTINGS)})")
    report: dict[str, Any] = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                          "load_avg_start": os.getloadavg()}}
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        for name in names:
            runs[name] = timed_study(name, SETTINGS[name], args.limit, not args.no_judge, out)
            Path(args.json or os.devnull).write_text(json.dumps({**report, "runs": runs}, indent=2))
        if args.batched > 1:
            runs[f"default, batched x{args.batched}"] = timed_study(
                f"default-batched-{args.batched}", SETTINGS["default"], args.limit, False, out,
                generation__n_parallel=args.batched)
        for name in names:
            if runs[name]["judge"] and runs[name]["judge_check"] is None and args.check_questions:
                runs[name]["judge_check"] = untimed_check(name, runs[name], out, args.check_questions)
                Path(args.json or os.devnull).write_text(json.dumps({**report, "runs": runs}, indent=2))
    report["machine"]["load_avg_end"] = os.getloadavg()
    report["runs"] = runs
    report["ratios"] = ratios(runs)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
