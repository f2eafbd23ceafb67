"""A run directory written by an earlier raq (tests/data/run-v1, real models) is read,
re-analysed to the same statistics, judged again by another judge and reported by today's raq,
with the recording machine's paths pointing nowhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from raq.pipeline import analyse, judge_run, load_run
from raq.store import RunDir
from study_fakes import another_judge, fakes, quick_analysis

RECORDED = Path(__file__).parent / "data" / "run-v1"
MODELS = ["smollm2-135m", "qwen2.5-0.5b", "gemma-3-270m"]
JUDGE = "qwen2.5-1.5b-judge"


def stored(name: str) -> Any:
    return json.loads((RECORDED / name).read_text())


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """A copy of the recorded run whose config's folders do not exist here."""
    copy = Path(shutil.copytree(RECORDED, tmp_path / "run-v1", ignore=shutil.ignore_patterns("README.md")))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"].update(models_dir=str(tmp_path / "no-models"), out_dir=str(tmp_path / "no-runs"))
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_the_recorded_run_is_read_as_it_is() -> None:
    results = load_run(RECORDED)
    assert results.manifest["format_version"] == 1 and results.manifest["status"] == "complete"
    assert len(results.questions) == 4 and len(results.answers) == 12 and len(results.judgements) == 12
    assert list(results.summary.index) == MODELS
    means = {m: v["mean"] for m, v in stored("stats.json")["summary"].items()}
    assert results.summary["mean_rank"].to_dict() == pytest.approx(means)
    assert results.stats == stored("stats.json")
    assert len(results.table) == 12 and results.table["judged"].all()
    assert {a.template for a in results.answers} == {"gguf-chat-template", "completion"}
    assert all(a.prompt_tokens and a.ttft_s <= a.total_s for a in results.answers)


def recorded_keys(now: Any, then: Any) -> Any:
    """``now`` cut down to the keys ``then`` has, at every depth of nested dicts."""
    if isinstance(now, dict) and isinstance(then, dict):
        return {key: recorded_keys(now[key], then[key]) for key in now if key in then}
    return now


def test_the_recorded_run_is_analysed_again_to_the_same_statistics(recorded: Path) -> None:
    (recorded / "stats.json").unlink()
    results = analyse(RunDir.open(recorded), progress=False)
    before, after = stored("stats.json"), json.loads((recorded / "stats.json").read_text())
    assert after["blocked"]["friedman"]["p_value"] == pytest.approx(before["blocked"]["friedman"]["p_value"])
    assert after["paper"]["kruskal"]["p_value"] == pytest.approx(before["paper"]["kruskal"]["p_value"])
    assert results.summary["mean_rank"].to_dict() == pytest.approx({m: v["mean"] for m, v in before["summary"].items()})
    for key in ("summary", "paper", "blocked", "metrics", "power", "n_questions", "questions_total"):
        assert recorded_keys(after[key], before[key]) == before[key], key  # added keys are allowed
    bias = after["judging"]["judges"][JUDGE]["position_bias"]
    assert {k: v for k, v in bias.items() if k in before["judging"]["judges"][JUDGE]["position_bias"]} == \
        before["judging"]["judges"][JUDGE]["position_bias"]
    assert (recorded / "report.html").exists() and (recorded / "figures" / "reference_bars.png").exists()


def test_the_recorded_run_is_judged_again_by_another_judge(recorded: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    quick_analysis(monkeypatch)
    old = (recorded / "judgements.jsonl").read_text()
    backends = fakes()
    results = judge_run(recorded, another_judge(tmp_path, "second", 3), backends=backends, progress=False)
    assert set(backends.opened) == {"judge:second"}  # the recorded judge had nothing left to do
    text = (recorded / "judgements.jsonl").read_text()
    assert text.startswith(old)
    added = [json.loads(line) for line in text[len(old):].splitlines()]
    assert len(added) == 4 * 3 and {j["judge_id"] for j in added} == {"second"}
    table = results.table
    assert {f"rank.{JUDGE}", "rank.second"} <= set(table.columns)
    assert table.groupby("model_id")["rank.second"].mean().to_dict() == {m: 2.0 for m in MODELS}
    first = stored("stats.json")["summary"]
    assert results.summary["mean_rank"].to_dict() == pytest.approx({m: (first[m]["mean"] + 2.0) / 2 for m in MODELS})
    judging = json.loads((recorded / "stats.json").read_text())["judging"]
    assert set(judging["judges"]) == {JUDGE, "second"}
    assert judging["judges"]["second"]["position_bias"]["first_position_win_rate"] == 1.0
    manifest = json.loads((recorded / "manifest.json").read_text())
    assert [j["id"] for j in manifest["config"]["judges"]] == [JUDGE, "second"] and manifest["status"] == "complete"


def test_the_recorded_run_gets_a_report(recorded: Path) -> None:
    path = load_run(recorded).report()
    html = path.read_text()
    assert path == recorded / "report.html" and all(m in html for m in MODELS) and JUDGE in html
