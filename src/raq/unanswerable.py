"""Questions the text cannot answer (SQuAD 2.0): who says so, who invents an answer.

Per model, over the study's questions (every answer made counts, judged or not):

* ``abstention_rate``: answers that say the text does not give the answer, of all answers;
* ``correct_abstentions``: abstentions on unanswerable questions, of the unanswerable questions
  (SQuAD 2.0's "NoAns" accuracy);
* ``hallucinations``: answers given to unanswerable questions, of the unanswerable questions;
* ``wrong_abstentions``: abstentions on answerable questions, of the answerable questions;

each with its count and a Wilson score interval; skipped answers (``finish_reason`` "skipped":
no reply was made) are left out of all four and counted in ``skipped``. Then SQuAD 2.0's EM and
F1 overall, on answerable ("HasAns") and unanswerable ("NoAns") questions, with
percentile-bootstrap intervals over questions; and the mean judged rank on each subset. The
rank tests are run again on each subset (``subsets``), so that a model that is best at
answering and one that is best at knowing when not to are told apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from .stats import N_BOOT, bootstrap_mean_ci, rank_statistics

SUBSETS = ("answerable", "unanswerable")
RATES = ("abstention_rate", "correct_abstentions", "hallucinations", "wrong_abstentions")
SCORES = ("em", "f1", "has_ans_em", "has_ans_f1", "no_ans_em")
#: The columns a run's per-model summary gains when the study has unanswerable questions.
SUMMARY_COLUMNS = ("correct_abstentions", "hallucinations", "wrong_abstentions", "abstention_rate", "skipped",
                   "has_ans_f1", "mean_rank_answerable", "mean_rank_unanswerable")


def level(alpha: float) -> str:
    """The confidence level of ``alpha`` as text: "95%", "99.5%"."""
    return f"{round((1 - alpha) * 100, 6):g}%"


def proportion(count: int, total: int, alpha: float) -> dict[str, Any]:
    """``count`` of ``total`` as a rate with its Wilson score interval (None without any total)."""
    if total == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "count": 0, "of": 0}
    ci = binomtest(count, total).proportion_ci(confidence_level=1 - alpha, method="wilson")
    return {"value": count / total, "ci_low": float(ci.low), "ci_high": float(ci.high), "count": int(count),
            "of": int(total)}


def mean_with_ci(values: pd.Series, alpha: float, seed: int) -> dict[str, Any]:
    """The mean of per-question values with its percentile-bootstrap interval."""
    x = values.dropna().to_numpy(float)
    if len(x) == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    ci = bootstrap_mean_ci(x[:, None], alpha=alpha, n_boot=N_BOOT, seed=seed)
    low, high = (None, None) if ci is None else (float(ci[0][0]), float(ci[1][0]))
    return {"value": float(x.mean()), "ci_low": low, "ci_high": high, "n": int(len(x))}


def skipped_answers(rows: pd.DataFrame) -> pd.Series:
    """Which of ``rows`` are skipped answers (``finish_reason`` "skipped"): no reply to count."""
    if "finish_reason" not in rows:
        return pd.Series(False, index=rows.index)
    return rows["finish_reason"].eq("skipped")


def rates(rows: pd.DataFrame, alpha: float) -> dict[str, Any]:
    """The abstention rates of one model's answers, skipped ones left out (and counted)."""
    skipped = skipped_answers(rows)
    kept = rows[~skipped]
    answerable, abstained = kept["answerable"].astype(bool), kept["abstained"].astype(bool)
    unanswerable = ~answerable
    return {
        "skipped": int(skipped.sum()),
        "abstention_rate": proportion(int(abstained.sum()), len(kept), alpha),
        "correct_abstentions": proportion(int((abstained & unanswerable).sum()), int(unanswerable.sum()), alpha),
        "hallucinations": proportion(int((~abstained & unanswerable).sum()), int(unanswerable.sum()), alpha),
        "wrong_abstentions": proportion(int((abstained & answerable).sum()), int(answerable.sum()), alpha),
    }


def model_figures(rows: pd.DataFrame, alpha: float, seed: int) -> dict[str, Any]:
    """One model's rates (:func:`rates`) and scores (``rows``: its answers in the results table)."""
    answerable = rows["answerable"].astype(bool)
    unanswerable = ~answerable
    judged = rows[rows["judged"].astype(bool)] if "judged" in rows else rows.iloc[:0]
    return {
        "answers": int(len(rows)),
        **rates(rows, alpha),
        "em": mean_with_ci(rows["em"], alpha, seed),
        "f1": mean_with_ci(rows["f1"], alpha, seed),
        "has_ans_em": mean_with_ci(rows.loc[answerable, "em"], alpha, seed),
        "has_ans_f1": mean_with_ci(rows.loc[answerable, "f1"], alpha, seed),
        "no_ans_em": mean_with_ci(rows.loc[unanswerable, "em"], alpha, seed),
        "mean_rank": {subset: _mean(judged.loc[judged["answerable"] == (subset == "answerable"), "rank"])
                      for subset in SUBSETS},
    }


def _mean(values: pd.Series) -> float | None:
    values = values.dropna()
    return float(values.mean()) if len(values) else None


def subset_statistics(table: pd.DataFrame, alpha: float, seed: int) -> dict[str, Any]:
    """The rank tests on the judged answerable and the judged unanswerable questions apart."""
    judged = table[table["judged"].astype(bool)] if "judged" in table else table.iloc[:0]
    result: dict[str, Any] = {}
    for subset in SUBSETS:
        rows = judged[judged["answerable"] == (subset == "answerable")]
        if rows.empty:
            result[subset] = {"note": f"no judged {subset} question"}
            continue
        result[subset] = rank_statistics(rows[["question_id", "model_id", "rank"]], value="rank", alpha=alpha,
                                         seed=seed)
    return result


def unanswerable_statistics(table: pd.DataFrame, models: Sequence[str], alpha: float,
                            seed: int) -> dict[str, Any] | None:
    """Abstentions, hallucinations and SQuAD 2.0 scores per model, and the rank tests per subset;
    None when every question of the study is answerable (a SQuAD 1.1 study)."""
    if table.empty or "answerable" not in table or bool(table["answerable"].all()):
        return None
    questions = table.drop_duplicates("question_id")
    n_unanswerable = int((~questions["answerable"].astype(bool)).sum())
    per_model = {str(model): model_figures(rows, alpha, seed)
                 for model, rows in table.groupby("model_id") if model in models}
    return {
        "questions": {"answerable": int(len(questions) - n_unanswerable), "unanswerable": n_unanswerable,
                      "share_unanswerable": n_unanswerable / len(questions)},
        "models": {model: per_model[model] for model in models if model in per_model},
        "subsets": subset_statistics(table, alpha, seed),
        "alpha": float(alpha),
        "method": {"rates": f"Wilson score intervals at {level(alpha)}, skipped answers left out",
                   "scores": "SQuAD 2.0 official EM and F1 (on an unanswerable question an abstention predicts no "
                             "answer; an answerable question's text is scored as given); percentile bootstrap of the "
                             f"mean over questions at {level(alpha)}, {N_BOOT} resamples, seed {seed}",
                   "abstention": "raq.abstention.is_abstention: the fixed phrase, common paraphrases, an empty "
                                 "answer"},
    }


def unanswerable_frame(result: dict[str, Any]) -> pd.DataFrame:
    """Per model: each rate and score (with ``_low``/``_high`` interval columns), the subsets' mean
    ranks and the number of skipped answers left out of the rates."""
    rows = {}
    for model, figures in result.get("models", {}).items():
        row: dict[str, Any] = {}
        for name in (*RATES, *SCORES):
            entry = figures[name]
            row[name], row[f"{name}_low"], row[f"{name}_high"] = entry["value"], entry["ci_low"], entry["ci_high"]
        for subset in SUBSETS:
            row[f"mean_rank_{subset}"] = figures["mean_rank"][subset]
        rows[model] = row
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame.from_dict(rows, orient="index").astype(float).replace({np.nan: None})
    frame["skipped"] = [int(figures.get("skipped", 0)) for figures in result["models"].values()]
    return frame
