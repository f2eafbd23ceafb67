"""How much the judge prefers longer answers, and each model's mean rank with that preference removed.

Judges tend to favour longer answers, and the models of a study can differ severalfold in answer
length, so a raw mean rank mixes answer quality with length. The model is a within-question rank
regression on the judged answers. With every variable demeaned within its question (marked ``~``),

    rank~ = beta_len * log2(words + 1)~ + beta_f1 * f1~ + error

is fitted by ordinary least squares. Demeaning is the same as giving each question its own
intercept (question fixed effects): only answers to the same question are compared. ``beta_len`` is
the change in rank per doubling of answer length at equal token F1; since rank 1 is best, a negative
value means longer answers are ranked better. It is in rank units, so its size depends on how many
models share a question. ``beta_f1`` is the change in rank from token F1 0 to 1 at equal length.

Intervals are percentile intervals from a cluster bootstrap over questions: whole questions are
resampled with replacement (a seeded :class:`numpy.random.Generator`) and the regression is refitted
on each replicate. Replicates in which a coefficient cannot be fitted (e.g. no length variation in the
resampled questions) are left out of its interval.

A model's length-controlled mean rank is the mean over its judged answers of
``rank - beta_len * log2(words + 1)~``: its rank as if each answer had its question's mean log length.
Its interval comes from the same replicates (questions resampled and ``beta_len`` refitted together).
This is a linear counterpart of Arena-Hard's style control, which adds a length covariate to its
Bradley-Terry fit.

Caveats: the fit is a linear average slope for ranks, which are bounded and discrete; and a longer
answer may be better in ways token F1 misses, so ``beta_len`` measures preference for length at equal
F1, not proof of a bias.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["N_BOOT", "length_effect", "length_sentence"]

N_BOOT = 1000
COLUMNS = ("question_id", "model_id", "judged", "rank", "words", "f1")
METHOD = ("OLS of the rank on log2(words + 1) and token F1, all demeaned within question (question fixed "
          "effects), with percentile intervals from a cluster bootstrap over questions")
F1_NOTE = "token F1 does not vary within any judged question: the length effect is fitted on length alone"
#: Relative size under which the 2 x 2 normal equations count as singular.
_SINGULAR = 1e-9
#: Bootstrap weights held in memory at once (replicates x questions).
_CHUNK = 2_000_000


def _num(value: Any) -> float | None:
    """A JSON-ready float, None when missing or not finite."""
    return float(value) if value is not None and math.isfinite(value) else None


def _judged_rows(table: pd.DataFrame) -> pd.DataFrame | str:
    """The judged answers with a rank, a length and an F1, in questions with at least two of them;
    or why there are too few of them to compare."""
    missing = [column for column in COLUMNS if column not in table.columns]
    if missing:
        return f"no judged answers (the table has no {', '.join(missing)} column)"
    rows = table.loc[table["judged"].eq(True), list(COLUMNS)].dropna(subset=["rank", "words", "f1"])
    rows = rows[rows.groupby("question_id")["model_id"].transform("size") >= 2]
    n_questions = rows["question_id"].nunique()
    if n_questions < 2:
        return f"too few judged questions with two or more answers ({n_questions}; at least 2 are needed)"
    if not (rows.groupby("question_id")["words"].transform("nunique") > 1).any():
        return "answer length does not vary within any judged question"
    return rows.reset_index(drop=True)


def _within(values: pd.Series, questions: pd.Series) -> np.ndarray:
    """``values`` minus their question's mean; exactly 0 in questions where they do not vary."""
    centred = values - values.groupby(questions).transform("mean")
    varies = values.groupby(questions).transform("nunique") > 1
    return np.asarray(centred.where(varies, 0.0), dtype=float)


def _design(rows: pd.DataFrame) -> dict[str, Any]:
    """Per-question sums for the regression and per question x model sums for the mean ranks."""
    q, questions = pd.factorize(rows["question_id"], sort=True)
    m, models = pd.factorize(rows["model_id"], sort=True)
    nq, k = len(questions), len(models)
    rank = np.asarray(rows["rank"], dtype=float)
    x_len = _within(np.log2(rows["words"].astype(float) + 1.0), rows["question_id"])
    x_f1 = _within(rows["f1"].astype(float), rows["question_id"])
    y = _within(rows["rank"].astype(float), rows["question_id"])
    products = (x_len * x_len, x_len * x_f1, x_f1 * x_f1, x_len * y, x_f1 * y)
    moments = np.column_stack([np.bincount(q, weights=p, minlength=nq) for p in products])
    sums = {name: np.zeros((nq, k)) for name in ("rank", "x_len", "count")}
    np.add.at(sums["rank"], (q, m), rank)
    np.add.at(sums["x_len"], (q, m), x_len)
    np.add.at(sums["count"], (q, m), 1.0)
    return {"moments": moments, "models": [str(model) for model in models], "questions": nq,
            "answers": len(rows), "use_f1": bool(moments[:, 2].sum() > 0), **sums}


def _fit(weights: np.ndarray, design: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of question ``weights``: the length and F1 coefficients and each model's
    length-controlled mean rank (NaN where they cannot be fitted)."""
    s11, s12, s22, s1y, s2y = (weights @ design["moments"]).T
    with np.errstate(divide="ignore", invalid="ignore"):
        if design["use_f1"]:
            det = s11 * s22 - s12 * s12
            ok = (det > _SINGULAR * s11 * s22) & (s11 > 0)
            alone = (s22 == 0) & (s11 > 0)  # no F1 variation in these questions: length alone is the OLS fit
            b_len = np.where(ok, (s22 * s1y - s12 * s2y) / det, np.where(alone, s1y / s11, np.nan))
            b_f1 = np.where(ok, (s11 * s2y - s12 * s1y) / det, np.nan)
        else:
            b_len = np.where(s11 > 0, s1y / s11, np.nan)
            b_f1 = np.full_like(b_len, np.nan)
        controlled = ((weights @ design["rank"] - b_len[:, None] * (weights @ design["x_len"]))
                      / (weights @ design["count"]))
    return b_len, b_f1, controlled


def _replicates(design: Mapping[str, Any], n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_fit` on ``n_boot`` cluster-bootstrap resamples of the questions."""
    nq, k = design["questions"], len(design["models"])
    rng = np.random.default_rng(seed)
    b_len, b_f1, controlled = np.empty(n_boot), np.empty(n_boot), np.empty((n_boot, k))
    chunk = max(1, _CHUNK // nq)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        picks = rng.integers(0, nq, size=(size, nq)) + nq * np.arange(size)[:, None]
        weights = np.bincount(picks.ravel(), minlength=size * nq).reshape(size, nq).astype(float)
        stop = start + size
        b_len[start:stop], b_f1[start:stop], controlled[start:stop] = _fit(weights, design)
    return b_len, b_f1, controlled


def _interval(estimate: float, replicates: np.ndarray, alpha: float) -> dict[str, float | None]:
    """The estimate with the percentile interval of its finite bootstrap replicates."""
    finite = replicates[np.isfinite(replicates)]
    if not finite.size:
        return {"estimate": _num(estimate), "ci_low": None, "ci_high": None}
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return {"estimate": _num(estimate), "ci_low": _num(low), "ci_high": _num(high)}


def length_effect(table: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 2024,
                  alpha: float = 0.05) -> dict[str, Any]:
    """The judge's length preference in a results table (see the module docstring for the model).

    ``table`` is :func:`raq.analysis.results_table`'s (columns ``question_id``, ``model_id``,
    ``judged``, ``rank``, ``words``, ``f1``). Returns ``per_doubling`` and ``f1`` (estimate and
    percentile interval), the numbers of questions and answers fitted, and per model its raw and
    length-controlled mean rank; or ``{"note": why}`` when there is too little variation to fit.
    The same table, ``n_boot``, ``seed`` and ``alpha`` give the same result.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, not {alpha}")
    if n_boot < 0:
        raise ValueError(f"n_boot must be 0 or more, not {n_boot}")
    rows = _judged_rows(table)
    if isinstance(rows, str):
        return {"note": rows}
    design = _design(rows)
    b_len, b_f1, controlled = _fit(np.ones((1, design["questions"])), design)
    if not np.isfinite(b_len[0]):
        return {"note": "answer length and token F1 move together exactly within the judged questions, "
                        "so their effects cannot be told apart"}
    boot_len, boot_f1, boot_controlled = _replicates(design, n_boot, seed)
    raw = design["rank"].sum(axis=0) / design["count"].sum(axis=0)
    result: dict[str, Any] = {
        "per_doubling": _interval(b_len[0], boot_len, alpha),
        "f1": _interval(b_f1[0], boot_f1, alpha),
        "questions": int(design["questions"]),
        "answers": int(design["answers"]),
        "mean_rank": {model: {"raw": _num(raw[j]),
                              "controlled": _interval(controlled[0, j], boot_controlled[:, j], alpha)}
                      for j, model in enumerate(design["models"])},
        "n_boot": int(n_boot),
        "replicates": int(np.isfinite(boot_len).sum()),
        "alpha": float(alpha),
        "method": METHOD,
    }
    if not design["use_f1"]:
        result["f1_note"] = F1_NOTE
    return result


def length_sentence(result: Mapping[str, Any]) -> str:
    """One plain sentence on :func:`length_effect`'s result, for a report."""
    if "note" in result:
        return f"The judge's length preference was not estimated: {result['note']}."
    effect = result["per_doubling"]
    estimate, low, high = effect["estimate"], effect["ci_low"], effect["ci_high"]
    lead = f"Per doubling of answer length at equal token F1 the judge's rank moves by {estimate:.2f}"
    if low is None or high is None:
        return f"{lead} (no bootstrap interval)."
    level = f"{100 * (1 - result.get('alpha', 0.05)):g}%"
    span = f"{lead} [{low:.2f}, {high:.2f}]"
    if low <= 0 <= high:
        return f"{span}: no length preference was detected (the {level} interval contains 0)."
    side = "longer" if high < 0 else "shorter"
    return f"{span} ({side} answers ranked better)."
