"""The command line on scripted backends: every verb, resuming, overrides, and refusals that
come before any work (bad config, bad flags, a folder that is not a run, endpoints that cannot
be reached or refuse the key), with API keys kept out of output and files."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import raq.pipeline
from fake_endpoint import FakeEndpoint
from raq.backends.base import Backend
from raq.backends.factory import BackendFactory
from raq.backends.fake import FakeBackends
from raq.cli import main
from raq.config import GenerationConfig, JudgeConfig, ModelConfig
from study_fakes import MODEL_IDS, another_judge, fakes, quick_analysis, study_dict, write_config

N_QUESTIONS = 4
KEY = "sk-cli-secret-abcdefghijkl"


def use_backends(monkeypatch: pytest.MonkeyPatch, backends: FakeBackends | None = None) -> None:
    """Have the pipeline open these fake backends instead of models."""
    monkeypatch.setattr(raq.pipeline, "BackendFactory", lambda: backends or fakes())


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("raq: error:")]


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    quick_analysis(monkeypatch)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config, run directory) of a study run once with ``raq run``."""
    tmp = tmp_path_factory.mktemp("cli")
    config = write_config(tmp / "study.yaml", study_dict(tmp, n_questions=N_QUESTIONS, orders=2))
    with pytest.MonkeyPatch.context() as patch:
        quick_analysis(patch)
        use_backends(patch)
        assert main(["run", "--config", str(config), "--quiet"]) == 0
    (run_dir,) = (tmp / "runs").iterdir()
    return config, run_dir


@pytest.fixture
def run_copy(finished: tuple[Path, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished[1], tmp_path / "run"))


def test_run_writes_a_complete_run_and_prints_the_headline(finished: tuple[Path, Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    _, run_dir = finished
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and set(manifest["models"]) == set(MODEL_IDS)
    assert len(lines(run_dir / "answers.jsonl")) == 3 * N_QUESTIONS
    assert len(lines(run_dir / "judgements.jsonl")) == 2 * N_QUESTIONS
    # the report the study wrote itself shows the run's final status, not the one it had while analysing
    assert "status complete" in (run_dir / "report.html").read_text(encoding="utf-8")
    assert main(["report", str(run_dir), "--out", str(run_dir / "again.html")]) == 0
    out = capsys.readouterr().out
    assert f"run directory: {run_dir}" in out
    # four questions cannot separate alpha from beta (Nemenyi p = 0.33): no model is named best
    assert ("mean rank (1 = best): alpha 1.00, beta 2.00, gamma 3.00; no model is significantly better than the "
            "others") in out
    assert f"report: {run_dir / 'again.html'}" in out and (run_dir / "again.html").stat().st_size > 0


def test_an_interrupted_run_exits_130_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "study.yaml", study_dict(tmp_path, n_questions=N_QUESTIONS, orders=1))
    use_backends(monkeypatch, fakes({"gamma": 1}))
    assert main(["run", "--config", str(config), "--quiet"]) == 130
    assert "interrupted; finished work is saved" in capsys.readouterr().err
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
    use_backends(monkeypatch)
    assert main(["run", "--config", str(config), "--resume", str(run_dir), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "raq: answering in" in captured.err and "Friedman p = " in captured.out
    answers = lines(run_dir / "answers.jsonl")
    assert sorted((a["question_id"], a["model_id"]) for a in answers) == sorted(
        {(a["question_id"], a["model_id"]) for a in answers}) and len(answers) == 3 * N_QUESTIONS
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"


def test_resuming_with_a_config_that_changes_results_is_refused(finished: tuple[Path, Path], run_copy: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = finished
    assert main(["run", "--config", str(config), "--resume", str(run_copy), "--set", "generation.max_tokens=9"]) == 2
    (error,) = errors(capsys.readouterr().err)
    assert "generation.max_tokens" in error and str(run_copy) in error


def test_judge_adds_a_judge_and_stats_and_plan_read_the_run(run_copy: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    use_backends(monkeypatch)
    assert main(["judge", str(run_copy), "--config", str(another_judge(tmp_path, "biased", 3)), "--quiet"]) == 0
    assert "mean rank (1 = best): alpha 1.50, beta 2.00, gamma 2.50" in capsys.readouterr().out
    assert {j["judge_id"] for j in lines(run_copy / "judgements.jsonl")} == {"fair", "biased"}
    (run_copy / "stats.json").unlink()
    assert main(["stats", str(run_copy)]) == 0
    assert json.loads((run_copy / "stats.json").read_text())["n_questions"] == N_QUESTIONS
    assert "no model is significantly better than the others" in capsys.readouterr().out
    assert main(["plan", "--pilot", str(run_copy), "--n-sim", "50"]) == 0
    out = capsys.readouterr().out
    assert "pilot mean ranks: alpha 1.500, beta 2.000, gamma 2.500" in out and "questions" in out


def test_plan_from_mean_ranks_and_a_refused_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--mean-ranks", "1.8", "2.0", "2.2", "--n-sim", "50", "--seed", "1"]) == 0
    assert "Mean ranks (1 = best): 1.800, 2.000, 2.200" in capsys.readouterr().out
    assert main(["plan", "--mean-ranks", "1", "1", "--n-sim", "50"]) == 2
    (error,) = errors(capsys.readouterr().err)
    assert error.startswith("raq: error: plan: mean ranks sum to 2")


def test_no_judge_stops_after_the_answers_and_set_overrides_the_config(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "study.yaml", study_dict(tmp_path, n_questions=N_QUESTIONS))
    use_backends(monkeypatch)
    assert main(["run", "--config", str(config), "--no-judge", "--quiet", "--limit", "2",
                 "--set", "generation.max_tokens=7", "--set", "name=renamed"]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert run_dir.name.startswith("renamed-") and manifest["status"] == "answered"
    assert manifest["config"]["generation"]["max_tokens"] == 7 and manifest["config"]["data"]["n_questions"] == 2
    assert {a["max_tokens"] for a in lines(run_dir / "answers.jsonl")} == {7}
    assert len(lines(run_dir / "answers.jsonl")) == 6 and not (run_dir / "judgements.jsonl").exists()
    out = capsys.readouterr().out
    assert "mean rank" not in out and "questions without a valid judgement: 2" in out


def test_a_bad_config_is_one_line_naming_the_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = study_dict(tmp_path)
    config["generation"]["max_tokenz"] = 3
    path = write_config(tmp_path / "bad.yaml", config)
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    (error,) = errors(err)
    line = yaml.safe_dump(config).splitlines().index("  max_tokenz: 3") + 1
    assert error == f"raq: error: {path}:{line}: generation.max_tokenz: unknown key"
    assert "Traceback" not in err and not (tmp_path / "runs").exists()


def test_bad_flags_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--limit", "0"])
    assert exit_.value.code == 2 and "--limit: must be at least 1, not 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--limit", "many"])
    assert "'many' is not a whole number" in capsys.readouterr().err
    assert main(["run", "--config", str(tmp_path / "x.yaml"), "--set", "novalue"]) == 2
    assert "--set 'novalue': expected KEY=VALUE" in capsys.readouterr().err


def test_resuming_a_folder_that_is_not_a_run_fails_before_anything_else(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "folder").mkdir()
    assert main(["run", "--config", str(tmp_path / "absent.yaml"), "--resume", str(tmp_path / "folder")]) == 2
    (error,) = errors(capsys.readouterr().err)
    assert error == f"raq: error: {tmp_path / 'folder'}: not a raq run directory (no manifest.json)"  # not the config


@pytest.mark.parametrize("where", ["models[1]", "judge"])
def test_an_unreachable_endpoint_is_named_with_its_key_and_url(where: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    url = "http://127.0.0.1:9/v1"
    config = study_dict(tmp_path)
    if where == "judge":
        config["judge"] = {"id": "remote", "base_url": url, "model": "m"}
    else:
        config["models"][1] = {"id": "beta", "base_url": url, "model": "m"}
    use_backends(monkeypatch)
    assert main(["run", "--config", str(write_config(tmp_path / "s.yaml", config)), "--quiet"]) == 2
    (error,) = errors(capsys.readouterr().err)
    assert f"{where}.base_url" in error and url in error and "cannot be reached" in error
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def keyed_endpoint() -> Iterator[FakeEndpoint]:
    def reply(request: dict[str, Any]) -> str:
        if "response_format" in request:
            labels = request["response_format"]["json_schema"]["schema"]["properties"]["ranking"]["items"]["enum"]
            return json.dumps({"ranking": labels})
        return "gold0"

    with FakeEndpoint(model="served", api_key=KEY, default=reply) as endpoint:
        yield endpoint


class Mixed:
    """Stub GGUFs stay fakes; a served contestant and a remote judge go over HTTP as the config says."""

    def __init__(self) -> None:
        self.fake, self.real = fakes(), BackendFactory()

    def contestant(self, model: ModelConfig, generation: GenerationConfig, path: Path | None) -> Backend:
        return (self.real if model.base_url else self.fake).contestant(model, generation, path)

    def judge(self, judge: JudgeConfig, path: Path | None, log_path: Path) -> Backend:
        return self.real.judge(judge, path, log_path)


def served_study(tmp_path: Path, url: str) -> Path:
    config = study_dict(tmp_path, n_questions=2, orders=1)
    config["models"][1] = {"id": "beta", "base_url": url, "model": "served", "api_key_env": "RAQ_TEST_KEY"}
    config["judge"] = {"id": "remote", "base_url": url, "model": "served", "api_key_env": "RAQ_TEST_KEY"}
    return write_config(tmp_path / "served.yaml", config)


def test_a_wrong_api_key_fails_before_answering_and_is_never_shown(keyed_endpoint: FakeEndpoint, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    wrong = "sk-wrong-key-0123456789"
    monkeypatch.setenv("RAQ_TEST_KEY", wrong)
    use_backends(monkeypatch)
    assert main(["run", "--config", str(served_study(tmp_path, keyed_endpoint.base_url)), "--quiet"]) == 2
    captured = capsys.readouterr()
    (error,) = errors(captured.err)
    assert "models[1].base_url (beta)" in error and "refused the API key" in error
    assert keyed_endpoint.keys_seen == [wrong]  # it was sent once, to list the models ...
    assert wrong not in captured.err + captured.out and wrong[:8] not in captured.err  # ... and never shown
    assert keyed_endpoint.requests == [] and not (tmp_path / "runs").exists()  # nothing was answered


def test_an_unset_key_variable_is_named(keyed_endpoint: FakeEndpoint, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RAQ_TEST_KEY", raising=False)
    assert main(["run", "--config", str(served_study(tmp_path, keyed_endpoint.base_url)), "--quiet"]) == 2
    (error,) = errors(capsys.readouterr().err)
    assert "models[1].api_key_env" in error and "RAQ_TEST_KEY is not set" in error


def test_a_served_study_with_a_key_keeps_it_out_of_output_and_files(keyed_endpoint: FakeEndpoint, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAQ_TEST_KEY", KEY)

    mixed = Mixed()
    assert raq.pipeline.evaluate(served_study(tmp_path, keyed_endpoint.base_url), backends=mixed,
                                 progress=False).manifest["status"] == "complete"
    (run_dir,) = (tmp_path / "runs").iterdir()
    answers = {(a["model_id"], a["question_id"]): a for a in lines(run_dir / "answers.jsonl")}
    assert {a["counters"].get("token_counts") for m, a in answers.items() if m[0] == "beta"} == {"stream chunks"}
    assert len(lines(run_dir / "judgements.jsonl")) == 2
    assert set(keyed_endpoint.keys_seen) == {KEY} and len(keyed_endpoint.requests) == 4
    captured = capsys.readouterr()
    for path in [p for p in run_dir.rglob("*") if p.is_file()]:
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in captured.out + captured.err
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["judges"]["remote"]["base_urls"] == [keyed_endpoint.base_url]


def test_models_verbs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--dir", str(tmp_path)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert any(row.startswith("name=smollm2-135m-instruct") and "present=False" in row for row in rows)
    assert main(["models", "fetch", "--dir", str(tmp_path)]) == 2
    assert "name the models to fetch" in capsys.readouterr().err
    config = write_config(tmp_path / "study.yaml", study_dict(tmp_path))
    assert main(["models", "verify", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert all(f"{m}: {tmp_path / 'models' / (m + '.gguf')} sha256 " in out for m in MODEL_IDS)
    assert "judge:fair:" in out


def test_no_verb_prints_help_and_debug_shows_the_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "usage: raq" in capsys.readouterr().out
    with pytest.raises(raq.RaqError):
        main(["--debug", "stats", str(tmp_path)])
