"""The local server's process management without a model: the scripted endpoint
(tests/fake_endpoint.py) started as the server process, checked for readiness and its alias,
stopped by its process id; failures while starting; and the Backend and the study on top."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

import pytest

import raq.backends.local_server as local_server
from raq.backends.base import Backend, Request
from raq.backends.local_server import LocalServer, LocalServerBackend
from raq.errors import BackendError
from raq.pipeline import evaluate
from study_fakes import RealJudge, quick_analysis, stub_gguf, study_dict, write_config

ENDPOINT = Path(__file__).with_name("fake_endpoint.py")


class ScriptedServer(LocalServer):
    """The scripted endpoint as the server (serving ``served_alias`` if set), or ``script`` run
    by Python instead."""

    served_alias: str | None = None
    script: str | None = None

    def command(self) -> list[str]:
        if self.script is not None:
            return [sys.executable, "-c", self.script]
        return [sys.executable, str(ENDPOINT), "--port", str(self.port), "--model", self.served_alias or self.alias]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def served_models(base_url: str) -> list[str]:
    with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
        return [m["id"] for m in json.load(response)["data"]]


def test_the_server_is_started_waited_for_and_stopped(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with ScriptedServer(tmp_path / "judge.gguf", "judge", log_path=log) as server:
        assert server.process is not None and server.process.poll() is None
        pid = server.process.pid
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1" and server.port > 0
        assert served_models(server.base_url) == ["judge"]  # ready once start() returns
    assert server.process is None and gone(pid)
    assert f"serving judge on {server.base_url}" in log.read_text()
    server.stop()  # stopping twice is harmless


def test_the_real_command_runs_llama_cpp_server_on_this_host_only(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "m.gguf", "alias", n_ctx=1024, n_threads=3, n_gpu_layers=-1, seed=9)
    command = server.command()
    assert command[:3] == [sys.executable, "-m", "llama_cpp.server"]
    options = dict(zip(command[3::2], command[4::2]))
    assert options["--model"] == str(tmp_path / "m.gguf") and options["--model_alias"] == "alias"
    assert options["--host"] == "127.0.0.1" and options["--n_ctx"] == "1024" and options["--n_threads"] == "3"
    assert options["--n_gpu_layers"] == "-1" and options["--seed"] == "9"
    assert options["--logits_all"] == "false"  # the server then refuses logprobs
    assert options["--flash_attn"] == "false"
    with_logits = LocalServer(tmp_path / "m.gguf", "alias", logits_all=True).command()
    assert dict(zip(with_logits[3::2], with_logits[4::2]))["--logits_all"] == "true"
    flash = LocalServer(tmp_path / "m.gguf", "alias", flash_attn=True).command()
    assert dict(zip(flash[3::2], flash[4::2]))["--flash_attn"] == "true"


def test_a_server_serving_another_alias_is_refused_and_stopped(tmp_path: Path) -> None:
    server = ScriptedServer(tmp_path / "judge.gguf", "judge")
    server.served_alias = "someone-else"
    started: list[int] = []
    original = server._wait_ready

    def watch() -> None:
        assert server.process is not None
        started.append(server.process.pid)
        original()

    server._wait_ready = watch  # type: ignore[method-assign]
    with pytest.raises(BackendError, match=r"does not serve 'judge' \(it serves \['someone-else'\]\)"):
        server.start()
    assert server.process is None and gone(started[0])


def test_a_server_that_exits_while_starting_is_reported_with_its_last_log_line(tmp_path: Path) -> None:
    server = ScriptedServer(tmp_path / "broken.gguf", "judge", log_path=tmp_path / "server.log")
    server.script = "import sys; print('loading'); print('error: broken.gguf is not a model'); sys.exit(3)"
    with pytest.raises(BackendError) as caught:
        server.start()
    assert str(caught.value) == ("the llama.cpp server for broken.gguf exited with code 3 while starting: "
                                 "error: broken.gguf is not a model")
    assert server.process is None


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    server = ScriptedServer(tmp_path / "slow.gguf", "judge", start_timeout_s=1)
    server.script = "import time; time.sleep(60)"
    with pytest.raises(BackendError, match="slow.gguf was not ready after 1 s"):
        server.start()
    assert server.process is None


def test_the_backend_completes_requests_through_its_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_server, "LocalServer", ScriptedServer)
    backend = LocalServerBackend(tmp_path / "judge.gguf", "judge", n_ctx=1024, log_path=tmp_path / "log",
                                 max_in_flight=2, flash_attn=True)
    try:
        pid = backend.pid
        assert isinstance(backend, Backend) and backend.capacity == 2 and backend.n_ctx == 1024
        request = Request.chat([{"role": "user", "content": "Hello?"}])
        assert backend.render(request) == request.messages_json() and backend.count_tokens(request) is None
        completion = backend.complete(request)
        assert completion.text == "a served reply" and completion.counters["base_url"].startswith(backend.base_url)
        many = dict(backend.complete_many([Request(prompt=f"p{i}") for i in range(3)]))
        assert sorted(many) == [0, 1, 2]
        info = backend.info()
        assert info["backend"] == "llama.cpp server" and info["pid"] == pid and info["n_ctx"] == 1024
        assert info["structured_output"] == "json_object" and info["gguf"] == str(tmp_path / "judge.gguf")
        assert info["logits_all"] is False and info["logprobs_served"] is None and info["flash_attn"] is True
    finally:
        backend.close()
    assert backend.pid is None and pid is not None and gone(pid)


def test_a_study_judged_through_a_local_server_records_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quick_analysis(monkeypatch)
    monkeypatch.setattr(local_server, "LocalServer", ScriptedServer)
    config = study_dict(tmp_path, n_questions=2, orders=1)
    config["judge"] = {"id": "served-judge", "gguf": stub_gguf(tmp_path / "models" / "j.gguf")}
    results = evaluate(write_config(tmp_path / "s.yaml", config), backends=RealJudge(), progress=False)
    manifest = results.manifest
    server = manifest["judge_server"]
    assert server["judge"] == "served-judge" and server["base_url"].startswith("http://127.0.0.1:")
    assert gone(server["pid"])  # stopped when judging ended
    assert manifest["judges"]["served-judge"]["backend"] == "llama.cpp server"
    assert all(j.ok for j in results.judgements) and len(results.judgements) == 2
    assert (results.run_dir / "judge-served-judge.log").read_text().startswith("serving served-judge on")


def test_a_server_without_a_log_that_exits_is_reported(tmp_path: Path) -> None:
    server = ScriptedServer(tmp_path / "quiet.gguf", "judge")
    server.script = "raise SystemExit(4)"
    with pytest.raises(BackendError, match=r"quiet.gguf exited with code 4 while starting$"):
        server.start()


def test_the_server_is_stopped_when_its_client_cannot_be_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    servers: list[LocalServer] = []
    pids: list[int] = []

    class Recorded(ScriptedServer):
        def start(self) -> LocalServer:
            servers.append(self)
            return super().start()

    def refuse(*args: object, **kwargs: object) -> None:
        process = servers[0].process
        assert process is not None  # the server was running when the client failed
        pids.append(process.pid)
        raise BackendError("no client")

    monkeypatch.setattr(local_server, "LocalServer", Recorded)
    monkeypatch.setattr(local_server, "OpenAIBackend", refuse)
    with pytest.raises(BackendError, match="no client"):
        LocalServerBackend(tmp_path / "judge.gguf", "judge")
    assert servers[0].process is None and gone(pids[0])
