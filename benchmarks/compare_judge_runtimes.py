"""Judge a recorded run's questions again with its own judge on each local runtime (a llama.cpp
server that raq starts, and llama.cpp in-process), and compare every reply and ranking with the
judgements stored in the run.

    python benchmarks/compare_judge_runtimes.py RUN_DIR [--json OUT]

Prints, per runtime, how many first replies and rankings equal the stored ones, and the seconds
taken (only comparable between runtimes on an otherwise idle machine).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from raq.backends.factory import BackendFactory
from raq.checks import check_model_files
from raq.config import parse_config
from raq.judge import Judge
from raq.store import RunDir

RUNTIMES = ("server", "in-process")


def compare(run_dir: Path) -> dict[str, Any]:
    run = RunDir.open(run_dir)
    config = parse_config(run.manifest()["config"], str(run.manifest_path))
    judge_config = next(j for j in config.judge_list if j.gguf)
    path = check_model_files(config)[f"judge:{judge_config.id}"].path
    questions = {q.question_id: q for q in run.questions()}
    answers: dict[str, dict[str, str]] = {}
    for answer in run.answers():
        answers.setdefault(answer.question_id, {})[answer.model_id] = answer.text
    stored = sorted((j for j in run.judgements() if j.ok and j.judge_id == judge_config.id),
                    key=lambda j: (j.question_id, j.order_index))
    out: dict[str, Any] = {"run": str(run_dir), "judge": judge_config.id, "judgements": len(stored)}
    for runtime in RUNTIMES:
        settings = judge_config.model_copy(update={"runtime": runtime})
        with tempfile.TemporaryDirectory() as logs:
            backend = BackendFactory().judge(settings, path, Path(logs) / "judge.log")
            try:
                judge, start, rows = Judge(settings, backend), time.perf_counter(), []
                for old in stored:
                    new = judge.judge(questions[old.question_id], answers[old.question_id], config.model_ids,
                                      old.order_index)
                    rows.append({"question_id": old.question_id, "order_index": old.order_index,
                                 "same_reply": new.raw_replies[0] == old.raw_replies[0],
                                 "same_ranks": new.ranks == old.ranks, "reply": new.raw_replies[0]})
                seconds = time.perf_counter() - start
            finally:
                backend.close()
        out[runtime] = {"same_first_reply": sum(r["same_reply"] for r in rows),
                        "same_ranks": sum(r["same_ranks"] for r in rows), "seconds": seconds, "rows": rows}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--json", type=Path, help="write every reply to this file")
    args = parser.parse_args()
    result = compare(args.run_dir)
    for runtime in RUNTIMES:
        figures = result[runtime]
        print(f"{runtime}: {figures['same_first_reply']}/{result['judgements']} first replies and "
              f"{figures['same_ranks']}/{result['judgements']} rankings equal the stored ones; "
              f"{figures['seconds']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
