"""Starting a run directory, or reopening one to resume it with a config that must not change
its results."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from . import environment
from .config import RunConfig, config_to_dict, parse_config
from .errors import RaqError, RunDirError
from .records import Question
from .store import RunDir

#: Config keys that do not change results: a run may be resumed with them changed.
NEUTRAL_KEYS = ("name", "out_dir", "models_dir")


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: data}


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ and that change results."""
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k.split(".")[0] not in NEUTRAL_KEYS)


def stamp() -> str:
    """The current local time as it names run directories: ``YYYYmmdd-HHMMSS``."""
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def new_run_path(config: RunConfig) -> Path:
    return Path(config.out_dir) / f"{config.name}-{stamp()}"


def stored_config(run: RunDir) -> dict[str, Any]:
    """The run's config with today's defaults filled in (keys added to raq since the run began
    are no change), or as stored when this raq cannot read it."""
    stored = run.manifest().get("config", {})
    try:
        return config_to_dict(parse_config(stored, str(run.manifest_path)))
    except RaqError:
        return stored


def reopen(run: RunDir, config: RunConfig) -> RunDir:
    """Mark ``run`` as running again, after checking that ``config`` would give the same results."""
    changed = config_changes(stored_config(run), config_to_dict(config))
    if changed:
        raise RunDirError(f"{run.path}: the config differs from the run's in {', '.join(changed)}; "
                          "start a new run instead of resuming")
    run.update_manifest(status="running", resumed=run.manifest().get("resumed", 0) + 1)
    return run


def create(config: RunConfig, questions: list[Question]) -> RunDir:
    """A new run directory holding the config, the data's description, the environment and the questions."""
    from .dataset import describe_source

    run = RunDir.create(new_run_path(config), {
        "status": "running", "config": config_to_dict(config),
        "data": describe_source(config.data.source, config.data.split),
        "question_ids": [q.question_id for q in questions],
        "environment": environment.describe(), "models": {},
    })
    run.write_questions(questions)
    return run
