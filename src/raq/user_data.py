"""A user's own question files: CSV/TSV reading, column mapping, answer cells and a documents folder.

:mod:`raq.dataset` finds a source and reads it into rows (one dict per question);
:class:`QuestionReader` turns the rows of any file type into questions, with what a user's own
files may add:

* :func:`read_delimited`: a ``.csv``/``.tsv`` file (optionally gzipped), UTF-8 with a header row,
  read with :mod:`csv`, each row with the number of the line it starts on;
* :class:`Fields`: which column of a file holds each of raq's fields (``data.columns`` maps
  raq's names to the file's own), checked against the columns the file has before any
  question is built;
* :func:`answer_cell`: answers given as one string: a JSON-encoded list, a string split at
  ``data.answers_delimiter``, or one answer (an empty string: no answer, an unanswerable question);
* :class:`Documents`: a folder of plain-text ``.txt`` documents, whose text is the context of
  the questions that name them.

Errors are :class:`~raq.errors.DatasetError` naming the file, the line and the column; the
functions that check one value raise ``ValueError`` with the column, and the caller adds the
file and line.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import DATA_FIELDS
from .errors import DatasetError
from .records import Question

#: The file types :func:`read_delimited` reads.
DELIMITED_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
_FIELD_LIMIT = 1 << 30  # csv's own limit (131,072 characters) is too small for long passages


@dataclass(frozen=True)
class Table:
    """A question file's rows, the 1-based line each starts on, and the file's columns."""

    rows: list[dict[str, Any]]
    lines: list[int]
    columns: list[str]


def is_delimited(path: Path) -> bool:
    """Whether ``path`` is a CSV or TSV file (optionally gzipped)."""
    return path.name.lower().endswith(DELIMITED_SUFFIXES)


def read_delimited(path: Path) -> Table:
    """Read a CSV or TSV file: UTF-8 (a byte-order mark is allowed), a header row, then one row a
    question; blank lines are skipped. A row with more or fewer cells than the header is an error."""
    name = path.name.lower()
    dialect = csv.excel_tab if name.endswith((".tsv", ".tsv.gz")) else csv.excel
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, _FIELD_LIMIT))
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    header: list[str] | None = None
    line = 0
    try:
        reader = csv.reader(io.StringIO(_decode(path, _read(path)), newline=""), dialect)
        for cells in reader:
            start, line = line + 1, reader.line_num
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if header is None:
                header = _header(cells, path, start)
                continue
            if len(cells) != len(header):
                raise DatasetError(f"{path}: line {start}: {len(cells)} cells, but the header has "
                                   f"{len(header)} columns ({', '.join(header)})")
            rows.append(dict(zip(header, cells)))
            lines.append(start)
    except csv.Error as exc:
        raise DatasetError(f"{path}: line {line + 1}: invalid {'TSV' if dialect is csv.excel_tab else 'CSV'}: "
                           f"{exc}") from None
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from None
    finally:
        csv.field_size_limit(limit)
    if header is None:
        raise DatasetError(f"{path}: file is empty (expected a header row, then one row a question)")
    return Table(rows, lines, header)


def _read(path: Path) -> bytes:
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


def _decode(path: Path, data: bytes) -> str:
    """``data`` as UTF-8 text (a byte-order mark is dropped); DatasetError naming the line otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetError(f"{path}: line {line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _header(cells: list[str], path: Path, line: int) -> list[str]:
    names = [cell.strip() for cell in cells]
    for number, name in enumerate(names, start=1):
        if not name:
            raise DatasetError(f"{path}: line {line}: the header's column {number} has no name")
        if names.index(name) != number - 1:
            raise DatasetError(f"{path}: line {line}: the header names column {name!r} twice")
    return names


class Fields:
    """Which of a file's columns holds each of raq's fields.

    ``columns`` maps raq's field names to the file's own (``{"question": "q"}``); a field it
    does not map is read from the column of its own name. With ``documents`` the context comes
    from the document each question's ``document`` column names, so the file needs no context.
    """

    def __init__(self, columns: Mapping[str, str] | None = None, documents: bool = False) -> None:
        columns = dict(columns or {})
        unknown = sorted(set(columns) - set(DATA_FIELDS))
        if unknown:
            raise DatasetError(f"data.columns: unknown field(s) {', '.join(map(repr, unknown))}; "
                               f"map any of {', '.join(DATA_FIELDS)}")
        for field, column in columns.items():
            if not isinstance(column, str) or not column.strip():
                raise DatasetError(f"data.columns.{field}: expected a column name, not {column!r}")
        if documents and "context" in columns:
            raise DatasetError("data.columns.context and data.documents both give the context: set one of them")
        if not documents and "document" in columns:
            raise DatasetError("data.columns.document names each question's document: it needs data.documents "
                               "(the folder of the documents)")
        self.mapped = columns
        self.documents = documents

    def column(self, field: str) -> str:
        """The file's column for raq's ``field``."""
        return self.mapped.get(field, field)

    def name(self, field: str) -> str:
        """``field``'s column as error messages show it: ``'q' (data.columns.question)`` or ``'question'``."""
        column = self.column(field)
        return f"{column!r} (data.columns.{field})" if field in self.mapped else repr(column)

    @property
    def required(self) -> tuple[str, ...]:
        """The fields every file must have a column for."""
        return ("question", "document" if self.documents else "context", "answers")

    def check(self, available: Sequence[str], where: str) -> None:
        """Raise DatasetError unless the file has every mapped column and one for each required field."""
        has = set(available)
        shown = ", ".join(available) if available else "none"
        for field, column in self.mapped.items():
            if column not in has:
                raise DatasetError(f"{where}: data.columns.{field} is {column!r}, but the file has no such "
                                   f"column (its columns: {shown})")
        for field in self.required:
            if self.column(field) not in has:
                hint = ""
                if field == "context" and "document" in has:
                    hint = "; its 'document' column names documents: set data.documents to their folder"
                raise DatasetError(f"{where}: no {field!r} column (name the file's own with "
                                   f"data.columns.{field}; its columns: {shown}){hint}")


def answer_cell(value: str, delimiter: str | None) -> Any:
    """The answers of one string: split at ``delimiter`` when given; else the JSON list (or SQuAD's
    ``{"text": [...]}``) a string starting with ``[`` or ``{`` encodes, else one answer. An empty
    string is no answer."""
    if delimiter:
        return value.split(delimiter)
    text = value.strip()
    if not text:
        return []
    if text[0] in "[{":
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list ({exc.msg} at character {exc.pos}); to give answers as one "
                             "delimited string, set data.answers_delimiter") from None
        return decoded
    return [value]


class Documents:
    """A folder of plain-text UTF-8 ``.txt`` documents, each read once."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            what = "not a folder" if self.folder.exists() else "no such folder"
            raise DatasetError(f"data.documents {self.folder}: {what} (expected a folder of .txt documents)")
        self._root = self.folder.resolve()
        self._texts: dict[Path, str] = {}

    def read(self, name: str) -> tuple[str, str]:
        """The text and the stem of the document ``name`` (a file name, with or without ``.txt``);
        ValueError when there is no such document or it is not UTF-8 text or it is empty."""
        name = name.strip()
        file = name if name.lower().endswith(".txt") else f"{name}.txt"
        path = (self.folder / file).resolve()
        if not path.is_relative_to(self._root) or not path.is_file():
            raise ValueError(f"no document {name!r} ({file}) in {self.folder}{self._some()}")
        if path not in self._texts:
            try:
                text = path.read_text(encoding="utf-8-sig").strip()
            except UnicodeDecodeError as exc:
                raise ValueError(f"document {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            except OSError as exc:
                raise ValueError(f"document {path}: cannot read: {exc}") from None
            if not text:
                raise ValueError(f"document {path} is empty")
            self._texts[path] = text
        return self._texts[path], path.stem

    def _some(self, shown: int = 5) -> str:
        names = sorted(p.stem for p in self.folder.glob("*.txt"))
        if not names:
            return " (it has no .txt documents)"
        more = f", ... ({len(names)} in all)" if len(names) > shown else ""
        return f" (it has: {', '.join(names[:shown])}{more})"


class QuestionReader:
    """Builds the questions of a file's rows; its settings are checked when it is made, before any
    file is read (``bundled``: the name of a bundled source, which takes none of them).

    ``columns`` maps raq's field names (``question``, ``context``, ``answers``, ``id``, ``title``,
    ``document``) to the file's own column names. An answer given as a string is split at
    ``answers_delimiter`` when it is set, else read as JSON when it looks like a list (``[...]``),
    else taken as one answer (an empty string: no answer, an unanswerable question). An
    ``is_impossible`` of true, 1 or yes (any case; false, 0, no or empty: answerable) makes the
    question unanswerable whatever its answers. ``documents`` is a folder of plain-text ``.txt``
    documents: each question's ``document`` column names its document (with or without ``.txt``),
    whose text is the context and whose stem is the default title.
    """

    def __init__(self, columns: Mapping[str, str] | None = None, answers_delimiter: str | None = None,
                 documents: str | Path | None = None, bundled: str | None = None) -> None:
        given = [name for name, value in (("data.columns", columns), ("data.answers_delimiter", answers_delimiter),
                                          ("data.documents", documents)) if value]
        if bundled and given:  # a bundled SQuAD file has raq's own fields
            raise DatasetError(f"bundled {bundled!r} has raq's own fields and contexts: {', '.join(given)} "
                               f"{'is' if len(given) == 1 else 'are'} for your own files")
        if answers_delimiter is not None and not answers_delimiter:
            raise DatasetError("answers_delimiter must not be empty (None: answers are not delimited)")
        self.fields = Fields(columns, documents=documents is not None)
        self.delimiter = answers_delimiter
        self.documents = Documents(documents) if documents is not None else None

    def questions(self, rows: list[dict[str, Any]], locate: Callable[[int], str], where: str,
                  stem: str) -> list[Question]:
        """Check the file's columns, then each row, and build every question, in file order. ``locate``
        gives a row's place (``line 3``), ``where`` names the file, and a row without an id gets
        ``{stem}:{row}``."""
        if not rows:
            raise DatasetError(f"{where}: no questions")
        self.fields.check(list(dict.fromkeys(key for row in rows for key in row)), where)
        questions: list[Question] = []
        seen: set[str] = set()
        for i, row in enumerate(rows):
            try:
                question = self._question(row, f"{stem}:{i}")
            except ValueError as exc:
                raise DatasetError(f"{where}: {locate(i)}: {exc}") from None
            if question.question_id in seen:
                raise DatasetError(f"{where}: duplicate question id {question.question_id!r} at {locate(i)}")
            seen.add(question.question_id)
            questions.append(question)
        return questions

    def _question(self, row: dict[str, Any], default_id: str) -> Question:
        fields = self.fields
        title = row.get(fields.column("title"))
        title = title if isinstance(title, str) else ""
        question = self._text(row, "question")
        if self.documents is None:
            context = self._text(row, "context")
        else:
            try:
                context, document = self.documents.read(self._text(row, "document"))
            except ValueError as exc:
                raise ValueError(f"{fields.name('document')}: {exc}") from None
            title = title if title.strip() else document
        impossible = str(row.get("is_impossible") or "").strip().lower()  # official SQuAD 2.0 (or a CSV cell)
        if impossible not in ("true", "1", "yes", "false", "0", "no", ""):
            raise ValueError(f"invalid 'is_impossible': {row['is_impossible']!r} (expected true/false, 1/0 or yes/no)")
        gold = [] if impossible in ("true", "1", "yes") else self._gold(row)  # an impossible one's answers ignored
        qid = row.get(fields.column("id"))
        blank = qid is None or (isinstance(qid, str) and not qid.strip())
        return Question(default_id if blank else str(qid), question, context, gold, title)

    def _text(self, row: dict[str, Any], field: str) -> str:
        """The non-empty string in ``field``'s column of ``row`` (ValueError naming the column)."""
        value = row.get(self.fields.column(field))
        if value is None:
            raise ValueError(f"missing {self.fields.name(field)}")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"invalid {self.fields.name(field)} (expected a non-empty string)")
        return value

    def _gold(self, row: dict[str, Any]) -> list[str]:
        """The gold answers in ``row``'s answers column (a string: see :func:`answer_cell`)."""
        name = self.fields.name("answers")
        value = row.get(self.fields.column("answers"))
        if value is None:
            raise ValueError(f"missing {name}")
        if isinstance(value, str):
            try:
                value = answer_cell(value, self.delimiter)
            except ValueError as exc:
                raise ValueError(f"invalid {name}: {exc}") from None
        return answer_texts(value, name)


def answer_texts(answers: Any, name: str = "'answers'") -> list[str]:
    """Answer texts from ``{"text": [...]}``, a list of ``{"text": ...}`` or a list of strings,
    stripped, without empty or repeated ones; ``name`` is the column as errors show it."""
    if isinstance(answers, dict):
        answers = answers.get("text")
        answers = [answers] if isinstance(answers, str) else answers
    if not isinstance(answers, list):
        raise ValueError(f"invalid {name} (expected {{'text': [...]}} or a list)")
    texts = [a.get("text") if isinstance(a, dict) else a for a in answers]
    if not all(isinstance(t, str) for t in texts):
        raise ValueError(f"invalid {name} (every answer text must be a string)")
    return list(dict.fromkeys(t.strip() for t in texts if isinstance(t, str) and t.strip()))


def describe_documents(folder: Path) -> dict[str, Any]:
    """A documents folder for a run manifest: its ``path``, the number of ``.txt`` ``files`` and one
    ``sha256`` over their names and bytes, in name order."""
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode("utf-8") + b"\0" + file.read_bytes())
    return {"path": str(folder), "files": len(files), "sha256": digest.hexdigest()}
