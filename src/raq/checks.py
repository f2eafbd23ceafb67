"""Checks made before any expensive work: every model file present and intact, every remote
endpoint reachable, accepting its key and serving the named model. A failure names the config
key (and file or URL) in one line."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .backends.factory import remote_judge, served_contestant
from .config import JudgeConfig, RunConfig
from .errors import ConfigError, EndpointError, ModelFileError, RaqError

log = logging.getLogger(__name__)


@dataclass
class ModelFile:
    """A verified GGUF file."""

    ref: str
    path: Path
    sha256: str


def check_model_files(config: RunConfig, *, contestants: bool = True,
                      judges: Sequence[JudgeConfig] | None = None) -> dict[str, ModelFile]:
    """Resolve and verify every GGUF the study needs (contestants by id, a local judge as
    ``judge:<id>``); only the judges' with ``contestants=False``, only those of ``judges`` if given.
    A failure names the config key (``models[1].gguf``, ``judge.gguf``) and the file."""
    from .models import resolve, verify

    models_dir = Path(config.models_dir)
    wanted = [(m.id, f"models[{i}].gguf", m.gguf, m.sha256)
              for i, m in enumerate(config.models) if m.gguf and contestants]
    wanted += [(f"judge:{j.id}", f"{key}.gguf", j.gguf, j.sha256) for key, j in _judges(config, judges) if j.gguf]
    files = {}
    for key, config_key, ref, sha256 in wanted:
        try:
            path, expected, _entry = resolve(ref, models_dir, sha256)
            files[key] = ModelFile(ref=ref, path=path, sha256=verify(path, expected, ref))
        except ModelFileError as error:
            raise ModelFileError(f"{config_key}: {error}") from None
    contestant_paths = {files[m.id].path for m in config.models if m.id in files}
    for judge in config.judge_list:
        judge_file = files.get(f"judge:{judge.id}")
        if judge_file and judge_file.path in contestant_paths:
            log.warning("the judge %s is also a contestant: it may favour its own answers", judge.id)
    return files


def _judges(config: RunConfig, judges: Sequence[JudgeConfig] | None) -> list[tuple[str, JudgeConfig]]:
    """The study's judges (only those of ``judges`` if given), each with its config key."""
    prefix = "judge" if config.judge is not None else "judges[{i}]"
    chosen = {j.id for j in (config.judge_list if judges is None else judges)}
    return [(prefix.format(i=i), j) for i, j in enumerate(config.judge_list) if j.id in chosen]


def check_endpoints(config: RunConfig, where: str = "config", judges: Sequence[JudgeConfig] | None = None, *,
                    contestants: bool = True) -> None:
    """Every served contestant's (with ``contestants``) and every remote judge's (only those of
    ``judges`` if given) endpoint answers, accepts the key and serves the model; raise
    ConfigError naming the key (with the URL's index when ``base_url`` is a list) and the URL;
    every base URL of a contestant or judge is checked."""
    checks = [(f"models[{i}]", model.id, isinstance(model.base_url, list), lambda m=model: served_contestant(m))
              for i, model in enumerate(config.models) if model.base_url and contestants]
    checks += [(key, judge.id, isinstance(judge.base_url, list), lambda j=judge: remote_judge(j))
               for key, judge in _judges(config, judges) if judge.base_url]
    for key, owner, listed, open_client in checks:
        try:
            client = open_client()
        except ConfigError as error:  # an API key variable that is not set
            raise ConfigError(f"{where}: {key}.api_key_env: {error}") from None
        try:
            client.check()
        except RaqError as error:
            index = f"[{error.index}]" if listed and isinstance(error, EndpointError) else ""
            raise ConfigError(f"{where}: {key}.base_url{index} ({owner}): {error}") from None
        finally:
            client.close()
