"""Load reading-comprehension questions from a bundled SQuAD file, a local file or the hub.

Accepted: the official nested SQuAD JSON (1.1 or 2.0, ``data`` -> ``paragraphs`` -> ``qas``),
parsed with :mod:`json`; the flat Hugging Face schema (``id``, ``title``, ``context``, ``question``,
``answers``) as JSON Lines, a JSON list or parquet, read with ``datasets`` (imported only when
needed); and CSV or TSV, read with :mod:`csv`. A user's own files may name their columns their own
way, give answers as one delimited string and take contexts from documents (:mod:`raq.user_data`).
A question without any gold answer is unanswerable (SQuAD 2.0); see :func:`load_questions`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import random
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal

from .config import DATA_SUFFIXES
from .errors import DatasetError
from .records import Question
from .user_data import QuestionReader, describe_documents, is_delimited, read_delimited

logger = logging.getLogger(__name__)

_DATA = Path(__file__).parent / "data"
#: The SQuAD files that ship with raq (``data/SQUAD-LICENSE.md``); 5,945 of v2.0's 11,873 questions are unanswerable.
BUNDLED: dict[str, Path] = {"squad-v1.1-dev": _DATA / "squad-v1.1-dev.json.gz",
                            "squad-v2.0-dev": _DATA / "squad-v2.0-dev.jsonl.gz"}
SQUAD_LICENSE = "CC BY-SA 4.0"
_SUFFIXES = DATA_SUFFIXES
_HINT = "use a local file or the bundled 'squad-v1.1-dev' or 'squad-v2.0-dev'"
Unanswerable = Literal["include", "exclude", "only"]
_UNANSWERABLE = ("include", "exclude", "only")
_PROBE_TIMEOUT_S = 5.0
_LIBRARY_LOGGERS = ("datasets", "huggingface_hub", "fsspec", "urllib3", "filelock")

Records = tuple[list[dict[str, Any]], Callable[[int], str]]  # rows, and row index -> locator


def load_questions(
    source: str, split: str = "validation", n: int | None = None, seed: int = 2024, per_context: int = 1, *,
    unanswerable: Unanswerable = "include", unanswerable_share: float | None = None,
    columns: Mapping[str, str] | None = None, answers_delimiter: str | None = None,
    documents: str | Path | None = None,
) -> list[Question]:
    """Load the questions of ``source``, all in file order or ``n`` of them sampled.

    ``source`` is a bundled name (see :data:`BUNDLED`), a local file (``.json``, ``.jsonl``,
    ``.parquet``, ``.csv``, ``.tsv``; ``.json``, ``.jsonl``, ``.csv`` and ``.tsv`` also gzipped) or
    a hub dataset name (loaded with ``split``). A record without an ``id`` gets ``"{stem}:{row}"``:
    the file name without its suffixes (``"{name}:{split}"`` for the hub) and the 0-based index of
    the record in file order, counting every record.

    Unanswerable questions (an empty answer list or cell, or ``is_impossible: true``, whose answers
    are then ignored) are sampled like the others (``unanswerable="include"``), left out
    (``"exclude"``) or the only ones (``"only"``). With ``n``: ``random.Random(seed).sample`` of the
    indices of those kept, in drawn order (data without unanswerable questions gives the same
    sample for ``"include"`` and ``"exclude"``). ``unanswerable_share`` draws a stratified sample:
    ``round(n * share)`` unanswerable and the rest answerable, each kind with its own seeded
    generator, shuffled together with ``seed``.

    ``per_context > 1`` draws a cluster sample: paragraphs in random order, up to ``per_context``
    questions of each (a random subset, in file order), until ``n`` (the last paragraph may give
    fewer). Questions about one paragraph share their prompt up to the question, which throughput
    mode reads once; the analysis accounts for their dependence (:func:`raq.analysis.statistics`).
    Stratified, each kind draws its own paragraphs (the answerable ones from those the unanswerable
    draw left) and whole paragraphs are shuffled.

    ``columns``, ``answers_delimiter`` and ``documents``: see :class:`raq.user_data.QuestionReader`.
    Errors name the file, the line (a row for parquet and JSON lists, a path for nested JSON) and
    the column.
    """
    kind, path = _resolve(source, split)
    _check_sampling(unanswerable, unanswerable_share)
    reader = QuestionReader(columns, answers_delimiter, documents, bundled=source if kind == "bundled" else None)
    if path is None:
        where, stem = f"dataset {source!r} split {split!r}", f"{source}:{split}"
        rows, locate = _hub_rows(source, split), (lambda i: f"row {i}")
    else:
        where, stem = str(path), _strip_suffix(path.name)
        rows, locate = _file_rows(path)
    questions = reader.questions(rows, locate, where, stem)
    answerable = [q for q in questions if q.answerable]
    unanswered = [q for q in questions if not q.answerable]
    left_out = {"include": 0, "exclude": len(unanswered), "only": len(answerable)}[unanswerable]
    logger.info("%s: %d questions: %d answerable, %d unanswerable%s", where, len(questions), len(answerable),
                len(unanswered), f"; {left_out} excluded (unanswerable: {unanswerable})" if left_out else "")
    pool = {"include": questions, "exclude": answerable, "only": unanswered}[unanswerable]
    what = {"include": "", "exclude": "answerable ", "only": "unanswerable "}[unanswerable]
    if not pool:
        raise DatasetError(f"{where}: no {what}questions")
    if per_context < 1:
        raise DatasetError(f"{where}: per_context must be at least 1, not {per_context}")
    if unanswerable_share is not None:
        if n is None:
            raise DatasetError(f"{where}: unanswerable_share needs a sample size (n)")
        return _stratified(answerable, unanswered, n, unanswerable_share, seed, per_context, where)
    if n is None:
        return pool
    return _draw(pool, n, seed, per_context, where, what)


def _check_sampling(unanswerable: str, share: float | None) -> None:
    """Raise DatasetError for sampling settings that cannot apply, before any file is read."""
    if unanswerable not in _UNANSWERABLE:
        raise DatasetError(f"unanswerable must be one of {', '.join(map(repr, _UNANSWERABLE))}, not {unanswerable!r}")
    if share is not None and not 0.0 <= share <= 1.0:
        raise DatasetError(f"unanswerable_share must be between 0 and 1, not {share!r}")
    if share is not None and unanswerable != "include":
        raise DatasetError(f"unanswerable_share needs unanswerable 'include', not {unanswerable!r}")


def _draw(questions: list[Question], n: int, seed: int | str, per_context: int, where: str, what: str = "",
          note: str = "") -> list[Question]:
    """``n`` of ``questions``: a simple random sample, or a cluster sample for ``per_context > 1``."""
    if n < 0 or n > len(questions):
        raise DatasetError(f"{where}: cannot sample {n} {what}questions{note}, {len(questions)} are available")
    if per_context == 1:
        return [questions[i] for i in random.Random(seed).sample(range(len(questions)), n)]
    return _cluster_sample(questions, n, per_context, random.Random(seed))


def _stratified(answerable: list[Question], unanswerable: list[Question], n: int, share: float, seed: int,
                per_context: int, where: str) -> list[Question]:
    """``round(n * share)`` unanswerable questions and the rest answerable, each kind drawn with its own
    generator (in clusters: the answerable ones from the paragraphs the unanswerable draw left), then
    shuffled together (in clusters: whole paragraphs)."""
    wanted, note = round(n * share), f" (unanswerable_share {share:g} of {n})"
    drawn = _draw(unanswerable, wanted, f"{seed}:unanswerable", per_context, where, "unanswerable ", note)
    used = {q.context for q in drawn} if per_context > 1 else set()
    free = [q for q in answerable if q.context not in used]
    drawn += _draw(free, n - wanted, f"{seed}:answerable", per_context, where, "answerable ", note)
    if len(drawn) < n:
        raise DatasetError(f"{where}: cannot sample {n} questions with per_context {per_context} and "
                           f"unanswerable_share {share:g}: the paragraphs give {len(drawn)}")
    groups: dict[str, list[Question]] = {}
    for question in drawn:
        groups.setdefault(question.context if per_context > 1 else question.question_id, []).append(question)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    return [question for group in order for question in group]


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


def describe_source(source: str, split: str, documents: str | Path | None = None) -> dict[str, Any]:
    """Describe ``source`` for a run manifest, without downloading anything.

    Keys: ``source``, ``split`` (``"validation"`` for a bundled file), ``kind`` (``"bundled"``, ``"file"``
    or ``"hub"``), for files ``path`` and ``sha256`` of the file bytes, ``license`` (``"CC BY-SA 4.0"``
    for SQuAD, else None) and ``documents`` (:func:`raq.user_data.describe_documents`) with a folder."""
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
    if documents is not None:
        info["documents"] = describe_documents(Path(documents))
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
    """Read a local file into flat rows: CSV and TSV with ``csv``, nested SQuAD JSON with ``json``,
    the rest with datasets."""
    name = path.name.lower()
    if is_delimited(path):
        table = read_delimited(path)
        return table.rows, lambda i: f"line {table.lines[i]}"
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
