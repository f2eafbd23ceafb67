"""Config validation: errors name the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from raq.config import load_config
from raq.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = """\
models:
  - id: a
    gguf: smollm2-135m-instruct
judge:
  gguf: qwen2.5-coder-1.5b-instruct
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_the_shipped_demo_config_is_valid():
    config = load_config(ROOT / "config.yaml")
    assert [m.id for m in config.models] == ["smollm2-135m", "qwen2.5-0.5b", "gemma-3-270m"]
    assert config.data.n_questions == 60 and config.judge.gguf == "qwen2.5-coder-1.5b-instruct"
    assert config.models_dir == str(ROOT / "models")  # relative to the config file


def test_defaults_fill_a_minimal_config(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.generation.protocol == "raq" and config.generation.temperature == 0.0
    assert config.judge.protocol == "raq" and config.data.source == "squad-v1.1-dev"


@pytest.mark.parametrize("text, expected", [
    (MINIMAL + "genration:\n  n_ctx: 512\n", r"study.yaml:6: genration: unknown key"),
    (MINIMAL.replace("    gguf: smollm2", "    guff: smollm2"), r"study.yaml:3: models.0.guff: unknown key"),
    (MINIMAL + "generation:\n  n_ctx: lots\n", r"study.yaml:7: generation.n_ctx: .*integer"),
    (MINIMAL + "generation:\n  protocol: fancy\n", r"generation.protocol: .*'raq' or 'paper'"),
    ("models: []\njudge:\n  gguf: x\n", r"models: .*at least 1"),
    (MINIMAL.replace("gguf: qwen2.5-coder-1.5b-instruct", "model: gpt-4o"), r"judge: set exactly one of"),
    (MINIMAL + "  - id: a\n    gguf: x\n", r"study.yaml"),
    ("models:\n  - id: a\n    gguf: x\n  - id: a\n    gguf: y\njudge:\n  gguf: j\n", r"model id 'a' appears twice"),
    ("models: [\n", r"study.yaml:\d+: not valid YAML"),
    ("- just\n- a list\n", r"top level must be a mapping"),
])
def test_bad_configs_are_refused_with_file_line_and_key(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))


def test_overrides_use_dotted_keys_and_are_validated(tmp_path):
    path = write(tmp_path, MINIMAL)
    assert load_config(path, {"generation.max_tokens": 16}).generation.max_tokens == 16
    with pytest.raises(ConfigError, match="generation.max_tokns: unknown key"):
        load_config(path, {"generation.max_tokns": 16})


def test_flash_attention_is_off_unless_asked_for(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.generation.flash_attn is False and config.judge.flash_attn is False  # also a run recorded before
    on = load_config(write(tmp_path, MINIMAL + "  flash_attn: true\ngeneration:\n  flash_attn: true\n"))
    assert on.generation.flash_attn is True and on.judge.flash_attn is True
    with pytest.raises(ConfigError, match="generation.flash_attn"):
        load_config(write(tmp_path, MINIMAL + "generation:\n  flash_attn: sometimes\n"))


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
