"""Load SQuAD-style reading-comprehension questions from the bundled file, a local file or the hub.

Two shapes are accepted: the official nested SQuAD JSON (``data`` -> ``paragraphs`` -> ``qas``),
parsed with :mod:`json`, and the flat Hugging Face schema (``id``, ``title``, ``context``,
``question``, ``answers``) as JSON Lines, a JSON list or parquet, read with ``datasets``.
``datasets`` is imported only when it is needed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import DatasetError
from .records import Question

logger = logging.getLogger(__name__)

_DATA = Path(__file__).parent / "data"
BUNDLED: dict[str, Path] = {"squad-v1.1-dev": _DATA / "squad-v1.1-dev.json.gz"}
SQUAD_LICENSE = "CC BY-SA 4.0"
_SUFFIXES = (".json.gz", ".jsonl.gz", ".json", ".jsonl", ".parquet")
_HINT = "use a local file or the bundled 'squad-v1.1-dev'"
_PROBE_TIMEOUT_S = 5.0
_LIBRARY_LOGGERS = ("datasets", "huggingface_hub", "fsspec", "urllib3", "filelock")

Records = tuple[list[dict[str, Any]], Callable[[int], str]]  # rows, and row index -> locator


def load_questions(
    source: str, split: str = "validation", n: int | None = None, seed: int = 2024, per_context: int = 1
) -> list[Question]:
    """Load the answerable questions of ``source``, all in file order or ``n`` of them sampled.

    ``source`` is a bundled name (see :data:`BUNDLED`), a local ``.json``, ``.json.gz``,
    ``.jsonl``, ``.jsonl.gz`` or ``.parquet`` file, or a Hugging Face hub dataset name
    (loaded with ``split``). Questions without any gold answer (SQuAD 2.0 unanswerable) are
    left out. A record without an ``id`` gets ``"{stem}:{row}"``: ``stem`` is the file name
    without its suffixes (``"{name}:{split}"`` for the hub) and ``row`` the 0-based index of
    the record in file order, counting every record. With ``n``, the questions are
    ``random.Random(seed).sample`` of the indices, in drawn order, so the same
    ``(source, n, seed)`` always gives the same questions.

    ``per_context > 1`` draws a cluster sample instead: paragraphs in random order, up to
    ``per_context`` questions of each (a random subset, in file order), until ``n`` questions
    (the last paragraph may give fewer). Questions about one paragraph share their prompt up to
    the question, which throughput mode reads once; they are not independent, which the analysis
    accounts for (:func:`raq.analysis.statistics`).
    """
    _, path = _resolve(source, split)
    if path is None:
        where, stem = f"dataset {source!r} split {split!r}", f"{source}:{split}"
        rows, locate = _hub_rows(source, split), (lambda i: f"row {i}")
    else:
        where, stem = str(path), _strip_suffix(path.name)
        rows, locate = _file_rows(path)
    questions, excluded = _to_questions(rows, locate, where, stem)
    logger.info("%s: %d questions, %d excluded (no gold answer)", where, len(questions), excluded)
    if not questions:
        raise DatasetError(f"{where}: no answerable questions")
    if n is None:
        return questions
    if n < 0 or n > len(questions):
        raise DatasetError(f"{where}: cannot sample {n} questions, {len(questions)} are available")
    if per_context < 1:
        raise DatasetError(f"{where}: per_context must be at least 1, not {per_context}")
    if per_context == 1:
        return [questions[i] for i in random.Random(seed).sample(range(len(questions)), n)]
    return _cluster_sample(questions, n, per_context, random.Random(seed))


def _cluster_sample(questions: list[Question], n: int, per_context: int, rng: random.Random) -> list[Question]:
    """Up to ``per_context`` questions from each of randomly ordered paragraphs, ``n`` in all."""
    by_context: dict[str, list[int]] = {}
    for i, question in enumerate(questions):
        by_context.setdefault(question.context, []).append(i)
    groups = list(by_context.values())
    picked: list[Question] = []
    for group in rng.sample(groups, len(groups)):
        take = min(per_context, len(group), n - len(picked))
        picked.extend(questions[i] for i in sorted(rng.sample(group, take)))
        if len(picked) == n:
            break
    return picked


def describe_source(source: str, split: str) -> dict[str, Any]:
    """Describe ``source`` for a run manifest, without downloading anything.

    Keys: ``source``, ``split`` (``"validation"`` for a bundled file), ``kind``
    (``"bundled"``, ``"file"`` or ``"hub"``), for files ``path`` and ``sha256`` of the file
    bytes, and ``license`` (``"CC BY-SA 4.0"`` for SQuAD, else None).
    """
    kind, path = _resolve(source, split)
    split = "validation" if kind == "bundled" else split
    info: dict[str, Any] = {"source": source, "split": split, "kind": kind}
    if path is not None:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        info.update(path=str(path), sha256=digest.hexdigest())
    info["license"] = SQUAD_LICENSE if kind == "bundled" or "squad" in source.lower() else None
    return info


def _resolve(source: str, split: str) -> tuple[str, Path | None]:
    """The kind of ``source`` and, for files, its path (checked to exist)."""
    if source in BUNDLED:
        if split not in ("validation", "dev"):
            hint = "use split 'validation' or 'dev'"
            raise DatasetError(f"bundled {source!r} is the dev split ({hint}), not {split!r}")
        return "bundled", BUNDLED[source]
    path = Path(source).expanduser()
    if source.lower().endswith(_SUFFIXES):
        if not path.is_file():
            raise DatasetError(f"{source}: no such file")
        return "file", path
    if path.is_file():
        raise DatasetError(f"{source}: unsupported file type (use one of {', '.join(_SUFFIXES)})")
    return "hub", None


def _strip_suffix(name: str) -> str:
    return next((name[: -len(s)] for s in _SUFFIXES if name.lower().endswith(s)), name)


def _open_text(path: Path) -> IO[str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8")


def _file_rows(path: Path) -> Records:
    """Read a local file into flat rows: nested SQuAD JSON with ``json``, the rest with datasets."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return _datasets_rows(path, "parquet"), lambda i: f"row {i}"
    try:
        with _open_text(path) as f:
            head = f.read(1 << 16)
            first = head.lstrip()[:1]
            if first == "{" and name.endswith((".json", ".json.gz")):
                doc = json.loads(head + f.read())
                if isinstance(doc, dict) and "data" in doc:
                    return _nested_rows(doc, str(path))
    except json.JSONDecodeError as exc:
        if not exc.msg.startswith("Extra data"):  # "Extra data": JSON Lines in a .json file
            raise DatasetError(f"{path}: invalid JSON: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from None
    if not first:
        raise DatasetError(f"{path}: file is empty")
    if first == "[":
        return _datasets_rows(path, "json"), lambda i: f"row {i}"
    try:
        rows = _datasets_rows(path, "json")
    except DatasetError:
        _check_json_lines(path)  # names the first bad line, if that is the trouble
        raise
    return rows, lambda i: f"line {_json_lines(path)[i]}"


def _json_lines(path: Path) -> list[int]:
    """1-based numbers of the lines that hold the records of a JSON Lines file (not blank)."""
    with _open_text(path) as f:
        return [number for number, line in enumerate(f, start=1) if line.strip()]


def _check_json_lines(path: Path) -> None:
    """Raise DatasetError naming the first line of a JSON Lines file that is not valid JSON."""
    with _open_text(path) as f:
        for number, line in enumerate(f, start=1):
            try:
                if line.strip():
                    json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}: line {number}: invalid JSON: {exc.msg}") from None


def _nested_rows(doc: dict[str, Any], where: str) -> Records:
    """Flatten official nested SQuAD JSON; locators look like ``data[3].paragraphs[2].qas[5]``."""
    rows: list[dict[str, Any]] = []
    locs: list[str] = []
    if not isinstance(doc["data"], list):
        raise DatasetError(f"{where}: 'data' is not a list")
    for i, article in enumerate(doc["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DatasetError(f"{where}: data[{i}]: missing or invalid 'paragraphs'")
        for j, para in enumerate(article["paragraphs"]):
            if not isinstance(para, dict) or not isinstance(para.get("qas"), list):
                raise DatasetError(f"{where}: data[{i}].paragraphs[{j}]: missing or invalid 'qas'")
            for k, qa in enumerate(para["qas"]):
                locs.append(f"data[{i}].paragraphs[{j}].qas[{k}]")
                if not isinstance(qa, dict):
                    raise DatasetError(f"{where}: {locs[-1]}: not an object")
                rows.append({**qa, "context": para.get("context"), "title": article.get("title")})
    return rows, locs.__getitem__


def _datasets_rows(path: Path, builder: str) -> list[dict[str, Any]]:
    """Read a flat file with ``datasets.load_dataset(builder)``, caching nothing on disk."""
    import datasets

    quiet = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        with tempfile.TemporaryDirectory(prefix="raq-datasets-") as cache, _libraries_quiet():
            ds = datasets.load_dataset(
                builder, data_files=str(path), split="train", cache_dir=cache, keep_in_memory=True
            )
            return ds.to_list()
    except Exception as exc:  # datasets/pyarrow raise many types; report the root cause
        raise DatasetError(f"{path}: cannot read as {builder}: {_reason(exc, deep=True)}") from exc
    finally:
        if not quiet:
            datasets.enable_progress_bars()


@contextlib.contextmanager
def _libraries_quiet() -> Iterator[None]:
    """Keep the loading libraries' own log lines (warnings before they raise) off the terminal:
    raq reports the failure itself, in one line."""
    loggers = [logging.getLogger(name) for name in _LIBRARY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _hub_rows(name: str, split: str) -> list[dict[str, Any]]:
    """Load ``name``/``split`` from the hub, failing fast when the hub cannot be reached.

    Unless ``HF_HUB_OFFLINE`` is set (then only the local cache is used), the hub is probed
    once with a short timeout, because ``datasets`` itself retries for about 25 s.
    """
    import datasets
    from huggingface_hub import get_session

    def fail(reason: str) -> DatasetError:
        where = f"dataset {name!r} split {split!r}"
        return DatasetError(f"cannot load {where} from the Hugging Face hub ({reason}); {_HINT}")

    if not datasets.config.HF_HUB_OFFLINE:
        url = f"{datasets.config.HF_ENDPOINT.rstrip('/')}/api/datasets/{name}"
        try:
            get_session().head(url, timeout=_PROBE_TIMEOUT_S)
        except Exception as exc:  # any HTTP answer means reachable; only transport errors land here
            raise fail(f"offline or unreachable: {_reason(exc)}") from None
    try:
        with _libraries_quiet():
            return datasets.load_dataset(name, split=split).to_list()
    except ConnectionError as exc:  # includes OfflineModeIsEnabled with nothing cached
        raise fail(f"offline or unreachable: {_reason(exc)}") from None
    except Exception as exc:
        raise fail(_reason(exc)) from None


def _reason(exc: BaseException, deep: bool = False) -> str:
    """One line about ``exc`` (its innermost cause when ``deep``)."""
    while deep and exc.__cause__ is not None:
        exc = exc.__cause__
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _answer_texts(answers: Any) -> list[str]:
    """Answer texts from ``{"text": [...]}``, a list of ``{"text": ...}`` or a list of strings."""
    if isinstance(answers, dict):
        answers = answers.get("text")
        answers = [answers] if isinstance(answers, str) else answers
    if not isinstance(answers, list):
        raise ValueError("invalid 'answers' (expected {'text': [...]} or a list)")
    texts = [a.get("text") if isinstance(a, dict) else a for a in answers]
    if not all(isinstance(t, str) for t in texts):
        raise ValueError("invalid 'answers' (every answer text must be a string)")
    return list(dict.fromkeys(t.strip() for t in texts if isinstance(t, str) and t.strip()))


def _to_questions(
    rows: list[dict[str, Any]], locate: Callable[[int], str], where: str, stem: str
) -> tuple[list[Question], int]:
    """Validate rows and build the answerable questions; also return how many were excluded."""
    if not rows:
        raise DatasetError(f"{where}: no questions")
    questions: list[Question] = []
    seen: set[str] = set()
    excluded = 0
    for i, row in enumerate(rows):
        try:
            for key in ("question", "context", "answers"):
                if row.get(key) is None:
                    raise ValueError(f"missing {key!r}")
            for key in ("question", "context"):
                if not isinstance(row[key], str) or not row[key].strip():
                    raise ValueError(f"invalid {key!r} (expected a non-empty string)")
            gold = _answer_texts(row["answers"])
        except ValueError as exc:
            raise DatasetError(f"{where}: {locate(i)}: {exc}") from None
        qid = f"{stem}:{i}" if row.get("id") is None else str(row["id"])
        if qid in seen:
            raise DatasetError(f"{where}: duplicate question id {qid!r} at {locate(i)}")
        seen.add(qid)
        if not gold or row.get("is_impossible") is True:
            excluded += 1
            continue
        title = row["title"] if isinstance(row.get("title"), str) else ""
        questions.append(Question(qid, row["question"], row["context"], gold, title))
    return questions, excluded
