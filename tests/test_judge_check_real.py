"""judge-check and every judge protocol on real GGUF judges: the demo judge (in-process, the
shipped protocol), the 0.5B model through all four protocols, and a pointwise judge behind a real
llama.cpp server whose log-probabilities are read."""

from __future__ import annotations

from pathlib import Path

import pytest

import raq
from conftest import ROOT, demo_model

pytestmark = pytest.mark.integration


def test_the_demo_judge_passes_judge_check_with_its_shipped_protocol(tmp_path: Path) -> None:
    demo_model("qwen2.5-coder-1.5b-instruct")
    result = raq.check_judge(ROOT / "config.yaml", questions=3, repeats=1, out=tmp_path / "check.json",
                             progress=False)
    check = result.report["checks"][0]
    assert check["protocol"] == "pointwise" and check["backend"]["backend"] == "llama.cpp in-process"
    metrics = check["metrics"]
    assert metrics["failed_judgements"] == 0 and metrics["questions_judged"] == 3
    assert metrics["pairwise_accuracy"]["mean"] >= 0.9 and result.passed  # 100% on 40 questions (README)
    assert metrics["stability"]["mean"] == 1.0  # greedy and in-process: the same scores when asked again
    graded = [d for j in check["judgements"] for d in j["details"]]
    assert all(d["grade"] in ("yes", "no") and d["grade_probs"] is not None for d in graded)
    assert all(0.5 < d["grade_mass"] <= 1.0 + 1e-9 for d in graded)  # the grades hold most of the probability


def test_every_protocol_runs_on_a_real_judge(tmp_path: Path) -> None:
    demo_model("qwen2.5-coder-0.5b-instruct")
    result = raq.check_judge(ROOT / "config.yaml", questions=2, repeats=0, out=tmp_path / "check.json",
                             protocols=["raq", "paper", "pointwise", "pairwise"], progress=False,
                             judge__gguf="qwen2.5-coder-0.5b-instruct", judge__check=0)
    checks = {check["protocol"]: check for check in result.report["checks"]}
    assert list(checks) == ["raq", "paper", "pointwise", "pairwise"]
    for protocol, check in checks.items():
        judged = [j for j in check["judgements"] if j["ok"]]
        assert judged, f"{protocol}: no successful judgement"
        for judgement in judged:
            ladder = next(x for x in result.report["ladders"] if x["question_id"] == judgement["question_id"])
            assert set(judgement["ranks"]) == {rung["name"] for rung in ladder["rungs"]}
    assert len(checks["raq"]["judgements"]) == 2 * 3  # every order
    assert all(d["probs"] is not None for j in checks["pairwise"]["judgements"] for d in j["details"])
    assert len(checks["pairwise"]["judgements"][0]["details"]) == 2 * len(  # every pair in both orders
        [1 for a in range(len(result.report["ladders"][0]["rungs"])) for b in range(a)])


def test_a_server_judge_gives_pointwise_probabilities(tmp_path: Path) -> None:
    demo_model("qwen2.5-coder-0.5b-instruct")
    result = raq.check_judge(ROOT / "config.yaml", questions=1, repeats=0, out=tmp_path / "check.json",
                             progress=False, judge__gguf="qwen2.5-coder-0.5b-instruct", judge__runtime="server")
    check = result.report["checks"][0]
    assert check["backend"]["logits_all"] is True
    assert all(d["grade_probs"] is not None for j in check["judgements"] for d in j["details"])
