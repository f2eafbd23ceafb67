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
)
from raq.report import summary_markdown, write_report
from raq.stats import N_BOOT, bootstrap_mean_ci, rank_statistics
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
