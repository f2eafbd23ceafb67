"""The judge x protocol table of one or more judge_check.json files (``python -m raq judge-check``),
as Markdown, and optionally their headline figures gathered into one JSON file.

    python benchmarks/judge_check_table.py runs/judge-check-*.json [--json benchmarks/results/X.json]

Every figure is a mean over questions with its 95% percentile-bootstrap interval; seconds are the
judge's own time per question (without the stability repeats).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

COLUMNS = ("pairwise_accuracy", "all_correct_above_wrong", "wrong_first", "kendall_tau", "position_consistency",
           "stability", "length_preference")


def interval(entry: Any, percent: bool = True) -> str:
    if not isinstance(entry, dict) or entry.get("mean") is None:
        return "n/a"
    scale, unit = (100, "%") if percent else (1, "")
    text = f"{scale * entry['mean']:.1f}{unit}" if percent else f"{entry['mean']:.2f}"
    if entry.get("ci_low") is not None:
        digits = 1 if percent else 2
        text += f" [{scale * entry['ci_low']:.{digits}f}, {scale * entry['ci_high']:.{digits}f}]"
    return text


def rows(paths: list[Path]) -> list[dict[str, Any]]:
    found = []
    for path in paths:
        report = json.loads(path.read_text(encoding="utf-8"))
        for check in report["checks"]:
            m = check["metrics"]
            found.append({"file": path.name, "judge": check["judge"], "protocol": check["protocol"],
                          "orders": check["orders"], "questions": m["questions_judged"],
                          "failed_judgements": m["failed_judgements"],
                          "seconds_per_question": m["seconds_per_question"], "passed": check["passed"],
                          "settings": {k: check["settings"].get(k) for k in ("grades", "show_context", "context_chars",
                                                                             "temperature", "seed", "runtime")},
                          **{name: m.get(name) for name in COLUMNS}})
    return found


def markdown(table: list[dict[str, Any]]) -> str:
    head = ["judge", "protocol", "orders", "n", "pairwise accuracy", "all correct above wrong", "wrong first",
            "Kendall tau-b", "position consistency", "stability", "longer wins (equal tier)", "s/question", "failed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table:
        seconds = row["seconds_per_question"]
        lines.append("| " + " | ".join([
            row["judge"], row["protocol"], str(row["orders"]), str(row["questions"]),
            interval(row["pairwise_accuracy"]), interval(row["all_correct_above_wrong"]), interval(row["wrong_first"]),
            interval(row["kendall_tau"], percent=False), interval(row["position_consistency"]),
            interval(row["stability"]), interval(row["length_preference"]),
            "n/a" if seconds is None else f"{seconds:.1f}", str(row["failed_judgements"])]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    table = rows(args.files)
    print(markdown(table))
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
