"""The questions a study's ``data`` settings give: its sample, and every question of its source,
each read with its column names, answer delimiter and documents folder."""

from __future__ import annotations

from .config_data import DataConfig
from .dataset import Unanswerable, load_questions
from .records import Question


def load_sample(data: DataConfig, n: int | None = None) -> list[Question]:
    """The study's sample (``n`` questions; default ``data.n_questions``), drawn as ``data`` says."""
    return load_questions(data.source, split=data.split, n=data.n_questions if n is None else n, seed=data.seed,
                          per_context=data.per_context, unanswerable=data.unanswerable,
                          unanswerable_share=data.unanswerable_share, columns=data.columns,
                          answers_delimiter=data.answers_delimiter, documents=data.documents)


def load_pool(data: DataConfig, unanswerable: Unanswerable = "include") -> list[Question]:
    """Every question of the study's source, in file order (``unanswerable``: as for :func:`load_questions`)."""
    return load_questions(data.source, split=data.split, n=None, unanswerable=unanswerable, columns=data.columns,
                          answers_delimiter=data.answers_delimiter, documents=data.documents)
