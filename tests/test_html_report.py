"""`llmr report`: the HTML page from a real evaluation folder (fake LLM), and in a real headless browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fakes import FakeLLM
from llmr.data.schema import Passage, Record
from llmr.evaluation.harness import EvalSettings, OutcomeCache, evaluate_methods
from llmr.evaluation.html import write_html_report
from llmr.evaluation.report import write_report

HOSTILE = 'a "great" film </script><script>document.title="pwned"</script>'


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An evaluation of zero, random and bm25 on two tasks, written as `llmr eval` writes it."""
    out = tmp_path_factory.mktemp("eval")
    words = ["wonderful", "awful", "great", "boring", "lovely", "dull", "fine", "bad"]
    pool = [
        Passage(id=f"s{i}", contents=f"Review: {w} film\n{'Positive' if i % 2 == 0 else 'Negative'}", task_name="sst2")
        for i, w in enumerate(words)
    ]
    pool += [Passage(id=f"c{i}", contents=f"Premise {i}\nanswer {i}", task_name="copa") for i in range(4)]
    records = [
        Record(
            query_id=f"q{i}",
            query=f"Review: {w} movie",
            answers=[["Positive", "Negative"][i % 2]],
            options=[""],
            task_name="sst2",
        )
        for i, w in enumerate(words)
    ]
    records.append(Record(query_id="hostile", query=HOSTILE, answers=["Positive"], options=[""], task_name="sst2"))
    records += [
        Record(query_id=f"c{i}", query=f"Premise {i} again", answers=["A"], options=["one", "two"], task_name="copa")
        for i in range(4)
    ]
    cache = OutcomeCache(out / "cache.sqlite")
    runs, _ = evaluate_methods(FakeLLM(), ["zero", "random", "bm25"], pool, records, [2], [0], cache, EvalSettings())
    cache.close()
    write_report(runs, out, n_resamples=200)
    return out


def test_the_page_holds_summary_tables_plots_and_the_explorer(eval_dir: Path, tmp_path: Path) -> None:
    page = write_html_report(eval_dir, tmp_path / "report.html").read_text()
    assert "Average score over 2 tasks (13 test queries)" in page
    assert page.count("<svg") == 2 and "Per category (± SE)" in page and "Per task (± SE over its queries)" in page
    assert re.search(r"<td>sst2</td><td>accuracy</td><td>9</td>", page)
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1))
    assert data["methods"] == ["zero", "random", "bm25"] and len(data["queries"]) == 13
    copa = data["queries"]["c0"]["methods"]["bm25"]
    assert set(copa["options"]) == {"A", "B"} and copa["examples"][0]["text"].startswith("Premise")
    assert data["queries"]["hostile"]["query"] == HOSTILE  # kept as text ...
    assert "</script><script>document.title" not in page  # ... and never closes the script element
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page  # nothing to fetch


def test_the_same_run_gives_the_same_bytes_wherever_its_folder_is(eval_dir: Path, tmp_path: Path) -> None:
    """A resumed or moved run must reproduce its page byte for byte (the kill suite compares them)."""
    pages = []
    for name in ("run-one", "another-name"):
        folder = shutil.copytree(eval_dir, tmp_path / name, ignore=shutil.ignore_patterns("report.html"))
        pages.append(write_html_report(folder).read_bytes())
        assert name.encode() not in pages[-1]
    assert pages[0] == pages[1] and b'clip-path="url(#' in pages[0]


def test_a_folder_without_results_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no results\.json"):
        write_html_report(tmp_path)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--hide-scrollbars"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # a real browser: Chromium from Debian's packages (apt install chromium)
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_the_page_renders_in_chromium_and_its_filter_works(eval_dir: Path, tmp_path: Path) -> None:
    page = write_html_report(eval_dir, tmp_path / "report.html")
    loaded = _chromium("--enable-logging=stderr", "--v=0", "--dump-dom", f"file://{page}")
    assert "<title>llmr report" in loaded.stdout and 'class="query"' in loaded.stdout
    errors = [line for line in loaded.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert errors == [] and re.search("<title>(.*?)</title>", loaded.stdout).group(1).startswith("llmr report")
    filtered = _chromium("--dump-dom", f"file://{page}#task=copa&disagree=0").stdout
    tasks = re.findall(r'class="query" data-task="(\w+)"|data-task="(\w+)" class="query"', filtered)
    assert {a or b for a, b in tasks} == {"copa"} and len(tasks) == 4
    assert 'id="count">4 queries' in filtered
    shot = tmp_path / "report.png"
    _chromium("--window-size=1300,4000", f"--screenshot={shot}", f"file://{page}")
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (4000, 1300) and pixels[:1500].std() > 0.05  # summary, plots, tables drawn
