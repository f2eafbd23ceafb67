"""The study's configuration: one validated object, loaded from YAML, unknown keys rejected.

Errors name the file, the key path and, where the YAML shows it, the line; relative paths are taken from its folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from .config_data import DATA_FIELDS, DATA_SUFFIXES, DataConfig, Strict
from .errors import ConfigError
from .urls import check_no_credentials

__all__ = ["DATA_FIELDS", "DATA_SUFFIXES", "DataConfig", "ModelConfig", "GenerationConfig", "JudgeConfig",
           "StatsConfig", "RunConfig", "load_config", "parse_config", "parse_recorded_config", "config_to_dict",
           "set_dotted", "shipped_configs", "SCORING_PROTOCOLS"]

Protocol = Literal["raq", "paper"]
#: Listwise (``raq``, ``paper``: all answers ranked at once) or scoring (``pointwise``: each answer
#: graded on its own; ``pairwise``: every pair compared in both orders).
JudgeProtocol = Literal["raq", "paper", "pointwise", "pairwise"]
SCORING_PROTOCOLS = ("pointwise", "pairwise")


_Strict = Strict


class ModelConfig(_Strict):
    """One contestant model."""

    id: str = Field(..., description="the label used in every table and figure")
    gguf: str | None = Field(
        None, description="in-process: a catalog name (`python -m raq models list`) or a .gguf path")
    sha256: str | None = Field(None, description="expected sha256 of the file (catalog models know theirs)")
    prompt_format: Literal["chat", "completion"] = Field(
        "chat", description="'chat': the model's own chat template; 'completion': a plain completion prompt"
    )
    n_gpu_layers: int = Field(0, ge=-1, description="layers offloaded to a GPU (-1 = all, 0 = CPU only)")
    chat_template: str | None = Field(
        None, description="in-process: a Jinja chat template used instead of the GGUF's own (for GGUFs without one)")
    base_url: str | list[str] | None = Field(
        None, description="served: one or several OpenAI-compatible base URLs (vLLM, llama.cpp server, Ollama, APIs)")
    model: str | None = Field(None, description="served: the model name the endpoints serve")
    api_key_env: str | None = Field(None, description="served: environment variable holding the API key")
    max_in_flight: int = Field(2, ge=1, description="served: requests in flight per base URL")
    timeout_s: float = Field(600.0, gt=0)

    @field_validator("id")
    @classmethod
    def _id_is_a_label(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError("must be letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _one_backend(self) -> "ModelConfig":
        if bool(self.gguf) == bool(self.base_url):
            raise ValueError("set exactly one of 'gguf' (run in-process) or 'base_url' (an OpenAI-compatible server)")
        if self.base_url and not self.model:
            raise ValueError("a served model ('base_url') needs 'model', the name the server knows it by")
        check_no_credentials(self.base_urls)
        return self

    @property
    def base_urls(self) -> list[str]:
        return [] if not self.base_url else [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)


class GenerationConfig(_Strict):
    """How every contestant generates (the same settings for all, so the comparison is fair)."""

    protocol: Protocol = Field("raq", description="'raq': chat template + stops; 'paper': the reference prompt")
    n_ctx: int = Field(2048, ge=128)
    n_batch: int = Field(512, ge=1)
    n_threads: int | None = Field(None, ge=1, description="CPU threads (default: all cores)")
    flash_attn: bool = Field(False, description="in-process models: llama.cpp's flash attention (a run recorded "
                                                "without this key ran without it)")
    max_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(40, ge=0)
    min_p: float = Field(0.05, ge=0.0, le=1.0)
    repeat_penalty: float = Field(1.0, gt=0.0)
    seed: int = 2024
    warmup: bool = Field(True, description="one untimed call per model before timed answers")
    n_parallel: int = Field(1, ge=1, le=64, description="in-process models: decode this many answers together "
                                                         "(throughput mode); their timings are then batched "
                                                         "figures, labelled and reported apart")
    abstention: Literal["auto", "always", "never"] = Field(
        "auto", description="tell the models (raq protocol) they may answer that the text does not say: 'auto' when "
                            "the sample holds an unanswerable question, 'always' or 'never'")
    long_context: Literal["truncate", "skip"] = Field(
        "truncate", description="a prompt too long for n_ctx: cut the context around the answer, or record an "
                                "empty, skipped answer")
    engine: Literal["local", "ray"] = Field("local", description="in-process models: answer here, one model at a "
                                            "time ('local'), or in tasks spread over a Ray cluster ('ray')")
    ray_address: str | None = Field(None, description="engine 'ray': the cluster ('auto': the one started on this "
                                                      "machine; default: that one if any, else a new local one)")


class JudgeConfig(_Strict):
    """The judge: a local GGUF that raq serves itself, or any OpenAI-compatible endpoint."""

    id: str = "judge"
    protocol: JudgeProtocol = Field(
        "raq", description="'raq' (listwise: all answers ranked together), 'paper' (the reference study's prompt), "
                           "'pointwise' (each answer graded on its own) or 'pairwise' (every pair, both orders)")
    gguf: str | None = Field(None, description="local judge: a catalog name or .gguf path")
    runtime: Literal["server", "in-process"] = Field(
        "server", description="local judge: 'server' (raq starts llama_cpp.server on 127.0.0.1 and stops it) or "
                              "'in-process' (the same llama.cpp backend as the contestants, no server)")
    n_batch: int = Field(512, ge=1, description="local judge: prompt tokens per llama.cpp batch")
    flash_attn: bool = Field(False, description="local judge: llama.cpp's flash attention")
    n_parallel: int = Field(8, ge=1, le=63, description="in-process scoring judge: prompts of one question read "
                                                        "together in one batch, their shared part once (1: one "
                                                        "after another)")
    base_url: str | list[str] | None = Field(None, description="remote judge: one or more OpenAI-compatible base URLs")
    model: str | None = Field(None, description="remote judge: the model name the endpoints serve")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key")
    sha256: str | None = None
    n_ctx: int = Field(4096, ge=256)
    n_threads: int | None = Field(None, ge=1)
    n_gpu_layers: int = Field(0, ge=-1)
    temperature: float = Field(0.0, ge=0.0)
    seed: int = 2024
    max_tokens: int = Field(64, ge=1)
    max_retries: int = Field(2, ge=0, description="extra attempts after a reply that is not a valid ranking")
    timeout_s: float = Field(300.0, gt=0)
    context_chars: int = Field(2000, ge=0, description="at most this many context characters shown to the judge")
    orders: int = Field(1, ge=1, description="orders each question is judged in (rotations of a seeded shuffle); "
                                             ">1 measures position bias and averages it out")
    max_in_flight: int = Field(1, ge=1, description="judge requests in flight per endpoint (base URL or local server)")
    allow_ties: bool = Field(False, description="accept rankings with ties (tied answers share the mean rank)")
    grades: Literal["yes-no", "0-2"] = Field(
        "yes-no", description="pointwise: 'yes-no' (is the answer correct? score = P(yes)) or '0-2' "
                              "(incorrect / partly correct / correct; score = the expected grade)")
    show_context: bool | None = Field(
        None, description="show the context excerpt; default: yes for the listwise protocols, no for the scoring "
                          "ones (anchored on the references alone: more accurate and faster for small judges)")
    check: int = Field(0, ge=0, description="judge-check on this many questions before the study (0: none); "
                                            "the study stops when the judge's pairwise accuracy is below min_accuracy")
    min_accuracy: float = Field(0.9, ge=0.0, le=1.0, description="the pairwise accuracy judge-check requires")

    @model_validator(mode="after")
    def _one_kind(self) -> "JudgeConfig":
        if bool(self.gguf) == bool(self.base_url):
            raise ValueError("set exactly one of 'gguf' (a local judge) or 'base_url' (a remote judge)")
        if self.base_url and not self.model:
            raise ValueError("a remote judge ('base_url') needs 'model'")
        if "" in self.base_urls or len(set(self.base_urls)) < len(self.base_urls):
            raise ValueError("'base_url' must list distinct, non-empty URLs ('max_in_flight' is per endpoint)")
        check_no_credentials(self.base_urls)
        if self.base_url and self.runtime != "server":
            raise ValueError("'runtime' is for a local judge ('gguf'); a remote judge is served at its 'base_url'")
        if self.protocol not in SCORING_PROTOCOLS and self.show_context is False:
            raise ValueError(f"the {self.protocol} protocol always shows the context excerpt: "
                             "'show_context' is for pointwise and pairwise")
        if self.protocol in SCORING_PROTOCOLS and self.orders != 1:
            raise ValueError(f"the {self.protocol} protocol shows no order of all answers: 'orders' must be 1 "
                             "(pairwise shows every pair in both orders by itself)")
        return self

    @property
    def base_urls(self) -> list[str]:
        return [] if not self.base_url else [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)

    @property
    def in_flight(self) -> int:
        """Judge requests in flight at once: ``max_in_flight`` on each endpoint."""
        return self.max_in_flight * max(1, len(self.base_urls))

    @property
    def context_shown(self) -> bool:
        """Whether the judge sees the context excerpt (``show_context``, or the protocol's default)."""
        return self.show_context if self.show_context is not None else self.protocol not in SCORING_PROTOCOLS


class StatsConfig(_Strict):
    alpha: float = Field(0.05, gt=0.0, lt=1.0)


class RunConfig(_Strict):
    """A whole study."""

    name: str = "raq"
    out_dir: str = "runs"
    models_dir: str = "models"
    data: DataConfig = DataConfig()
    generation: GenerationConfig = GenerationConfig()
    models: list[ModelConfig] = Field(..., min_length=1)
    judge: JudgeConfig | None = Field(None, description="one judge")
    judges: list[JudgeConfig] = Field(default_factory=list, description="several judges (instead of 'judge')")
    stats: StatsConfig = StatsConfig()

    @field_validator("models")
    @classmethod
    def _unique_ids(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        seen: set[str] = set()
        for model in models:
            if model.id in seen:
                raise ValueError(f"model id {model.id!r} appears twice")
            seen.add(model.id)
        return models

    @model_validator(mode="after")
    def _judges(self) -> "RunConfig":
        if (self.judge is None) == (not self.judges):
            raise ValueError("set exactly one of 'judge' (one judge) or 'judges' (a list)")
        ids = [j.id for j in self.judge_list]
        if len(set(ids)) != len(ids):
            raise ValueError(f"judge ids must differ: {ids}")
        return self

    @property
    def model_ids(self) -> list[str]:
        return [m.id for m in self.models]

    @property
    def judge_list(self) -> list[JudgeConfig]:
        """Every judge of the study, the first being the primary one."""
        return [self.judge] if self.judge is not None else list(self.judges)


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """The 1-based YAML line of the key at ``loc`` (the deepest part that exists)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((kv for kv in node.value if kv[0].value == part), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _format_errors(error: ValidationError, where: str, text: str | None) -> str:
    lines = []
    for item in error.errors():
        loc = tuple(p for p in item["loc"] if p not in ("function-after",))
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(text, loc) if text is not None else None
        place = f"{where}:{line}" if line else where
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{place}: {key}: {message}")
    return "; ".join(lines)


def _resolve_paths(config: RunConfig, base: Path) -> RunConfig:
    """Make the config's relative paths relative to ``base``."""

    def absolute(value: str) -> str:
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else (base / path).resolve())

    config.out_dir = absolute(config.out_dir)
    config.models_dir = absolute(config.models_dir)
    if config.data.source.lower().endswith(DATA_SUFFIXES):
        config.data.source = absolute(config.data.source)
    if config.data.documents:
        config.data.documents = absolute(config.data.documents)
    for model in config.models:
        if model.gguf and model.gguf.endswith(".gguf"):
            model.gguf = absolute(model.gguf)
    for judge in config.judge_list:
        if judge.gguf and judge.gguf.endswith(".gguf"):
            judge.gguf = absolute(judge.gguf)
    return config


def parse_config(data: dict[str, Any], where: str = "<config>", text: str | None = None,
                 base: Path | None = None) -> RunConfig:
    """Validate a config mapping; raise ConfigError naming ``where`` and the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys, not {type(data).__name__}")
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_errors(error, where, text)) from None
    return _resolve_paths(config, base or Path.cwd())


SHIPPED_CONFIGS = Path(__file__).parent / "configs"


def shipped_configs() -> list[str]:
    """Names of the configs that ship with raq (usable as ``--config NAME``)."""
    return sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.yaml"))


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load and validate a YAML config (a path, or the name of a shipped config);
    ``overrides`` maps dotted keys to values."""
    path = Path(path)
    base = path.parent.resolve()
    if not path.is_file():
        shipped = SHIPPED_CONFIGS / f"{path.stem}.yaml"
        if len(path.parts) != 1 or not shipped.is_file():
            raise ConfigError(f"{path}: config file not found (shipped configs: {', '.join(shipped_configs())})")
        path, base = shipped, Path.cwd()  # a shipped config's paths are relative to where raq runs
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(error, 'problem', error)})") from None
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    return parse_config(data, str(path), text, base)


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for ``dotted == 'a.b'``, creating mappings as needed."""
    keys = dotted.split(".")
    target = data
    for key in keys[:-1]:
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise ConfigError(f"override {dotted}: {key} is not a mapping")
    target[keys[-1]] = value


def parse_recorded_config(data: dict[str, Any], where: str) -> RunConfig:
    """A run manifest's config, with the meaning it had when recorded: a run recorded before
    ``data.unanswerable`` existed left unanswerable questions out."""
    if isinstance(data, dict) and isinstance(data.get("data", {}), dict) and "unanswerable" not in data.get("data", {}):
        data = {**data, "data": {**data.get("data", {}), "unanswerable": "exclude"}}
    return parse_config(data, where)


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """The config as plain data (for the manifest)."""
    return config.model_dump(mode="json")
