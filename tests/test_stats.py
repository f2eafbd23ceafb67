"""Tests of raq.stats against hand computations, textbook values and a null simulation."""

from __future__ import annotations

import json
import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from raq.stats import holm, metric_statistics, rank_statistics, significance_table


def long_df(table: dict[str, list[float]], value: str = "rank") -> pd.DataFrame:
    """{model: values per question} -> long frame (question i is f"q{i}")."""
    rows = [(f"q{i}", m, v) for m, vals in table.items() for i, v in enumerate(vals)]
    return pd.DataFrame(rows, columns=["question_id", "model_id", value])


def holm_by_hand(p: list[float]) -> list[float]:
    """Holm written out step by step: sort, multiply by m, m-1, ..., running max, cap at 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out, running = [0.0] * m, 0.0
    for step, i in enumerate(order):
        running = max(running, min(1.0, (m - step) * p[i]))
        out[i] = running
    return out


# A 4-question x 3-model rank table without ties within a question (values are the ranks).
RANKS = {"A": [1, 2, 1, 1], "B": [2, 1, 3, 2], "C": [3, 3, 2, 3]}  # rank sums 5, 8, 11

# Hollander & Wolfe (1973) rounding-first-base times, R's ?friedman.test example:
# "Friedman chi-squared = 11.143, df = 2, p-value = 0.003805" (with ties, tie-corrected).
ROUNDING = np.array([
    [5.40, 5.50, 5.55], [5.85, 5.70, 5.75], [5.20, 5.60, 5.50], [5.55, 5.50, 5.40],
    [5.90, 5.85, 5.70], [5.45, 5.55, 5.60], [5.40, 5.40, 5.35], [5.45, 5.50, 5.35],
    [5.25, 5.15, 5.00], [5.85, 5.80, 5.70], [5.25, 5.20, 5.10], [5.65, 5.55, 5.45],
    [5.60, 5.35, 5.45], [5.05, 5.00, 4.95], [5.50, 5.50, 5.40], [5.45, 5.55, 5.50],
    [5.55, 5.55, 5.35], [5.45, 5.50, 5.55], [5.50, 5.45, 5.25], [5.65, 5.60, 5.40],
    [5.70, 5.65, 5.55], [6.30, 6.30, 6.25],
])


def test_holm_worked_example_and_statsmodels():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []
    from statsmodels.stats.multitest import multipletests

    p = list(np.random.default_rng(1).uniform(0, 0.2, 7))
    assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert holm(p) == pytest.approx(holm_by_hand(p))


def test_friedman_hand_formula_without_ties():
    res = rank_statistics(long_df(RANKS), n_boot=10)["blocked"]["friedman"]
    n, k, sums = 4, 3, [5, 8, 11]
    chi2 = 12 / (n * k * (k + 1)) * sum(r * r for r in sums) - 3 * n * (k + 1)
    assert chi2 == pytest.approx(4.5)
    assert res["statistic"] == pytest.approx(chi2)
    assert res["p_value"] == pytest.approx(math.exp(-chi2 / 2))  # chi2 sf with df = 2
    assert res["df"] == 2
    assert res["kendalls_w"] == pytest.approx(chi2 / (n * (k - 1)))  # 0.5625


def test_friedman_textbook_example_with_ties():
    df = long_df({m: list(ROUNDING[:, j]) for j, m in enumerate(["round_out", "narrow", "wide"])}, "time")
    res = metric_statistics(df, "time", n_boot=10)["blocked"]["friedman"]
    assert res["statistic"] == pytest.approx(11.143, abs=5e-4)
    assert res["p_value"] == pytest.approx(0.003805, abs=5e-7)
    assert res["kendalls_w"] == pytest.approx(11.142857 / (22 * 2), rel=1e-5)


def test_friedman_two_models_is_the_sign_test_chi2():
    # k = 2 (scipy refuses): chi2 = (wins - losses)^2 / (wins + losses), tied questions dropped
    a = [1, 1, 1, 1, 1, 1, 1, 2, 2, 1.5]
    b = [2, 2, 2, 2, 2, 2, 2, 1, 1, 1.5]
    res = rank_statistics(long_df({"a": a, "b": b}), n_boot=10)["blocked"]["friedman"]
    assert res["statistic"] == pytest.approx((7 - 2) ** 2 / 9)
    assert res["p_value"] == pytest.approx(stats.chi2.sf(25 / 9, 1))


def test_kruskal_and_dunn_by_hand_without_ties():
    # values 1..12 are their own pooled ranks; rank sums a 16, b 26, c 36, N = 12, n = 4
    data = {"a": [1, 4, 2, 9], "b": [3, 6, 12, 5], "c": [7, 8, 10, 11]}
    paper = metric_statistics(long_df(data, "score"), "score", n_boot=10)["paper"]
    assert paper["kruskal"]["statistic"] == pytest.approx(50 / 13)  # 12/(12*13)*557 - 39
    assert paper["kruskal"]["p_value"] == pytest.approx(math.exp(-25 / 13))
    se = math.sqrt(12 * 13 / 12 * (1 / 4 + 1 / 4))
    mean_rank = {"a": 4.0, "b": 6.5, "c": 9.0}
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    raw = [2 * stats.norm.sf(abs(mean_rank[x] - mean_rank[y]) / se) for x, y in pairs]
    adj = holm_by_hand(raw)
    assert adj[1] == pytest.approx(3 * raw[1]) and adj[0] == pytest.approx(2 * raw[0])
    for (x, y), p_raw, p_adj in zip(pairs, raw, adj):
        assert paper["dunn_holm"]["p_values_raw"][x][y] == pytest.approx(p_raw)
        assert paper["dunn_holm"]["p_values"][x][y] == pytest.approx(p_adj)
        assert paper["dunn_holm"]["p_values"][y][x] == pytest.approx(p_adj)
        assert paper["dunn_holm"]["significant"][x][y] is bool(p_adj < 0.05)
        z = (mean_rank[x] - mean_rank[y]) / se  # signed: negative where x has the smaller values
        assert paper["dunn_holm"]["z"][x][y] == pytest.approx(z) and paper["dunn_holm"]["z"][y][x] == pytest.approx(-z)


def test_kruskal_and_dunn_by_hand_with_ties():
    # RANKS pooled: values 1, 2, 3 each 4 times -> mid-ranks 2.5, 6.5, 10.5
    res = rank_statistics(long_df(RANKS), n_boot=10)["paper"]
    n_all, ties = 12, 3 * (4**3 - 4)
    h = 12 / (n_all * (n_all + 1)) * (14**2 + 26**2 + 38**2) / 4 - 3 * (n_all + 1)
    h /= 1 - ties / (n_all**3 - n_all)
    assert res["kruskal"]["statistic"] == pytest.approx(h)
    assert res["kruskal"]["p_value"] == pytest.approx(math.exp(-h / 2))
    se = math.sqrt((n_all * (n_all + 1) / 12 - ties / (12 * (n_all - 1))) * (1 / 4 + 1 / 4))
    mean_rank = {"A": 3.5, "B": 6.5, "C": 9.5}
    pairs = [("A", "B"), ("A", "C"), ("B", "C")]
    raw = [2 * stats.norm.sf(abs(mean_rank[x] - mean_rank[y]) / se) for x, y in pairs]
    for (x, y), p in zip(pairs, holm_by_hand(raw)):
        assert res["dunn_holm"]["p_values"][x][y] == pytest.approx(p)
        assert res["dunn_holm"]["z"][x][y] == pytest.approx((mean_rank[x] - mean_rank[y]) / se)


def test_dunn_z_gives_scikit_posthocs_raw_p_values_and_is_empty_without_a_test():
    import scikit_posthocs as sp

    df = long_df({m: list(ROUNDING[:, j]) for j, m in enumerate("xyz")}, "t")
    res = metric_statistics(df, "t", n_boot=10)["paper"]["dunn_holm"]
    ref = sp.posthoc_dunn(df, val_col="t", group_col="model_id")
    for a, b in combinations("xyz", 2):
        assert 2 * stats.norm.sf(abs(res["z"][a][b])) == pytest.approx(ref.loc[a, b], rel=1e-9)
        assert res["p_values_raw"][a][b] == pytest.approx(ref.loc[a, b])
    same = rank_statistics(long_df({"A": [1, 1], "B": [1, 1]}), n_boot=10)["paper"]["dunn_holm"]
    assert same["z"] == {"A": {"B": None}, "B": {"A": None}}


def test_dunn_matches_scikit_posthocs_holm():
    import scikit_posthocs as sp

    df = long_df({m: list(ROUNDING[:, j]) for j, m in enumerate("xyz")}, "t")
    res = metric_statistics(df, "t", n_boot=10)["paper"]["dunn_holm"]["p_values"]
    ref = sp.posthoc_dunn(df, val_col="t", group_col="model_id", p_adjust="holm")
    for a, b in combinations("xyz", 2):
        assert res[a][b] == pytest.approx(ref.loc[a, b])


def test_nemenyi_by_hand():
    res = rank_statistics(long_df(RANKS), n_boot=10)["blocked"]["nemenyi"]["p_values"]
    n, k, mean_rank = 4, 3, {"A": 1.25, "B": 2.0, "C": 2.75}
    for a, b in combinations("ABC", 2):
        q = abs(mean_rank[a] - mean_rank[b]) / math.sqrt(k * (k + 1) / (6 * n))
        assert res[a][b] == pytest.approx(stats.studentized_range.sf(q * math.sqrt(2), k, np.inf), rel=1e-6)


def test_conover_friedman_by_conovers_formula():
    # Conover (1999): t = |R_i - R_j| / sqrt(2 (n A - sum R_j^2) / ((n-1)(k-1))), df (n-1)(k-1)
    res = rank_statistics(long_df(RANKS), n_boot=10)["blocked"]["conover_holm"]
    n, k, sums = 4, 3, {"A": 5, "B": 8, "C": 11}
    a_sq = sum(r * r for col in RANKS.values() for r in col)  # 56
    scale = math.sqrt(2 * (n * a_sq - sum(v * v for v in sums.values())) / ((n - 1) * (k - 1)))
    pairs = list(combinations("ABC", 2))
    raw = [2 * stats.t.sf(abs(sums[a] - sums[b]) / scale, (n - 1) * (k - 1)) for a, b in pairs]
    for (a, b), p_raw, p_adj in zip(pairs, raw, holm_by_hand(raw)):
        assert res["p_values_raw"][a][b] == pytest.approx(p_raw)
        assert res["p_values"][a][b] == pytest.approx(p_adj)


def test_wilcoxon_and_rank_biserial_by_hand():
    # d = a - b = [3, -1, 2, 5, 4, 0]: zero dropped, |d| ranks 3, 1, 2, 5, 4 -> T+ = 14, T- = 1
    b = [10, 10, 10, 10, 10, 10]
    a = [13, 9, 12, 15, 14, 10]
    res = metric_statistics(long_df({"a": a, "b": b}, "f1"), "f1", n_boot=10)["blocked"]["wilcoxon_holm"]
    assert res["effect_size"]["a"]["b"] == pytest.approx(13 / 15)
    assert res["effect_size"]["b"]["a"] == pytest.approx(-13 / 15)
    # exact two-sided p with 5 non-zero differences: 2 * P(T- <= 1) = 2 * 2/32
    assert res["p_values"]["a"]["b"] == pytest.approx(0.125)
    assert res["significant"]["a"]["b"] is False
    assert res["note"] is None


def test_kendalls_w():
    perfect = rank_statistics(long_df({"A": [1] * 5, "B": [2] * 5, "C": [3] * 5}), n_boot=10)
    assert perfect["blocked"]["friedman"]["kendalls_w"] == pytest.approx(1.0)
    json.dumps(perfect, allow_nan=False)
    conover = perfect["blocked"]["conover_holm"]
    assert conover["p_values"]["A"]["B"] is None and "error variance is 0" in conover["note"]
    assert perfect["blocked"]["nemenyi"]["p_values"]["A"]["C"] is not None
    # 3 questions: sums 4, 6, 8 -> S = 8, W = 12 S / (n^2 (k^3 - k)) = 96 / 216
    small = rank_statistics(long_df({"A": [1, 1, 2], "B": [2, 3, 1], "C": [3, 2, 3]}), n_boot=10)
    assert small["blocked"]["friedman"]["kendalls_w"] == pytest.approx(4 / 9)
    # with a tie: W = 12 S / (n^2 (k^3 - k) - n sum(t^3 - t)); sums 3.5, 5.5, 9 -> S = 15.5
    tied = rank_statistics(long_df({"A": [1, 1.5, 1], "B": [2, 1.5, 2], "C": [3, 3, 3]}), n_boot=10)
    assert tied["blocked"]["friedman"]["kendalls_w"] == pytest.approx(12 * 15.5 / (9 * 24 - 3 * 6))


def test_bootstrap_ci_seeded_contains_mean_and_narrows():
    rng = np.random.default_rng(5)

    def frame(n: int) -> pd.DataFrame:
        perms = rng.permuted(np.tile([1, 2, 3], (n, 1)), axis=1)
        return long_df({m: list(perms[:, j]) for j, m in enumerate("xyz")})

    small, big = frame(25), frame(400)
    r1, r2 = rank_statistics(small, n_boot=500, seed=3), rank_statistics(small, n_boot=500, seed=3)
    assert r1["summary"] == r2["summary"]
    assert r1["bootstrap"]["seed"] == 3 and r1["bootstrap"]["n_boot"] == 500
    assert "percentile" in r1["bootstrap"]["method"]
    assert rank_statistics(small, n_boot=500, seed=4)["summary"] != r1["summary"]
    rb = rank_statistics(big, n_boot=500, seed=3)
    for m in "xyz":
        s = r1["summary"][m]
        assert s["ci_low"] <= s["mean"] <= s["ci_high"] and s["n"] == 25
        wide, narrow = s["ci_high"] - s["ci_low"], rb["summary"][m]["ci_high"] - rb["summary"][m]["ci_low"]
        assert narrow < wide / 2
        # normal theory for the mean of ranks uniform on {1, 2, 3}: half-width 1.96 sqrt(2/3 / n)
        assert narrow == pytest.approx(2 * 1.96 * math.sqrt(2 / 3 / 400), rel=0.2)


def test_incomplete_questions_are_dropped_and_models_sorted():
    df = long_df({"zeta": [1, 2, 1, 2], "alpha": [2, 1, 2, 1]})
    df = pd.concat([df, pd.DataFrame([("q9", "zeta", 1.0)], columns=df.columns)])
    df.loc[(df.question_id == "q0") & (df.model_id == "alpha"), "rank"] = np.nan
    res = rank_statistics(df, n_boot=10)
    assert res["models"] == ["alpha", "zeta"]
    assert res["n_questions"] == 3 and res["n_dropped"] == 2
    assert res["summary"]["alpha"]["n"] == 3
    with pytest.raises(ValueError, match="duplicate"):
        rank_statistics(pd.concat([df, df.iloc[:1]]))
    with pytest.raises(ValueError, match="lacks column"):
        rank_statistics(df.drop(columns="rank"))


@pytest.mark.parametrize(
    "df, why",
    [
        (long_df({"only": [1, 1, 1]}), "fewer than 2 models"),
        (long_df({"a": [1], "b": [2], "c": [3]}), "fewer than 2 complete questions"),
        (pd.DataFrame(columns=["question_id", "model_id", "rank"]), "fewer than 2 models"),
        (long_df({"a": [1, 1, 1], "b": [1, 1, 1], "c": [1, 1, 1]}), "identical"),
    ],
)
def test_degenerate_inputs_give_none_and_note(df, why):
    res = rank_statistics(df, n_boot=10)
    json.dumps(res, allow_nan=False)
    for test in (res["paper"]["kruskal"], res["blocked"]["friedman"]):
        assert test["p_value"] is None and why in test["note"]
    for fam, name in [("paper", "dunn_holm"), ("blocked", "nemenyi"), ("blocked", "conover_holm"),
                      ("blocked", "wilcoxon_holm")]:
        assert all(p is None for row in res[fam][name]["p_values"].values() for p in row.values())
        assert res[fam][name]["note"]
    assert len(significance_table(res)) == 3 * len(list(combinations(res["models"], 2)))


def test_within_question_ties_everywhere_but_paper_defined():
    # every question is all-tied, but questions differ: Friedman undefined, Kruskal-Wallis defined
    res = rank_statistics(long_df({"a": [1, 2, 3], "b": [1, 2, 3]}), n_boot=10)
    assert res["blocked"]["friedman"]["p_value"] is None
    assert "identical within every question" in res["blocked"]["friedman"]["note"]
    assert res["paper"]["kruskal"]["p_value"] == pytest.approx(1.0)


def test_wilcoxon_all_zero_pair_is_none_with_note():
    rng = np.random.default_rng(0)
    a = rng.normal(size=20)
    c = a + np.arange(1, 21)  # distinct positive differences c - a: exact test, no ties
    res = metric_statistics(long_df({"a": list(a), "b": list(a), "c": list(c)}, "f1"), "f1", n_boot=10)
    wil = res["blocked"]["wilcoxon_holm"]
    assert wil["p_values"]["a"]["b"] is None and wil["effect_size"]["a"]["b"] is None
    assert "a vs b" in wil["note"]
    raw = [wil["p_values_raw"]["a"]["c"], wil["p_values_raw"]["b"]["c"]]
    assert raw[0] == pytest.approx(2 / 2**20)  # exact: all 20 differences negative
    assert [wil["p_values"]["a"]["c"], wil["p_values"]["b"]["c"]] == pytest.approx(holm_by_hand(raw))
    assert wil["effect_size"]["a"]["c"] == pytest.approx(-1.0)
    assert res["blocked"]["friedman"]["p_value"] is not None


def plain(obj) -> bool:
    """Only JSON's own Python types, recursively."""
    if isinstance(obj, dict):
        return all(isinstance(k, str) and plain(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(plain(v) for v in obj)
    return obj is None or type(obj) in (str, int, float, bool)


def test_result_is_plain_json_and_table_matches():
    df = long_df({m: list(ROUNDING[:, j]) for j, m in enumerate(["m1", "m2", "m3"])}, "t")
    res = metric_statistics(df, "t", n_boot=50)
    assert plain(res)
    assert json.loads(json.dumps(res, allow_nan=False)) == res
    assert set(res) >= {"n_questions", "n_dropped", "models", "alpha", "summary", "paper", "blocked"}
    tab = significance_table(res)
    assert list(tab.columns) == ["model_a", "model_b", "test", "p_value", "significant", "effect_size", "z"]
    assert sorted(set(tab.test)) == ["conover_holm", "nemenyi", "wilcoxon_holm"] and len(tab) == 9
    for row in tab.itertuples():
        assert row.p_value == pytest.approx(res["blocked"][row.test]["p_values"][row.model_a][row.model_b])
        effect = res["blocked"]["wilcoxon_holm"]["effect_size"][row.model_a][row.model_b]
        assert row.effect_size == pytest.approx(effect)
    paper = significance_table(res, "paper")
    assert list(paper.test) == ["dunn_holm"] * 3 and paper.effect_size.isna().all() and tab.z.isna().all()
    for row in paper.itertuples():
        assert row.z == pytest.approx(res["paper"]["dunn_holm"]["z"][row.model_a][row.model_b])
    with pytest.raises(ValueError):
        significance_table(res, "nonsense")


def test_null_simulation_blocked_holds_alpha_paper_does_not():
    """Random judge permutations per question (no real difference), 3 models x 60 questions.

    Vectorised textbook formulas give the rates over many studies; the module is checked to give
    the same p-values on the first studies, so the rates are the module's rates.
    """
    n_studies, n, k = 2000, 60, 3
    ranks = np.random.default_rng(2024).permuted(np.tile([1.0, 2.0, 3.0], (n_studies, n, 1)), axis=2)
    sums = ranks.sum(axis=1)
    friedman = 12 / (n * k * (k + 1)) * (sums**2).sum(axis=1) - 3 * n * (k + 1)
    p_friedman = stats.chi2.sf(friedman, k - 1)
    big_n, ties = n * k, k * (n**3 - n)  # pooled: each rank value occurs n times
    mid = (ranks - 1) * n + (n + 1) / 2
    msum = mid.sum(axis=1)
    h = (12 / (big_n * (big_n + 1)) * (msum**2 / n).sum(axis=1) - 3 * (big_n + 1)) / (1 - ties / (big_n**3 - big_n))
    p_kw = stats.chi2.sf(h, k - 1)
    se = math.sqrt((big_n * (big_n + 1) / 12 - ties / (12 * (big_n - 1))) * 2 / n)
    pairs = list(combinations(range(k), 2))
    p_dunn = np.stack([2 * stats.norm.sf(np.abs(msum[:, i] - msum[:, j]) / n / se) for i, j in pairs], axis=1)
    p_dunn_holm = np.array([holm_by_hand(list(row)) for row in p_dunn])
    crit = stats.studentized_range.ppf(0.95, k, np.inf) / math.sqrt(2)
    nemenyi_any = (np.ptp(sums / n, axis=1) / math.sqrt(k * (k + 1) / (6 * n)) > crit).mean()

    for s in range(8):
        res = rank_statistics(long_df({m: list(ranks[s, :, j]) for j, m in enumerate("abc")}), n_boot=10)
        assert res["blocked"]["friedman"]["p_value"] == pytest.approx(p_friedman[s])
        assert res["paper"]["kruskal"]["p_value"] == pytest.approx(p_kw[s])
        for (i, j), p in zip(pairs, p_dunn_holm[s]):
            assert res["paper"]["dunn_holm"]["p_values"]["abc"[i]]["abc"[j]] == pytest.approx(p)

    rates = {
        "friedman": (p_friedman < 0.05).mean(),
        "nemenyi_any_pair": nemenyi_any,
        "kruskal": (p_kw < 0.05).mean(),
        "dunn_raw_per_pair": (p_dunn < 0.05).mean(),
        "dunn_holm_any_pair": (p_dunn_holm < 0.05).any(axis=1).mean(),
    }
    print("null rejection rates at alpha 0.05:", {key: round(float(v), 4) for key, v in rates.items()})
    assert 0.03 <= rates["friedman"] <= 0.07
    assert 0.02 <= rates["nemenyi_any_pair"] <= 0.07
    # blocked ranks fed to independent-sample tests: H is about 1.5 x a chi2(2), so ~13.6% expected
    assert 0.09 <= rates["kruskal"] <= 0.18 and rates["kruskal"] > rates["friedman"] + 0.04
    assert 0.08 <= rates["dunn_holm_any_pair"] <= 0.16


def test_speed_is_not_compared_across_decoding_modes():
    import pandas as pd

    from raq.analysis import statistics

    rng = np.random.default_rng(3)
    rows = []
    for q in range(12):
        for m, mode in (("a", "single"), ("b", "batched x4"), ("c", "single")):
            rows.append({"question_id": f"q{q}", "model_id": m, "rank": float(rng.integers(1, 4)), "judged": True,
                         "f1": rng.random(), "em": float(rng.integers(0, 2)), "words": int(rng.integers(1, 20)),
                         "ttft_s": rng.random(), "generation_tok_s": 10 * rng.random(), "decoding": mode})
    table = pd.DataFrame(rows)
    mixed = statistics(table, alpha=0.05, seed=1)["metrics"]
    assert "different modes" in mixed["ttft_s"]["note"] and "different modes" in mixed["generation_tok_s"]["note"]
    assert "note" not in mixed["f1"]
    same = statistics(table.assign(decoding="single"), alpha=0.05, seed=1)["metrics"]
    assert "note" not in same["ttft_s"] and "note" not in same["generation_tok_s"]


def test_questions_sharing_paragraphs_are_also_tested_with_paragraphs_as_blocks():
    import pandas as pd

    from raq.analysis import statistics

    rng = np.random.default_rng(5)
    rows = []
    for q in range(24):
        paragraph = f"p{q // 4}"  # 6 paragraphs x 4 questions
        ranks = rng.permutation([1.0, 2.0, 3.0])
        for m, rank in zip("abc", ranks):
            rows.append({"question_id": f"q{q}", "paragraph": paragraph, "model_id": m, "rank": rank, "judged": True,
                         "f1": rng.random(), "em": 0.0, "words": 3, "ttft_s": rng.random(),
                         "generation_tok_s": rng.random(), "decoding": "single"})
    table = pd.DataFrame(rows)
    result = statistics(table, alpha=0.05, seed=1)
    by = result["by_paragraph"]
    assert by["questions"] == 24 and by["paragraphs"] == 6 and by["n_questions"] == 6
    # the blocks are paragraph means of the ranks: Friedman on them by hand (scipy)
    means = table.groupby(["paragraph", "model_id"])["rank"].mean().unstack()
    expected = stats.friedmanchisquare(*means.to_numpy().T).pvalue
    assert by["blocked"]["friedman"]["p_value"] == pytest.approx(expected)
    assert "not independent" in by["note"]
    # one question per paragraph: nothing extra
    alone = statistics(table.assign(paragraph=table["question_id"]), alpha=0.05, seed=1)
    assert alone["by_paragraph"] is None
    # both reports show the paragraph-blocked test when there is one, and only then
    from types import SimpleNamespace

    from raq.html_report import _statistics
    from raq.report import summary_markdown

    summary = pd.DataFrame({"answers": [24, 24, 24]}, index=["a", "b", "c"])
    manifest = {"config": {"data": {"source": "squad-v1.1-dev", "seed": 1, "per_context": 4}}}
    text = summary_markdown(manifest, summary, result)
    assert "up to 4 per paragraph" in text and "24 questions share 6 paragraphs" in text
    assert f"p = {by['blocked']['friedman']['p_value']:.3g}" in text
    assert "paragraphs as blocks" not in summary_markdown({"config": {}}, summary, alone)
    html = _statistics(SimpleNamespace(stats=result))
    assert "Paragraphs as blocks (24 questions about 6 paragraphs)" in html
    assert "Paragraphs as blocks" not in _statistics(SimpleNamespace(stats=alone))
