"""End-to-end wall time of the demo study under raq's default protocol against the reference
pipeline's generation settings (completion prompt, no stops, n_batch 8, max_tokens 2000,
temperature 0.7; the reference judge protocol), on the same questions and models, in one
process, one after the other.

    python benchmarks/bench_study.py [--limit 60] [--no-judge] [--batched N] [--out DIR] [--json OUT]

Prints each run's wall time, its phases (wall time and peak resident memory of raq plus its
child processes, i.e. the judge's llama.cpp server, sampled every 0.2 s) and the ratio.
``--batched N`` adds a third run: the default protocol in throughput mode (``n_parallel: N``),
answering only (its judging would be the same work as the default run's); compare its
answering phase with the default run's.
Timings are only compared within one invocation on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import raq

ROOT = Path(__file__).resolve().parents[1]
PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20


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
        self.phases.append({"phase": name.split(" in ")[0], "t0": now})

    def stop(self) -> list[dict]:
        self.mark("end")
        self._stop.set()
        self._thread.join()
        return [{k: v for k, v in p.items() if k != "t0"} for p in self.phases[:-1]]


def timed_study(config: str, limit: int, judge: bool, out: Path, **overrides) -> dict:
    memory = PhaseMemory()
    memory.start()
    start = time.perf_counter()
    results = raq.evaluate(config, limit=limit, out=out, judge=judge, progress=False, on_phase=memory.mark,
                           **overrides)
    seconds = time.perf_counter() - start
    phases = memory.stop()
    answers = results.table
    return {"config": config, "overrides": overrides, "seconds": round(seconds, 1), "questions": limit,
            "answers": len(answers), "mean_generated_tokens": float(answers["generated_tokens"].mean()),
            "mean_words": float(answers["words"].mean()), "phases": phases, "run_dir": str(results.run_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--no-judge", action="store_true", help="time answering only")
    parser.add_argument("--batched", type=int, default=0, metavar="N",
                        help="also time the default protocol in throughput mode with N sequences")
    parser.add_argument("--out", help="keep the run directories here (default: a temporary folder)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    judge = not args.no_judge
    report: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                "load_avg_start": os.getloadavg()}}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        runs = {"raq default": timed_study(str(ROOT / "config.yaml"), args.limit, judge, out),
                "reference settings": timed_study("demo-paper", args.limit, judge, out)}
        if args.batched > 1:
            runs[f"raq default, batched x{args.batched}"] = timed_study(
                str(ROOT / "config.yaml"), args.limit, False, out, generation__n_parallel=args.batched)
    report["machine"]["load_avg_end"] = os.getloadavg()
    base = runs["raq default"]["seconds"]
    report["runs"] = runs
    report["speedup_vs_reference"] = round(runs["reference settings"]["seconds"] / base, 2)
    for name, run in runs.items():
        print(f"{name:>28}: {run['seconds']:8.1f} s  {run['answers']} answers, "
              f"{run['mean_generated_tokens']:.0f} tokens/answer, {run['mean_words']:.0f} words/answer  "
              f"({run['run_dir']})")
        for phase in run["phases"]:
            print(f"{'':>30}{phase['phase']:<22} {phase['wall_s']:8.1f} s   peak RSS {phase['peak_rss_mib']:8.1f} MiB")
    print(f"{'speed-up':>28}: {report['speedup_vs_reference']:.2f}x (reference settings wall time / raq default)")
    for name, run in runs.items():
        if "batched" in name:
            single = next(p["wall_s"] for p in runs["raq default"]["phases"] if p["phase"] == "answering")
            batched = next(p["wall_s"] for p in run["phases"] if p["phase"] == "answering")
            print(f"{'batched speed-up':>28}: {single / batched:.2f}x answering phase ({single:.1f} s single-sequence, "
                  f"{batched:.1f} s batched)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
