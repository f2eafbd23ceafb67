"""The figures and the run-directory files: the bar charts draw the bootstrap intervals of raq's
statistics (the same function, the same questions, seed, alpha and n_boot as the tables), and
write_report writes every file. Synthetic data, no model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raq.analysis import statistics
from raq.figures import (
    FIGURE_NAME,
    bar_figure,
    bar_intervals,
    interval_settings,
    position_bias_figure,
    rank_distribution_figure,
    speed_figure,
    tradeoff_figure,
)
from raq.report import summary_markdown, write_report
from raq.stats import N_BOOT, bootstrap_mean_ci, rank_statistics
from raq.tradeoffs import tradeoffs
from test_html_report import ALPHA, MODELS, SEED, synthetic_results


def drawn_intervals(axis, model_order) -> dict[str, tuple[float, float]]:
    """The error bars on a bar axis, read back from matplotlib: model -> (low, high)."""
    from matplotlib.container import ErrorbarContainer

    bars = [c for c in axis.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1
    _, caps, (lines,) = bars[0].lines
    out = {}
    for (x0, low), (x1, high) in lines.get_segments():
        assert x0 == x1
        out[model_order[int(round(x0))]] = (float(low), float(high))
    return out


@pytest.fixture
def results(tmp_path):
    return synthetic_results(tmp_path / "run")


def close(figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_the_drawn_mean_rank_intervals_are_the_tables(results):
    order, stats = list(results.summary.index), results.stats
    assert interval_settings(stats) == {"seed": SEED, "alpha": ALPHA, "n_boot": N_BOOT}
    figure = bar_figure(results.table, order, **interval_settings(stats))
    try:
        words_axis, rank_axis = figure.axes[1], figure.axes[2]
        ranks = drawn_intervals(rank_axis, order)
        assert set(ranks) == set(MODELS)
        for model, (low, high) in ranks.items():
            assert low == pytest.approx(stats["summary"][model]["ci_low"], rel=1e-12, abs=1e-12)
            assert high == pytest.approx(stats["summary"][model]["ci_high"], rel=1e-12, abs=1e-12)
        words = stats["metrics"]["words"]["summary"]
        for model, (low, high) in drawn_intervals(words_axis, order).items():
            assert (low, high) == pytest.approx((words[model]["ci_low"], words[model]["ci_high"]), rel=1e-12)
        assert not rank_axis.lines  # seaborn drew no intervals of its own
        heights = [bar.get_height() for bar in rank_axis.patches]
        assert heights == pytest.approx(list(results.summary["mean_rank"]))
    finally:
        close(figure)


@pytest.mark.parametrize("alpha, seed", [(0.05, 2024), (0.2, 3)])
def test_bar_intervals_equal_the_statistics_on_incomplete_questions(results, alpha, seed):
    table = results.table.copy()
    row = table.index[(table["question_id"] == "q00") & (table["model_id"] == "gem")][0]
    table.loc[row, ["rank", "judged"]] = [np.nan, False]  # q00 now incomplete: out of the CIs
    stats = statistics(table, alpha, seed)
    intervals = bar_intervals(table, "rank", alpha=alpha, seed=seed)
    assert intervals == {m: (s["ci_low"], s["ci_high"]) for m, s in stats["summary"].items()}
    assert stats["summary"]["smol"]["n"] == 4  # q00 and the failed q05 left out
    figure = bar_figure(table, list(MODELS), seed=seed, alpha=alpha)
    try:
        drawn = drawn_intervals(figure.axes[2], list(MODELS))
        for model, interval in intervals.items():
            assert drawn[model] == pytest.approx(interval, rel=1e-12, abs=1e-12)
    finally:
        close(figure)


def test_the_summary_uses_the_public_bootstrap():
    rng = np.random.default_rng(0)
    x = rng.random((9, 3))
    long = [{"question_id": f"q{i}", "model_id": m, "rank": x[i, j]} for i in range(9) for j, m in enumerate("abc")]
    import pandas as pd

    summary = rank_statistics(pd.DataFrame(long), alpha=0.1, n_boot=500, seed=5)["summary"]
    low, high = bootstrap_mean_ci(x, alpha=0.1, n_boot=500, seed=5)
    assert [summary[m]["ci_low"] for m in "abc"] == list(low)
    assert [summary[m]["ci_high"] for m in "abc"] == list(high)
    assert all(lo <= x[:, j].mean() <= hi for j, (lo, hi) in enumerate(zip(low, high)))
    again = bootstrap_mean_ci(x, alpha=0.1, n_boot=500, seed=5)
    assert np.array_equal(again[0], low) and np.array_equal(again[1], high)
    assert bootstrap_mean_ci(x[:1]) is None and bootstrap_mean_ci(x, n_boot=0) is None


def test_every_figure_draws(results):
    order = list(results.summary.index)
    positions = [{"verdict": (j.question_id, j.order_index), "shown_position": p, "rank": j.ranks[m]}
                 for j in results.judgements if j.ok for p, m in enumerate(j.order, 1)]
    import pandas as pd

    for figure in (rank_distribution_figure(results.table, order), speed_figure(results.table, order),
                   position_bias_figure(pd.DataFrame(positions)),
                   bar_figure(results.table.assign(rank=np.nan), order)):  # nothing judged: no rank intervals
        assert figure.axes
        close(figure)


def test_write_report_writes_every_file(results, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    order = list(results.summary.index)
    paths = write_report(run, results.manifest, results.table, results.summary, results.stats, order, SEED)
    assert set(paths) == {"results", "summary", "stats", "figure", "markdown"}
    assert paths["figure"] == run / "figures" / FIGURE_NAME
    assert paths["figure"].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert json.loads(paths["stats"].read_text())["summary"] == results.stats["summary"]
    markdown = paths["markdown"].read_text()
    assert markdown == summary_markdown(results.manifest, results.summary, results.stats)
    assert markdown.startswith("# raq run: synthetic") and "Friedman" in markdown


def test_the_rank_distribution_legend_stays_inside_the_figure():
    import pandas as pd

    # five rank values (mean ranks over two orders) give the widest legend
    ranks = [1.0, 1.5, 2.0, 2.5, 3.0]
    rows = [{"question_id": f"q{i}", "model_id": m, "rank": ranks[(i + k) % 5]}
            for i in range(10) for k, m in enumerate(MODELS)]
    figure = rank_distribution_figure(pd.DataFrame(rows), list(MODELS))
    try:
        figure.canvas.draw()
        legend = figure.legends[0].get_window_extent()
        box = figure.bbox
        assert box.x0 <= legend.x0 and legend.x1 <= box.x1 and box.y0 <= legend.y0 and legend.y1 <= box.y1
        assert len(figure.legends[0].get_texts()) == 5
    finally:
        close(figure)


# --- quality against speed and memory ------------------------------------------------------------
# Worths put a > b > c; c is the fastest, b the quickest to the first token and the smallest.
TRADE_FIGURES = {"a": {"answers_per_s": 1.0, "ttft_s": 0.5, "memory_mib": 900.0},
                 "b": {"answers_per_s": 2.0, "ttft_s": 0.2, "memory_mib": 500.0},
                 "c": {"answers_per_s": 3.0, "ttft_s": 0.3, "memory_mib": 700.0}}
TRADE_STATS = {"models": ["a", "b", "c"],
               "plackett_luce": {"worth": {"a": {"estimate": 1.0, "ci_low": 0.4, "ci_high": 1.6},
                                           "b": {"estimate": 0.0, "ci_low": -0.5, "ci_high": 0.6},
                                           "c": {"estimate": -1.0, "ci_low": None, "ci_high": None}}},
               "summary": {"a": {"mean": 2.6, "ci_low": 2.2, "ci_high": 3.0}, "b": {"mean": 2.0, "ci_low": 1.6,
                                                                                      "ci_high": 2.4},
                           "c": {"mean": 1.4, "ci_low": 1.1, "ci_high": 1.8}}}
FILLED = (0x4C / 255, 0x72 / 255, 0xB0 / 255, 1.0)
HOLLOW = (1.0, 1.0, 1.0, 1.0)


def points(panel) -> dict[str, tuple[tuple[float, float], tuple[float, ...]]]:
    """model -> ((x, y), face colour) of a tradeoff panel's scatter points (named by their labels)."""
    names = [text.get_text() for text in panel.texts]
    scatters = [c for c in panel.collections if len(c.get_offsets()) == 1 and len(c.get_facecolors()) == 1]
    assert len(names) == len(scatters)
    return {name: (tuple(float(v) for v in c.get_offsets()[0]), tuple(float(v) for v in c.get_facecolors()[0]))
            for name, c in zip(names, scatters)}


def test_the_tradeoff_figure_has_a_panel_per_axis_better_up_and_right():
    result = tradeoffs(TRADE_STATS, TRADE_FIGURES)
    assert result["pareto"] == {"answers_per_s": ["a", "b", "c"], "ttft_s": ["a", "b"], "memory_mib": ["a", "b"],
                                "all": ["a", "b", "c"]}
    figure = tradeoff_figure(result)
    try:
        assert len(figure.axes) == 3
        speed, ttft, memory = figure.axes
        assert [p.get_title() for p in figure.axes] == ["Pareto set: a, b, c", "Pareto set: a, b", "Pareto set: a, b"]
        assert not speed.xaxis_inverted() and ttft.xaxis_inverted() and memory.xaxis_inverted()
        assert not any(p.yaxis_inverted() for p in figure.axes)  # worth: higher is better, up
        assert "answers per second" in speed.get_xlabel() and "MiB" in memory.get_xlabel()
        assert all("Plackett-Luce worth" in p.get_ylabel() for p in figure.axes)
        drawn = points(ttft)
        assert {m: xy for m, (xy, _) in drawn.items()} == {"a": (0.5, 1.0), "b": (0.2, 0.0), "c": (0.3, -1.0)}
        assert drawn["a"][1] == drawn["b"][1] == pytest.approx(FILLED) and drawn["c"][1] == pytest.approx(HOLLOW)
        assert all(colour == pytest.approx(FILLED) for _, colour in points(speed).values())
        for panel in figure.axes:  # c has no interval: only a and b get one, from its low to its high end
            bars = {tuple(line.get_ydata()) for line in panel.get_lines() if line.get_marker() == "_"}
            assert bars == {(0.4, 1.6), (-0.5, 0.6)}
        (line,) = [line for line in memory.get_lines() if line.get_linestyle() == "--"]  # the Pareto set, joined
        assert sorted(zip(line.get_xdata(), line.get_ydata())) == [(500.0, 0.0), (900.0, 1.0)]
    finally:
        close(figure)


def test_the_tradeoff_figure_reverses_mean_ranks_and_draws_only_the_axes_there_are():
    stats = {k: v for k, v in TRADE_STATS.items() if k != "plackett_luce"}
    result = tradeoffs(stats, {m: {"answers_per_s": f["answers_per_s"]} for m, f in TRADE_FIGURES.items()})
    assert result["quality"]["measure"] == "mean_rank" and result["pareto"]["answers_per_s"] == ["c"]
    figure = tradeoff_figure(result)
    try:
        (panel,) = figure.axes
        assert panel.yaxis_inverted() and not panel.xaxis_inverted()  # rank 1 at the top, faster to the right
        assert panel.get_title() == "Pareto set: c" and "mean rank" in panel.get_ylabel()
        drawn = points(panel)
        assert {m: xy for m, (xy, _) in drawn.items()} == {"a": (1.0, 2.6), "b": (2.0, 2.0), "c": (3.0, 1.4)}
        assert drawn["c"][1] == pytest.approx(FILLED) and drawn["a"][1] == drawn["b"][1] == pytest.approx(HOLLOW)
    finally:
        close(figure)
    figure = tradeoff_figure(tradeoffs(stats, {m: {"ttft_s": f["ttft_s"]} for m, f in TRADE_FIGURES.items()}))
    try:
        (panel,) = figure.axes
        assert panel.yaxis_inverted() and panel.xaxis_inverted() and "first token" in panel.get_xlabel()
    finally:
        close(figure)


def test_the_tradeoff_figure_draws_an_interval_that_does_not_contain_its_estimate():
    # a percentile bootstrap interval need not contain the point estimate (Plackett-Luce on a judge that
    # always agrees: every replicate is the same refit, a hair away from the point fit)
    stats = {"models": ["a", "b"], "plackett_luce": {"worth": {
        "a": {"estimate": 9.189434, "ci_low": 9.189503, "ci_high": 9.189503},
        "b": {"estimate": -9.189434, "ci_low": -9.189503, "ci_high": -9.189503}}}}
    figure = tradeoff_figure(tradeoffs(stats, {"a": {"answers_per_s": 2.0}, "b": {"answers_per_s": 1.0}}))
    try:
        (panel,) = figure.axes
        assert panel.get_title() == "Pareto set: a"
        low, high = panel.get_ylim()
        assert low <= -9.189503 and 9.189503 <= high  # both intervals inside the panel
    finally:
        close(figure)


def test_the_tradeoff_figure_needs_a_figure_and_a_quality():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    no_quality = {**tradeoffs(TRADE_STATS, TRADE_FIGURES), "quality": {"measure": "mean_rank", "per_model": {}}}
    for bad in ({}, tradeoffs(TRADE_STATS, {}), no_quality):
        with pytest.raises(ValueError, match="no speed or memory figure"):
            tradeoff_figure(bad)
    assert plt.get_fignums() == before  # nothing left open
