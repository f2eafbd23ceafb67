"""The run directory: a manifest plus append-only JSON Lines records.

Layout::

    RUN/manifest.json       format version, config, seeds, environment, models, status
    RUN/questions.jsonl     the sampled questions
    RUN/answers.jsonl       one Answer per line, appended and flushed as each completes
    RUN/judgements.jsonl    one Judgement per line (failed ones too; they are retried on resume)
    RUN/results.csv, RUN/summary.csv, RUN/stats.json, RUN/figures/*.png, RUN/summary.md

The manifest is replaced atomically; a truncated last record (a crash mid-write) is dropped
and the file repaired when the run is opened again.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from .errors import RunDirError
from .records import Answer, Judgement, Question, RecordError, from_dict, to_dict

FORMAT_VERSION = 1
#: The manifest format versions this raq reads.
READABLE_VERSIONS: tuple[int, ...] = (1,)
T = TypeVar("T")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` so that readers see the old or the new file, never half of one."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, ensure_ascii=False)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_jsonl(path: Path, *, repair: bool = False) -> list[Any]:
    """Records of a JSON Lines file. A broken *last* line (an interrupted write) is dropped,
    and with ``repair`` cut from the file; a broken line elsewhere is an error."""
    return [data for _, data in numbered_jsonl(path, repair=repair)]


def numbered_jsonl(path: Path, *, repair: bool = False) -> list[tuple[int, Any]]:
    """(line number, record) of each record of a JSON Lines file, as :func:`read_jsonl` reads them."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records, good_bytes = [], 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            good_bytes += len(line) + 1
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError:
            if number != len(lines):  # only an unterminated final fragment may be broken
                raise RunDirError(f"{path}:{number}: not a JSON record") from None
            if repair:
                with open(path, "r+b") as out:
                    out.truncate(good_bytes)
            break
        good_bytes += len(line) + 1
    return records


class RunDir:
    """A run directory on disk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest_path = self.path / "manifest.json"
        self.questions_path = self.path / "questions.jsonl"
        self.answers_path = self.path / "answers.jsonl"
        self.judgements_path = self.path / "judgements.jsonl"
        self.figures_path = self.path / "figures"

    # --- manifest ------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, manifest: dict[str, Any]) -> RunDir:
        run = cls(path)
        if run.manifest_path.exists():
            raise RunDirError(f"{run.path} already holds a run: resume it with --resume {run.path}")
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_manifest({"format_version": FORMAT_VERSION, "created": now(), **manifest})
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run, once its manifest is found to be in a format this raq reads."""
        run = cls(path)
        if not run.manifest_path.is_file():
            raise RunDirError(f"{run.path}: not a raq run directory (no manifest.json)")
        run.format_version()
        return run

    def format_version(self) -> int:
        """The manifest's format version (1 when absent from a manifest that has a config);
        RunDirError unless this raq reads it."""
        manifest = self.manifest()
        if not isinstance(manifest, dict):
            raise RunDirError(f"{self.manifest_path}: not a raq run manifest (not a JSON object)")
        version = manifest.get("format_version")
        if version is None:
            if "config" not in manifest:
                raise RunDirError(f"{self.manifest_path}: not a raq run manifest (no format_version and no config)")
            version = 1
        if not isinstance(version, int) or isinstance(version, bool) or version not in READABLE_VERSIONS:
            readable = ", ".join(str(v) for v in READABLE_VERSIONS)
            raise RunDirError(f"{self.manifest_path}: format_version {version!r} is not one this raq reads "
                              f"(it reads format_version {readable}); was the run written by a newer raq?")
        return int(version)

    def manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise RunDirError(f"{self.manifest_path}: cannot be read ({error})") from None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, manifest)

    def update_manifest(self, **changes: Any) -> dict[str, Any]:
        manifest = {**self.manifest(), **changes, "updated": now()}
        self.write_manifest(manifest)
        return manifest

    # --- records -------------------------------------------------------------------------
    @staticmethod
    def _append(path: Path, records: Iterable[Any]) -> None:
        with open(path, "a", encoding="utf-8") as out:
            out.writelines(json.dumps(to_dict(record), ensure_ascii=False) + "\n" for record in records)
            out.flush()
            os.fsync(out.fileno())

    def write_questions(self, questions: list[Question]) -> None:
        self.questions_path.unlink(missing_ok=True)
        self._append(self.questions_path, questions)

    def append_answer(self, answer: Answer) -> None:
        self._append(self.answers_path, [answer])

    def append_judgement(self, judgement: Judgement) -> None:
        self._append(self.judgements_path, [judgement])

    def _load(self, path: Path, cls: type[T], repair: bool) -> list[T]:
        """The records of ``path``, each checked against ``cls`` (RunDirError names file, line and field)."""
        records = []
        for number, data in numbered_jsonl(path, repair=repair):
            try:
                records.append(from_dict(cls, data))
            except RecordError as error:
                raise RunDirError(f"{path}:{number}: {error}") from None
        return records

    def questions(self) -> list[Question]:
        return self._load(self.questions_path, Question, repair=False)

    def answers(self, repair: bool = False) -> list[Answer]:
        """Every stored answer, one per (question, model): the last one written wins."""
        latest = {(a.question_id, a.model_id): a for a in self._load(self.answers_path, Answer, repair)}
        return list(latest.values())

    def judgements(self, repair: bool = False) -> list[Judgement]:
        """One judgement per (question, judge, order): a successful one if any, else the last failure."""
        best: dict[tuple[str, str, int], Judgement] = {}
        for judgement in self._load(self.judgements_path, Judgement, repair):
            key = (judgement.question_id, judgement.judge_id, judgement.order_index)
            if judgement.ok or key not in best or not best[key].ok:
                best[key] = judgement
        return list(best.values())
