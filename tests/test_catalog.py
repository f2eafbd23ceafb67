"""Tests of raq.catalog and the shipped configs: every entry well-formed, every shipped config
loads and names only catalog models, the GPU configs offload, and a hub fetch without the hub
fails with an error that names the repository."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from raq import catalog
from raq.catalog import CATALOG, HubFile, PyPIParts, catalog_table, lookup
from raq.config import load_config, shipped_configs
from raq.errors import ModelFileError

ENTRIES = list(CATALOG.values())
HUB_ENTRIES = [e for e in ENTRIES if isinstance(e.source, HubFile)]
#: Shipped configs whose in-process models (and local judge, if any) should offload to a GPU.
GPU_CONFIGS = ("newer-comparison", "reference-study")
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: refused at once, never a network


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_entry_is_well_formed(entry: catalog.CatalogEntry):
    assert entry.name and entry.filename.endswith(".gguf")
    assert entry.license.strip()
    assert entry.params and re.fullmatch(r"\d+(\.\d+)?[MB]", entry.params), entry.params
    assert entry.size is None or entry.size > 0
    assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
    assert entry.min_ram_gib is None or entry.min_ram_gib > 0
    if entry.size is not None and entry.min_ram_gib is not None:  # the estimate covers at least the file
        assert entry.min_ram_gib * 2**30 > entry.size
    if isinstance(entry.source, HubFile):
        assert re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", entry.source.repo_id), entry.source.repo_id
        assert entry.source.filename.endswith(".gguf") and entry.source.filename == entry.filename
    else:
        assert isinstance(entry.source, PyPIParts)
        assert entry.source.packages and len(entry.source.packages) == len(entry.source.members)
    if entry.stands_in_for:
        assert entry.stands_in_for in CATALOG


def test_names_and_files_unique():
    names = [e.name for e in catalog._ENTRIES]
    assert len(names) == len(set(names)) == len(CATALOG)
    files = [e.filename for e in ENTRIES]
    assert len(files) == len(set(files))  # one models folder holds them all


@pytest.mark.parametrize("group", ["DEMO_MODELS", "REFERENCE_MODELS", "GEMMA3_MODELS", "NEWER_COMPARISON"])
def test_groups_name_known_entries(group: str):
    names = getattr(catalog, group)
    assert names and len(names) == len(set(names)) and set(names) <= set(CATALOG)


def test_newer_models():
    assert catalog.NEWER_COMPARISON == ("mistral-small-3.1-24b-instruct", "gemma-3-27b-it")
    for name in catalog.GEMMA3_MODELS:
        e = lookup(name)
        assert isinstance(e.source, HubFile) and e.source.repo_id == f"ggml-org/{name}-GGUF"
        assert e.filename == f"{name}-Q4_K_M.gguf" and e.license == "Gemma Terms of Use"
        assert e.size and e.sha256 and e.min_ram_gib  # pinned from the hub's LFS records
        assert "system" in e.template
    assert [lookup(n).params for n in catalog.GEMMA3_MODELS] == ["1B", "4B", "12B", "27B"]
    sizes = [lookup(n).size or 0 for n in catalog.GEMMA3_MODELS]
    assert sizes == sorted(sizes)
    mistral = lookup("mistral-small-3.1-24b-instruct")
    assert mistral.license == "Apache-2.0" and mistral.params == "24B" and mistral.family == "mistral"
    assert isinstance(mistral.source, HubFile)
    assert mistral.source.repo_id == "bartowski/mistralai_Mistral-Small-3.1-24B-Instruct-2503-GGUF"
    assert "[SYSTEM_PROMPT]" in mistral.template and "mmproj" in mistral.template


def test_table_shows_the_new_columns(tmp_path: Path):
    rows = {r["name"]: r for r in catalog_table(tmp_path)}
    assert set(rows) == set(CATALOG)
    row = rows["gemma-3-27b-it"]
    assert row["params"] == "27B" and row["min_ram_gib"] == 18.5 and row["size"] == 16_546_404_736
    assert row["source"] == "hub:ggml-org/gemma-3-27b-it-GGUF/gemma-3-27b-it-Q4_K_M.gguf"
    assert row["template"] and row["present"] is False


@pytest.mark.parametrize("name", shipped_configs())
def test_shipped_config_loads_and_names_catalog_models(name: str):
    config = load_config(name)
    for model in config.models:
        assert model.gguf is None or model.gguf in CATALOG, model.gguf
    for judge in config.judge_list:
        assert judge.gguf is None or judge.gguf in CATALOG, judge.gguf


def test_the_new_configs_ship():
    assert {"newer-comparison", "newer-comparison-served", *GPU_CONFIGS} <= set(shipped_configs())
    local = load_config("newer-comparison")
    assert [m.gguf for m in local.models] == list(catalog.NEWER_COMPARISON)
    served = load_config("newer-comparison-served")
    assert [m.model for m in served.models] == ["mistralai/Mistral-Small-3.1-24B-Instruct-2503",
                                                "google/gemma-3-27b-it"]
    assert [m.base_urls for m in served.models] == [["http://localhost:8000/v1"], ["http://localhost:8001/v1"]]
    assert [m.id for m in served.models] == [m.id for m in local.models]  # the two runs compare
    for config in (local, served):
        assert config.generation.protocol == "raq" and config.generation.n_ctx >= 4096
        assert config.judge is not None and config.judge.api_key_env == "OPENAI_API_KEY"


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_gpu_configs_offload_every_layer(name: str):
    config = load_config(name)
    assert all(m.n_gpu_layers == -1 for m in config.models if m.gguf)
    assert all(j.n_gpu_layers == -1 for j in config.judge_list if j.gguf)


def test_reference_settings_unchanged():
    config = load_config("reference-study")
    g = config.generation
    assert (g.protocol, g.n_ctx, g.n_batch, g.max_tokens, g.temperature, g.repeat_penalty) == \
        ("paper", 1024, 8, 2000, 0.7, 1.1)
    assert [m.prompt_format for m in config.models] == ["completion"] * 3


@pytest.mark.parametrize("name", ["gemma-3-1b-it", "mistral-small-3.1-24b-instruct"])
def test_offline_hub_fetch_names_the_repo(name: str, tmp_path: Path):
    """Without the hub (HF_ENDPOINT on a closed local port) the error is clear, names the repo and
    the file to put in place by hand, and leaves nothing behind."""
    entry = lookup(name)
    assert isinstance(entry.source, HubFile)
    code = ("import sys; from pathlib import Path; from raq.models import fetch\n"
            "from raq.errors import ModelFileError\n"
            "try:\n    fetch(sys.argv[1], Path(sys.argv[2]), progress=False)\n"
            "except ModelFileError as e:\n    print(e); sys.exit(3)\n")
    env = {**os.environ, "HF_ENDPOINT": UNREACHABLE, "PYTHONPATH": str(Path(catalog.__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-c", code, name, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    message = proc.stdout
    assert name in message and entry.source.repo_id in message and "unreachable" in message
    assert str(tmp_path / entry.filename) in message
    assert not (tmp_path / entry.filename).exists()


def test_offline_hub_fetch_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from raq.models import fetch

    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    with pytest.raises(ModelFileError, match=re.escape("ggml-org/gemma-3-27b-it-GGUF")):
        fetch("gemma-3-27b-it", tmp_path, progress=False)


def test_cli_lists_and_fetches_the_newer_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]):
    from raq.cli import main

    assert main(["models", "list", "--dir", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert "name=gemma-3-27b-it" in listed and "params=27B" in listed and "min_ram_gib=18.5" in listed
    assert main(["models", "fetch", "--dir", str(tmp_path)]) == 2
    assert "--newer" in capsys.readouterr().err
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    assert main(["models", "fetch", "--newer", "--dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "mistral-small-3.1-24b-instruct" in error and "bartowski/mistralai_Mistral-Small-3.1" in error
    assert not list(tmp_path.glob("*.gguf"))
