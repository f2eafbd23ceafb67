"""The checks made before any work: model files present, GGUF and intact; endpoints reachable,
accepting the key and serving the model; each failure one line naming the config key."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest

from fake_endpoint import FakeEndpoint
from raq.checks import check_endpoints, check_model_files
from raq.config import parse_config
from raq.errors import ConfigError, ModelFileError
from study_fakes import MODEL_IDS, study_dict

UNREACHABLE = "http://127.0.0.1:9/v1"


def config_of(data: dict[str, Any]) -> Any:
    return parse_config(data, "study.yaml")


def test_every_file_is_resolved_and_hashed(tmp_path: Path) -> None:
    files = check_model_files(config_of(study_dict(tmp_path)))
    assert set(files) == {*MODEL_IDS, "judge:fair"}
    alpha = files["alpha"]
    assert alpha.path == tmp_path / "models" / "alpha.gguf" and alpha.ref == str(alpha.path)
    assert alpha.sha256 == hashlib.sha256(alpha.path.read_bytes()).hexdigest()
    assert (tmp_path / "models" / "alpha.gguf.sha256").exists()  # cached for the next check


def test_only_the_files_asked_for_are_checked(tmp_path: Path) -> None:
    config = config_of(study_dict(tmp_path))
    (tmp_path / "models" / "alpha.gguf").unlink()  # a contestant's file is gone: judging does not need it
    assert set(check_model_files(config, contestants=False)) == {"judge:fair"}
    assert check_model_files(config, contestants=False, judges=[]) == {}


@pytest.mark.parametrize(("damage", "message"), [("missing", "not found"), ("not gguf", "is not a GGUF file"),
                                                  ("sha256", "sha256 mismatch")])
def test_a_bad_file_is_named_with_its_config_key(damage: str, message: str, tmp_path: Path) -> None:
    data = study_dict(tmp_path)
    path = Path(data["models"][1]["gguf"])
    if damage == "missing":
        path.unlink()
    elif damage == "not gguf":
        path.write_bytes(b"PK\x03\x04 a zip file")
    else:
        data["models"][1]["sha256"] = "0" * 64
    with pytest.raises(ModelFileError) as caught:
        check_model_files(config_of(data))
    assert str(caught.value).startswith(f"models[1].gguf: model '{path}': ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_judges_file_is_named_with_its_key_among_several_judges(tmp_path: Path) -> None:
    data = study_dict(tmp_path)
    data["judges"] = [data.pop("judge"), {"id": "second", "gguf": str(tmp_path / "absent.gguf")}]
    with pytest.raises(ModelFileError, match=r"^judges\[1\]\.gguf: model '.*absent.gguf': file .* not found$"):
        check_model_files(config_of(data))


def test_a_catalog_name_that_is_missing_says_how_to_fetch_it(tmp_path: Path) -> None:
    data = study_dict(tmp_path)
    data["judge"]["gguf"] = "smollm2-135m-instruct"
    with pytest.raises(ModelFileError, match="judge.gguf: .*python -m raq models fetch smollm2-135m-instruct"):
        check_model_files(config_of(data))


def test_a_judge_that_is_also_a_contestant_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = study_dict(tmp_path)
    data["judge"]["gguf"] = data["models"][0]["gguf"]
    with caplog.at_level(logging.WARNING, logger="raq.checks"):
        check_model_files(config_of(data))
    assert "the judge fair is also a contestant" in caplog.text


def served(tmp_path: Path, url: str, judge_url: str | None = None, **model: Any) -> dict[str, Any]:
    data = study_dict(tmp_path)
    data["models"][2] = {"id": "gamma", "base_url": url, "model": "m", **model}
    if judge_url:
        data["judges"] = [data.pop("judge"), {"id": "remote", "base_url": judge_url, "model": "m"}]
    return data


def test_reachable_endpoints_pass(tmp_path: Path) -> None:
    with FakeEndpoint(model="m") as endpoint:
        check_endpoints(config_of(served(tmp_path, endpoint.base_url, endpoint.base_url)), "study.yaml")
    assert endpoint.requests == [] and len(endpoint.keys_seen) == 2  # each client listed the models once


def test_an_unreachable_contestant_is_named_with_its_key_and_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        check_endpoints(config_of(served(tmp_path, UNREACHABLE)), "study.yaml")
    message = str(caught.value)
    assert message.startswith("study.yaml: models[2].base_url (gamma): ") and UNREACHABLE in message
    assert "cannot be reached" in message


def test_judges_can_be_left_out_or_chosen(tmp_path: Path) -> None:
    with FakeEndpoint(model="m") as endpoint:
        config = config_of(served(tmp_path, endpoint.base_url, UNREACHABLE))
        with pytest.raises(ConfigError, match=r"^study.yaml: judges\[1\]\.base_url \(remote\): "):
            check_endpoints(config, "study.yaml")
        check_endpoints(config, "study.yaml", judges=[])  # --no-judge: the remote judge is not needed
        check_endpoints(config, "study.yaml", judges=[config.judge_list[0]])
    with pytest.raises(ConfigError, match="judges"):
        check_endpoints(config, "study.yaml", contestants=False)  # the contestant's endpoint is gone: not checked


def test_an_unset_key_variable_is_named_with_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAQ_CHECK_KEY", raising=False)
    config = config_of(served(tmp_path, UNREACHABLE, api_key_env="RAQ_CHECK_KEY"))
    with pytest.raises(ConfigError, match=r"^study.yaml: models\[2\]\.api_key_env: .*RAQ_CHECK_KEY is not set$"):
        check_endpoints(config, "study.yaml")
