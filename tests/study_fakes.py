"""Whole studies without models: a SQuAD file of a few questions, configs whose GGUFs are stub
files (they only have to begin with the GGUF magic), and scripted contestants and judges.

The three contestants differ in quality: ``alpha`` gives the gold answer, ``beta`` hedges
around it, ``gamma`` does not know. :func:`fair_judge` ranks by that quality whatever the order
it is shown; FakeBackend's default reply ranks in the shown order (a judge with nothing but
position bias).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from raq.backends.base import Backend, Request
from raq.backends.factory import BackendFactory
from raq.backends.fake import FakeBackend, FakeBackends, Reply
from raq.config import GenerationConfig, JudgeConfig, ModelConfig

GGUF_STUB = b"GGUF\x03\x00\x00\x00stub"
MODEL_IDS = ["alpha", "beta", "gamma"]
_QUESTION = re.compile(r"What does paragraph (\d+) say\?")
_ANSWER = re.compile(r'<answer label="([A-Z])">\n(.*?)\n</answer>', re.S)


def write_squad(path: Path, n: int) -> Path:
    """A nested SQuAD JSON file of ``n`` paragraphs with one question each (ids ``q0``...)."""
    data = [{"title": f"T{i}", "paragraphs": [{
        "context": f"Paragraph {i} is about item {i}. It says that the answer is gold{i}, nothing else.",
        "qas": [{"id": f"q{i}", "question": f"What does paragraph {i} say?",
                 "answers": [{"text": f"gold{i}", "answer_start": 0}]}]}]} for i in range(n)]
    path.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")
    return path


def stub_gguf(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(GGUF_STUB + path.stem.encode())
    return str(path)


def study_dict(tmp_path: Path, n_questions: int = 6, orders: int = 3, **sections: Any) -> dict[str, Any]:
    """A study of the three contestants and one local judge ``fair`` on stub files in ``tmp_path``."""
    models = tmp_path / "models"
    tmp_path.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "name": "fast", "out_dir": str(tmp_path / "runs"), "models_dir": str(models),
        "data": {"source": str(write_squad(tmp_path / "squad.json", n_questions)), "n_questions": n_questions,
                 "seed": 3},
        "generation": {"max_tokens": 16, "warmup": False},
        "models": [{"id": m, "gguf": stub_gguf(models / f"{m}.gguf")} for m in MODEL_IDS],
        "judge": {"id": "fair", "gguf": stub_gguf(models / "judge.gguf"), "orders": orders},
    }
    for key, value in sections.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def study_config(tmp_path: Path, **changes: Any) -> Path:
    return write_config(tmp_path / "study.yaml", study_dict(tmp_path, **changes))


def another_judge(tmp_path: Path, judge_id: str = "biased", orders: int = 3) -> Path:
    """A config whose only judge is ``judge_id`` (its models are not used by ``judge_run``)."""
    config = study_dict(tmp_path / "other")
    config["judge"] = {"id": judge_id, "gguf": stub_gguf(tmp_path / "other" / f"{judge_id}.gguf"), "orders": orders}
    return write_config(tmp_path / f"{judge_id}.yaml", config)


# --- contestants -----------------------------------------------------------------------------

def paragraph_of(request: Request) -> str | None:
    """The paragraph number a question asks about (None for another request: a warm-up)."""
    match = _QUESTION.search(request.messages[-1]["content"] if request.messages else request.prompt or "")
    return match.group(1) if match else None


ANSWERS: dict[str, Callable[[str], str]] = {
    "alpha": lambda i: f"gold{i}",
    "beta": lambda i: f"maybe gold{i} or item {i}",
    "gamma": lambda i: "no idea",
}
QUALITY = {"alpha": 0, "beta": 1, "gamma": 2}  # the fair judge's order, best first


def answer_as(model_id: str) -> Callable[[Request], str]:
    def answer(request: Request) -> str:
        paragraph = paragraph_of(request)
        return "Paris" if paragraph is None else ANSWERS[model_id](paragraph)

    return answer


def contestant(model_id: str, interrupt_after: int | None = None) -> FakeBackend:
    """A FakeBackend answering as ``model_id`` does; with ``interrupt_after``, Ctrl-C comes after
    that many answers."""
    answer = answer_as(model_id)
    replies: list[Reply] = [] if interrupt_after is None else [answer] * interrupt_after + [KeyboardInterrupt()]
    return FakeBackend(replies, default=answer, name=model_id)


def model_of(text: str) -> str:
    return "alpha" if re.fullmatch(r"gold\d+", text) else "beta" if text.startswith("maybe") else "gamma"


def shown_answers(request: Request) -> list[tuple[str, str]]:
    """(label, answer text) of a judge request, in the order shown."""
    return _ANSWER.findall(request.messages[1]["content"])


def fair_ranking(request: Request) -> str:
    """Rank the shown answers by their quality, whatever the order."""
    ranked = sorted(shown_answers(request), key=lambda item: QUALITY[model_of(item[1])])
    return json.dumps({"ranking": [label for label, _ in ranked]})


def fair_judge(interrupt_after: int | None = None) -> FakeBackend:
    """The fair judge; with ``interrupt_after``, Ctrl-C comes after that many rankings."""
    replies: list[Reply] = [] if interrupt_after is None else [fair_ranking] * interrupt_after + [KeyboardInterrupt()]
    return FakeBackend(replies, default=fair_ranking, name="fair")


def fakes(interrupt: dict[str, int] | None = None) -> FakeBackends:
    """FakeBackends for the study: the contestants, the fair judge (``fair``) and, for any other
    judge id, a judge that ranks in the shown order; ``interrupt`` maps ids (``judge:<id>`` for
    a judge) to the number of replies after which Ctrl-C comes."""
    after = interrupt or {}
    return FakeBackends(contestant=lambda m: contestant(m, after.get(m)),
                        judge=lambda j: fair_judge(after.get(f"judge:{j}")) if j == "fair" else FakeBackend(name=j))


class RealJudge:
    """Fake contestants; the judge as the factory opens it (a local server, or a served judge
    over HTTP, checked)."""

    def __init__(self) -> None:
        self.fake, self.real = fakes(), BackendFactory()

    def contestant(self, model: ModelConfig, generation: GenerationConfig, path: Path | None) -> Backend:
        return self.fake.contestant(model, generation, path)

    def judge(self, judge: JudgeConfig, path: Path | None, log_path: Path) -> Backend:
        return self.real.judge(judge, path, log_path)


# --- quicker analysis ------------------------------------------------------------------------

def quick_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fewer simulated studies for the power figures, and charts left out (an empty PNG for the
    bar charts, no figures in report.html): the tests of the report and its figures draw them."""
    import matplotlib.pyplot as plt

    import raq.figures
    import raq.power
    import raq.report

    monkeypatch.setattr(raq.power, "study_power", functools.partial(raq.power.study_power, n_sim=200))
    monkeypatch.setattr(raq.figures, "figure_uri", lambda make, dpi=100: "data:image/png;base64,")
    monkeypatch.setattr(raq.report, "bar_figure", lambda *args, **kwargs: plt.figure(figsize=(1, 1)))
