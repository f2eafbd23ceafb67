"""A judge behind several OpenAI-compatible endpoints (``judge.base_url`` a list): every
judgement made once, the requests spread over every endpoint with at most ``max_in_flight`` on
each, the endpoint of every request recorded, a down endpoint reported before any answer; on
scripted endpoints (tests/fake_endpoint.py) and on two real local llama.cpp servers."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import demo_model
from fake_endpoint import FakeEndpoint
from raq.backends.base import Request
from raq.backends.factory import BackendFactory
from raq.backends.fake import FakeBackend
from raq.backends.local_server import LocalServer
from raq.backends.openai_http import OpenAIBackend
from raq.config import JudgeConfig, config_to_dict, parse_config, parse_recorded_config
from raq.errors import ConfigError
from raq.judge_check import run_check
from raq.judge_ladder import ANSWERABLE_TIERS, GOLD_SENTENCE, Ladder, Rung
from raq.pipeline import evaluate
from raq.records import Judgement, Question, from_dict
from study_fakes import MODEL_IDS, RealJudge, fair_ranking, quick_analysis, study_dict, write_config

UNREACHABLE = "http://127.0.0.1:9/v1"


class Busy:
    """Requests in progress (on one endpoint, or on all of them), and the most seen at once."""

    def __init__(self) -> None:
        self.now, self.most = 0, 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


Reply = Callable[[dict[str, Any]], str]


def slowly(reply: Reply, *busy: Busy, seconds: float = 0.05) -> Reply:
    """``reply`` after ``seconds``, counted in progress on each of ``busy`` meanwhile."""
    def answer(request: dict[str, Any]) -> str:
        for counter in busy:
            counter.enter()
        try:
            time.sleep(seconds)
            return reply(request)
        finally:
            for counter in busy:
                counter.leave()

    return answer


def fair_reply(request: dict[str, Any]) -> str:
    """The fair judge's ranking of a listwise request, "yes" to a pointwise one."""
    if "response_format" not in request:
        return "yes"
    return fair_ranking(Request.chat(request["messages"]))


@contextmanager
def endpoints(n: int, everywhere: Busy) -> Iterator[list[tuple[FakeEndpoint, Busy]]]:
    """``n`` scripted endpoints of model ``m`` answering :func:`fair_reply` slowly, each with its own count."""
    with ExitStack() as stack:
        opened = []
        for _ in range(n):
            here = Busy()
            opened.append((stack.enter_context(FakeEndpoint(model="m", default=slowly(fair_reply, here, everywhere))),
                           here))
        yield opened


def remote_study(tmp_path: Path, urls: list[str], n_questions: int = 6, orders: int = 3, **judge: Any) -> Path:
    config = study_dict(tmp_path, n_questions=n_questions, orders=orders)
    config["judge"] = {"id": "remote", "base_url": urls, "model": "m", "orders": orders, **judge}
    return write_config(tmp_path / "study.yaml", config)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- the config --------------------------------------------------------------------------------

def test_a_judge_takes_one_base_url_or_a_list(tmp_path: Path) -> None:
    one = JudgeConfig(base_url="http://a:1/v1", model="m", max_in_flight=3)
    assert one.base_urls == ["http://a:1/v1"] and one.in_flight == 3
    many = JudgeConfig(base_url=["http://a:1/v1", "http://b:1/v1"], model="m", max_in_flight=3)
    assert many.base_urls == ["http://a:1/v1", "http://b:1/v1"] and many.in_flight == 6  # per endpoint
    assert JudgeConfig(gguf="judge.gguf", max_in_flight=2).in_flight == 2  # a local server is one endpoint
    for bad in (["http://a:1/v1", "http://a:1/v1"], ["http://a:1/v1", ""]):
        data = study_dict(tmp_path)
        data["judge"] = {"id": "remote", "base_url": bad, "model": "m"}
        with pytest.raises(ConfigError, match=r"judge: 'base_url' must list distinct, non-empty URLs"):
            parse_config(data, "study.yaml")


def test_a_run_recorded_with_one_base_url_reads_as_it_was(tmp_path: Path) -> None:
    data = study_dict(tmp_path)
    data["judge"] = {"id": "remote", "base_url": "http://a:1/v1", "model": "m", "max_in_flight": 2}
    recorded = config_to_dict(parse_config(data, "study.yaml"))
    again = parse_recorded_config(recorded, "manifest.json")
    assert config_to_dict(again) == recorded and recorded["judge"]["base_url"] == "http://a:1/v1"
    assert again.judge is not None and again.judge.in_flight == 2
    old = {"question_id": "q0", "judge_id": "remote", "protocol": "raq", "order": ["a", "b"], "labels": ["A", "B"],
           "ranks": {"a": 1.0, "b": 2.0}, "ok": True, "attempts": 1, "raw_replies": ["..."]}
    assert from_dict(Judgement, old).endpoints == []  # a judgement recorded before the field


def test_a_completion_names_the_base_url_that_served_it_as_configured() -> None:
    with FakeEndpoint(["yes"], model="m") as endpoint:
        backend = OpenAIBackend([endpoint.base_url], "m")
        completion = backend.complete(Request(prompt="p"))
        backend.close()
    assert completion.endpoint == endpoint.base_url  # not the client's form with a trailing slash
    assert FakeBackend(["x"]).complete(Request(prompt="p")).endpoint is None  # in-process: none


def test_a_recorded_endpoint_holds_no_credentials() -> None:
    from raq.urls import public_url

    assert public_url("https://user:s3cret@host.example:8443/v1?api-key=s3cret#x") == "https://host.example:8443/v1"
    assert public_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
    with FakeEndpoint(["yes"], model="m") as endpoint:
        secret_url = endpoint.base_url.replace("http://", "http://user:s3cret@") + "?key=s3cret"
        backend = OpenAIBackend([secret_url], "m")
        completion = backend.complete(Request(prompt="p"))
        info = backend.info()
        backend.close()
    assert completion.endpoint == endpoint.base_url and "s3cret" not in json.dumps(info)


@pytest.mark.parametrize("url, named", [
    ("http://user:s3cret@host:8000/v1", "a user name or password"),
    ("https://host/v1?api-key=s3cret", "a credential (api-key)"),
    ("https://host/v1?sig=s3cret&x=1", "a credential (sig)"),
])
def test_a_url_that_holds_a_credential_is_refused_without_showing_it(url: str, named: str) -> None:
    for section in ({"judge": {"id": "j", "base_url": [url], "model": "m"}, "models": [{"id": "a", "gguf": "a"}]},
                    {"judge": {"id": "j", "gguf": "j"}, "models": [{"id": "a", "base_url": url, "model": "m"}]}):
        with pytest.raises(ConfigError, match=re.escape(named)) as caught:
            parse_config(section, "study.yaml")
        assert "s3cret" not in str(caught.value) and "api_key_env" in str(caught.value)
    parse_config({"judge": {"id": "j", "base_url": "https://host/v1?api-version=2024-06-01", "model": "m"},
                  "models": [{"id": "a", "gguf": "a"}]}, "study.yaml")  # a query without a secret is fine


# --- a study's judging over the endpoints ------------------------------------------------------

def test_a_study_spreads_its_judging_over_every_endpoint_with_a_bound_on_each(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    quick_analysis(monkeypatch)
    everywhere = Busy()
    with endpoints(3, everywhere) as opened:
        urls = [endpoint.base_url for endpoint, _ in opened]
        results = evaluate(remote_study(tmp_path, urls, max_in_flight=2), backends=RealJudge(), progress=False)
    judgements = lines(Path(results.run_dir) / "judgements.jsonl")
    assert sorted((j["question_id"], j["order_index"]) for j in judgements) == \
        sorted((f"q{i}", k) for i in range(6) for k in range(3))  # every judgement once
    assert all(j["ok"] and len(j["endpoints"]) == j["attempts"] == 1 for j in judgements)
    used = Counter(url for j in judgements for url in j["endpoints"])
    assert set(used) == set(urls)  # every endpoint judged ...
    assert used == {endpoint.base_url: len(endpoint.requests) for endpoint, _ in opened}  # ... what it was asked
    assert all(busy.most <= 2 for _, busy in opened)  # max_in_flight on each endpoint ...
    assert everywhere.most > 2  # ... and more than one endpoint's worth at once
    assert results.manifest["judges"]["remote"]["base_urls"] == urls
    assert results.manifest["judges"]["remote"]["capacity"] == 6


def test_a_scoring_judge_records_the_endpoint_of_every_grade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quick_analysis(monkeypatch)
    everywhere = Busy()
    with endpoints(2, everywhere) as opened:
        urls = [endpoint.base_url for endpoint, _ in opened]
        results = evaluate(remote_study(tmp_path, urls, n_questions=4, orders=1, protocol="pointwise"),
                           backends=RealJudge(), progress=False)
    judgements = results.judgements
    assert len(judgements) == 4 and all(j.ok for j in judgements)
    for judgement in judgements:
        assert [len(d["endpoints"]) for d in judgement.details] == [1] * len(MODEL_IDS)  # one request per grade
        assert judgement.endpoints == [url for d in judgement.details for url in d["endpoints"]]
    assert {url for j in judgements for url in j.endpoints} == set(urls)
    assert all(busy.most <= 1 for _, busy in opened) and everywhere.most == 2


def test_a_down_endpoint_of_the_judge_is_reported_before_any_answer(tmp_path: Path) -> None:
    everywhere = Busy()
    with endpoints(1, everywhere) as opened:
        endpoint = opened[0][0]
        config = remote_study(tmp_path, [endpoint.base_url, UNREACHABLE])
        backends = RealJudge()
        with pytest.raises(ConfigError) as caught:
            evaluate(config, backends=backends, progress=False)
    message = str(caught.value)
    assert message.startswith(f"{config}: judge.base_url[1] (remote): {UNREACHABLE}/ cannot be reached"), message
    assert endpoint.requests == [] and backends.fake.opened == {}  # nothing asked, no model opened
    assert not (tmp_path / "runs").exists()


def test_judge_check_keeps_max_in_flight_on_each_endpoint() -> None:
    names = ("gold", "gold_sentence", "wrong")
    ladders = [Ladder(Question(f"q{i}", f"Who won game {i}?", f"Denver won game {i}.", ["Denver"]),
                      (Rung("gold", "Denver", ANSWERABLE_TIERS["gold"]),
                       Rung("gold_sentence", GOLD_SENTENCE.format(answer="Denver"), ANSWERABLE_TIERS["gold_sentence"]),
                       Rung("wrong", "Carolina", ANSWERABLE_TIERS["wrong"])))
               for i in range(8)]
    everywhere = Busy()
    with endpoints(2, everywhere) as opened:
        urls = [endpoint.base_url for endpoint, _ in opened]
        settings = JudgeConfig(id="remote", base_url=urls, model="m", max_in_flight=1)
        backend = BackendFactory().judge(settings, None, Path("unused.log"))
        try:
            report = run_check(settings, backend, ladders, repeats=0, progress=False)
        finally:
            backend.close()
    judgements = report["judgements"]
    assert len(judgements) == 8 and all(j["ok"] and set(j["ranks"]) == set(names) for j in judgements)
    assert {url for j in judgements for url in j["endpoints"]} == set(urls)
    assert all(busy.most == 1 for _, busy in opened) and everywhere.most == 2


# --- two real llama.cpp servers ----------------------------------------------------------------

@pytest.mark.integration
def test_a_judge_behind_two_real_llama_cpp_servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = demo_model("qwen2.5-coder-0.5b-instruct")
    quick_analysis(monkeypatch)
    logs = tmp_path / "servers"
    logs.mkdir()
    with LocalServer(path, "m", n_ctx=1024, n_threads=1, logits_all=True, log_path=logs / "a.log") as first, \
            LocalServer(path, "m", n_ctx=1024, n_threads=1, logits_all=True, log_path=logs / "b.log") as second:
        urls = [first.base_url, second.base_url]
        results = evaluate(remote_study(tmp_path, urls, n_questions=4, orders=1, protocol="pointwise"),
                           backends=RealJudge(), progress=False)
    judgements = results.judgements
    assert len(judgements) == 4 and all(j.ok for j in judgements), [j.error for j in judgements]
    assert all(set(j.ranks) == set(MODEL_IDS) for j in judgements)
    assert all(len(j.endpoints) >= len(MODEL_IDS) for j in judgements)  # one request per grade, at least
    assert {url for j in judgements for url in j.endpoints} == set(urls)  # both servers judged
    assert results.manifest["judges"]["remote"]["base_urls"] == urls
