"""The HTML report: its sections, figures embedded as data URIs, hostile model output shown as text,
autoescaping, a run without judgements, and a real headless Chromium rendering it (skipped locally
without Chromium, a failure under CI). Most tests use a synthetic run built from plain records (no
model needed); the tests marked integration use a real small run of the demo GGUFs, plus the
CSV/parquet exports."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from itertools import permutations
from pathlib import Path
from typing import Any

import markupsafe
import pandas as pd
import pytest
import yaml

import raq
from conftest import MODELS_DIR, demo_model
from raq.analysis import model_summary, results_table, statistics
from raq.html_report import REPORT_NAME, environment, fmt, render_html_report, write_html_report
from raq.judge import ranks_from_scores
from raq.judge_quality import judge_report
from raq.records import Answer, Judgement, Question, to_dict
from raq.report import summary_markdown, write_report
from raq.report_judge_check import CHECK_FILE, summary_lines
from study_fakes import MODEL_IDS, fakes, quick_analysis, study_config
from test_report_judge_check import HOSTILE_GOLD, judge_check_report

CHROMIUM = "/usr/bin/chromium"
SECTIONS = ("decision", "overview", "models", "statistics", "figures", "judge-check", "examples", "failures",
            "settings")
HOSTILE = ('<script>alert("pwned")</script></td></tr></table><img src=x onerror=alert(1)> '
           "it's \"quoted\" & \x00\x07\x1b[31mred\x7f\u0085 --> <!-- ]]>")
SPEED_BLUE = (0x4C, 0x72, 0xB0)  # figures.speed_figure's prompt-reading bars
HOSTILE_REPLY = '</pre><script>document.title="x"</script>{"ranking": ["A"]}\x01'
HOSTILE_ERROR = 'no ranking in <reply> & "bad"'
# markupsafe's escapes: " -> &#34;, ' -> &#39;
ESCAPED_ANSWER = "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;"
ESCAPED_TAIL = "it&#39;s &#34;quoted&#34; &amp; \\x00\\x07\\x1b[31mred\\x7f\\x85 --&gt; &lt;!-- ]]&gt;"
ESCAPED_ERROR = "no ranking in &lt;reply&gt; &amp; &#34;bad&#34;"
ESCAPED_REPLY = "&lt;/pre&gt;&lt;script&gt;document.title=&#34;x&#34;"


# --- a synthetic run: plain records, no model -------------------------------------------------
MODELS = ("smol", "gem", "qwen")
JUDGE = "judge"
SEED, ALPHA = 11, 0.05


@dataclass
class SyntheticResults:
    """The attributes the report reads, as raq's results objects have them."""

    run_dir: Path
    manifest: dict[str, Any]
    questions: list[Question]
    answers: list[Answer]
    judgements: list[Judgement]
    table: pd.DataFrame = field(repr=False)
    summary: pd.DataFrame = field(repr=False)
    stats: dict[str, Any] = field(repr=False)


def synthetic_answer(question: Question, model: str, n: int, text: str | None = None) -> Answer:
    text = " ".join(["answer"] * (2 + (n * 7 + len(model)) % 9)) if text is None else text
    words = len(text.split())
    total = 0.2 + 0.05 * words + 0.1 * MODELS.index(model)
    return Answer(question_id=question.question_id, model_id=model, text=text, prompt=f"Q: {question.question}",
                  template="gguf-chat-template" if model != "gem" else "completion", prompt_tokens=40,
                  generated_tokens=words + 1, ttft_s=0.05, prompt_s=0.04 + 0.01 * n, generation_s=total - 0.04,
                  total_s=total, prompt_tok_s=1000.0, generation_tok_s=(words + 1) / (total - 0.04), words=words,
                  words_paper=words, words_per_s_paper=words / total,
                  finish_reason="length" if not text else "stop", max_tokens=24)


def synthetic_judgements(question: Question, n: int, fail_last_order: bool = False) -> list[Judgement]:
    """Two orders (rotations) of one judge; ranks vary with the question."""
    ranking = [MODELS[(n + i) % 3] for i in (0, 1, 2)] if n % 2 else [MODELS[(n + i) % 3] for i in (0, 2, 1)]
    ranks = {model: float(ranking.index(model) + 1) for model in MODELS}
    out = []
    for index in range(2):
        order = list(MODELS[index:] + MODELS[:index]) if n % 3 else list(reversed(MODELS[index:] + MODELS[:index]))
        failed = fail_last_order and index == 1
        out.append(Judgement(question_id=question.question_id, judge_id=JUDGE, protocol="raq", order=order,
                             labels=["A", "B", "C"], ranks={} if failed else ranks, ok=not failed,
                             attempts=3 if failed else 1, raw_replies=[HOSTILE_REPLY] * 3 if failed else ['{"r": 1}'],
                             error=HOSTILE_ERROR if failed else "", seconds=0.5, order_index=index))
    return out


def scored_judgement(question: Question, n: int, protocol: str) -> Judgement:
    """A pointwise or pairwise judgement, the models listed in an order that changes with the question."""
    scores = {model: float((n + i) % 3) for i, model in enumerate(MODELS)}
    if protocol == "pointwise":
        details = [{"model": m, "reply": f"{s:.0f}", "grade": int(s), "score": s, "grade_probs": None,
                    "grade_mass": None, "attempts": 1} for m, s in scores.items()]
    else:
        details = [{"shown": [a, b], "reply": "A" if scores[a] > scores[b] else "B",
                    "winner": a if scores[a] > scores[b] else b, "probs": None, "mass": None, "attempts": 1}
                   for a, b in permutations(MODELS, 2)]
    return Judgement(question_id=question.question_id, judge_id=JUDGE, protocol=protocol,
                     order=list(MODELS[n % 3:] + MODELS[:n % 3]), labels=[] if protocol == "pointwise" else ["A", "B"],
                     ranks=ranks_from_scores(scores), ok=True, attempts=len(details),
                     raw_replies=[d["reply"] for d in details], seconds=0.5, scores=scores, details=details)


def synthetic_manifest() -> dict[str, Any]:
    config = {"name": "synthetic <b>run</b>", "data": {"source": "squad-v1.1-dev", "n_questions": 6, "seed": SEED},
              "stats": {"alpha": ALPHA}, "generation": {"protocol": "raq", "max_tokens": 24},
              "models": [{"id": "smol", "gguf": "smollm2-135m-instruct"}, {"id": "gem", "gguf": "gemma-3-270m",
                                                                           "prompt_format": "completion"},
                         {"id": "qwen", "base_url": "http://127.0.0.1:9/v1", "model": "qwen"}],
              "judge": {"id": JUDGE, "protocol": "raq", "gguf": "qwen2.5-coder-0.5b-instruct", "orders": 2,
                        "seed": 2024}}
    return {"status": "complete", "created": "2024-01-01T00:00:00", "config": config,
            "data": {"source": "squad-v1.1-dev", "sha256": "d" * 64},
            "environment": {"python": "3.11", "platform": "Linux", "cpu": "Synthetic CPU 9000", "cpu_count": 2,
                            "memory_gib": 8, "gpus": [], "packages": {"llama-cpp-python": "0.3.36"}},
            "models": {"smol": {"path": "/models/smol.gguf", "sha256": "a" * 64, "template": "gguf-chat-template",
                                "chat_template": "{{ messages }}<script>x</script>"},
                       "gem": {"path": "/models/gem.gguf", "sha256": "b" * 64, "template": "completion",
                               "template_note": "no chat template: <completion>"}}}


def synthetic_results(run_dir: Path, judged: bool = True, with_stats: bool = True,
                      protocol: str = "raq") -> SyntheticResults:
    """3 models x 6 questions judged in 2 orders; the first question's first answer is HOSTILE, the
    first answer of the second question is empty (cut at max_tokens), the last question's second
    order failed with a hostile reply. ``judged=False``: no judgements at all. ``protocol``
    pointwise or pairwise: one successful judgement of that protocol per question instead."""
    questions = [Question(question_id=f"q{n:02d}", question=f"What is <b>{n}</b>?" if n == 0 else f"Question {n}?",
                          context=f"Context {n // 2} & more.", gold_answers=["answer", "answer"], title=f"T{n}")
                 for n in range(6)]
    answers = [synthetic_answer(q, m, n, HOSTILE if (n, m) == (0, "smol") else "" if (n, m) == (1, "gem") else None)
               for n, q in enumerate(questions) for m in MODELS]
    judgements = [j for n, q in enumerate(questions) for j in synthetic_judgements(q, n, n == 5)] if judged else []
    if protocol != "raq":
        judgements = [scored_judgement(q, n, protocol) for n, q in enumerate(questions)]
    orders = {JUDGE: 2 if protocol == "raq" else 1}
    table = results_table(questions, answers, judgements, orders)
    summary = model_summary(table, list(MODELS))
    stats: dict[str, Any] = {}
    if with_stats:
        stats = statistics(table, ALPHA, SEED)
        stats["judging"] = judge_report(judgements, table, orders)
        stats = json.loads(json.dumps(stats))  # as read back from stats.json
    manifest = synthetic_manifest()
    manifest["config"]["judge"].update(protocol=protocol, orders=orders[JUDGE])
    return SyntheticResults(run_dir, manifest, questions, answers, judgements, table, summary, stats)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    results = synthetic_results(tmp_path_factory.mktemp("synthetic") / "run")
    path = write_html_report(results)
    return results, path, path.read_text(encoding="utf-8")


# --- checks shared by the synthetic and the real runs -------------------------------------------
def shows_position(results) -> bool:
    """Whether the report has a position-bias figure: the successful judgements of a listwise
    protocol saw the answers in more than one order (raq's protocol shuffles them; the pointwise and
    pairwise protocols show no order of all the answers)."""
    listwise = [j for j in results.judgements if j.ok and j.protocol in ("raq", "paper")]
    return len({tuple(j.order) for j in listwise}) > 1


def figures(results) -> int:
    """Reference bars, rank distribution, speed, quality against speed and memory (in the decision
    section, when the statistics have a recommendation and a speed or memory figure), and position bias."""
    decision = bool(results.stats.get("recommendation")) and bool((results.stats.get("tradeoffs") or {}).get("better"))
    return 3 + decision + shows_position(results)


def check_figures(results, text: str) -> None:
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(uris) == figures(results) and text.count("<img") == len(uris)
    assert ("Position bias" in text) == shows_position(results)
    for uri in uris:
        assert base64.b64decode(uri).startswith(b"\x89PNG\r\n\x1a\n")
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert not re.search(r'(src|href)="(?!data:|#)', text)  # no external resource at all


class Structure(HTMLParser):
    """Tags must balance; collects the text of the answer cells."""

    def __init__(self):
        super().__init__()
        self.tags, self.stack, self.answers = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in ("img", "meta", "br"):
            self.stack.append((tag, dict(attrs).get("class")))

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1][0] == tag, f"unbalanced </{tag}>"
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == ("div", "answer"):
            self.answers.append(data)


def check_hostile(results, text: str) -> None:
    assert "<script" not in text.lower() and "<img src=x" not in text and "</table><img" not in text
    assert ESCAPED_ANSWER in text and ESCAPED_TAIL in text
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", text)
    assert ESCAPED_ERROR in text  # the failure, escaped
    assert ESCAPED_REPLY in text
    failed = sum(not j.ok for j in results.judgements)
    assert failed >= 1 and f"Failed judgements (after retries): <b>{failed}</b>" in text
    parser = Structure()
    parser.feed(text)
    assert parser.stack == [] and "script" not in parser.tags
    assert parser.tags.count("img") == figures(results)  # the hostile <img> stayed text
    assert any(a.startswith('<script>alert("pwned")</script></td>') for a in parser.answers)


# --- the synthetic run ----------------------------------------------------------------------
def test_the_synthetic_report_has_every_section_and_the_run_settings(synthetic):
    results, path, text = synthetic
    assert path == results.run_dir / REPORT_NAME
    for section in SECTIONS:
        assert f'<section id="{section}">' in text
    assert results.manifest["data"]["sha256"] in text
    for model in ("smol", "gem"):
        assert results.manifest["models"][model]["sha256"] in text
    assert "gguf-chat-template" in text and "completion" in text and "Synthetic CPU 9000" in text
    assert "llama-cpp-python" in text and "0.3.36" in text
    for name in ("Kruskal", "Friedman", "Kendall", "Nemenyi", "Conover", "Wilcoxon", "Dunn", "independent samples",
                 "questions are blocks", "How far the judge can be trusted", "Paragraphs as blocks"):
        assert name in text, name
    for question in results.questions[:3]:  # the examples
        assert f"<code>{question.question_id}</code>" in text
    assert "raq report: synthetic &lt;b&gt;run&lt;/b&gt;" in text  # the config's name, escaped
    assert "What is &lt;b&gt;0&lt;/b&gt;?" in text and "&lt;script&gt;x&lt;/script&gt;" in text
    assert "no chat template: &lt;completion&gt;" in text
    ci = results.stats["summary"]["smol"]
    assert f"[{ci['ci_low']:.3g}, {ci['ci_high']:.3g}]" in text and "mean rank [95% CI]" in text
    assert "status complete" in text and "Settings &amp; versions" in text
    cut = re.search(r"<tr><td>gem</td><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td></tr>", text)
    assert cut and cut.groups() == ("1", "1")  # gem's empty answer, cut at max_tokens


def test_synthetic_figures_are_embedded_png_data_uris_and_nothing_is_fetched(synthetic):
    results, _, text = synthetic
    assert figures(results) == 4  # shuffled orders: the position-bias figure is there
    check_figures(results, text)


def test_hostile_synthetic_text_is_shown_as_text(synthetic):
    results, _, text = synthetic
    check_hostile(results, text)


def test_autoescaping_is_on_and_control_characters_are_visible():
    env = environment()
    assert env.autoescape is True
    assert env.from_string("{{ x }}").render(x="<script>alert(1)</script>") == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert env.from_string("<p title='{{ x }}'>").render(x="' onmouseover='x") == "<p title='&#39; onmouseover=&#39;x'>"
    assert env.from_string("{{ x }}|{{ y|fmt }}").render(x="a\x07b\x00", y="\x1b") == "a\\x07b\\x00|\\x1b"
    templates = Path(raq.__file__).parent / "templates"
    sources = {p.name: p.read_text(encoding="utf-8") for p in templates.iterdir()}
    assert "report.html.j2" in sources and "base.html.j2" in sources and "report.css" in sources
    for name, source in sources.items():  # nothing is let through unescaped
        assert not re.search(r"\|\s*safe\b|\{%-?\s*autoescape", source), name


@pytest.mark.parametrize("with_stats", [True, False], ids=["stats", "no-stats-json"])
def test_a_run_without_any_judgement_renders(with_stats, tmp_path):
    results = synthetic_results(tmp_path / "run", judged=False, with_stats=with_stats)
    assert results.judgements == [] and results.table["rank"].isna().all()
    text = render_html_report(results)
    for section in SECTIONS:
        assert f'<section id="{section}">' in text
    assert "No judged questions yet." in text and "<li>not judged yet</li>" in text
    assert "Failed judgements (after retries): <b>0</b>" in text
    assert ("No statistics (no stats.json)." in text) == (not with_stats)
    assert "one fixed order" in text and "could not be drawn" not in text
    assert "The judge was not checked" in text
    check_figures(results, text)
    structure = Structure()
    structure.feed(text)
    assert structure.stack == []


def test_html_report_does_not_import_the_pipeline():
    code = ("import sys\nimport raq.html_report\n"
            "print(' '.join(m for m in sys.modules if m.startswith('raq.') or m in ('pandas', 'jinja2')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "raq.pipeline" not in loaded and "raq.results" not in loaded
    assert "pandas" not in loaded and "jinja2" not in loaded  # light until a report is rendered


def test_a_report_path_can_be_chosen(tmp_path):
    results = synthetic_results(tmp_path / "run", judged=False, with_stats=False)
    path = write_html_report(results, tmp_path / "elsewhere" / "page.html")
    assert path == tmp_path / "elsewhere" / "page.html" and path.read_text().startswith("<!DOCTYPE html>")
    assert not (tmp_path / "run" / REPORT_NAME).exists()


# --- the judge check and the scoring protocols ------------------------------------------------------
def section(text: str, anchor: str) -> str:
    start = text.index(f'<section id="{anchor}">')
    return text[start:text.index("</section>", start)]


def with_check(tmp_path: Path, content: Any = None, **options: Any) -> SyntheticResults:
    results = synthetic_results(tmp_path / "run", **options)
    results.run_dir.mkdir(parents=True)
    if content is not None:
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        (results.run_dir / CHECK_FILE).write_text(text, encoding="utf-8")
    return results


def test_the_judge_check_section_shows_every_check_escaped(tmp_path):
    report = judge_check_report()
    results = with_check(tmp_path, report)
    text = write_html_report(results).read_text(encoding="utf-8")
    check_hostile(results, text)  # the rest of the report as before; no <script> anywhere
    assert text.index('<section id="figures">') < text.index('<section id="judge-check">') < text.index(
        '<section id="examples">')
    assert '<a href="#judge-check">Judge check</a>' in text
    part = section(text, "judge-check")
    accuracy = report["checks"][0]["metrics"]["pairwise_accuracy"]
    assert (f"{100 * accuracy['mean']:.1f}% [{100 * accuracy['ci_low']:.1f}%, {100 * accuracy['ci_high']:.1f}%]"
            in part)
    assert "pairwise accuracy [95% interval]" in part and "ties count half" in part
    assert '<span class="bad">no (≥ 95.0%)</span>' in part and "<td>yes (≥ 50.0%)</td>" in part
    assert "<td>qj</td><td>raq</td>" in part and "<td>qj</td><td>pointwise</td>" in part
    assert "on 5 ladders of 5 questions (squad-v1.1-dev, validation)" in part
    assert "Per rung: judge qj, raq protocol" in part and "<code>wrong_sentence</code>" in part
    assert "Example ladders (judge qj, raq protocol, first order)" in part
    assert "a wrong answer ranked at or" in part  # the misjudged ladder
    escaped_gold = HOSTILE_GOLD.replace("<", "&lt;").replace(">", "&gt;")
    assert f'<div class="answer">{escaped_gold}</div>' in part and f"<b>{escaped_gold}</b>" in part
    assert "&lt;/pre&gt;&lt;script&gt;x&lt;/script&gt;" in part  # the judge's reply
    assert "<script" not in part and "The judge was not checked" not in text
    structure = Structure()
    structure.feed(text)
    assert structure.stack == []


def test_without_a_judge_check_the_section_says_how_to_check(tmp_path):
    results = with_check(tmp_path)
    part = section(render_html_report(results), "judge-check")
    assert "The judge was not checked" in part
    assert f"<code>python -m raq judge-check --run {results.run_dir}</code>" in part


@pytest.mark.parametrize("content", ["{broken", '{"checks": [{"metrics": []}]}', json.dumps({"checks": [
    {"judge": "j", "metrics": {}, "judgements": [{"question_id": "q"}]}], "ladders": [{"question_id": "q"}]})])
def test_a_broken_judge_check_shows_its_error_and_loses_nothing(tmp_path, content):
    results = with_check(tmp_path, content)
    text = render_html_report(results)
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in text
    part = section(text, "judge-check")
    assert f'<p class="bad">{results.run_dir / CHECK_FILE} could not be read: ' in part
    assert "Error: " in part and "judge-check --run" in part
    check_figures(results, text)


@pytest.mark.parametrize("protocol", ["pointwise", "pairwise"])
def test_a_scoring_protocol_run_has_scores_and_no_position_figure(protocol, tmp_path):
    results = synthetic_results(tmp_path / "run", protocol=protocol)
    assert len({tuple(j.order) for j in results.judgements}) == 3  # listed in several orders, shown in none
    text = render_html_report(results)
    assert figures(results) == 3
    check_figures(results, text)
    figures_part, examples = section(text, "figures"), section(text, "examples")
    assert f"The {protocol} protocol shows the judge no order of all the answers" in figures_part
    assert "so there is no position-bias figure." in figures_part and "one fixed order" not in figures_part
    assert "shown A =" not in examples and f"judge <code>{JUDGE}</code>, {protocol} protocol (" in examples
    assert "scores: " in examples and "order 1" not in examples
    if protocol == "pointwise":
        assert "no order is shown: each answer is graded on its own" in figures_part
        assert "(grade 2)" in examples and "comparisons (" not in examples
    else:
        assert "pairwise: first shown wins over all comparisons" in figures_part
        assert "comparisons (6)" in examples and "<li>smol vs gem: " in examples and "(grade" not in examples
        row = re.search(rf"<tr><td>{JUDGE}</td>(.*?)</tr>", figures_part, re.S)
        assert row and '<td class="num">0.5</td>' in row.group(1)  # a consistent judge: first shown wins half
    markdown = summary_markdown(results.manifest, results.summary, results.stats)
    effects = ("pointwise: no order is shown: each answer is graded on its own" if protocol == "pointwise" else
               "first-shown answer won 0.5 of comparisons (chance 0.5); both orders of a pair named the same winner "
               "in 1 of pairs")
    assert f"- {JUDGE}: invalid first replies 0, failed after retries 0; {effects}; Spearman" in markdown
    structure = Structure()
    structure.feed(text)
    assert structure.stack == []


def test_summary_md_has_a_line_per_judge_check(tmp_path):
    results = with_check(tmp_path, judge_check_report())
    run = results.run_dir
    assert "Judge check" not in summary_markdown(results.manifest, results.summary, results.stats)
    paths = write_report(run, results.manifest, results.table, results.summary, results.stats, list(MODELS), SEED)
    markdown, lines = paths["markdown"].read_text(encoding="utf-8"), summary_lines(run)
    assert len(lines) == 2 and markdown == summary_markdown(results.manifest, results.summary, results.stats, lines)
    assert "## Judge check (answers of known quality)\n\n" + "\n".join(lines) + "\n" in markdown
    assert lines[0].startswith("- qj (raq protocol): pairwise accuracy ") and "(95% interval " in lines[0]
    assert lines[1].startswith("- qj (pointwise protocol): pairwise accuracy 100.0%")
    (run / CHECK_FILE).write_text("{", encoding="utf-8")
    paths = write_report(run, results.manifest, results.table, results.summary, results.stats, list(MODELS), SEED)
    assert f"- {CHECK_FILE} could not be read: JSONDecodeError" in paths["markdown"].read_text(encoding="utf-8")


# --- the decision section -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fast_study(tmp_path_factory):
    """A finished fast-lane study (scripted contestants, the fair judge); its report is drawn here,
    with every figure (quick_analysis leaves them out only while the study runs)."""
    tmp = tmp_path_factory.mktemp("fast")
    with pytest.MonkeyPatch.context() as patch:
        quick_analysis(patch)
        results = raq.evaluate(study_config(tmp, n_questions=6, orders=2), backends=fakes(), progress=False)
    return results, render_html_report(results)


def decision_rows(part: str) -> list[tuple[str, str, str]]:
    """(row attributes, model cell, the other cells) of the decision section's first table."""
    table = part[part.index("<table>"):part.index("</table>")]
    return re.findall(r"<tr((?: class=\"chosen\")?)><td>([^<]*)</td>(.*?)</tr>", table, re.S)


def test_the_decision_section_comes_first_with_the_recommendation_and_a_row_per_model(fast_study):
    results, text = fast_study
    first = re.search(r'<section id="([^"]+)">', text)
    assert first and first.group(1) == "decision"
    assert text.index('<section id="decision">') < text.index('<section id="overview">')
    nav = re.search(r"<nav>(.*?)</nav>", text, re.S)
    assert nav and nav.group(1).startswith('<a href="#decision">Which model</a><a href="#overview">')
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in text
    part = section(text, "decision")
    recommendation = results.stats["recommendation"]
    assert recommendation["model"] == "alpha" and "Plackett-Luce: P(best)" in recommendation["sentence"]
    escaped = str(markupsafe.escape(recommendation["sentence"]))
    assert f'<p class="verdict">{escaped}</p>' in part and f"basis: {recommendation['basis']}" in part
    rows = decision_rows(part)
    assert [model for _, model, _ in rows] == ["alpha ◀", "beta", "gamma"]
    assert [attributes for attributes, _, _ in rows] == [' class="chosen"', "", ""]
    worths, pareto = results.stats["plackett_luce"], results.stats["tradeoffs"]["pareto"]["all"]
    assert pareto and set(pareto) <= set(MODEL_IDS)
    for (_, _, row), expected in zip(rows, MODEL_IDS):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        assert len(cells) == 11
        rank = results.stats["summary"][expected]
        assert cells[0] == f"{fmt(rank['mean'])} [{fmt(rank['ci_low'])}, {fmt(rank['ci_high'])}]"
        assert cells[2].startswith(fmt(worths["worth"][expected]["estimate"]) + " [")
        assert cells[3] == fmt(worths["p_best"][expected])
        assert cells[4] == fmt(results.stats["tradeoffs"]["figures"][expected]["answers_per_s"])
        assert cells[6] == fmt(results.summary.loc[expected, "memory_mib"])
        assert cells[10] == ("yes" if expected in pareto else "no")
    figure = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="Quality against speed and memory">',
                        part)
    assert len(figure) == 1 and base64.b64decode(figure[0]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "could not be drawn" not in part and "Head to head (Plackett-Luce)" in part
    assert "<script" not in text.lower()
    structure = Structure()
    structure.feed(text)
    assert structure.stack == []


def test_a_tradeoff_figure_that_cannot_be_drawn_shows_why(fast_study):
    results, _ = fast_study
    stats = {**results.stats, "tradeoffs": {**results.stats["tradeoffs"], "better": {}, "figures": {}}}
    part = section(render_html_report(dataclasses.replace(results, stats=stats)), "decision")
    assert ('<p class="bad">Quality against speed and memory: could not be drawn (ValueError: no speed or memory '
            "figure") in part
    assert "<img" not in part and '<p class="verdict">' in part


def test_a_hostile_recommendation_is_escaped_in_the_decision_section(fast_study):
    results, _ = fast_study
    hostile = {**results.stats["recommendation"], "sentence": HOSTILE, "basis": "<b>basis</b>"}
    text = render_html_report(dataclasses.replace(results, stats={**results.stats, "recommendation": hostile}))
    part = section(text, "decision")
    assert ESCAPED_ANSWER in part and ESCAPED_TAIL in part and "basis: &lt;b&gt;basis&lt;/b&gt;" in part
    assert "<script" not in text.lower() and "<b>basis</b>" not in text
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", part)
    structure = Structure()
    structure.feed(text)
    assert structure.stack == [] and "script" not in structure.tags


@pytest.mark.parametrize("old", ["synthetic", "fast"])
def test_statistics_without_a_recommendation_give_no_recommendation_and_the_report_renders(old, fast_study,
                                                                                           tmp_path):
    if old == "synthetic":  # statistics as raq made them before the decision existed
        results = synthetic_results(tmp_path / "run")
    else:
        study, _ = fast_study
        results = dataclasses.replace(study, stats={k: v for k, v in study.stats.items() if k != "recommendation"})
    assert "recommendation" not in results.stats
    text = render_html_report(results)
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in text
    part = section(text, "decision")
    assert "<p>No recommendation: this run's statistics were made before raq recommended a model" in part
    assert "<table>" not in part and "<img" not in part and "could not be drawn" not in part
    structure = Structure()
    structure.feed(text)
    assert structure.stack == []


# --- a real small run (demo GGUFs) --------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 2-question run of two demo contestants and a local demo judge."""
    for name in ("smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct"):
        demo_model(name)
    tmp_path = tmp_path_factory.mktemp("html")
    config = {
        "name": "html", "out_dir": str(tmp_path / "runs"), "models_dir": str(MODELS_DIR),
        "data": {"source": "squad-v1.1-dev", "n_questions": 2, "seed": 7},  # short texts, shown in 2 orders
        "generation": {"n_ctx": 1024, "max_tokens": 24},
        "models": [{"id": "smollm2", "gguf": "smollm2-135m-instruct"},
                   {"id": "gemma", "gguf": "gemma-3-270m", "prompt_format": "completion"}],
        "judge": {"id": "qwen-judge", "gguf": "qwen2.5-coder-0.5b-instruct", "n_ctx": 2048, "seed": 2024},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return raq.evaluate(path, progress=False)


@pytest.fixture(scope="module")
def report(run):
    path = run.report()
    return run, path, path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def hostile(run, tmp_path_factory):
    """A copy of the run with a crafted answer appended (it replaces the first question's first
    answer) and the last question's judgement replaced by a failed one with a hostile reply."""
    copy = tmp_path_factory.mktemp("hostile") / "run"
    shutil.copytree(run.run_dir, copy)
    first = run.questions[0].question_id
    original = next(a for a in run.answers if a.question_id == first)
    crafted = Answer(**{**to_dict(original), "text": HOSTILE})
    with open(copy / "answers.jsonl", "a", encoding="utf-8") as out:
        out.write(json.dumps(to_dict(crafted), ensure_ascii=False) + "\n")
    last = run.questions[-1].question_id
    records = [json.loads(line) for line in (copy / "judgements.jsonl").read_text().splitlines()]
    records = [r for r in records if r["question_id"] != last] + [{
        "question_id": last, "judge_id": "qwen-judge", "protocol": "raq", "order": ["gemma", "smollm2"],
        "labels": ["A", "B"], "ranks": {}, "ok": False, "attempts": 3, "raw_replies": [HOSTILE_REPLY] * 3,
        "error": HOSTILE_ERROR, "seconds": 1.0}]
    (copy / "judgements.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    results = raq.load_run(copy)
    assert any(a.text == HOSTILE for a in results.answers)
    path = results.report()
    return results, path, path.read_text(encoding="utf-8")


@pytest.mark.integration
def test_the_report_has_every_section_and_the_run_settings(run, report):
    _, path, text = report
    assert path == run.run_dir / "report.html"
    for section in SECTIONS:
        assert f'<section id="{section}">' in text
    manifest = run.manifest
    assert manifest["data"]["sha256"] in text
    for model in ("smollm2", "gemma"):
        assert manifest["models"][model]["sha256"] in text
    assert "gguf-chat-template" in text and "completion" in text  # the templates used
    assert manifest["environment"]["cpu"] in text and "llama-cpp-python" in text
    assert "Kruskal" in text and "Friedman" in text and "Kendall" in text and "Nemenyi" in text
    assert "Conover" in text and "Wilcoxon" in text and "Dunn" in text
    assert "independent samples" in text and "questions are blocks" in text  # design notes
    for question in run.questions:  # the examples: every question of this small run
        assert f"<code>{question.question_id}</code>" in text


@pytest.mark.integration
def test_figures_are_embedded_png_data_uris_and_nothing_is_fetched(report):
    run, _, text = report
    check_figures(run, text)


@pytest.mark.integration
def test_hostile_model_output_is_shown_as_text(hostile):
    results, _, text = hostile
    check_hostile(results, text)


# --- a real browser -----------------------------------------------------------------------------
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} missing: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def browse(path: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", *args, path.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("which", ["synthetic", pytest.param("report", marks=pytest.mark.integration),
                                   pytest.param("hostile", marks=pytest.mark.integration)])
def test_chromium_renders_the_report(which, request, tmp_path):
    from PIL import Image

    results, path, _ = request.getfixturevalue(which)
    screenshot = tmp_path / "report.png"
    done = browse(path, tmp_path, f"--screenshot={screenshot}", "--window-size=1280,4000")
    assert screenshot.exists(), done.stderr[-2000:]
    with Image.open(screenshot) as image:
        assert image.size == (1280, 4000)
        colours = dict((c, n) for n, c in image.convert("RGB").getcolors(maxcolors=10_000_000))
    assert len(colours) > 50  # not one colour: text, tables and figures
    assert colours.get(SPEED_BLUE, 0) > 1000  # the speed figure's PNG was decoded and drawn
    dom = browse(path, tmp_path, "--dump-dom", "--virtual-time-budget=5000").stdout
    assert dom.count('<img src="data:image/png;base64,') == dom.count("<img") == figures(results)
    assert "<script" not in dom.lower()
    assert all(f'id="{section}"' in dom for section in SECTIONS)


@pytest.mark.integration
def test_tables_export_as_csv_and_parquet(run, tmp_path):
    csv, parquet = run.to_csv(tmp_path / "csv"), run.to_parquet(tmp_path / "parquet")
    assert set(csv) == set(parquet) == {"results", "summary", "significance"}
    for name in csv:
        a, b = pd.read_csv(csv[name]), pd.read_parquet(parquet[name])
        assert list(a.columns) == list(b.columns) and len(a) == len(b)
    assert len(pd.read_parquet(parquet["results"])) == 2 * 2
    assert list(pd.read_csv(csv["summary"])["model_id"]) == ["smollm2", "gemma"]
    assert set(pd.read_parquet(parquet["significance"])["family"]) == {"paper", "blocked"}


def test_a_judge_behind_several_servers_shows_its_urls_as_a_list() -> None:
    from types import SimpleNamespace

    from raq.html_report import _settings

    manifest = {"config": {"judge": {"id": "j", "base_url": ["http://a:1/v1", "http://b:2/v1"], "model": "m"},
                           "models": []}, "environment": {}}
    ((title, shown),) = _settings(SimpleNamespace(manifest=manifest))["judges"]  # type: ignore[arg-type]
    assert title == "Judge j" and shown["base_url"] == "http://a:1/v1, http://b:2/v1" and shown["model"] == "m"
