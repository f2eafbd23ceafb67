"""Starting a run directory, or reopening one to resume it with a config that must not change
its results."""

from __future__ import annotations

from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from . import environment
from .config import RunConfig, config_to_dict, parse_recorded_config
from .errors import RaqError, RunDirError
from .records import Question
from .store import RunDir

#: Config keys that do not change results: a run may be resumed with them changed.
NEUTRAL_KEYS = ("name", "out_dir", "models_dir")
#: Dotted keys (``*``: any list index) that do not change results either: where the answers are
#: computed, and where a model's layers run.
NEUTRAL_DOTTED = ("generation.engine", "generation.ray_address", "models.*.n_gpu_layers", "judge.n_gpu_layers",
                  "judges.*.n_gpu_layers")


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to values; a list of mappings (the models, the judges) by index."""
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        data = {str(index): item for index, item in enumerate(data)}
    if isinstance(data, dict) and data:
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: data}


def _neutral(key: str) -> bool:
    return key.split(".")[0] in NEUTRAL_KEYS or any(fnmatchcase(key, pattern) for pattern in NEUTRAL_DOTTED)


def _list_key(key: str) -> str:
    """``models.1.gguf`` as ``models[1].gguf``."""
    return ".".join(f"[{part}]" if part.isdigit() else part for part in key.split(".")).replace(".[", "[")


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ and that change results."""
    a, b = _flatten(old), _flatten(new)
    return sorted(_list_key(k) for k in set(a) | set(b) if a.get(k) != b.get(k) and not _neutral(k))


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
        return config_to_dict(parse_recorded_config(stored, str(run.manifest_path)))
    except RaqError:
        return stored


def _without_unanswerable(config: RunConfig) -> bool:
    """Whether the config's data has no unanswerable question (then ``data.unanswerable``
    changes nothing)."""
    from .study_data import load_pool

    return all(question.answerable for question in load_pool(config.data))


def reopen(run: RunDir, config: RunConfig) -> RunDir:
    """Mark ``run`` as running again, after checking that ``config`` would give the same results.

    ``data.unanswerable`` is no change for data without unanswerable questions (a run recorded
    before the key existed reads as ``exclude``, today's default is ``include``)."""
    changed = config_changes(stored_config(run), config_to_dict(config))
    if "data.unanswerable" in changed and config.data.unanswerable_share is None and _without_unanswerable(config):
        changed.remove("data.unanswerable")
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
        "data": describe_source(config.data.source, config.data.split, config.data.documents),
        "question_ids": [q.question_id for q in questions],
        "environment": environment.describe(), "models": {},
    })
    run.write_questions(questions)
    return run
