"""Where a study's questions come from: the ``data`` section of its configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The fields a question file provides (``data.columns`` maps a file's own names to them).
DATA_FIELDS = ("question", "context", "answers", "id", "title", "document")
#: The file types a question file may have.
DATA_SUFFIXES = (".json.gz", ".jsonl.gz", ".json", ".jsonl", ".parquet", ".csv", ".tsv", ".csv.gz", ".tsv.gz")


class Strict(BaseModel):
    """A config section: unknown keys rejected, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Strict):
    """Where questions come from and how many are drawn."""

    source: str = Field(
        "squad-v1.1-dev",
        description="'squad-v1.1-dev' or 'squad-v2.0-dev' (ship with raq), a hub dataset name, or a "
                    ".json/.jsonl/.parquet/.csv/.tsv file",
    )
    split: str = "validation"
    n_questions: int = Field(60, ge=1)
    seed: int = 2024
    per_context: int = Field(
        1, ge=1, description="questions per paragraph: 1 = a simple random sample of questions; k > 1 = random "
                             "paragraphs, up to k questions each (throughput mode reads each paragraph once for them)")
    unanswerable: Literal["include", "exclude", "only"] = Field(
        "include", description="questions the text cannot answer (no gold answer, as in SQuAD 2.0): sampled like "
                               "the others ('include'), left out ('exclude') or the only ones ('only')")
    unanswerable_share: float | None = Field(
        None, ge=0.0, le=1.0, description="with 'include': this share of the sample is unanswerable (a stratified "
                                          "sample); None: the share is the dataset's own")
    columns: dict[str, str] = Field(
        default_factory=dict, description="a file's own column names for raq's fields: question, context, answers, "
                                          "id, title, document (e.g. {question: q, context: passage, answers: gold})")
    answers_delimiter: str | None = Field(
        None, min_length=1, description="answers given as one string: split it at this delimiter (e.g. '|'); "
                                        "an empty string then means no answer (unanswerable)")
    documents: str | None = Field(
        None, description="a folder of plain-text documents (.txt, UTF-8): each question's 'document' column names "
                          "its document (the file name, with or without .txt), whose text is the context")

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, columns: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(columns) - set(DATA_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}; map any of {', '.join(DATA_FIELDS)}")
        return columns

    @model_validator(mode="after")
    def _share_needs_include(self) -> "DataConfig":
        if self.unanswerable_share is not None and self.unanswerable != "include":
            raise ValueError(f"'unanswerable_share' needs unanswerable: include, not {self.unanswerable!r}")
        return self
