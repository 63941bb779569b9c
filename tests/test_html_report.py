"""`llmr report`: the HTML page from a real evaluation folder (fake LLM), the comparison of two runs, and both
in a real headless browser at a desktop (1400 px) and a phone (400 px) width."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from operator import itemgetter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakes import FakeLLM
from llmr.base.manifest import write_manifest
from llmr.cli import app
from llmr.data.jsonl import read_jsonl, write_jsonl
from llmr.data.schema import Passage, Record
from llmr.evaluation.harness import EvalSettings, OutcomeCache, evaluate_methods
from llmr.evaluation.html import OUTCOME_COLUMNS, write_comparison, write_html_report
from llmr.evaluation.metrics import paired_bootstrap
from llmr.evaluation.report import write_report

HOSTILE = 'a "great" film </script><script>document.title="pwned"</script>'
COPA_IDS = ["c2", "c10", "c228", "c1247"]  # natural order; as text, c10 < c1247 < c2 < c228


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
        Record(query_id=i, query=f"Premise {i} again", answers=["A"], options=["one", "two"], task_name="copa")
        for i in reversed(COPA_IDS)
    ]
    cache = OutcomeCache(out / "cache.sqlite")
    runs, _ = evaluate_methods(FakeLLM(), ["zero", "random", "bm25"], pool, records, [2], [0], cache, EvalSettings())
    cache.close()
    write_report(runs, out, n_resamples=200)
    config = {"methods": ["zero", "random", "bm25"], "k": [2], "seeds": [0], "llm": "fake:v1", "split": "test"}
    write_manifest(out / "manifest.json", "eval", config, inputs={"passages": "sha256:abc"})
    return out


def _json(page: str, element_id: str) -> dict:
    found = re.search(rf'<script type="application/json" id="{element_id}"[^>]*>(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


def test_the_page_holds_summary_tables_plots_and_the_explorer(eval_dir: Path, tmp_path: Path) -> None:
    page = write_html_report(eval_dir, tmp_path / "report.html").read_text()
    assert "Average score over 2 tasks (13 test queries)" in page
    assert page.count("<svg") == 2 and "Per category (± SE)" in page and "Per task (± SE over its queries)" in page
    assert re.search(
        r'<td data-sort="sst2">sst2</td><td data-sort="accuracy">accuracy</td><td data-sort="9">9</td>', page
    )
    assert page.count('<table class="sortable"') == 2 and "<thead>" in page
    data = _json(page, "data")
    assert data["methods"] == ["zero", "random", "bm25"] and len(data["queries"]) == 13
    queries = {q["id"]: q for q in data["queries"]}
    assert [q["id"] for q in data["queries"] if q["task"] == "copa"] == COPA_IDS  # naturally, not as text
    copa = queries["c2"]
    assert copa["choices"] == {"A": "one", "B": "two"} and copa["gold"] == "A"  # the options' texts, by letter
    assert set(copa["methods"]["bm25"]["options"]) == {"A", "B"}
    assert copa["methods"]["bm25"]["examples"][0]["text"].startswith("Premise")
    assert queries["q0"]["choices"] is None  # classification: the label words are the answers
    assert queries["hostile"]["query"] == HOSTILE  # kept as text ...
    assert "</script><script>document.title" not in page  # ... and never closes the script element
    assert '<input type="search" id="search"' in page
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page  # nothing to fetch


def test_the_page_fits_a_phone_and_its_plots_carry_no_legend_over_the_bars(eval_dir: Path, tmp_path: Path) -> None:
    page = write_html_report(eval_dir, tmp_path / "report.html").read_text()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "@media (max-width: 700px)" in page and page.count('<div class="scroll">') >= 3  # tables scroll in a box
    assert 'id="legend_' not in page  # matplotlib's legend sat over the bars ...
    assert page.count('<span class="chip" style="background:#1f77b4"></span>zero') == 1  # ... the page's does not


def test_the_page_shows_what_made_the_run(eval_dir: Path, tmp_path: Path) -> None:
    page = write_html_report(eval_dir, tmp_path / "report.html").read_text()
    manifest = json.loads((eval_dir / "manifest.json").read_text())
    assert "<title>llmr report: zero, random, bm25 at k = 2</title>" in page
    row = dict(re.findall(r'<tr id="run-([\w-]+)"><th>[^<]*</th><td>(.*?)</td></tr>', page, re.S))
    assert row["llm"] == "fake:v1" and row["seeds"] == "0"
    assert manifest["created"] not in page and "manifest.json (created)" in row["date"]  # a resumed run: same bytes
    assert row["methods"] == "zero, random, bm25" and row["split"] == "test" and row["inputs"] == "passages sha256:abc"
    assert f"python {manifest['versions']['python']}" in row["versions"] and "llmr " in row["versions"]
    assert row["git-commit"] in ("not recorded", manifest.get("git"))
    assert "&#34;llm&#34;: &#34;fake:v1&#34;" in row["config"]  # the whole config, escaped
    assert eval_dir.name not in page  # never the run's folder


def test_the_per_query_outcomes_are_embedded_for_download(eval_dir: Path, tmp_path: Path) -> None:
    page = write_html_report(eval_dir, tmp_path / "report.html").read_text()
    table = _json(page, "outcomes")
    assert table["columns"] == list(OUTCOME_COLUMNS) and len(table["rows"]) == 3 * 13
    rows = {(r[0], r[4]): dict(zip(OUTCOME_COLUMNS, r, strict=True)) for r in table["rows"]}
    for o in read_jsonl(eval_dir / "explanations.jsonl.gz"):
        got = rows[o["method"], o["query_id"]]
        assert (got["score"], got["prediction"], got["gold"], got["correct"]) == (
            o["score"],
            o["prediction"],
            o["gold"],
            o["correct"],
        )
    assert 'id="download-csv"' in page and 'id="download-json"' in page and "(39 rows)" in page


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed")
def test_the_csv_download_keeps_a_spreadsheet_from_running_text_as_a_formula(eval_dir: Path, tmp_path: Path) -> None:
    """OWASP CSV injection: the page's own `toCSV`, run in Node, prefixes ' to text that starts with = + - @
    tab or CR (a prediction is the LLM's text); numbers, negative ones too, stay numbers."""
    page = write_html_report(eval_dir, tmp_path / "report.html").read_text()
    to_csv = re.search(r"^function toCSV\(t\) \{$.*?^\}$", page, re.S | re.M).group(0)
    hostile = ['=HYPERLINK("http://x.example","click")', "+1", "-1+2", "@SUM(A1)", "\t=1", "\r=1"]
    rows = [["bm25", 2, 0, "sst2", f"q{i}", text, "Positive", -2.75, False] for i, text in enumerate(hostile)]
    rows.append(["bm25", 2, 0, "sst2", "q9", "a = b", "-", 0.5, True])
    script = f"{to_csv}\nprocess.stdout.write(toCSV({json.dumps({'columns': OUTCOME_COLUMNS, 'rows': rows})}));"
    text = subprocess.run([NODE, "-e", script], capture_output=True, check=True, timeout=60).stdout.decode()  # CRs kept
    assert '"bm25",2,0,"sst2","q0","\'=HYPERLINK(""http://x.example"",""click"")","Positive",-2.75,false' in text
    table = list(csv.reader(io.StringIO(text, newline="")))
    assert table[0] == list(OUTCOME_COLUMNS) and len(table) == 1 + len(rows)
    assert [r[5] for r in table[1:]] == [*("'" + h for h in hostile), "a = b"]
    assert [r[6] for r in table[1:]] == ["Positive"] * len(hostile) + ["'-"]
    assert {r[7] for r in table[1:-1]} == {"-2.75"}  # a score: a number, never text


def test_the_same_run_gives_the_same_bytes_wherever_its_folder_is(eval_dir: Path, tmp_path: Path) -> None:
    """A resumed or moved run must reproduce its page byte for byte (the kill suite compares them)."""
    pages = []
    for name in ("run-one", "another-name"):
        folder = shutil.copytree(eval_dir, tmp_path / name, ignore=shutil.ignore_patterns("report.html"))
        manifest = json.loads((folder / "manifest.json").read_text())  # what a resumed run's manifest changes
        manifest.update(created=f"2031-01-0{len(pages) + 1}T00:00:00Z", command=["llmr", "eval", "-o", str(folder)])
        (folder / "manifest.json").write_text(json.dumps(manifest))
        pages.append(write_html_report(folder).read_bytes())
        assert name.encode() not in pages[-1]
    assert pages[0] == pages[1] and b'clip-path="url(#' in pages[0]


def test_a_folder_without_results_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no results\.json"):
        write_html_report(tmp_path)


@pytest.fixture(scope="module")
def run_b(eval_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second run: only the sst2 queries, and bm25 right where it was wrong before (a known difference)."""
    out = shutil.copytree(eval_dir, tmp_path_factory.mktemp("b") / "eval-b", ignore=shutil.ignore_patterns("*.html"))
    rows = [o for o in read_jsonl(eval_dir / "explanations.jsonl.gz") if o["task"] == "sst2"]
    for o in rows:
        if o["method"] == "bm25":
            o["score"], o["correct"] = 1.0, True
    write_jsonl(out / "explanations.jsonl.gz", rows)
    return out


def test_the_comparison_gives_paired_cis_on_the_shared_queries(eval_dir: Path, run_b: Path, tmp_path: Path) -> None:
    page = write_comparison(eval_dir, run_b, tmp_path / "compare.html", n_resamples=200).read_text()
    rows = re.findall(r"<tr>(.*?)</tr>", page.split('id="pairs"')[1].split("</table>")[0])
    cells = [c for r in rows if (c := re.findall(r'data-sort="([^"]*)"', r))]  # the body's rows
    assert [(c[1], c[2], c[3]) for c in cells] == [
        ("zero", "zero", "9"),
        ("random", "random", "9"),
        ("bm25", "bm25", "9"),
    ]
    a = [o for o in read_jsonl(eval_dir / "explanations.jsonl.gz") if o["task"] == "sst2" and o["method"] == "bm25"]
    b = [o for o in read_jsonl(run_b / "explanations.jsonl.gz") if o["method"] == "bm25"]
    by_id = itemgetter("query_id")  # the comparison pairs queries by id
    expected = paired_bootstrap({"sst2": sorted(a, key=by_id)}, {"sst2": sorted(b, key=by_id)}, n_resamples=200)
    bm25 = [float(x) for x in cells[2][4:8]]
    assert bm25[2] == pytest.approx(expected["difference"]) and bm25[3] == pytest.approx(expected["low"])
    assert expected["difference"] < 0 and float(cells[0][6]) == 0  # the same outcomes: no difference
    assert "Run metadata" in page and page.count("<svg") == 1 and "<th>eval-b</th>" in page
    paired = _json(page, "outcomes")
    assert len(paired["rows"]) == 3 * 9 and paired["columns"][:3] == ["k", "method_a", "method_b"]


def test_llmr_report_compares_two_runs_and_refuses_three(eval_dir: Path, run_b: Path, tmp_path: Path) -> None:
    out = tmp_path / "both.html"
    done = CliRunner().invoke(app, ["report", str(eval_dir), str(run_b), "--out", str(out), "--resamples", "50"])
    assert done.exit_code == 0, done.output
    assert out.read_text().startswith("<!doctype html>")
    three = CliRunner().invoke(app, ["report", str(eval_dir), str(run_b), str(run_b)])
    assert three.exit_code == 2 and "one run, or two" in three.output


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

# Injected by the tests only: after load, sort a table, read the downloads, search, and measure the layout.
PROBE = """<script>addEventListener("load", async () => {
  const probe = {title: document.title, scrollWidth: document.documentElement.scrollWidth, innerWidth: innerWidth,
    columns: getComputedStyle(document.getElementById("explorer")).gridTemplateColumns.split(" ").length};
  const list = () => [...document.querySelectorAll("#list .query")].map(b => b.dataset.id);
  probe.list = list(); probe.gold = document.querySelector("#detail p.gold").textContent;
  probe.options = document.querySelector("#detail ol.choices").textContent;
  const th = document.querySelector("#tasks-k2 th:nth-child(3)"); th.click(); th.click();
  probe.sorted = [...document.querySelectorAll("#tasks-k2 tbody tr")].map(r => r.cells[0].textContent);
  probe.csv = await (await fetch(document.getElementById("download-csv").href)).text();
  probe.json = JSON.parse(await (await fetch(document.getElementById("download-json").href)).text());
  probe.filename = document.getElementById("download-csv").download;
  const search = document.getElementById("search"); search.value = "228"; search.dispatchEvent(new Event("input"));
  probe.searched = list(); probe.hash = location.hash;
  parent.postMessage(JSON.stringify(probe), "*");
});</script>"""


def _framed(page: Path, width: int, fragment: str = "") -> Path:
    """The page in a frame `width` px wide, which writes what the page's probe reports: a headless window is
    never narrower than 500 px, and a frame's media queries and layout follow its own width."""
    frame = page.with_name("frame.html")
    frame.write_text(
        '<!doctype html><script>addEventListener("message", e => { const p = document.createElement("pre");'
        ' p.id = "probe"; p.textContent = e.data; document.body.append(p); });</script>'
        f'<iframe src="{page.name}{fragment}" style="width: {width}px; height: 900px; border: 0"></iframe>'
    )
    return frame


def _chromium(*args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--hide-scrollbars"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # a real browser: Chromium from Debian's packages (apt install chromium)
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
@pytest.mark.parametrize("width", [1400, 400])
def test_the_page_works_in_chromium(eval_dir: Path, tmp_path: Path, width: int) -> None:
    page = write_html_report(eval_dir, tmp_path / "report.html")
    page.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    frame = _framed(page, width, "#task=copa")
    loaded = _chromium("--enable-logging=stderr", "--v=0", "--window-size=1500,1000", "--dump-dom", f"file://{frame}")
    errors = [line for line in loaded.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert errors == []
    probe = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', loaded.stdout, re.S).group(1).replace("&amp;", "&"))
    assert probe["title"] == "llmr report: zero, random, bm25 at k = 2"
    assert probe["innerWidth"] == width and probe["scrollWidth"] <= width  # nothing cut off, nothing to scroll
    assert probe["columns"] == (2 if width > 700 else 1)  # the query list above its detail on a phone
    assert probe["list"] == COPA_IDS  # the URL's task filter, in natural order
    assert probe["gold"] == "gold: A. one" and "one  (gold)" in probe["options"] and "two" in probe["options"]
    assert probe["sorted"] == ["sst2", "copa"]  # by queries, descending (9, 4)
    lines = probe["csv"].splitlines()
    assert lines[0] == ",".join(OUTCOME_COLUMNS) and len(lines) == 1 + 3 * 13 and probe["filename"] == "outcomes.csv"
    assert len(probe["json"]) == 3 * 13 and set(probe["json"][0]) == set(OUTCOME_COLUMNS)
    assert sum(line.startswith('"bm25",2,0,"sst2","hostile","') for line in lines) == 1  # text quoted, numbers not
    assert probe["searched"] == ["c228"] and "q=228" in probe["hash"]
    if width == 1400:
        shot = tmp_path / "report.png"
        _chromium(f"--window-size={width},4000", f"--screenshot={shot}", f"file://{page}")
        import matplotlib.image as mpimg

        pixels = mpimg.imread(shot)
        assert pixels.shape[:2] == (4000, width) and pixels[:1500].std() > 0.05  # summary, plots, tables drawn


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_the_comparison_renders_in_chromium_on_a_phone(eval_dir: Path, run_b: Path, tmp_path: Path) -> None:
    page = write_comparison(eval_dir, run_b, tmp_path / "compare.html", n_resamples=50)
    probe = """<script>addEventListener("load", () => parent.postMessage(
      [document.documentElement.scrollWidth, document.getElementById("download-csv").href].join(" "), "*"));</script>"""
    page.write_text(page.read_text().replace("</body>", probe + "</body>"))
    frame = _framed(page, 400)
    loaded = _chromium("--enable-logging=stderr", "--v=0", "--window-size=1500,1000", "--dump-dom", f"file://{frame}")
    assert not [line for line in loaded.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    width, href = re.search(r'<pre id="probe">(\d+) (\S+)</pre>', loaded.stdout).groups()
    assert int(width) <= 400 and href.startswith("blob:")
