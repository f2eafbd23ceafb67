"""Shared fixtures. Integration tests need the demo GGUFs in models/ (scripts/setup.sh puts
them there); without them they skip locally and fail in CI, where they must run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raq.models import CATALOG, DEMO_MODELS

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"

DEMO_FILES = {name: CATALOG[name].filename for name in DEMO_MODELS}


def demo_model(name: str) -> Path:
    """The path of a demo model, or skip (fail under CI) when it has not been fetched."""
    path = MODELS_DIR / DEMO_FILES[name]
    if not path.exists():
        message = f"{path} missing: run `python -m raq models fetch {name}`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def super_bowl():
    from raq.records import Question

    return Question(
        question_id="56be4db0acb8001400a502ec",
        question="Which NFL team represented the AFC at Super Bowl 50?",
        context=("Super Bowl 50 was an American football game to determine the champion of the National "
                 "Football League (NFL) for the 2015 season. The American Football Conference (AFC) champion "
                 "Denver Broncos defeated the National Football Conference (NFC) champion Carolina Panthers "
                 "24–10 to earn their third Super Bowl title. The game was played on February 7, 2016, at "
                 "Levi's Stadium in the San Francisco Bay Area at Santa Clara, California."),
        gold_answers=["Denver Broncos"],
        title="Super_Bowl_50",
    )
