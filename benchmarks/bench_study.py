"""End-to-end wall time of a study under raq's default protocol against the reference
pipeline's generation settings (completion prompt, no stops, n_batch 8, max_tokens 2000),
on the same questions and models, in one process, one after the other.

    python benchmarks/bench_study.py [--limit 60] [--no-judge] [--json OUT]

Prints each run's wall time, per-phase peak memory and the ratio. Timings are only
compared within one invocation on one machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import raq

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + \
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def timed_study(config: str, limit: int, judge: bool, out: Path) -> dict:
    phases: dict[str, float] = {}
    marks = [time.perf_counter()]

    def on_phase(name: str) -> None:
        marks.append(time.perf_counter())
        phases[name.split(" ")[0]] = round(peak_rss_mib(), 1)

    start = time.perf_counter()
    results = raq.evaluate(config, limit=limit, out=out, judge=judge, progress=False, on_phase=on_phase)
    seconds = time.perf_counter() - start
    answers = results.table
    return {"config": config, "seconds": round(seconds, 1), "questions": limit,
            "answers": len(answers), "mean_generated_tokens": float(answers["generated_tokens"].mean()),
            "mean_words": float(answers["words"].mean()), "peak_rss_mib_at_phase_start": phases,
            "run_dir": str(results.run_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--no-judge", action="store_true", help="time answering only")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        default = timed_study(str(ROOT / "config.yaml"), args.limit, not args.no_judge, Path(tmp))
        reference = timed_study("demo-paper", args.limit, not args.no_judge, Path(tmp))
    ratio = reference["seconds"] / default["seconds"]
    report = {"default": default, "reference_settings": reference, "speedup": round(ratio, 2)}
    for name, run in (("raq default", default), ("reference settings", reference)):
        print(f"{name:>20}: {run['seconds']:8.1f} s  {run['answers']} answers, "
              f"{run['mean_generated_tokens']:.0f} tokens/answer, {run['mean_words']:.0f} words/answer")
    print(f"{'speed-up':>20}: {ratio:.2f}x (reference settings wall time / raq default wall time)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
