"""`llmr demo` (`make demo`): the main job end to end at demo scale, on the embedded models.

Real tasks -> BM25 candidates -> LLM feedback -> reward model -> distilled retriever -> evaluation of
zero-shot, random, BM25, dense and the trained retriever on held-back test queries; then the table with
paired CIs, what the pipeline's agreement figures measure, where the retriever and the HTML report are,
and two ways to use the retriever.
The config is the shipped `demo` study (src/llmr/pipeline/configs/demo.yaml).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from llmr.evaluation.html import write_html_report
from llmr.pipeline.runner import StageResult
from llmr.pipeline.study import Study, StudyConfig

console = Console()


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="The demo's folder (resumes if it exists)."),
    overrides: list[str] = typer.Option(
        None, "--set", help="Override a setting of the demo study, e.g. --set pipeline.data.source=samples."
    ),
) -> None:
    """Learn a retriever from LLM feedback on 4 real tasks and measure it against BM25 and the rest (~10 min)."""
    cfg = StudyConfig.load("demo", list(overrides or []))
    started = time.perf_counter()
    run = Study(cfg, out).run()
    results = run["results"]
    page = write_html_report(out)
    k = str(cfg.eval.k[0])
    by_k = results["by_k"][k]
    queries = sum(by_k["queries"].values())
    table = Table(title=f"k = {k}, {queries} test queries of {len(by_k['queries'])} tasks (score: mean of tasks)")
    for column in ("method", "score", "llmr-1 minus it (95% CI, paired bootstrap)"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for method in cfg.eval.methods:
        ci = by_k["ci"].get(f"llmr-1 - {method}")
        cell = f"{ci['difference']:+.1f} [{ci['low']:+.1f}, {ci['high']:+.1f}]" if ci else ""
        table.add_row(method, f"{by_k['summary'][method]['average']:.1f}", cell)
    console.print(table)
    vs = by_k["ci"]["llmr-1 - bm25"]
    verdict = "better than" if vs["low"] > 0 else "worse than" if vs["high"] < 0 else "not distinguishable from"
    retriever, data = out / "pipeline" / "retriever", out / "pipeline" / "data"
    console.print(
        f"The trained retriever is {verdict} BM25 here ({vs['difference']:+.1f} points; with {queries} queries the "
        "CI is wide). The full study resolves about ±3 points: llmr study benchmarks/quality/study.yaml --yes (~2 h)."
    )
    if agreements := agreement_lines(run["stages"], cfg.pipeline.distill.teacher):
        console.print("\n".join(agreements), markup=False, highlight=False, soft_wrap=True)
    console.print(f"\nretriever: {retriever}\nreport:    {page}\ntook {time.perf_counter() - started:,.0f} s\n")
    query = {"task": "sst2", "fields": {"sentence": "a gem"}, "k": 4}
    python = f"Selector.load('{retriever}', pool='{data}').build_prompt(get_task('sst2').format_query(" + (
        "{'sentence': 'a gem'}), k=4, task='sst2')"
    )
    # This interpreter's own paths (e.g. .venv/bin/python): they run as printed without activating the venv.
    bin_dir = Path(os.path.relpath(Path(sys.executable).parent))
    lines = [
        "Use it:",
        f'  {bin_dir / "python"} -c "from llmr import Selector; from llmr.tasks import get_task; print({python})"',
        f"  {bin_dir / 'llmr'} serve --model {retriever} --pool {data} &",
        f"  curl -s localhost:8000/v1/prompt -H 'content-type: application/json' -d '{json.dumps(query)}'",
    ]
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def agreement_lines(stages: Sequence[StageResult], teacher: str) -> list[str]:
    """What each agreement figure of the stage lines (the last iteration's) measures, one line each: there they
    are bare numbers, and chance (0.5: a coin orders half the pairs right) is what to read them against."""
    reward = next((s.report for s in reversed(stages) if s.name.endswith("/reward")), {})
    retriever = next((s.report for s in reversed(stages) if s.name.endswith("/retriever")), {})
    lines = []
    if (llm := reward.get("agreement_with_llm")) is not None:
        lines.append(
            f"agreement with llm {llm:.3g}: how often the reward model orders a pair of candidate examples as the "
            f"LLM's scores do, on {reward['held_back_queries']} held-back queries; 0.5 = chance."
        )
    before, after = retriever.get("initial_agreement_with_teacher"), retriever.get("agreement_with_teacher")
    if after is not None:
        was = f"{before:.3g} before training, " if before is not None else ""
        lines.append(
            f"agreement with teacher {was}{after:.3g} after: how often the retriever orders a pair of candidate "
            f"examples as its teacher ({teacher}) does, on held-back queries; 0.5 = chance."
        )
    return lines
