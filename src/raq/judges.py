"""Which judge a protocol asks for: listwise (``raq``, ``paper``), ``pointwise`` or ``pairwise``,
all with one interface (``orders_for`` and ``judge``, which returns a Judgement)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from .backends.base import Backend
from .config import JudgeConfig
from .judge import Judge
from .judge_pairwise import PairwiseJudge
from .judge_pointwise import PointwiseJudge
from .records import Judgement, Question


class AnyJudge(Protocol):
    config: JudgeConfig

    def orders_for(self, question_id: str, model_ids: Sequence[str]) -> list[list[str]]: ...

    def judge(self, question: Question, answers: Mapping[str, str], model_ids: Sequence[str],
              order_index: int = 0) -> Judgement: ...


def make_judge(config: JudgeConfig, backend: Backend) -> AnyJudge:
    """The judge of ``config.protocol`` on ``backend``."""
    if config.protocol == "pointwise":
        return PointwiseJudge(config, backend)
    if config.protocol == "pairwise":
        return PairwiseJudge(config, backend)
    return Judge(config, backend)
