"""The HTML report of a real small run: its sections, figures embedded as data URIs, hostile model
output shown as text, and a real headless Chromium rendering it (skipped locally without
Chromium, a failure under CI); plus the CSV/parquet exports."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

import raq
from conftest import MODELS_DIR, demo_model
from raq.records import Answer, to_dict

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
SECTIONS = ("overview", "models", "statistics", "figures", "examples", "failures", "settings")
HOSTILE = ('<script>alert("pwned")</script></td></tr></table><img src=x onerror=alert(1)> '
           "it's \"quoted\" & \x00\x07\x1b[31mred\x7f\u0085 --> <!-- ]]>")
SPEED_BLUE = (0x4C, 0x72, 0xB0)  # report.speed_figure's prompt-reading bars
HOSTILE_REPLY = '</pre><script>document.title="x"</script>{"ranking": ["A"]}\x01'


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


def figures(results) -> int:
    """Reference bars, rank distribution, speed, and position bias when the successful
    judgements saw the answers in more than one order (raq's protocol shuffles them)."""
    return 3 + (len({tuple(j.order) for j in results.judgements if j.ok}) > 1)


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
        "error": "no ranking in <reply> & \"bad\"", "seconds": 1.0}]
    (copy / "judgements.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    results = raq.load_run(copy)
    assert any(a.text == HOSTILE for a in results.answers)
    path = results.report()
    return results, path, path.read_text(encoding="utf-8")


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


def test_figures_are_embedded_png_data_uris_and_nothing_is_fetched(report):
    run, _, text = report
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(uris) == figures(run) and text.count("<img") == len(uris)
    assert ("Position bias" in text) == (len(uris) == 4)
    for uri in uris:
        assert base64.b64decode(uri).startswith(b"\x89PNG\r\n\x1a\n")
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert not re.search(r'(src|href)="(?!data:|#)', text)  # no external resource at all


def test_hostile_model_output_is_shown_as_text(hostile):
    results, _, text = hostile
    assert "<script" not in text.lower() and "<img src=x" not in text and "</table><img" not in text
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;" in text
    assert "it&#x27;s &quot;quoted&quot; &amp; \\x00\\x07\\x1b[31mred\\x7f\\x85 --&gt; &lt;!-- ]]&gt;" in text
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", text)
    assert "no ranking in &lt;reply&gt; &amp; &quot;bad&quot;" in text  # the failure, escaped
    assert "&lt;/pre&gt;&lt;script&gt;document.title=&quot;x&quot;" in text
    failed = sum(not j.ok for j in results.judgements)
    assert failed >= 1 and f"Failed judgements (after retries): <b>{failed}</b>" in text

    class Structure(HTMLParser):
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

    parser = Structure()
    parser.feed(text)
    assert parser.stack == [] and "script" not in parser.tags
    assert parser.tags.count("img") == figures(results)  # the hostile <img> stayed text
    assert any(a.startswith('<script>alert("pwned")</script></td>') for a in parser.answers)


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


@pytest.mark.parametrize("which", ["report", "hostile"])
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


def test_tables_export_as_csv_and_parquet(run, tmp_path):
    import pandas as pd

    csv, parquet = run.to_csv(tmp_path / "csv"), run.to_parquet(tmp_path / "parquet")
    assert set(csv) == set(parquet) == {"results", "summary", "significance"}
    for name in csv:
        a, b = pd.read_csv(csv[name]), pd.read_parquet(parquet[name])
        assert list(a.columns) == list(b.columns) and len(a) == len(b)
    assert len(pd.read_parquet(parquet["results"])) == 2 * 2
    assert list(pd.read_csv(csv["summary"])["model_id"]) == ["smollm2", "gemma"]
    assert set(pd.read_parquet(parquet["significance"])["family"]) == {"paper", "blocked"}
