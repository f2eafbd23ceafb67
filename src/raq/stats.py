"""Statistics for RAQ studies: do the models' ranks (or any per-answer metric) really differ?

Input is a long table with columns ``question_id``, ``model_id`` and a value column (``rank`` by
default, lower = better). Each question is a block: the judge ranks the answers to one question
against each other, so ranks within a question are dependent (they sum to 1 + 2 + ... + k).

Two families of tests are reported on the same data (complete questions only):

* ``paper``: what the reference study did, Kruskal-Wallis + Dunn's test with Holm adjustment,
  treating the models' values as independent samples. Kept for like-for-like comparison only;
  on blocked ranks it rejects too often (about 11-14% at a nominal 5% for three models).
* ``blocked`` (the default): Friedman test with Kendall's W, and the paired post-hoc tests
  Nemenyi, Conover (Holm) and Wilcoxon signed-rank (Holm) with a matched-pairs rank-biserial
  effect size.

Every result is a JSON-serialisable dict; ``None`` with a ``note`` marks a value that could not
be computed (too few models or questions, all values identical, ...).

Details: Holm adjustments use :func:`holm` here (scikit-posthocs' ``p_adjust="holm"`` goes through
statsmodels' ``multipletests``, which calls ``gc.collect()`` and costs ~50 ms per call; the
values are identical). Nemenyi p-values are single-step (studentized range), not Holm-adjusted.
Friedman with k = 2 (refused by scipy) uses the same tie-corrected formula. ``summary`` is over the
complete questions, with a percentile-bootstrap CI of each model's mean (whole questions
resampled, so the models' CIs come from the same resampled questions).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy import stats

__all__ = ["rank_statistics", "metric_statistics", "significance_table", "holm", "bootstrap_mean_ci", "N_BOOT"]

PAPER_DESIGN = "independent samples (as the reference study)"
BLOCKED_DESIGN = "repeated measures: questions are blocks"
EFFECT_CONVENTION = (
    "matched-pairs rank-biserial r = (T+ - T-) / (T+ + T-) of d = value[model_a] - value[model_b] "
    "over complete questions, zero differences dropped (as in the Wilcoxon test); r > 0 means "
    "model_a's values tend to be larger (for ranks: model_a is ranked worse), range -1..1"
)
KENDALL_W_TIES = (
    "W = Friedman chi2 / (n (k - 1)) with scipy's tie-corrected chi2 (mid-ranks within a "
    "question), i.e. Kendall's W with the tie correction in its denominator"
)
_BLOCKED_POSTHOCS = ("nemenyi", "conover_holm", "wilcoxon_holm")
#: Bootstrap resamples for the CIs of the means (the tables and the bar charts).
N_BOOT = 2000
Pairs = dict[tuple[int, int], float]  # (i, j) with i < j -> value; a missing pair is None


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (family = all given p-values)."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def _num(x: Any) -> float | None:
    """A plain float, or None for NaN, infinity or None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _pairs(models: list[str], get: Callable[[int, int], Any]) -> dict[str, dict[str, Any]]:
    """``{a: {b: get(i, j)}}`` for every ordered pair of different models."""
    return {a: {b: get(i, j) for j, b in enumerate(models) if j != i} for i, a in enumerate(models)}


def _block_matrix(df: pd.DataFrame, value: str) -> tuple[pd.DataFrame, list[str], int]:
    """Questions x models table of complete questions, the sorted model ids, and the number dropped."""
    missing = {"question_id", "model_id", value} - set(df.columns)
    if missing:
        raise ValueError(f"stats input lacks column(s) {sorted(missing)}")
    data = df[["question_id", "model_id", value]].copy()
    data["model_id"] = data["model_id"].astype(str)
    data[value] = pd.to_numeric(data[value]).astype(float)
    dup = data.duplicated(["question_id", "model_id"])
    if dup.any():
        q, m = data.loc[dup, ["question_id", "model_id"]].iloc[0]
        raise ValueError(f"{int(dup.sum())} duplicate (question_id, model_id) rows, e.g. ({q!r}, {m!r})")
    models = sorted(data["model_id"].unique().tolist())
    wide = data.pivot(index="question_id", columns="model_id", values=value).reindex(columns=models)
    complete = wide.dropna()
    return complete, models, int(len(wide) - len(complete))


def bootstrap_mean_ci(
    x: np.ndarray, alpha: float = 0.05, n_boot: int = N_BOOT, seed: int = 2024
) -> tuple[np.ndarray, np.ndarray] | None:
    """Percentile-bootstrap ``1 - alpha`` CI of each column's mean of a questions x models array.

    Whole questions (rows) are resampled, so every model's interval comes from the same resampled
    questions; the same ``x``, ``alpha``, ``n_boot`` and ``seed`` give the same intervals. Returns
    ``(low, high)``, one value per column, or None with fewer than 2 rows or ``n_boot < 1``.
    """
    x = np.asarray(x, dtype=float)
    n, k = x.shape
    if n < 2 or n_boot < 1:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty((n_boot, k))
    chunk = max(1, 2_000_000 // max(1, n * k))
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        means[start : start + len(idx)] = x[idx].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
    return low, high


def _summary(x: np.ndarray, models: list[str], alpha: float, n_boot: int, seed: int) -> dict:
    """Per-model mean, median and percentile-bootstrap CI of the mean (:func:`bootstrap_mean_ci`)."""
    n, k = x.shape
    interval = bootstrap_mean_ci(x, alpha, n_boot, seed)
    low, high = interval if interval is not None else ([None] * k, [None] * k)
    return {
        m: {
            "mean": _num(x[:, j].mean()) if n else None,
            "median": _num(np.median(x[:, j])) if n else None,
            "ci_low": _num(low[j]),
            "ci_high": _num(high[j]),
            "n": int(n),
        }
        for j, m in enumerate(models)
    }


def _friedman_chi2(x: np.ndarray) -> float:
    """Tie-corrected Friedman chi2 from the raw table (used for k = 2, where scipy refuses)."""
    n, k = x.shape
    r = stats.rankdata(x, axis=1)
    s = float(((r.sum(axis=0) - n * (k + 1) / 2) ** 2).sum())
    ties = sum(float((t**3 - t).sum()) for t in (np.unique(row, return_counts=True)[1] for row in x))
    return 12 * s / (n * k * (k + 1) - ties / (k - 1))


def _upper(models: list[str], frame: pd.DataFrame) -> Pairs:
    """The finite upper-triangle entries of a scikit-posthocs p-value frame."""
    vals = frame.reindex(index=models, columns=models).to_numpy(float)
    return {(i, j): float(vals[i, j]) for i, j in combinations(range(len(models)), 2) if np.isfinite(vals[i, j])}


def _matrix(models: list[str], pairs: Pairs, antisymmetric: bool = False) -> dict[str, dict[str, Any]]:
    """``{a: {b: v}}`` for all ordered pairs; v(b, a) = v(a, b), or -v(a, b) if antisymmetric."""

    def get(i: int, j: int) -> float | None:
        v = pairs.get((min(i, j), max(i, j)))
        return None if v is None else _num(-v if antisymmetric and i > j else v)

    return _pairs(models, get)


def _posthoc(models: list[str], raw: Pairs, alpha: float, note: str | None, adjust: bool = True) -> dict:
    """A post-hoc entry: Holm-adjusted (over the pairs with a p-value) and raw p-values, p < alpha."""
    adj = dict(zip(raw, holm(list(raw.values())))) if adjust else raw
    pv = _matrix(models, adj)
    sig = {a: {b: None if v is None else bool(v < alpha) for b, v in row.items()} for a, row in pv.items()}
    out = {"p_values": pv, "significant": sig}
    if adjust:
        out["p_values_raw"] = _matrix(models, raw)
    return {**out, "note": note}


def _paper(x: np.ndarray, models: list[str], alpha: float, why: str | None) -> dict[str, Any]:
    n, k = x.shape
    kw: dict[str, Any] = {"statistic": None, "p_value": None, "df": max(k - 1, 0), "note": why}
    dunn: Pairs = {}
    if why is None:
        res = stats.kruskal(*x.T)
        kw.update(statistic=_num(res.statistic), p_value=_num(res.pvalue))
        long = pd.DataFrame({"model_id": np.tile(models, n), "v": x.ravel()})
        dunn = _upper(models, sp.posthoc_dunn(long, val_col="v", group_col="model_id"))
    entry = _posthoc(models, dunn, alpha, why)
    entry["z"] = _matrix(models, dunn_z(x) if why is None else {}, antisymmetric=True)
    return {"design": PAPER_DESIGN, "kruskal": kw, "dunn_holm": entry}


def dunn_z(x: np.ndarray) -> Pairs:
    """Dunn's signed z per pair ``(i, j)``, i < j, of an n x k table (equal group sizes n): the
    difference of mean pooled ranks, ``mean_i - mean_j``, over its standard error with the
    tie correction; ``2 * Phi(-|z|)`` is the raw p-value of :func:`scikit_posthocs.posthoc_dunn`.
    Positive z: model i has the larger values (for judge ranks, the worse ones)."""
    n, k = x.shape
    total = n * k
    ranks = stats.rankdata(x.ravel()).reshape(n, k)
    _, ties = np.unique(x.ravel(), return_counts=True)
    variance = total * (total + 1) / 12 - float((ties**3 - ties).sum()) / (12 * (total - 1))
    se = np.sqrt(max(variance, 0.0) * 2 / n)
    means = ranks.mean(axis=0)
    return {(i, j): float((means[i] - means[j]) / se) for i, j in combinations(range(k), 2) if se > 0}


#: Most differences for which scipy's ``wilcoxon(method="auto")`` runs its exact sign-flip test
#: when there are ties or zeros (2**13 flips).
_EXACT_FLIPS_MAX_N = 13


def wilcoxon_p(d: np.ndarray) -> float:
    """The two-sided p-value of ``scipy.stats.wilcoxon(d, zero_method="wilcox", method="auto")``.

    With ties or zeros among at most 13 differences scipy runs its exact sign-flip test, calling
    its statistic once per flip (seconds per call); the same test is computed here over every
    flip at once, with scipy's tolerance for equal statistics: the same p-value, in milliseconds."""
    d = np.asarray(d, dtype=float)
    nz = d[d != 0]
    if d.size > _EXACT_FLIPS_MAX_N or nz.size == 0 or (nz.size == d.size and np.unique(np.abs(nz)).size == d.size):
        return float(stats.wilcoxon(d, zero_method="wilcox", method="auto").pvalue)
    ranks = stats.rankdata(np.abs(nz))
    null = ((np.arange(2**nz.size)[:, None] >> np.arange(nz.size)) & 1) @ ranks  # T+ of every flip
    observed = ranks[nz > 0].sum()
    gamma = abs(np.finfo(float).eps * 100 * observed)
    less, greater = np.mean(null <= observed + gamma), np.mean(null >= observed - gamma)
    return float(min(1.0, 2 * min(less, greater)))


def _blocked(x: np.ndarray, models: list[str], alpha: float, why: str | None) -> dict[str, Any]:
    n, k = x.shape
    fr: dict[str, Any] = {"statistic": None, "p_value": None, "df": max(k - 1, 0), "kendalls_w": None}
    fr.update(kendalls_w_ties=KENDALL_W_TIES, note=why)
    nem: Pairs = {}
    con: Pairs = {}
    wil: Pairs = {}
    eff: Pairs = {}
    wnote = con_note = why
    if why is None:
        if k >= 3:
            chi2, p = (float(v) for v in stats.friedmanchisquare(*x.T))
        else:
            chi2 = _friedman_chi2(x)
            p = float(stats.chi2.sf(chi2, k - 1))
        fr.update(statistic=_num(chi2), p_value=_num(p), kendalls_w=_num(chi2 / (n * (k - 1))))
        wide = pd.DataFrame(x, columns=models)
        nem = _upper(models, sp.posthoc_nemenyi_friedman(wide))
        r = stats.rankdata(x, axis=1)
        if n * (r**2).sum() - (r.sum(axis=0) ** 2).sum() > 1e-9 * n * n * k**3:  # Conover's error term
            con = _upper(models, sp.posthoc_conover_friedman(wide))
        else:
            con_note = "every question orders the models the same way: Conover's error variance is 0"
        zero = []
        for i, j in combinations(range(k), 2):
            d = x[:, i] - x[:, j]
            nz = d[d != 0]
            if nz.size == 0:
                zero.append(f"{models[i]} vs {models[j]}")
                continue
            wil[i, j] = wilcoxon_p(d)
            r = stats.rankdata(np.abs(nz))
            eff[i, j] = float((r[nz > 0].sum() - r[nz < 0].sum()) / r.sum())
        if zero:
            wnote = "all differences zero (no p-value, left out of the Holm family): " + ", ".join(zero)
    wilcoxon = _posthoc(models, wil, alpha, wnote)
    wilcoxon.update(
        effect_size=_matrix(models, eff, antisymmetric=True),
        effect_size_convention=EFFECT_CONVENTION,
        method="scipy.stats.wilcoxon(zero_method='wilcox', method='auto'), two-sided",
    )
    return {
        "design": BLOCKED_DESIGN,
        "friedman": fr,
        "nemenyi": _posthoc(models, nem, alpha, why, adjust=False),
        "conover_holm": _posthoc(models, con, alpha, con_note),
        "wilcoxon_holm": wilcoxon,
    }


def rank_statistics(
    df: pd.DataFrame, value: str = "rank", alpha: float = 0.05, n_boot: int = N_BOOT, seed: int = 2024
) -> dict[str, Any]:
    """Summary, paper-style (Kruskal-Wallis + Dunn-Holm) and blocked (Friedman + paired post-hoc)
    statistics of ``value`` per model, on the questions that have a value for every model.

    Returns a JSON-serialisable dict (see the module docstring); p-value matrices are
    ``{model_a: {model_b: p}}`` over all ordered pairs of different models.
    """
    table, models, n_dropped = _block_matrix(df, value)
    x = table.to_numpy(float)
    n, k = x.shape
    why = None
    if k < 2:
        why = f"fewer than 2 models ({k})"
    elif n < 2:
        why = f"fewer than 2 complete questions ({n})"
    paper_why = why or ("all values identical" if np.all(x == x.flat[0]) else None)
    blocked_why = why or ("all values identical within every question" if np.all(x == x[:, :1]) else None)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "value": value,
            "n_questions": int(n),
            "n_dropped": n_dropped,
            "models": models,
            "alpha": float(alpha),
            "summary": _summary(x, models, alpha, n_boot, seed),
            "bootstrap": {"method": "percentile bootstrap of the mean, whole questions resampled",
                          "n_boot": int(n_boot), "seed": int(seed), "ci_level": 1 - float(alpha),
                          "note": None if n >= 2 else "fewer than 2 complete questions: no CI"},
            "paper": _paper(x, models, alpha, paper_why),
            "blocked": _blocked(x, models, alpha, blocked_why),
        }


def metric_statistics(df: pd.DataFrame, value: str, **kwargs: Any) -> dict[str, Any]:
    """The same tests on any per-answer metric column (``f1``, ``words``, ``generation_tok_s``...).

    Direction does not matter to the tests; read effect-size signs with the metric's direction.
    """
    return rank_statistics(df, value=value, **kwargs)


def significance_table(result: dict[str, Any], family: str = "blocked") -> pd.DataFrame:
    """One row per model pair and post-hoc test of ``family`` ("blocked" or "paper"):
    ``model_a, model_b, test, p_value, significant, effect_size, z`` (``effect_size``: the
    matched-pairs rank-biserial of model_a vs model_b for blocked rows, None for the paper's Dunn
    rows; ``z``: Dunn's signed z of model_a vs model_b for Dunn rows, None for blocked rows)."""
    if family not in ("blocked", "paper"):
        raise ValueError(f"family must be 'blocked' or 'paper', not {family!r}")
    tests = _BLOCKED_POSTHOCS if family == "blocked" else ("dunn_holm",)
    effect = result["blocked"]["wilcoxon_holm"]["effect_size"] if family == "blocked" else {}
    rows = [
        {
            "model_a": a,
            "model_b": b,
            "test": test,
            "p_value": result[family][test]["p_values"][a][b],
            "significant": result[family][test]["significant"][a][b],
            "effect_size": effect.get(a, {}).get(b),
            "z": (result[family][test].get("z") or {}).get(a, {}).get(b) if family == "paper" else None,
        }
        for test in tests
        for a, b in combinations(result["models"], 2)
    ]
    return pd.DataFrame(rows, columns=["model_a", "model_b", "test", "p_value", "significant", "effect_size", "z"])
