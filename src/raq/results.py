"""What a finished (or partial) run holds, as objects and tables: the type ``raq.evaluate``
returns, with its figures, exports and HTML report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .records import Answer, Judgement, Question

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure


@dataclass
class Results:
    """A run's records, its results table (question x model), per-model summary and statistics."""

    run_dir: Path
    manifest: dict[str, Any]
    questions: list[Question]
    answers: list[Answer]
    judgements: list[Judgement]
    table: "pd.DataFrame"
    summary: "pd.DataFrame"
    stats: dict[str, Any]

    @property
    def recommendation(self) -> dict[str, Any]:
        """Which model to run and why (``model``, ``basis``, ``sentence``, ``evidence``;
        :func:`raq.decision.recommendation`), or {} for statistics made before it existed."""
        return dict(self.stats.get("recommendation") or {})

    @property
    def plackett_luce(self) -> "pd.DataFrame":
        """Per model: Plackett-Luce ``worth`` with ``ci_low``/``ci_high`` and ``p_best``
        (:func:`raq.plackett_luce.plackett_luce`); empty when not fitted."""
        import pandas as pd

        fit = self.stats.get("plackett_luce") or {}
        rows = {m: {"worth": w.get("estimate"), "ci_low": w.get("ci_low"), "ci_high": w.get("ci_high"),
                    "p_best": (fit.get("p_best") or {}).get(m)} for m, w in (fit.get("worth") or {}).items()}
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=["worth", "ci_low", "ci_high", "p_best"])
        return frame.rename_axis("model_id")

    @property
    def length_effect(self) -> dict[str, Any]:
        """The judge's length preference and length-controlled mean ranks
        (:func:`raq.length_bias.length_effect`), or {}."""
        return dict(self.stats.get("length") or {})

    @property
    def tradeoffs(self) -> dict[str, Any]:
        """Quality against speed and memory with the Pareto sets (:func:`raq.tradeoffs.tradeoffs`), or {}."""
        return dict(self.stats.get("tradeoffs") or {})

    @property
    def unanswerable(self) -> "pd.DataFrame":
        """Per model, for a study with unanswerable questions: correct abstentions, hallucinations, wrong
        abstentions, abstention rate, SQuAD 2.0 EM/F1 (each with ``_low``/``_high``) and each subset's mean
        rank (:func:`raq.unanswerable.unanswerable_statistics`); empty for a study without them."""
        from .unanswerable import unanswerable_frame

        return unanswerable_frame(self.stats.get("unanswerable") or {}).rename_axis("model_id")

    @property
    def memory(self) -> "pd.DataFrame":
        """Per model: memory added while answering, peak RSS, GGUF file, weights and KV cache (MiB)."""
        from .analysis import MEMORY_COLUMNS

        return self.summary[[c for c in MEMORY_COLUMNS if c in self.summary.columns]]

    def plot_tradeoffs(self) -> "Figure":
        """Quality against answers/s, time to first token and memory, the Pareto set marked."""
        from .figures import tradeoff_figure

        return tradeoff_figure(self.tradeoffs)

    def plot(self) -> "Figure":
        """The reference study's three bar charts, with raq's 95% bootstrap intervals."""
        from .figures import bar_figure, interval_settings

        config = self.manifest.get("config", {})
        settings = interval_settings(self.stats, seed=config.get("data", {}).get("seed", 2024),
                                     alpha=config.get("stats", {}).get("alpha", 0.05))
        return bar_figure(self.table, list(self.summary.index), **settings)

    def tables(self) -> dict[str, "pd.DataFrame"]:
        """The exportable tables: ``results`` (question x model), ``summary`` (per model, ``model_id``
        a column) and, when statistics exist, ``significance`` (post-hoc pairs of both families)."""
        import pandas as pd

        tables = {"results": self.table, "summary": self.summary.reset_index()}
        if self.stats.get("paper") and self.stats.get("blocked"):
            from .stats import significance_table

            tables["significance"] = pd.concat(
                [significance_table(self.stats, family).assign(family=family) for family in ("paper", "blocked")],
                ignore_index=True)
        return tables

    def _export(self, folder: str | Path, suffix: str) -> dict[str, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, frame in self.tables().items():
            paths[name] = folder / f"{name}.{suffix}"
            getattr(frame, f"to_{suffix}")(paths[name], index=False)
        return paths

    def to_csv(self, folder: str | Path) -> dict[str, Path]:
        """Write the tables as ``results.csv``, ``summary.csv`` (and ``significance.csv``) into
        ``folder`` (created if needed); return their paths by table name."""
        return self._export(folder, "csv")

    def to_parquet(self, folder: str | Path) -> dict[str, Path]:
        """Write the tables as ``results.parquet``, ``summary.parquet`` (and
        ``significance.parquet``) into ``folder``; return their paths by table name."""
        return self._export(folder, "parquet")

    def report(self, path: str | Path | None = None) -> Path:
        """Write the self-contained HTML report (default ``run_dir/report.html``); return its path."""
        from .html_report import write_html_report

        return write_html_report(self, None if path is None else Path(path))
