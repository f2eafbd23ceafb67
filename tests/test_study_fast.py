"""A whole study on scripted backends: answering and judging interrupted and resumed, a second
judge added, the analysis recomputed and the run read back, with the numbers checked against
what the scripts imply."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from scipy import stats as sps

import raq
from raq.errors import ConfigError
from raq.pipeline import analyse, judge_run
from raq.report import _fmt
from raq.store import RunDir
from study_fakes import MODEL_IDS, another_judge, fakes, quick_analysis, study_config, study_dict, write_config

N_QUESTIONS, ORDERS = 6, 3


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@dataclass
class Stage:
    """A copy of the run directory after one step."""

    path: Path
    manifest: dict[str, Any]
    answers: list[dict[str, Any]]
    judgements: list[dict[str, Any]]


def snapshot(run_dir: Path, into: Path) -> Stage:
    shutil.copytree(run_dir, into)
    return Stage(into, json.loads((into / "manifest.json").read_text()), lines(into / "answers.jsonl"),
                 lines(into / "judgements.jsonl"))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The study, step by step: answering interrupted, judging interrupted, finished, a second judge added."""
    tmp = tmp_path_factory.mktemp("study")
    config = study_config(tmp, n_questions=N_QUESTIONS, orders=ORDERS)
    stages: dict[str, Any] = {"config": config, "tmp": tmp}
    with pytest.MonkeyPatch.context() as patch:
        quick_analysis(patch)
        with pytest.raises(KeyboardInterrupt):
            raq.evaluate(config, backends=fakes({"beta": 2}), progress=False)
        (run_dir,) = (tmp / "runs").iterdir()
        stages["answering"] = snapshot(run_dir, tmp / "after-answering")
        with pytest.raises(KeyboardInterrupt):
            raq.evaluate(config, resume=run_dir, backends=fakes({"judge:fair": 7}), progress=False)
        stages["judging"] = snapshot(run_dir, tmp / "after-judging")
        finishing = fakes()
        stages["results"] = raq.evaluate(config, resume=run_dir, backends=finishing, progress=False)
        stages["opened"] = finishing.opened
        stages["complete"] = snapshot(run_dir, tmp / "complete")
        stages["two_judges"] = judge_run(run_dir, another_judge(tmp, "biased", ORDERS), backends=fakes(),
                                         progress=False)
        stages["run_dir"] = run_dir
    return stages


def test_an_interrupted_answering_phase_keeps_what_was_finished(study: dict[str, Any]) -> None:
    stage = study["answering"]
    assert stage.manifest["status"] == "interrupted" and stage.manifest["error"] == "KeyboardInterrupt: "
    per_model = {m: [a["question_id"] for a in stage.answers if a["model_id"] == m] for m in MODEL_IDS}
    assert len(per_model["alpha"]) == N_QUESTIONS and len(per_model["beta"]) == 2 and per_model["gamma"] == []
    assert per_model["beta"] == stage.manifest["question_ids"][:2]  # in the order of the sample
    assert stage.judgements == [] and not (stage.path / "stats.json").exists()


def test_an_interrupted_judging_phase_keeps_what_was_judged(study: dict[str, Any]) -> None:
    stage = study["judging"]
    assert stage.manifest["status"] == "interrupted" and stage.manifest["resumed"] == 1
    assert len(stage.answers) == 3 * N_QUESTIONS
    assert len({(a["question_id"], a["model_id"]) for a in stage.answers}) == 3 * N_QUESTIONS
    assert stage.answers[:len(study["answering"].answers)] == study["answering"].answers  # appended, not rewritten
    assert len(stage.judgements) == 7 and all(j["ok"] for j in stage.judgements)


def test_resuming_finishes_the_run_with_no_duplicate_and_no_lost_record(study: dict[str, Any]) -> None:
    stage = study["complete"]
    assert stage.manifest["status"] == "complete" and stage.manifest["error"] is None
    assert stage.manifest["resumed"] == 2
    assert stage.answers == study["judging"].answers  # nothing was answered again
    assert set(study["opened"]) == {"judge:fair"}  # the contestants were not even loaded
    assert len(study["opened"]["judge:fair"].requests) == N_QUESTIONS * ORDERS - 7
    keys = [(j["question_id"], j["judge_id"], j["order_index"]) for j in stage.judgements]
    assert len(keys) == len(set(keys)) == N_QUESTIONS * ORDERS
    assert stage.judgements[:7] == study["judging"].judgements
    for name in ("stats.json", "summary.md", "results.csv", "summary.csv", "report.html"):
        assert (stage.path / name).stat().st_size > 0, name
    assert (stage.path / "figures" / "reference_bars.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stage.manifest["judges"]["fair"]["backend"] == "fake" and "judge_server" not in stage.manifest
    assert list(Path(study["tmp"] / "runs").iterdir()) == [study["run_dir"]]  # resumed in place


def test_a_judge_that_always_prefers_one_model_gives_clear_statistics(study: dict[str, Any]) -> None:
    results = study["results"]
    stats = json.loads((study["complete"].path / "stats.json").read_text())
    assert results.summary["mean_rank"].to_dict() == {"alpha": 1.0, "beta": 2.0, "gamma": 3.0}
    assert {m: stats["summary"][m]["mean"] for m in MODEL_IDS} == {"alpha": 1.0, "beta": 2.0, "gamma": 3.0}
    friedman = stats["blocked"]["friedman"]
    chi2 = 12 / (N_QUESTIONS * 3 * 4) * sum((r * N_QUESTIONS) ** 2 for r in (1, 2, 3)) - 3 * N_QUESTIONS * 4
    assert friedman["statistic"] == pytest.approx(chi2) and friedman["kendalls_w"] == pytest.approx(1.0)
    assert friedman["p_value"] == pytest.approx(math.exp(-chi2 / 2)) and friedman["p_value"] < 0.01
    kruskal = sps.kruskal([1.0] * N_QUESTIONS, [2.0] * N_QUESTIONS, [3.0] * N_QUESTIONS).pvalue
    assert stats["paper"]["kruskal"]["p_value"] == pytest.approx(kruskal)
    assert stats["n_questions"] == stats["questions_total"] == N_QUESTIONS and stats["questions_not_judged"] == 0
    assert results.summary["em"].to_dict() == {"alpha": 1.0, "beta": 0.0, "gamma": 0.0}
    assert results.summary.loc["beta", "f1"] == pytest.approx(2 * 0.2 / 1.2)
    assert "Friedman" in (study["complete"].path / "summary.md").read_text()


def test_a_fair_judge_shows_no_position_bias(study: dict[str, Any]) -> None:
    stats = json.loads((study["complete"].path / "stats.json").read_text())
    fair = stats["judging"]["judges"]["fair"]
    assert fair["judgements"] == N_QUESTIONS * ORDERS and fair["failed_after_retries"] == 0
    bias = fair["position_bias"]
    assert bias["first_position_win_rate"] == pytest.approx(1 / 3) and bias["chance"] == pytest.approx(1 / 3)
    assert bias["mean_rank_by_position"] == {"1": 2.0, "2": 2.0, "3": 2.0}
    assert bias["questions_with_several_orders"] == N_QUESTIONS
    assert bias["winner_flip_rate"] == 0.0 and bias["ranking_flip_rate"] == 0.0
    assert fair["f1_agreement"] == {"questions": N_QUESTIONS, "mean_spearman": pytest.approx(1.0),
                                    "winner_has_best_f1": 1.0}


def test_a_second_judge_is_added_without_answering_again(study: dict[str, Any]) -> None:
    run_dir = study["run_dir"]
    assert lines(run_dir / "answers.jsonl") == study["complete"].answers
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert [j["id"] for j in manifest["config"]["judges"]] == ["fair", "biased"] and manifest["config"]["judge"] is None
    biased = [j for j in lines(run_dir / "judgements.jsonl") if j["judge_id"] == "biased"]
    assert len(biased) == N_QUESTIONS * ORDERS
    assert all(j["ranks"] == {m: i + 1 for i, m in enumerate(j["order"])} for j in biased)  # the shown order
    table = study["two_judges"].table
    assert {"rank.fair", "rank.biased"} <= set(table.columns)
    assert table.groupby("model_id")["rank.biased"].mean().to_dict() == {m: 2.0 for m in MODEL_IDS}  # rotations
    assert study["two_judges"].summary["mean_rank"].to_dict() == {"alpha": 1.5, "beta": 2.0, "gamma": 2.5}


def test_a_judge_with_only_position_bias_is_found_out(study: dict[str, Any]) -> None:
    judging = json.loads((study["run_dir"] / "stats.json").read_text())["judging"]
    bias = judging["judges"]["biased"]["position_bias"]
    assert bias["first_position_win_rate"] == 1.0
    assert bias["mean_rank_by_position"] == {"1": 1.0, "2": 2.0, "3": 3.0}
    assert bias["winner_flip_rate"] == 1.0 and bias["ranking_flip_rate"] == 1.0
    expected = sps.binomtest(N_QUESTIONS * ORDERS, N_QUESTIONS * ORDERS, 1 / 3).pvalue
    assert bias["first_position_p_value"] == pytest.approx(expected) and expected < 1e-6
    # per question the fair judge says 1, 2, 3 and the biased one 2, 2, 2 on average: W = 0.5
    assert judging["agreement"]["mean_kendalls_w"] == pytest.approx(0.5)
    assert judging["agreement"]["questions"] == N_QUESTIONS


def test_a_second_judge_reusing_an_id_with_other_settings_is_refused(study: dict[str, Any]) -> None:
    tmp = study["tmp"]
    other = study_dict(tmp / "clash")
    other["judge"]["orders"] = 1  # "fair" again, with another number of orders
    path = write_config(tmp / "clash.yaml", other)
    with pytest.raises(ConfigError, match="judge 'fair' is already in"):
        judge_run(study["complete"].path, path, backends=fakes())


def test_the_analysis_is_recomputed_from_the_directory_alone(study: dict[str, Any],
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quick_analysis(monkeypatch)
    copy = Path(shutil.copytree(study["complete"].path, tmp_path / "copy"))
    for name in ("stats.json", "summary.md", "results.csv", "summary.csv", "report.html"):
        (copy / name).unlink()
    results = analyse(RunDir.open(copy), progress=False)
    before = json.loads((study["complete"].path / "stats.json").read_text())
    after = json.loads((copy / "stats.json").read_text())
    assert after["blocked"]["friedman"] == before["blocked"]["friedman"]
    assert after["summary"] == before["summary"] and after["judging"] == before["judging"]
    assert results.summary["mean_rank"].to_dict() == {"alpha": 1.0, "beta": 2.0, "gamma": 3.0}
    assert (copy / "report.html").exists() and (copy / "summary.md").exists()


def test_a_finished_run_is_read_back_and_exported(study: dict[str, Any], tmp_path: Path) -> None:
    results = raq.load_run(study["run_dir"])
    assert results.manifest["status"] == "complete" and len(results.questions) == N_QUESTIONS
    assert len(results.answers) == 3 * N_QUESTIONS and len(results.judgements) == 2 * N_QUESTIONS * ORDERS
    assert list(results.summary.index) == MODEL_IDS
    assert results.summary["mean_rank"].to_dict() == {"alpha": 1.5, "beta": 2.0, "gamma": 2.5}
    assert results.stats["blocked"]["friedman"]["p_value"] == pytest.approx(math.exp(-6))

    csv = results.to_csv(tmp_path / "csv")
    assert set(csv) == {"results", "summary", "significance"}
    table = pd.read_csv(csv["results"])
    assert len(table) == 3 * N_QUESTIONS and table.groupby("model_id")["rank"].mean().to_dict() == \
        {"alpha": 1.5, "beta": 2.0, "gamma": 2.5}
    assert pd.read_csv(csv["summary"])["model_id"].tolist() == MODEL_IDS
    significance = pd.read_csv(csv["significance"])
    assert set(significance["family"]) == {"paper", "blocked"}
    parquet = results.to_parquet(tmp_path / "parquet")
    assert pd.read_parquet(parquet["results"]).shape == table.shape

    report = results.report(tmp_path / "report.html")
    html = report.read_text()
    assert report == tmp_path / "report.html" and all(m in html for m in MODEL_IDS) and "data:image/png" in html
    figure = results.plot()
    assert len(figure.axes) == 3
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_a_finished_study_gives_worths_tradeoffs_and_memory(study: dict[str, Any]) -> None:
    results = study["results"]
    worths = results.plackett_luce
    assert list(worths.index) == MODEL_IDS and worths.index.name == "model_id"
    assert list(worths.columns) == ["worth", "ci_low", "ci_high", "p_best"]
    assert worths["p_best"].sum() == pytest.approx(1.0) and worths["p_best"].idxmax() == "alpha"
    assert worths["worth"].is_monotonic_decreasing  # the fair judge: alpha, beta, gamma
    assert worths["worth"].sum() == pytest.approx(0.0, abs=1e-6)  # centred

    tradeoffs = results.tradeoffs
    assert tradeoffs["quality"]["measure"] == "plackett_luce_worth"
    assert tradeoffs["quality"]["per_model"] == results.stats["plackett_luce"]["worth"]
    assert {"answers_per_s", "ttft_s"} <= set(tradeoffs["better"])
    # the fake timings: alpha, the best, is also the fastest; the same TTFT for all
    assert tradeoffs["pareto"]["answers_per_s"] == tradeoffs["pareto"]["ttft_s"] == ["alpha"]
    front = tradeoffs["pareto"]["all"]
    assert front and front[0] == "alpha" and set(front) <= set(MODEL_IDS)

    memory = results.memory
    assert list(memory.columns) == ["memory_mib", "peak_rss_mib", "file_mib", "weights_mib", "kv_cache_mib"]
    assert list(memory.index) == MODEL_IDS
    for model in MODEL_IDS:
        recorded = results.manifest["models"][model]["memory"]
        assert memory.loc[model, "memory_mib"] == pytest.approx(recorded["added_rss_mib"])
        assert memory.loc[model, "peak_rss_mib"] == pytest.approx(recorded["peak_rss_mib"])
    assert (memory["memory_mib"] >= 0).all()
    assert results.length_effect == results.stats["length"] and "per_doubling" in results.length_effect

    import matplotlib.pyplot as plt

    figure = results.plot_tradeoffs()
    try:
        assert len(figure.axes) == len(tradeoffs["better"])
        assert figure.axes[0].get_title() == "Pareto set: alpha"
    finally:
        plt.close(figure)

    markdown = (study["complete"].path / "summary.md").read_text()
    controlled = results.length_effect["mean_rank"]
    for model in MODEL_IDS:
        entry = controlled[model]["controlled"]
        assert (f"- {model}: {_fmt(controlled[model]['raw'])}, length-controlled {_fmt(entry['estimate'])} "
                f"[{_fmt(entry['ci_low'])}, {_fmt(entry['ci_high'])}]") in markdown.splitlines()
    line = next(line for line in markdown.splitlines() if line.startswith("Pareto set ("))
    assert line.startswith("Pareto set (no other model is at least as good on quality, answers/s")
    assert line.endswith(f"): {', '.join(front)}.")


def test_statistics_without_the_decision_give_empty_tables(study: dict[str, Any]) -> None:
    import dataclasses

    old = dataclasses.replace(study["results"], stats={k: v for k, v in study["results"].stats.items()
                                                       if k not in ("plackett_luce", "tradeoffs", "length")})
    assert old.plackett_luce.empty and list(old.plackett_luce.columns) == ["worth", "ci_low", "ci_high", "p_best"]
    assert old.tradeoffs == {} and old.length_effect == {}
    with pytest.raises(ValueError, match="no speed or memory figure"):
        old.plot_tradeoffs()
